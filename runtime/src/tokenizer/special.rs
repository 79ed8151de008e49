//! Splitting text on special tokens before the model's tokenizer sees it.
//!
//! Mirrors llama.cpp's `tokenizer_st_partition`: the candidate tokens are the control, user-defined and
//! unknown tokens, taken longest first (ties by id); each one claims its non-overlapping occurrences, left to
//! right, in the text that earlier (longer) tokens left unclaimed. Control and unknown tokens take part only
//! when special parsing is requested; user-defined tokens always do (like llama.cpp and HF `tokenizers`).
//!
//! Instead of one substring search per special token (Gemma has ~6k of them), all occurrences are found in one
//! pass with a byte trie and then resolved in llama.cpp's priority order, which gives the same result.
//! Not here: the `lstrip`/`rstrip` attributes llama.cpp sets for a few model families (phi-3, jina).

/// A piece of the input after special-token splitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// Index into `SpecialMatcher::specials` of the token ending here.
    terminal: Option<u32>,
}

struct Special {
    id: u32,
    /// Rank in llama.cpp's processing order (longest first, then by id).
    rank: u32,
    /// Control or unknown: only matched when parsing specials.
    needs_parse_special: bool,
}

/// A trie over the special tokens' texts.
pub(crate) struct SpecialMatcher {
    nodes: Vec<Node>,
    specials: Vec<Special>,
}

impl SpecialMatcher {
    /// `entries`: (id, text, needs_parse_special). Empty texts are ignored.
    pub(crate) fn new(entries: Vec<(u32, &str, bool)>) -> Self {
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| {
            entries[b]
                .1
                .len()
                .cmp(&entries[a].1.len())
                .then(entries[a].0.cmp(&entries[b].0))
        });
        let mut rank = vec![0u32; entries.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r as u32;
        }
        let mut m = SpecialMatcher {
            nodes: vec![Node {
                children: Vec::new(),
                terminal: None,
            }],
            specials: Vec::new(),
        };
        for (i, &(id, text, needs_parse_special)) in entries.iter().enumerate() {
            if text.is_empty() {
                continue;
            }
            let mut node = 0usize;
            for &b in text.as_bytes() {
                node = match m.nodes[node].children.binary_search_by_key(&b, |c| c.0) {
                    Ok(k) => m.nodes[node].children[k].1 as usize,
                    Err(k) => {
                        let new = m.nodes.len();
                        m.nodes.push(Node {
                            children: Vec::new(),
                            terminal: None,
                        });
                        m.nodes[node].children.insert(k, (b, new as u32));
                        new
                    }
                };
            }
            // Duplicate texts: keep the first (lowest-ranked) entry.
            if m.nodes[node].terminal.is_none() {
                m.nodes[node].terminal = Some(m.specials.len() as u32);
                m.specials.push(Special {
                    id,
                    rank: rank[i],
                    needs_parse_special,
                });
            }
        }
        m
    }

    /// Split `text` into raw-text pieces and special tokens.
    pub(crate) fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let bytes = text.as_bytes();
        // (rank, start, len, id) of every occurrence of every eligible special token.
        let mut hits: Vec<(u32, usize, usize, u32)> = Vec::new();
        if self.nodes[0].children.is_empty() {
            return if text.is_empty() {
                Vec::new()
            } else {
                vec![Fragment::Text(text)]
            };
        }
        for start in 0..bytes.len() {
            let mut node = 0usize;
            for (k, &b) in bytes[start..].iter().enumerate() {
                match self.nodes[node].children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => node = self.nodes[node].children[i].1 as usize,
                    Err(_) => break,
                }
                if let Some(s) = self.nodes[node].terminal {
                    let s = &self.specials[s as usize];
                    if parse_special || !s.needs_parse_special {
                        hits.push((s.rank, start, k + 1, s.id));
                    }
                }
            }
        }
        if hits.is_empty() {
            return if text.is_empty() {
                Vec::new()
            } else {
                vec![Fragment::Text(text)]
            };
        }
        hits.sort_unstable();
        let mut taken = vec![false; bytes.len()];
        let mut accepted: Vec<(usize, usize, u32)> = Vec::new();
        for (_, start, len, id) in hits {
            if taken[start..start + len].iter().any(|&t| t) {
                continue;
            }
            taken[start..start + len].iter_mut().for_each(|t| *t = true);
            accepted.push((start, len, id));
        }
        accepted.sort_unstable();
        let mut out = Vec::with_capacity(accepted.len() * 2 + 1);
        let mut pos = 0;
        for (start, len, id) in accepted {
            if start > pos {
                out.push(Fragment::Text(&text[pos..start]));
            }
            out.push(Fragment::Token(id));
            pos = start + len;
        }
        if pos < text.len() {
            out.push(Fragment::Text(&text[pos..]));
        }
        out
    }
}
