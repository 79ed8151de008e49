//! The CPU backend: the reference implementation of every model's forward pass.
//!
//! The forward reads top-down like the papers (and like llama.cpp's graph builders for the same
//! architectures): embed → per layer (norm → attention → [post-norm] → residual → norm → FFN → [post-norm] →
//! residual) → final norm → LM head. Matrix products run on a rayon pool of `threads` threads with the
//! SIMD kernels of [`crate::quant`]; the KV cache is owned here.

pub mod matmul;
mod mla;
mod moe;
pub mod ops;

use std::sync::Arc;

use rayon::prelude::*;

use self::matmul::{dequantize_row, matmul, vector_f32, MatmulScratch};
use self::ops::{add_rows, attention, gated_activation, rms_norm_rows, AttentionShape, RopeTable};
use super::{Backend, LogitsRequest};
use crate::error::{Error, Result};
use crate::kv::{KvCache, KvType};
use crate::model::routing::MoeStats;
use crate::model::{Activation, Attention, Ffn, Model, Weight};

/// Tokens processed per pass of a long prompt (bounds scratch memory).
pub const MAX_UBATCH: usize = 512;

/// Options of the CPU backend.
#[derive(Clone, Debug)]
pub struct CpuOptions {
    /// Worker threads; `None` uses one per core.
    pub threads: Option<usize>,
    /// Context size in tokens.
    pub n_ctx: usize,
    pub kv_type: KvType,
}

pub struct CpuBackend {
    model: Arc<Model>,
    pool: Arc<rayon::ThreadPool>,
    kv: KvCache,
    scratch: MatmulScratch,
    rope_freqs: Option<Vec<f32>>,
    moe_stats: MoeStats,
}

impl CpuBackend {
    pub fn new(model: Arc<Model>, options: &CpuOptions) -> Result<Self> {
        let threads = options
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            return Err(Error::InvalidArgument(
                "--threads must be at least 1".into(),
            ));
        }
        if options.n_ctx == 0 {
            return Err(Error::InvalidArgument("--ctx must be at least 1".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("deepedge-cpu-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;
        let hp = &model.hparams;
        let kv = KvCache::new(options.kv_type, hp.n_layer, options.n_ctx, hp.kv_row_lens())?;
        let moe_stats = MoeStats::new(
            hp.n_layer,
            hp.moe.as_ref().map_or(0, |m| m.n_expert),
            |il| hp.is_moe_layer(il),
        );
        let rope_freqs = match &model.rope_freqs {
            Some(w) => Some(vector_f32(w, model.data(w))?.into_owned()),
            None => None,
        };
        Ok(Self {
            model,
            pool: Arc::new(pool),
            kv,
            scratch: MatmulScratch::default(),
            rope_freqs,
            moe_stats,
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// One pass over `tokens` at positions `n_past..`; returns logits of `logit_rows` (indices into tokens).
    fn forward_ubatch(&mut self, tokens: &[u32], logit_rows: &[usize]) -> Result<Vec<f32>> {
        let model = Arc::clone(&self.model);
        let hp = &model.hparams;
        let n = tokens.len();
        let e = hp.n_embd;
        let pos0 = self.kv.len();
        let _span = tracing::debug_span!("forward", n_tokens = n, pos0).entered();

        // [n, n_embd]
        let mut x = vec![0f32; n * e];
        for (row, &id) in x.chunks_exact_mut(e).zip(tokens) {
            dequantize_row(
                &model.token_embd,
                model.data(&model.token_embd),
                id as usize,
                row,
            )?;
        }
        if let Some(scale) = hp.embed_scale {
            x.iter_mut().for_each(|v| *v *= scale);
        }

        let freqs = self.rope_freqs.as_deref();
        let rope_full = RopeTable::new(&hp.rope, pos0..pos0 + n, freqs);
        let rope_swa =
            (hp.rope_swa != hp.rope).then(|| RopeTable::new(&hp.rope_swa, pos0..pos0 + n, freqs));
        let norm = |w: &Weight| vector_f32(w, model.data(w));
        let scratch = &mut self.scratch;
        let kv = &mut self.kv;
        let moe_stats = &mut self.moe_stats;

        let mut h = vec![0f32; n * e];
        let mut ffn_out = vec![0f32; n * e];
        for (il, layer) in model.layers.iter().enumerate() {
            let _layer_span = tracing::trace_span!("layer", il).entered();
            // Attention block.
            h.copy_from_slice(&x);
            rms_norm_rows(&mut h, &norm(&layer.attn_norm)?, hp.rms_eps);
            let mut attn_out = match &layer.attention {
                Attention::Gqa {
                    q,
                    k,
                    v,
                    o,
                    q_bias,
                    k_bias,
                    v_bias,
                    q_norm,
                    k_norm,
                } => {
                    let (q_dim, kv_dim) = (hp.q_dim(), hp.kv_dim());
                    let mut qs = vec![0f32; n * q_dim]; // [n, n_head × head_dim]
                    let mut ks = vec![0f32; n * kv_dim]; // [n, n_head_kv × head_dim]
                    let mut vs = vec![0f32; n * kv_dim];
                    matmul(q, model.data(q), &h, n, &mut qs, scratch)?;
                    matmul(k, model.data(k), &h, n, &mut ks, scratch)?;
                    matmul(v, model.data(v), &h, n, &mut vs, scratch)?;
                    for (bias, out) in [(q_bias, &mut qs), (k_bias, &mut ks), (v_bias, &mut vs)] {
                        if let Some(b) = bias {
                            add_rows(out, &norm(b)?);
                        }
                    }
                    // Gemma 3: RMS norm over each head before rope.
                    if let Some(w) = q_norm {
                        rms_norm_rows(&mut qs, &norm(w)?, hp.rms_eps);
                    }
                    if let Some(w) = k_norm {
                        rms_norm_rows(&mut ks, &norm(w)?, hp.rms_eps);
                    }
                    let rope = hp.rope_for_layer(il);
                    let table = match &rope_swa {
                        Some(t) if hp.is_swa_layer(il) => t,
                        _ => &rope_full,
                    };
                    table.apply(&mut qs, hp.head_dim, rope.style);
                    table.apply(&mut ks, hp.head_dim, rope.style);

                    let cache = &mut kv.layers[il];
                    cache.k.write(pos0 * kv_dim, &ks);
                    cache.v.write(pos0 * kv_dim, &vs);
                    let mut heads = vec![0f32; n * q_dim];
                    let shape = AttentionShape {
                        window: hp.window(il),
                        ..AttentionShape::gqa(
                            hp.n_head,
                            hp.n_head_kv,
                            hp.head_dim,
                            hp.attn_scale,
                            pos0,
                        )
                    };
                    attention(&qs, &cache.k, &cache.v, &mut heads, &shape);
                    let mut out = vec![0f32; n * e];
                    matmul(o, model.data(o), &heads, n, &mut out, scratch)?;
                    out
                }
                Attention::Mla(m) => {
                    let dims = hp.mla.as_ref().ok_or_else(|| {
                        Error::Model("latent attention without its hyper-parameters".into())
                    })?;
                    mla::mla_attention(
                        &model,
                        m,
                        dims,
                        &h,
                        n,
                        pos0,
                        &rope_full,
                        &mut kv.layers[il],
                        scratch,
                    )?
                }
            };
            if let Some(w) = &layer.post_attn_norm {
                rms_norm_rows(&mut attn_out, &norm(w)?, hp.rms_eps);
            }
            x.iter_mut().zip(&attn_out).for_each(|(a, b)| *a += b);

            // Feed-forward block.
            h.copy_from_slice(&x);
            rms_norm_rows(&mut h, &norm(&layer.ffn_norm)?, hp.rms_eps);
            match &layer.ffn {
                Ffn::Gated {
                    gate,
                    up,
                    down,
                    activation,
                } => gated_ffn(
                    &model,
                    gate,
                    up,
                    down,
                    *activation,
                    &h,
                    n,
                    &mut ffn_out,
                    scratch,
                )?,
                Ffn::Moe(m) => {
                    let params = hp.moe.as_ref().ok_or_else(|| {
                        Error::Model("experts without their hyper-parameters".into())
                    })?;
                    moe::moe_ffn(
                        &model,
                        m,
                        params,
                        il,
                        &h,
                        n,
                        &mut ffn_out,
                        scratch,
                        moe_stats,
                    )?
                }
            }
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm_rows(&mut ffn_out, &norm(w)?, hp.rms_eps);
            }
            x.iter_mut().zip(&ffn_out).for_each(|(a, b)| *a += b);
        }
        kv.advance(n);

        if logit_rows.is_empty() {
            return Ok(Vec::new());
        }
        // [rows, n_embd] → final norm → [rows, n_vocab]
        let mut last = Vec::with_capacity(logit_rows.len() * e);
        for &r in logit_rows {
            last.extend_from_slice(&x[r * e..(r + 1) * e]);
        }
        rms_norm_rows(&mut last, &norm(&model.output_norm)?, hp.rms_eps);
        let mut logits = vec![0f32; logit_rows.len() * hp.n_vocab];
        matmul(
            &model.output,
            model.data(&model.output),
            &last,
            logit_rows.len(),
            &mut logits,
            scratch,
        )?;
        Ok(logits)
    }
}

/// `out = down(act(gate(x)) · up(x))` for `n` tokens.
#[allow(clippy::too_many_arguments)]
fn gated_ffn(
    model: &Model,
    gate: &Weight,
    up: &Weight,
    down: &Weight,
    activation: Activation,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let n_ff = gate.rows;
    let mut g = vec![0f32; n * n_ff]; // [n, n_ff]
    let mut u = vec![0f32; n * n_ff];
    matmul(gate, model.data(gate), x, n, &mut g, scratch)?;
    matmul(up, model.data(up), x, n, &mut u, scratch)?;
    if n > 1 {
        g.par_chunks_mut(n_ff)
            .zip(u.par_chunks(n_ff))
            .for_each(|(g, u)| gated_activation(g, u, activation));
    } else {
        gated_activation(&mut g, &u, activation);
    }
    matmul(down, model.data(down), &g, n, out, scratch)
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!(
            "cpu ({:?}, {} threads)",
            crate::quant::simd_level(),
            self.threads()
        )
    }

    fn model(&self) -> &Arc<Model> {
        &self.model
    }

    fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    fn n_past(&self) -> usize {
        self.kv.len()
    }

    fn truncate(&mut self, n: usize) {
        self.kv.truncate(n);
    }

    fn kv_bytes_per_token(&self) -> usize {
        self.kv.bytes_per_token()
    }

    fn moe_stats(&self) -> Option<&MoeStats> {
        self.model.hparams.moe.as_ref().map(|_| &self.moe_stats)
    }

    fn clear_moe_stats(&mut self) {
        self.moe_stats.clear();
    }

    fn forward(&mut self, tokens: &[u32], request: LogitsRequest) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument(
                "forward needs at least one token".into(),
            ));
        }
        let n_vocab = self.model.hparams.n_vocab;
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(Error::TokenOutOfRange { id, n_vocab });
        }
        if self.kv.len() + tokens.len() > self.kv.n_ctx {
            return Err(Error::ContextFull { ctx: self.kv.n_ctx });
        }
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            let mut logits = Vec::new();
            let n_chunks = tokens.len().div_ceil(MAX_UBATCH);
            for (ci, chunk) in tokens.chunks(MAX_UBATCH).enumerate() {
                let rows: Vec<usize> = match request {
                    LogitsRequest::None => vec![],
                    LogitsRequest::All => (0..chunk.len()).collect(),
                    LogitsRequest::Last if ci + 1 == n_chunks => vec![chunk.len() - 1],
                    LogitsRequest::Last => vec![],
                };
                logits.extend(self.forward_ubatch(chunk, &rows)?);
            }
            Ok(logits)
        })
    }
}
