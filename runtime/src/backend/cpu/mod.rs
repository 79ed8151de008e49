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
use super::{Backend, LogitsRequest, SeqTokens};
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
    /// Context size in tokens (of each sequence).
    pub n_ctx: usize,
    pub kv_type: KvType,
    /// Sequences held at once ([`Backend::forward_batch`]); sequence 0's cache is allocated up front, the
    /// others as they fill.
    pub n_seq: usize,
}

pub struct CpuBackend {
    model: Arc<Model>,
    pool: Arc<rayon::ThreadPool>,
    /// One KV cache per sequence.
    seqs: Vec<KvCache>,
    scratch: MatmulScratch,
    rope_freqs: Option<Vec<f32>>,
    moe_stats: MoeStats,
}

/// A run of one sequence's tokens inside a micro-batch.
struct Piece<'a> {
    seq: usize,
    tokens: &'a [u32],
    output: LogitsRequest,
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
        if options.n_seq == 0 {
            return Err(Error::InvalidArgument(
                "a backend needs at least one sequence".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("deepedge-cpu-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;
        let hp = &model.hparams;
        let mut seqs = Vec::with_capacity(options.n_seq);
        seqs.push(KvCache::new(
            options.kv_type,
            hp.n_layer,
            options.n_ctx,
            hp.kv_row_lens(),
        )?);
        for _ in 1..options.n_seq {
            seqs.push(KvCache::new_growing(
                options.kv_type,
                hp.n_layer,
                options.n_ctx,
                hp.kv_row_lens(),
            )?);
        }
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
            seqs,
            scratch: MatmulScratch::default(),
            rope_freqs,
            moe_stats,
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Checks a batch before anything is computed, so a bad entry changes no cache: known and distinct
    /// sequences, at least one token each, ids in the vocabulary, room in each context (allocated now).
    fn check_batch(&mut self, batch: &[SeqTokens<'_>]) -> Result<()> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument(
                "forward needs at least one token".into(),
            ));
        }
        let n_vocab = self.model.hparams.n_vocab;
        for (i, entry) in batch.iter().enumerate() {
            if entry.seq >= self.seqs.len() {
                return Err(Error::InvalidArgument(format!(
                    "sequence {} does not exist (the backend holds {})",
                    entry.seq,
                    self.seqs.len()
                )));
            }
            if batch[..i].iter().any(|e| e.seq == entry.seq) {
                return Err(Error::InvalidArgument(format!(
                    "sequence {} appears twice in one batch",
                    entry.seq
                )));
            }
            if entry.tokens.is_empty() {
                return Err(Error::InvalidArgument(
                    "forward needs at least one token".into(),
                ));
            }
            if let Some(&id) = entry.tokens.iter().find(|&&id| id as usize >= n_vocab) {
                return Err(Error::TokenOutOfRange { id, n_vocab });
            }
            let cache = &self.seqs[entry.seq];
            if cache.len() + entry.tokens.len() > cache.n_ctx {
                return Err(Error::ContextFull { ctx: cache.n_ctx });
            }
        }
        for entry in batch {
            let cache = &mut self.seqs[entry.seq];
            cache.reserve(cache.len() + entry.tokens.len())?;
        }
        Ok(())
    }

    /// Cuts a batch into micro-batches of at most [`MAX_UBATCH`] tokens (bounding scratch memory); a long
    /// entry spans several, and only its last piece returns `Last` rows.
    fn ubatches<'a>(batch: &[SeqTokens<'a>]) -> Vec<Vec<Piece<'a>>> {
        let mut ubatches = vec![Vec::new()];
        let mut room = MAX_UBATCH;
        for entry in batch {
            let mut rest = entry.tokens;
            while !rest.is_empty() {
                if room == 0 {
                    ubatches.push(Vec::new());
                    room = MAX_UBATCH;
                }
                let (now, later) = rest.split_at(rest.len().min(room));
                let output = match entry.output {
                    LogitsRequest::Last if !later.is_empty() => LogitsRequest::None,
                    other => other,
                };
                ubatches
                    .last_mut()
                    .expect("one ubatch at least")
                    .push(Piece {
                        seq: entry.seq,
                        tokens: now,
                        output,
                    });
                room -= now.len();
                rest = later;
            }
        }
        ubatches
    }

    /// One pass over the pieces' tokens (each appended to its sequence's cache); returns each piece's
    /// requested rows.
    fn forward_ubatch(&mut self, pieces: &[Piece<'_>]) -> Result<Vec<Vec<f32>>> {
        let model = Arc::clone(&self.model);
        let hp = &model.hparams;
        let e = hp.n_embd;
        let n: usize = pieces.iter().map(|p| p.tokens.len()).sum();
        // Rows of each piece in the micro-batch, and its first position in its sequence.
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = 0;
        for p in pieces {
            starts.push((at, self.seqs[p.seq].len()));
            at += p.tokens.len();
        }
        let rows_of = |i: usize| starts[i].0..starts[i].0 + pieces[i].tokens.len();
        let _span = tracing::debug_span!("forward", n_tokens = n, n_seqs = pieces.len()).entered();

        // [n, n_embd]
        let mut x = vec![0f32; n * e];
        let ids = pieces.iter().flat_map(|p| p.tokens);
        for (row, &id) in x.chunks_exact_mut(e).zip(ids) {
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
        let tables = |rope| -> Vec<RopeTable> {
            pieces
                .iter()
                .zip(&starts)
                .map(|(p, &(_, pos0))| RopeTable::new(rope, pos0..pos0 + p.tokens.len(), freqs))
                .collect()
        };
        let rope_full = tables(&hp.rope);
        let rope_swa = (hp.rope_swa != hp.rope).then(|| tables(&hp.rope_swa));
        let norm = |w: &Weight| vector_f32(w, model.data(w));
        let scratch = &mut self.scratch;
        let seqs = &mut self.seqs;
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
                    let layer_tables = match &rope_swa {
                        Some(t) if hp.is_swa_layer(il) => t,
                        _ => &rope_full,
                    };
                    let mut heads = vec![0f32; n * q_dim];
                    // Rope, cache writes and attention per sequence, each over its own cache.
                    for (i, piece) in pieces.iter().enumerate() {
                        let rows = rows_of(i);
                        let pos0 = starts[i].1;
                        let (qs, ks) = (
                            &mut qs[rows.start * q_dim..rows.end * q_dim],
                            &mut ks[rows.start * kv_dim..rows.end * kv_dim],
                        );
                        layer_tables[i].apply(qs, hp.head_dim, rope.style);
                        layer_tables[i].apply(ks, hp.head_dim, rope.style);
                        let cache = &mut seqs[piece.seq].layers[il];
                        cache.k.write(pos0 * kv_dim, ks);
                        cache
                            .v
                            .write(pos0 * kv_dim, &vs[rows.start * kv_dim..rows.end * kv_dim]);
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
                        attention(
                            qs,
                            &cache.k,
                            &cache.v,
                            &mut heads[rows.start * q_dim..rows.end * q_dim],
                            &shape,
                        );
                    }
                    let mut out = vec![0f32; n * e];
                    matmul(o, model.data(o), &heads, n, &mut out, scratch)?;
                    out
                }
                Attention::Mla(m) => {
                    let dims = hp.mla.as_ref().ok_or_else(|| {
                        Error::Model("latent attention without its hyper-parameters".into())
                    })?;
                    // Latent attention projects inside; it runs per sequence.
                    let mut out = Vec::with_capacity(n * e);
                    for (i, piece) in pieces.iter().enumerate() {
                        let rows = rows_of(i);
                        out.extend(mla::mla_attention(
                            &model,
                            m,
                            dims,
                            &h[rows.start * e..rows.end * e],
                            rows.len(),
                            starts[i].1,
                            &rope_full[i],
                            &mut seqs[piece.seq].layers[il],
                            scratch,
                        )?);
                    }
                    out
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
        for p in pieces {
            seqs[p.seq].advance(p.tokens.len());
        }

        // Rows wanted by each piece → final norm → hidden states as they are, or through the LM head (one
        // matrix product for every piece's logit rows).
        let wanted = |i: usize| -> Vec<usize> {
            let rows = rows_of(i);
            match pieces[i].output {
                LogitsRequest::None => vec![],
                LogitsRequest::Last => vec![rows.end - 1],
                LogitsRequest::All | LogitsRequest::Hidden => rows.collect(),
            }
        };
        let mut outputs = vec![Vec::new(); pieces.len()];
        let mut logit_rows = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let rows = wanted(i);
            if rows.is_empty() {
                continue;
            }
            let mut hidden = Vec::with_capacity(rows.len() * e);
            for r in rows {
                hidden.extend_from_slice(&x[r * e..(r + 1) * e]);
            }
            rms_norm_rows(&mut hidden, &norm(&model.output_norm)?, hp.rms_eps);
            if piece.output == LogitsRequest::Hidden {
                outputs[i] = hidden;
            } else {
                logit_rows.push((i, hidden));
            }
        }
        if !logit_rows.is_empty() {
            let counts: Vec<usize> = logit_rows.iter().map(|(_, h)| h.len() / e).collect();
            let total: usize = counts.iter().sum();
            let hidden: Vec<f32> = logit_rows
                .iter()
                .flat_map(|(_, h)| h.iter().copied())
                .collect();
            let mut logits = vec![0f32; total * hp.n_vocab];
            matmul(
                &model.output,
                model.data(&model.output),
                &hidden,
                total,
                &mut logits,
                scratch,
            )?;
            let mut rest = logits.as_slice();
            for ((i, _), count) in logit_rows.iter().zip(counts) {
                let (mine, later) = rest.split_at(count * hp.n_vocab);
                outputs[*i] = mine.to_vec();
                rest = later;
            }
        }
        Ok(outputs)
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
        self.seqs[0].n_ctx
    }

    fn n_past(&self) -> usize {
        self.seqs[0].len()
    }

    fn truncate(&mut self, n: usize) {
        self.seqs[0].truncate(n);
    }

    fn kv_bytes_per_token(&self) -> usize {
        self.seqs[0].bytes_per_token()
    }

    fn moe_stats(&self) -> Option<&MoeStats> {
        self.model.hparams.moe.as_ref().map(|_| &self.moe_stats)
    }

    fn clear_moe_stats(&mut self) {
        self.moe_stats.clear();
    }

    fn forward(&mut self, tokens: &[u32], request: LogitsRequest) -> Result<Vec<f32>> {
        let mut out = self.forward_batch(&[SeqTokens {
            seq: 0,
            tokens,
            output: request,
        }])?;
        Ok(out.pop().unwrap_or_default())
    }

    fn max_seqs(&self) -> usize {
        self.seqs.len()
    }

    fn seq_len(&self, seq: usize) -> usize {
        self.seqs.get(seq).map_or(0, KvCache::len)
    }

    fn truncate_seq(&mut self, seq: usize, n: usize) {
        if let Some(cache) = self.seqs.get_mut(seq) {
            if n == 0 && seq > 0 {
                cache.release();
            } else {
                cache.truncate(n);
            }
        }
    }

    fn copy_seq_prefix(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        let count = self.seqs.len();
        if src >= count || dst >= count || src == dst {
            return Err(Error::InvalidArgument(format!(
                "cannot copy sequence {src} to {dst} (the backend holds {count})"
            )));
        }
        let (source, target) = if src < dst {
            let (a, b) = self.seqs.split_at_mut(dst);
            (&a[src], &mut b[0])
        } else {
            let (a, b) = self.seqs.split_at_mut(src);
            (&b[0], &mut a[dst])
        };
        target.copy_prefix_from(source, n)
    }

    fn kv_allocated_bytes(&self) -> usize {
        self.seqs.iter().map(KvCache::allocated_bytes).sum()
    }

    fn forward_batch(&mut self, batch: &[SeqTokens<'_>]) -> Result<Vec<Vec<f32>>> {
        self.check_batch(batch)?;
        let pool = Arc::clone(&self.pool);
        pool.install(|| {
            let mut outputs: Vec<Vec<f32>> = vec![Vec::new(); batch.len()];
            for ubatch in Self::ubatches(batch) {
                let rows = self.forward_ubatch(&ubatch)?;
                for (piece, rows) in ubatch.iter().zip(rows) {
                    let i = batch
                        .iter()
                        .position(|e| e.seq == piece.seq)
                        .expect("every piece comes from the batch");
                    outputs[i].extend(rows);
                }
            }
            Ok(outputs)
        })
    }
}
