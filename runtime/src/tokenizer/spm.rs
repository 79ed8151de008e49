//! SentencePiece-style tokenization for `tokenizer.ggml.model = "llama"` vocabularies (Llama 2, Gemma).
//!
//! This is a from-scratch Rust implementation of the algorithm llama.cpp runs for SPM vocabularies
//! (`llm_tokenizer_spm_session` in `llama-vocab.cpp`), because exact agreement with llama.cpp is the goal:
//! start from one symbol per UTF-8 character, repeatedly merge the adjacent pair whose concatenation is a
//! vocabulary token with the highest score (ties: the leftmost pair), and finally emit each symbol's token,
//! or its bytes as `<0xNN>` byte tokens when the symbol is not in the vocabulary. No merges table is needed:
//! the scores alone drive it, so nothing is derived at load time beyond a text → id index.
//!
//! Not here: whitespace escaping and the space prefix (the caller does that, see `super::Tokenizer::encode`),
//! the unigram (`t5`) algorithm, and special-token splitting.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::index::TokenIndex;

/// What the SPM algorithm needs from the vocabulary.
pub(crate) struct SpmVocab<'a> {
    pub tokens: &'a [String],
    pub index: &'a TokenIndex,
    pub scores: &'a [f32],
    /// Token for each byte value (`<0xNN>`), used for characters that never formed a token.
    pub byte_tokens: &'a [Option<u32>; 256],
    pub unk: Option<u32>,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenize `text` (already whitespace-escaped with `▁`) and append the ids to `out`.
pub(crate) fn tokenize(vocab: &SpmVocab<'_>, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, ch)) in text.char_indices().enumerate() {
        let len = ch.len_utf8();
        symbols.push(Symbol {
            start,
            len,
            prev: i.checked_sub(1),
            next: (start + len < text.len()).then_some(i + 1),
        });
    }

    let mut queue = BinaryHeap::new();
    let try_add =
        |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: usize, right: usize| {
            let (l, r) = (symbols[left], symbols[right]);
            let piece = &text[l.start..r.start + r.len];
            if let Some(id) = vocab.index.get(vocab.tokens, piece) {
                queue.push(Bigram {
                    score: vocab.scores.get(id as usize).copied().unwrap_or(0.0),
                    left,
                    right,
                    len: piece.len(),
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, i - 1, i);
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // Skip stale pairs: one side was merged away or grew since the pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        if let Some(p) = symbols[b.left].prev {
            try_add(&symbols, &mut queue, p, b.left);
        }
        if let Some(n) = symbols[b.left].next {
            try_add(&symbols, &mut queue, b.left, n);
        }
    }

    let mut cur = if symbols.is_empty() { None } else { Some(0) };
    while let Some(i) = cur {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        if let Some(id) = vocab.index.get(vocab.tokens, piece) {
            out.push(id);
        } else {
            for &byte in piece.as_bytes() {
                if let Some(id) = vocab.byte_tokens[byte as usize].or(vocab.unk) {
                    out.push(id);
                }
            }
        }
        cur = s.next;
    }
}
