//! Multi-head latent attention (DeepSeek-V2/V3) on the CPU, in the absorbed form.
//!
//! Per token the cache holds only the normalized latent `c` (`kv_lora_rank`) and the shared rope key
//! (`qk_rope`). Keys and values are never expanded: a head's score against position `j` is
//! `q_nope·(W_kb c_j) + q_pe·k_pe_j = (W_kbᵀ q_nope)·c_j + q_pe·k_pe_j`, so the query is projected into the
//! latent space once (`W_kbᵀ q_nope`, "absorbing" the key up-projection), attention runs as one-KV-head
//! attention over rows `[c_j | k_pe_j]` with the values read from the `c_j` part, and the value
//! up-projection `W_vb` is applied to each head's attention output afterwards. This is the form llama.cpp
//! uses for MLA files, and the cache is the latent size (about a tenth of the expanded keys and values).

use super::matmul::{matmul, matmul_transposed, vector_f32, MatmulScratch};
use super::ops::{attention, rms_norm_rows, AttentionShape, RopeTable};
use crate::error::Result;
use crate::kv::LayerKv;
use crate::model::{MlaAttention, MlaKvB, MlaParams, MlaQuery, Model};

/// Attention of `n` tokens (`h`: `[n][n_embd]`, already normed) at positions `pos0..`; returns the
/// `[n][n_embd]` output after `attn_output`.
#[allow(clippy::too_many_arguments)]
pub fn mla_attention(
    model: &Model,
    m: &MlaAttention,
    dims: &MlaParams,
    h: &[f32],
    n: usize,
    pos0: usize,
    rope: &RopeTable,
    cache: &mut LayerKv,
    scratch: &mut MatmulScratch,
) -> Result<Vec<f32>> {
    let hp = &model.hparams;
    let heads = hp.n_head;
    let (nope, rdim, rank, vd) = (
        dims.qk_nope,
        dims.qk_rope,
        dims.kv_lora_rank,
        dims.v_head_dim,
    );
    let qk = nope + rdim;
    let row = rank + rdim;
    let norm = |w| vector_f32(w, model.data(w));

    // Queries: [n][heads × (nope + rope)].
    let mut q = vec![0f32; n * heads * qk];
    match &m.q {
        MlaQuery::Full(w) => matmul(w, model.data(w), h, n, &mut q, scratch)?,
        MlaQuery::LowRank { a, norm: a_norm, b } => {
            let mut qa = vec![0f32; n * a.rows];
            matmul(a, model.data(a), h, n, &mut qa, scratch)?;
            rms_norm_rows(&mut qa, &norm(a_norm)?, hp.rms_eps);
            matmul(b, model.data(b), &qa, n, &mut q, scratch)?;
        }
    }

    // Latent and rope key: [n][rank + rope] → normed latent, roped key, written to the cache.
    let mut kv = vec![0f32; n * row];
    matmul(&m.kv_a, model.data(&m.kv_a), h, n, &mut kv, scratch)?;
    let mut latent = Vec::with_capacity(n * rank);
    let mut k_pe = Vec::with_capacity(n * rdim);
    for r in kv.chunks_exact(row) {
        latent.extend_from_slice(&r[..rank]);
        k_pe.extend_from_slice(&r[rank..]);
    }
    rms_norm_rows(&mut latent, &norm(&m.kv_a_norm)?, hp.rms_eps);
    rope.apply(&mut k_pe, rdim, hp.rope.style);
    for (t, r) in kv.chunks_exact_mut(row).enumerate() {
        r[..rank].copy_from_slice(&latent[t * rank..(t + 1) * rank]);
        r[rank..].copy_from_slice(&k_pe[t * rdim..(t + 1) * rdim]);
    }
    cache.k.write(pos0 * row, &kv);

    // Roped query parts: [n][heads × rope].
    let mut q_pe = vec![0f32; n * heads * rdim];
    for (dst, src) in q_pe.chunks_exact_mut(rdim).zip(q.chunks_exact(qk)) {
        dst.copy_from_slice(&src[nope..]);
    }
    rope.apply(&mut q_pe, rdim, hp.rope.style);

    // Absorbed queries: [n][heads × (rank + rope)].
    let mut q_abs = vec![0f32; n * heads * row];
    let mut q_nope = vec![0f32; n * nope];
    let mut q_lat = vec![0f32; n * rank];
    for head in 0..heads {
        for (t, dst) in q_nope.chunks_exact_mut(nope).enumerate() {
            let at = (t * heads + head) * qk;
            dst.copy_from_slice(&q[at..at + nope]);
        }
        match &m.kv_b {
            MlaKvB::Split { k_b, .. } => {
                let w = k_b.get(head);
                matmul(&w, model.data(&w), &q_nope, n, &mut q_lat, scratch)?;
            }
            MlaKvB::Joint(kv_b) => {
                let first = head * (nope + vd);
                let w = kv_b.row_range(first..first + nope, format!("{}[k{head}]", kv_b.name));
                matmul_transposed(&w, model.data(&w), &q_nope, n, &mut q_lat)?;
            }
        }
        for t in 0..n {
            let dst = &mut q_abs[(t * heads + head) * row..(t * heads + head + 1) * row];
            dst[..rank].copy_from_slice(&q_lat[t * rank..(t + 1) * rank]);
            dst[rank..]
                .copy_from_slice(&q_pe[(t * heads + head) * rdim..(t * heads + head + 1) * rdim]);
        }
    }

    // One-KV-head attention over the cached rows; values are the latent part of the same rows.
    let shape = AttentionShape {
        n_head: heads,
        n_head_kv: 1,
        head_dim: row,
        v_dim: rank,
        k_stride: row,
        v_stride: row,
        scale: hp.attn_scale,
        pos0,
        window: None,
    };
    let mut lat_out = vec![0f32; n * heads * rank];
    attention(&q_abs, &cache.k, &cache.k, &mut lat_out, &shape);

    // Value up-projection per head: [n][heads × v].
    let mut heads_out = vec![0f32; n * heads * vd];
    let mut lat_h = vec![0f32; n * rank];
    let mut v_h = vec![0f32; n * vd];
    for head in 0..heads {
        for (t, dst) in lat_h.chunks_exact_mut(rank).enumerate() {
            let at = (t * heads + head) * rank;
            dst.copy_from_slice(&lat_out[at..at + rank]);
        }
        let w = match &m.kv_b {
            MlaKvB::Split { v_b, .. } => v_b.get(head),
            MlaKvB::Joint(kv_b) => {
                let first = head * (nope + vd) + nope;
                kv_b.row_range(first..first + vd, format!("{}[v{head}]", kv_b.name))
            }
        };
        matmul(&w, model.data(&w), &lat_h, n, &mut v_h, scratch)?;
        for t in 0..n {
            let at = (t * heads + head) * vd;
            heads_out[at..at + vd].copy_from_slice(&v_h[t * vd..(t + 1) * vd]);
        }
    }
    let mut out = vec![0f32; n * hp.n_embd];
    matmul(&m.o, model.data(&m.o), &heads_out, n, &mut out, scratch)?;
    Ok(out)
}
