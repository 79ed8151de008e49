//! Byte-level BPE for `tokenizer.ggml.model = "gpt2"` vocabularies (Qwen, Llama 3, DeepSeek, …).
//!
//! Splitting uses the Hugging Face `tokenizers` crate: a `Sequence` of `Split` pre-tokenizers (fancy-regex,
//! `Isolated`), one per llama.cpp regex for `tokenizer.ggml.pre` (see `super::pretok`), then `ByteLevel`
//! (no prefix space, no regex of its own) to map bytes to GPT-2's printable characters. The merge loop is our
//! own port of llama.cpp's `llm_tokenizer_bpe_session`: per pre-token, start from its characters, repeatedly
//! apply the lowest-ranked merge (ties: leftmost), then emit each symbol's id, or the ids of its single bytes
//! when the merged text is not a token. Ranks live in an id-pair table, so loading a 151k-merge vocabulary
//! costs a few tens of milliseconds instead of the ~130 ms the crate's `BpeBuilder` needs to clone the
//! vocabulary and allocate every merge string.
//!
//! Not here: special-token splitting (`super::special`) and BOS/EOS (`super::Tokenizer::encode`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
};

use super::index::{PairRanks, TokenIndex};
use super::pretok::PreSpec;
use super::TokenizerError;

/// Candidate merges: (rank, left, right, left len, right len), smallest rank then leftmost first.
type MergeQueue = BinaryHeap<Reverse<(u32, usize, usize, usize, usize)>>;

pub(crate) struct BpeModel {
    pre: Sequence,
    ranks: PairRanks,
    ignore_merges: bool,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    /// The token id of this symbol's text, if it is a token.
    id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
}

impl BpeModel {
    /// `merges`: the GGUF's `"left right"` lines, in rank order.
    pub(crate) fn new(
        spec: PreSpec,
        tokens: &[String],
        index: &TokenIndex,
        merges: &[String],
    ) -> Result<Self, TokenizerError> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
        for r in spec.regexes {
            let split = Split::new(
                SplitPattern::Regex((*r).to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex {r:?}: {e}")))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());

        let mut ranks = PairRanks::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // Like llama.cpp: the separator is the first space after the first byte (a token may be " ").
            let Some(p) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                return Err(TokenizerError::BadMetadata {
                    key: "tokenizer.ggml.merges",
                    problem: format!("entry {rank} {m:?} is not two tokens separated by a space"),
                });
            };
            // A merge whose halves are not tokens can never apply to symbols we track by id.
            if let (Some(a), Some(b)) = (index.get(tokens, &m[..p]), index.get(tokens, &m[p + 1..]))
            {
                ranks.insert(a, b, rank as u32);
            }
        }
        Ok(BpeModel {
            pre: Sequence::new(steps),
            ranks,
            ignore_merges: spec.ignore_merges,
        })
    }

    /// Tokenize one raw-text fragment (no special tokens in it) and append the ids.
    pub(crate) fn tokenize(
        &self,
        tokens: &[String],
        index: &TokenIndex,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        let mut pts = PreTokenizedString::from(text);
        self.pre
            .pre_tokenize(&mut pts)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let mut symbols = Vec::new();
        let mut heap = BinaryHeap::new();
        for (word, _, _) in pts.get_splits(OffsetReferential::Original, OffsetType::None) {
            self.word(tokens, index, word, &mut symbols, &mut heap, out);
        }
        Ok(())
    }

    fn word(
        &self,
        tokens: &[String],
        index: &TokenIndex,
        word: &str,
        symbols: &mut Vec<Symbol>,
        heap: &mut MergeQueue,
        out: &mut Vec<u32>,
    ) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            if let Some(id) = index.get(tokens, word) {
                out.push(id);
                return;
            }
        }
        symbols.clear();
        heap.clear();
        let n_chars = word.chars().count();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let len = c.len_utf8();
            symbols.push(Symbol {
                start,
                len,
                id: index.get(tokens, &word[start..start + len]),
                prev: i.checked_sub(1),
                next: (i + 1 < n_chars).then_some(i + 1),
            });
        }
        let push = |symbols: &[Symbol], heap: &mut MergeQueue, l: usize, r: usize| {
            if let (Some(a), Some(b)) = (symbols[l].id, symbols[r].id) {
                if let Some(rank) = self.ranks.get(a, b) {
                    heap.push(Reverse((rank, l, r, symbols[l].len, symbols[r].len)));
                }
            }
        };
        for i in 1..symbols.len() {
            push(symbols, heap, i - 1, i);
        }
        while let Some(Reverse((_, l, r, llen, rlen))) = heap.pop() {
            // Stale: either side changed since the pair was queued.
            if symbols[l].len != llen || symbols[r].len != rlen || llen == 0 || rlen == 0 {
                continue;
            }
            let right = symbols[r];
            let merged = &word[symbols[l].start..right.start + right.len];
            symbols[l].len += right.len;
            symbols[l].id = index.get(tokens, merged);
            symbols[l].next = right.next;
            symbols[r].len = 0;
            if let Some(n) = right.next {
                symbols[n].prev = Some(l);
            }
            if let Some(p) = symbols[l].prev {
                push(symbols, heap, p, l);
            }
            if let Some(n) = symbols[l].next {
                push(symbols, heap, l, n);
            }
        }
        let mut cur = Some(0);
        while let Some(i) = cur {
            let s = symbols[i];
            match s.id {
                Some(id) => out.push(id),
                None => {
                    // llama.cpp: look each byte of the symbol's text up as a one-byte token.
                    let text = &word[s.start..s.start + s.len];
                    for b in text.bytes() {
                        if b.is_ascii() {
                            if let Some(id) = index.get(tokens, &(b as char).to_string()) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
            cur = s.next;
        }
    }
}
