//! Mixture-of-experts FFN on the CPU.
//!
//! The router runs as one matrix product for the whole batch; [`select_experts`] picks each token's
//! experts; then the batch is grouped by expert, so each selected expert's three matrices are read once
//! per batch whatever the number of its tokens, and experts no token chose are never touched (their pages
//! of the map are not even faulted in). Shared experts run on every token.

use super::gated_ffn;
use super::matmul::{matmul, vector_f32, MatmulScratch};
use crate::error::Result;
use crate::model::routing::{select_experts, MoeStats};
use crate::model::{Activation, Model, MoeFfn, MoeParams};

/// `out = Σ_experts weight · expert(h) + shared(h)` for `n` tokens (`h`: `[n][n_embd]`, already normed).
#[allow(clippy::too_many_arguments)]
pub fn moe_ffn(
    model: &Model,
    m: &MoeFfn,
    params: &MoeParams,
    layer: usize,
    h: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
    stats: &mut MoeStats,
) -> Result<()> {
    let e = model.hparams.n_embd;
    let n_expert = params.n_expert;
    let mut logits = vec![0f32; n * n_expert];
    matmul(&m.router, model.data(&m.router), h, n, &mut logits, scratch)?;
    let bias = match &m.selection_bias {
        Some(b) => Some(vector_f32(b, model.data(b))?),
        None => None,
    };

    // Tokens of each expert, with their routing weights.
    let mut tokens_of: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n_expert];
    let mut chosen = Vec::with_capacity(params.n_expert_used);
    for (t, row) in logits.chunks_exact(n_expert).enumerate() {
        select_experts(row, bias.as_deref(), params, &mut chosen);
        for &(expert, weight) in &chosen {
            tokens_of[expert].push((t, weight));
            stats.record(layer, expert);
        }
    }

    out.fill(0.0);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (expert, tokens) in tokens_of.iter().enumerate() {
        if tokens.is_empty() {
            continue;
        }
        let k = tokens.len();
        xs.clear();
        for &(t, _) in tokens {
            xs.extend_from_slice(&h[t * e..(t + 1) * e]);
        }
        ys.resize(k * e, 0.0);
        let (gate, up, down) = (m.gate.get(expert), m.up.get(expert), m.down.get(expert));
        gated_ffn(
            model,
            &gate,
            &up,
            &down,
            Activation::Silu,
            &xs,
            k,
            &mut ys,
            scratch,
        )?;
        for (y, &(t, w)) in ys.chunks_exact(e).zip(tokens) {
            out[t * e..(t + 1) * e]
                .iter_mut()
                .zip(y)
                .for_each(|(o, &v)| *o += w * v);
        }
    }

    if let Some(s) = &m.shared {
        let mut shared = vec![0f32; n * e];
        gated_ffn(
            model,
            &s.gate,
            &s.up,
            &s.down,
            Activation::Silu,
            h,
            n,
            &mut shared,
            scratch,
        )?;
        // Qwen2-MoE: the shared expert's output is gated per token by sigmoid(gate_inp · x).
        let gates = match &s.gate_inp {
            Some(g) => {
                let g = vector_f32(g, model.data(g))?;
                h.chunks_exact(e)
                    .map(|x| {
                        let z: f32 = x.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
                        1.0 / (1.0 + (-z).exp())
                    })
                    .collect()
            }
            None => vec![1.0; n],
        };
        for ((o, s), g) in out
            .chunks_exact_mut(e)
            .zip(shared.chunks_exact(e))
            .zip(gates)
        {
            o.iter_mut().zip(s).for_each(|(o, &v)| *o += g * v);
        }
    }
    Ok(())
}
