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

    /// Expert utilization since the backend was made or last cleared (MoE models only).
    fn moe_stats(&self) -> Option<&MoeStats> {
        None
    }

    /// Resets the expert utilization counters.
    fn clear_moe_stats(&mut self) {}
}
