//! Multi-threaded matrix products of quantized weights with f32 activations.
//!
//! `out[t][r] = Σ_i W[r][i] · x[t][i]`. The activations are first quantized to the weight type's
//! "vec-dot" type (Q8_0 for the 32-blocks, Q8_K for the k-quants), as llama.cpp does, so the inner product
//! is an integer dot per block; the weights are read straight from the map. Work is split over output rows:
//! a thread takes a run of rows and sweeps every token across them, so a run of weight rows stays in cache
//! while the activations stream by.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Weight;
use crate::quant::{self, GgmlType};

/// A raw pointer that may be sent to the threads writing disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a distinct set of indices (its own rows), and the buffer outlives the scope.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Reusable buffer for quantized activations.
#[derive(Default)]
pub struct MatmulScratch {
    activations: Vec<u8>,
}

/// `out = x · Wᵀ` for `n_tokens` rows of `x`. `weight_data` is the weight's bytes; `out` has
/// `n_tokens × w.rows` elements. Runs on the current rayon pool.
pub fn matmul(
    w: &Weight,
    weight_data: &[u8],
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let kernels = weight_kernels(w)?;
    let (cols, rows) = (w.cols, w.rows);
    debug_assert_eq!(x.len(), n_tokens * cols);
    debug_assert_eq!(out.len(), n_tokens * rows);
    let act_type = kernels.vec_dot_type;
    let act_row = act_type
        .bytes_for(cols as u64)
        .ok_or_else(|| Error::Tensor {
            tensor: w.name.clone(),
            problem: format!("row of {cols} is not a whole number of {act_type} blocks"),
        })? as usize;
    let buf = &mut scratch.activations;
    buf.resize(n_tokens * act_row, 0);
    if n_tokens >= 4 {
        buf.par_chunks_mut(act_row)
            .zip(x.par_chunks(cols))
            .for_each(|(dst, src)| (kernels.quantize_activation)(src, dst));
    } else {
        for (dst, src) in buf.chunks_mut(act_row).zip(x.chunks(cols)) {
            (kernels.quantize_activation)(src, dst);
        }
    }
    let acts: &[u8] = buf;
    let row_bytes = w.row_bytes();

    // Enough chunks to balance the threads, few enough to keep per-task overhead small; a multiple
    // of 4 rows so the tiled kernels see whole tiles.
    let threads = rayon::current_num_threads().max(1);
    let rows_per_chunk = (rows / (threads * 8)).clamp(4, 256).next_multiple_of(4);
    let n_chunks = rows.div_ceil(rows_per_chunk);
    let shared = SharedOut(out.as_mut_ptr());
    if let Some(gemm) = kernels.gemm {
        let run = gemm.run;
        (0..n_chunks).into_par_iter().for_each(move |c| {
            let shared = shared;
            let r0 = c * rows_per_chunk;
            let r1 = (r0 + rows_per_chunk).min(rows);
            let nr = r1 - r0;
            let mut local = vec![0f32; nr * n_tokens];
            run(
                cols,
                &weight_data[r0 * row_bytes..r1 * row_bytes],
                nr,
                acts,
                n_tokens,
                &mut local,
            );
            for (t, vals) in local.chunks_exact(nr).enumerate() {
                // SAFETY: rows r0..r1 of every token are written by this chunk only, in bounds.
                unsafe {
                    std::ptr::copy_nonoverlapping(vals.as_ptr(), shared.0.add(t * rows + r0), nr)
                };
            }
        });
        return Ok(());
    }
    let vec_dot = kernels.vec_dot;
    let token_block = 16;
    (0..n_chunks).into_par_iter().for_each(move |c| {
        let shared = shared;
        let r0 = c * rows_per_chunk;
        let r1 = (r0 + rows_per_chunk).min(rows);
        for t0 in (0..n_tokens).step_by(token_block) {
            let t1 = (t0 + token_block).min(n_tokens);
            for r in r0..r1 {
                let w_row = &weight_data[r * row_bytes..(r + 1) * row_bytes];
                for t in t0..t1 {
                    let a_row = &acts[t * act_row..(t + 1) * act_row];
                    let v = vec_dot(cols, w_row, a_row);
                    // SAFETY: (t, r) is written by this chunk only; t < n_tokens, r < rows.
                    unsafe { *shared.0.add(t * rows + r) = v };
                }
            }
        }
    });
    Ok(())
}

/// The CPU kernels of a weight's type, or an error naming the tensor.
fn weight_kernels(w: &Weight) -> Result<&'static quant::TypeKernels> {
    quant::kernels(w.ggml_type).map_err(|_| Error::UnsupportedType {
        tensor: w.name.clone(),
        ggml_type: w.ggml_type,
    })
}

/// Dequantizes row `row` of `w` into `out` (`w.cols` elements): an embedding lookup.
pub fn dequantize_row(w: &Weight, weight_data: &[u8], row: usize, out: &mut [f32]) -> Result<()> {
    let kernels = weight_kernels(w)?;
    let rb = w.row_bytes();
    (kernels.dequantize)(&weight_data[row * rb..(row + 1) * rb], out);
    Ok(())
}

/// A whole 1-D weight as f32: borrowed when it is F32 in the map, dequantized otherwise.
pub fn vector_f32<'a>(w: &Weight, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [f32]>> {
    if w.ggml_type == GgmlType::F32 {
        if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(data) {
            return Ok(std::borrow::Cow::Borrowed(v));
        }
    }
    let mut out = vec![0f32; w.cols * w.rows];
    let kernels = weight_kernels(w)?;
    (kernels.dequantize)(data, &mut out);
    Ok(std::borrow::Cow::Owned(out))
}

/// `out = x · W` (the transpose of [`matmul`]'s product): `x` has `n_tokens` rows of `w.rows`, `out` has
/// `n_tokens` rows of `w.cols`. Each weight row is dequantized once and accumulated into every token.
/// Used where a file stores a matrix the other way round (DeepSeek's older `attn_kv_b`, whose key half
/// the absorbed attention needs transposed).
pub fn matmul_transposed(
    w: &Weight,
    weight_data: &[u8],
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<()> {
    let (cols, rows) = (w.cols, w.rows);
    debug_assert_eq!(x.len(), n_tokens * rows);
    debug_assert_eq!(out.len(), n_tokens * cols);
    let mut row = vec![0f32; cols];
    out.fill(0.0);
    for r in 0..rows {
        dequantize_row(w, weight_data, r, &mut row)?;
        for (t, o) in out.chunks_exact_mut(cols).enumerate() {
            let a = x[t * rows + r];
            o.iter_mut().zip(&row).for_each(|(o, &w)| *o += a * w);
        }
    }
    Ok(())
}
