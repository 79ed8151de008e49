//! Backends execute a [`Model`](crate::model::Model)'s forward pass.
//!
//! A backend owns what lives on its device — the KV cache, scratch buffers, uploaded weights — and takes
//! tokens in, logits out. The CPU backend is the reference every other backend is tested against.

pub mod cpu;

use std::sync::Arc;

use crate::error::Result;
use crate::model::routing::MoeStats;
use crate::model::Model;

/// Which rows of logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsRequest {
    /// None (fill the KV cache only).
    None,
    /// The last token's.
    Last,
    /// Every token's, in order.
    All,
    /// Not logits: every token's hidden state after the final norm (`n_embd` floats a row), the input of
    /// the LM head — what embeddings are pooled from.
    Hidden,
}

/// One sequence's part of a batched forward pass ([`Backend::forward_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct SeqTokens<'a> {
    /// Which sequence (KV cache) of the backend: `0..max_seqs()`.
    pub seq: usize,
    /// Tokens appended at that sequence's next positions.
    pub tokens: &'a [u32],
    pub output: LogitsRequest,
}

/// Runs a model over a sequence, keeping its KV cache.
pub trait Backend: Send {
    /// Short description, e.g. `"cpu (avx2, 2 threads)"`.
    fn describe(&self) -> String;

    fn model(&self) -> &Arc<Model>;

    /// Context size (positions the KV cache holds).
    fn n_ctx(&self) -> usize;

    /// Positions already in the KV cache.
    fn n_past(&self) -> usize;

    /// Forgets KV entries from position `n` on (`0` starts a new sequence).
    fn truncate(&mut self, n: usize);

    /// Bytes of KV cache per token.
    fn kv_bytes_per_token(&self) -> usize;

    /// Appends `tokens` at positions `n_past..`, returning the requested logits (`n_vocab` floats a row).
    fn forward(&mut self, tokens: &[u32], logits: LogitsRequest) -> Result<Vec<f32>>;

    /// Sequences the backend holds at once, each with its own KV cache of up to `n_ctx` positions. The
    /// single-sequence methods above act on sequence 0. Backends that cannot batch hold one.
    fn max_seqs(&self) -> usize {
        1
    }

    /// Positions in sequence `seq`'s cache.
    fn seq_len(&self, seq: usize) -> usize {
        if seq == 0 {
            self.n_past()
        } else {
            0
        }
    }

    /// Forgets sequence `seq`'s KV entries from position `n` on; `n == 0` also returns its memory where
    /// the backend allocates sequences as they fill.
    fn truncate_seq(&mut self, seq: usize, n: usize) {
        if seq == 0 {
            self.truncate(n);
        }
    }

    /// Makes sequence `dst` hold the first `n` positions of sequence `src` (a shared prompt prefix).
    fn copy_seq_prefix(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        let _ = (src, dst, n);
        Err(crate::error::Error::InvalidArgument(format!(
            "the {} backend holds one sequence and cannot share prefixes",
            self.describe()
        )))
    }

    /// Bytes of KV cache allocated now, over every sequence.
    fn kv_allocated_bytes(&self) -> usize {
        self.n_ctx() * self.kv_bytes_per_token()
    }

    /// One pass over several sequences at once, each at its own positions: weights are read once for all
    /// of the step's tokens while every sequence attends to its own cache. Returns each entry's requested
    /// rows, in order. Entries name distinct sequences. A backend without batching runs a single entry for
    /// sequence 0.
    fn forward_batch(&mut self, batch: &[SeqTokens<'_>]) -> Result<Vec<Vec<f32>>> {
        match batch {
            [one] if one.seq == 0 => Ok(vec![self.forward(one.tokens, one.output)?]),
            _ => Err(crate::error::Error::InvalidArgument(format!(
                "the {} backend runs one sequence at a time",
                self.describe()
            ))),
        }
    }

    /// Expert utilization since the backend was made or last cleared (MoE models only).
    fn moe_stats(&self) -> Option<&MoeStats> {
        None
    }

    /// Resets the expert utilization counters.
    fn clear_moe_stats(&mut self) {}
}
