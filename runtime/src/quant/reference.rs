//! Scalar reference kernels: dequantize, quantize and `vec_dot` for every supported format.
//!
//! This is the definition of correctness for the SIMD modules: straightforward loops over the block
//! layouts in [`super::blocks`] (which follow ggml's `ggml-common.h`), integer sums per (sub-)block and
//! one float multiply per scale, as ggml's reference `ggml_vec_dot_*` do. It is deliberately not fast.
//!
//! The quantizers are simple round-to-nearest ones (per-block absmax / min-max, then 6- or 8-bit
//! quantized scales for the k-quants). They produce valid files of each format but do not reproduce
//! ggml's importance-weighted search, so their error is somewhat larger than llama.cpp's `quantize`.
//!
//! Activation types: Q4_0, Q4_1, Q5_0 and Q8_0 weights dot with Q8_0 activations, the k-quants with Q8_K, and F32, F16 and BF16 weights with plain f32 activations (we choose f32 over
//! ggml's f16 activations for F16 weights: more accurate, and activation bandwidth is negligible).

// Index loops mirror the format definitions, which are written in terms of element indices.
#![allow(clippy::needless_range_loop)]

use super::blocks::*;
use super::{GgmlType, TypeKernels};
use bytemuck::Pod;
use half::{bf16, f16};

/// A storage format: a block (or plain element) type with its element count and scalar codecs.
pub trait Format: Pod {
    const TYPE: GgmlType;
    /// Elements per block.
    const N: usize;
    /// Dequantize `blocks` into `dst` (`dst.len() == blocks.len() * N`).
    fn dequantize(blocks: &[Self], dst: &mut [f32]);
    /// Quantize `src` (`src.len() == dst.len() * N`) into `dst`.
    fn quantize(src: &[f32], dst: &mut [Self]);
}

/// A weight format with a dot product against its activation format.
pub trait WeightFormat: Format {
    type Act: Format;
    /// Scalar reference dot product; `y` holds the same number of elements as `x`.
    fn vec_dot(x: &[Self], y: &[Self::Act]) -> f32;
}

/// Dequantize `dst.len()` elements of format `B` from raw bytes.
pub fn dequantize_bytes<B: Format>(src: &[u8], dst: &mut [f32]) {
    let nb = dst.len() / B::N;
    debug_assert_eq!(dst.len() % B::N, 0);
    let blocks = cast_blocks::<B>(&src[..nb * size_of::<B>()]);
    B::dequantize(&blocks, dst);
}

/// Quantize `src` into raw bytes of format `B` (`src.len()` a multiple of the block size).
pub fn quantize_bytes<B: Format>(src: &[f32], dst: &mut [u8]) {
    debug_assert_eq!(src.len() % B::N, 0);
    let nb = src.len() / B::N;
    with_blocks_mut::<B>(&mut dst[..nb * size_of::<B>()], |b| B::quantize(src, b));
}

/// Scalar `vec_dot` of `n` elements on raw bytes.
pub fn vec_dot_bytes<W: WeightFormat>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    debug_assert_eq!(n % W::N, 0);
    let x = cast_blocks::<W>(&w[..n / W::N * size_of::<W>()]);
    let y = cast_blocks::<W::Act>(&a[..n / W::Act::N * size_of::<W::Act>()]);
    W::vec_dot(&x, &y)
}

/// The scalar kernel table of weight format `W`.
pub const fn table<W: WeightFormat>() -> TypeKernels {
    TypeKernels {
        weight_type: W::TYPE,
        vec_dot_type: <W::Act as Format>::TYPE,
        quantize_activation: quantize_bytes::<W::Act>,
        vec_dot: vec_dot_bytes::<W>,
        dequantize: dequantize_bytes::<W>,
        gemm: None,
    }
}

pub static F32: TypeKernels = table::<f32>();
pub static F16: TypeKernels = table::<f16>();
pub static BF16: TypeKernels = table::<bf16>();
pub static Q4_0: TypeKernels = table::<BlockQ4_0>();
pub static Q4_1: TypeKernels = table::<BlockQ4_1>();
pub static Q5_0: TypeKernels = table::<BlockQ5_0>();
pub static Q8_0: TypeKernels = table::<BlockQ8_0>();
pub static Q4_K: TypeKernels = table::<BlockQ4K>();
pub static Q5_K: TypeKernels = table::<BlockQ5K>();
pub static Q6_K: TypeKernels = table::<BlockQ6K>();

/// Round half to even, as the SIMD conversions do, clamped to `[lo, hi]`.
#[inline]
fn round_clamp(x: f32, lo: i32, hi: i32) -> i32 {
    (x.round_ties_even() as i32).clamp(lo, hi)
}

/// The element of largest magnitude (keeping its sign) and that magnitude.
#[inline]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

#[inline]
fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------
// Plain element types.

impl Format for f32 {
    const TYPE: GgmlType = GgmlType::F32;
    const N: usize = 1;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(blocks);
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
}

impl WeightFormat for f32 {
    type Act = f32;
    fn vec_dot(x: &[Self], y: &[f32]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum::<f64>() as f32
    }
}

impl Format for f16 {
    const TYPE: GgmlType = GgmlType::F16;
    const N: usize = 1;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(blocks) {
            *d = s.to_f32();
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16::from_f32(*s);
        }
    }
}

impl WeightFormat for f16 {
    type Act = f32;
    fn vec_dot(x: &[Self], y: &[f32]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(&a, &b)| a.to_f64() * b as f64)
            .sum::<f64>() as f32
    }
}

impl Format for bf16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const N: usize = 1;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(blocks) {
            *d = s.to_f32();
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = bf16::from_f32(*s);
        }
    }
}

impl WeightFormat for bf16 {
    type Act = f32;
    fn vec_dot(x: &[Self], y: &[f32]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(&a, &b)| a.to_f64() * b as f64)
            .sum::<f64>() as f32
    }
}

// ---------------------------------------------------------------------------------------------
// 32-element formats.

impl Format for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const N: usize = QK;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for j in 0..QK / 2 {
                out[j] = d * ((b.qs[j] & 0xF) as i32 - 8) as f32;
                out[j + QK / 2] = d * ((b.qs[j] >> 4) as i32 - 8) as f32;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
            let (max, _) = signed_absmax(x);
            b.d = f16::from_f32(max / -8.0);
            let id = inv(b.d.to_f32());
            for j in 0..QK / 2 {
                let lo = round_clamp(x[j] * id, -8, 7) + 8;
                let hi = round_clamp(x[j + QK / 2] * id, -8, 7) + 8;
                b.qs[j] = lo as u8 | ((hi as u8) << 4);
            }
        }
    }
}

impl WeightFormat for BlockQ4_0 {
    type Act = BlockQ8_0;
    fn vec_dot(x: &[Self], y: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let mut sumi = 0i32;
            for j in 0..QK / 2 {
                sumi += ((a.qs[j] & 0xF) as i32 - 8) * b.qs[j] as i32;
                sumi += ((a.qs[j] >> 4) as i32 - 8) * b.qs[j + QK / 2] as i32;
            }
            sum += a.d.to_f32() * b.d.to_f32() * sumi as f32;
        }
        sum
    }
}

impl Format for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const N: usize = QK;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
            let (d, m) = (b.d.to_f32(), b.m.to_f32());
            for j in 0..QK / 2 {
                out[j] = d * (b.qs[j] & 0xF) as f32 + m;
                out[j + QK / 2] = d * (b.qs[j] >> 4) as f32 + m;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
            let min = x.iter().copied().fold(f32::INFINITY, f32::min);
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            b.d = f16::from_f32((max - min) / 15.0);
            b.m = f16::from_f32(min);
            let (id, m) = (inv(b.d.to_f32()), b.m.to_f32());
            for j in 0..QK / 2 {
                let lo = round_clamp((x[j] - m) * id, 0, 15);
                let hi = round_clamp((x[j + QK / 2] - m) * id, 0, 15);
                b.qs[j] = lo as u8 | ((hi as u8) << 4);
            }
        }
    }
}

impl WeightFormat for BlockQ4_1 {
    type Act = BlockQ8_0;
    /// `Σ d·dy·Σ q·qy + m·dy·Σ qy`: the min term uses the activation block's integer sum, so no
    /// precomputed (and f16-overflow-prone) block sum as in ggml's Q8_1 is needed.
    fn vec_dot(x: &[Self], y: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let mut sumi = 0i32;
            let mut sumy = 0i32;
            for j in 0..QK / 2 {
                sumi += (a.qs[j] & 0xF) as i32 * b.qs[j] as i32;
                sumi += (a.qs[j] >> 4) as i32 * b.qs[j + QK / 2] as i32;
                sumy += b.qs[j] as i32 + b.qs[j + QK / 2] as i32;
            }
            let dy = b.d.to_f32();
            sum += a.d.to_f32() * dy * sumi as f32 + a.m.to_f32() * dy * sumy as f32;
        }
        sum
    }
}

/// The 5-bit value of element `j` of a Q5_0 block, in `0..32`.
#[inline]
fn q5_0_value(b: &BlockQ5_0, j: usize) -> i32 {
    let qh = u32::from_le_bytes(b.qh);
    let lo = if j < QK / 2 {
        b.qs[j] & 0xF
    } else {
        b.qs[j - QK / 2] >> 4
    };
    lo as i32 | ((((qh >> j) & 1) as i32) << 4)
}

impl Format for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const N: usize = QK;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (j, o) in out.iter_mut().enumerate() {
                *o = d * (q5_0_value(b, j) - 16) as f32;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
            let (max, _) = signed_absmax(x);
            b.d = f16::from_f32(max / -16.0);
            let id = inv(b.d.to_f32());
            let mut qh = 0u32;
            for j in 0..QK / 2 {
                let lo = (round_clamp(x[j] * id, -16, 15) + 16) as u32;
                let hi = (round_clamp(x[j + QK / 2] * id, -16, 15) + 16) as u32;
                b.qs[j] = (lo & 0xF) as u8 | (((hi & 0xF) as u8) << 4);
                qh |= ((lo >> 4) << j) | ((hi >> 4) << (j + QK / 2));
            }
            b.qh = qh.to_le_bytes();
        }
    }
}

impl WeightFormat for BlockQ5_0 {
    type Act = BlockQ8_0;
    fn vec_dot(x: &[Self], y: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let sumi: i32 = (0..QK)
                .map(|j| (q5_0_value(a, j) - 16) * b.qs[j] as i32)
                .sum();
            sum += a.d.to_f32() * b.d.to_f32() * sumi as f32;
        }
        sum
    }
}

/// Quantize 32 values symmetrically to `[-127, 127]`; returns the f16 scale and the sum of `q`.
#[inline]
fn quantize_q8_block(x: &[f32], qs: &mut [i8; QK]) -> (f16, i32) {
    let (_, amax) = signed_absmax(x);
    let d = f16::from_f32(amax / 127.0);
    let id = inv(d.to_f32());
    let mut sum = 0;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_clamp(v * id, -127, 127) as i8;
        sum += *q as i32;
    }
    (d, sum)
}

impl Format for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const N: usize = QK;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = d * q as f32;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
            b.d = quantize_q8_block(x, &mut b.qs).0;
        }
    }
}

impl WeightFormat for BlockQ8_0 {
    type Act = BlockQ8_0;
    fn vec_dot(x: &[Self], y: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let sumi: i32 =
                a.qs.iter()
                    .zip(&b.qs)
                    .map(|(&p, &q)| p as i32 * q as i32)
                    .sum();
            sum += a.d.to_f32() * b.d.to_f32() * sumi as f32;
        }
        sum
    }
}

impl Format for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const N: usize = QK;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = d * q as f32;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
            let (d, sum) = quantize_q8_block(x, &mut b.qs);
            b.d = d;
            b.s = f16::from_f32(d.to_f32() * sum as f32);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-quants.

impl Format for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const N: usize = QK_K;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = b.d * q as f32;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
            let (_, amax) = signed_absmax(x);
            b.d = amax / 127.0;
            let id = inv(b.d);
            for (q, &v) in b.qs.iter_mut().zip(x) {
                *q = round_clamp(v * id, -127, 127) as i8;
            }
            fill_bsums(b);
        }
    }
}

/// Recompute `bsums` from `qs`.
#[inline]
pub fn fill_bsums(b: &mut BlockQ8K) {
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| v as i16).sum();
    }
}

/// Shared k-quant quantizer for Q4_K (`nmax = 15`) and Q5_K (`nmax = 31`): per sub-block of 32
/// an affine range `[-m, -m + 15 * scale]` with `m >= 0`, then 6-bit scales and mins relative to the
/// super-block's `d` and `dmin`. Returns `(d, dmin, packed scales, q values)`.
fn quantize_k_affine(x: &[f32], nmax: i32) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut scale = [0f32; 8];
    let mut minv = [0f32; 8];
    for s in 0..8 {
        let sub = &x[32 * s..32 * s + 32];
        let mn = sub.iter().copied().fold(0.0f32, f32::min);
        let mx = sub.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scale[s] = (mx - mn).max(0.0) / nmax as f32;
        minv[s] = -mn;
    }
    let max_scale = scale.iter().copied().fold(0.0f32, f32::max);
    let max_min = minv.iter().copied().fold(0.0f32, f32::max);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    let (id, idmin) = (inv(d.to_f32()), inv(dmin.to_f32()));
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let mut q = [0u8; QK_K];
    for s in 0..8 {
        ls[s] = round_clamp(scale[s] * id, 0, 63) as u8;
        lm[s] = round_clamp(minv[s] * idmin, 0, 63) as u8;
        let eff_d = d.to_f32() * ls[s] as f32;
        let eff_m = dmin.to_f32() * lm[s] as f32;
        let ieff = inv(eff_d);
        for l in 0..32 {
            q[32 * s + l] = round_clamp((x[32 * s + l] + eff_m) * ieff, 0, nmax) as u8;
        }
    }
    (d, dmin, pack_scale_min_k4(&ls, &lm), q)
}

impl Format for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const N: usize = QK_K;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &b.scales);
                let (ds, ms) = (d * sc as f32, dmin * m as f32);
                let qs = &b.qs[32 * (s / 2)..32 * (s / 2) + 32];
                for l in 0..32 {
                    let q = if s % 2 == 0 { qs[l] & 0xF } else { qs[l] >> 4 };
                    out[32 * s + l] = ds * q as f32 - ms;
                }
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
            let (d, dmin, scales, q) = quantize_k_affine(x, 15);
            b.d = d;
            b.dmin = dmin;
            b.scales = scales;
            for i in 0..4 {
                for l in 0..32 {
                    b.qs[32 * i + l] = q[64 * i + l] | (q[64 * i + 32 + l] << 4);
                }
            }
        }
    }
}

impl WeightFormat for BlockQ4K {
    type Act = BlockQ8K;
    fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let mut sumi = 0i32;
            let mut summ = 0i32;
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &a.scales);
                let qs = &a.qs[32 * (s / 2)..32 * (s / 2) + 32];
                let mut dot = 0i32;
                for l in 0..32 {
                    let q = if s % 2 == 0 { qs[l] & 0xF } else { qs[l] >> 4 };
                    dot += q as i32 * b.qs[32 * s + l] as i32;
                }
                sumi += sc as i32 * dot;
                summ += m as i32 * (b.bsums[2 * s] as i32 + b.bsums[2 * s + 1] as i32);
            }
            sum += b.d * (a.d.to_f32() * sumi as f32 - a.dmin.to_f32() * summ as f32);
        }
        sum
    }
}

/// The 5-bit value of element `l` of sub-block `s` of a Q5_K block.
#[inline]
fn q5_k_value(b: &BlockQ5K, s: usize, l: usize) -> u8 {
    let byte = b.qs[32 * (s / 2) + l];
    let lo = if s.is_multiple_of(2) {
        byte & 0xF
    } else {
        byte >> 4
    };
    lo | (((b.qh[l] >> s) & 1) << 4)
}

impl Format for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const N: usize = QK_K;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &b.scales);
                let (ds, ms) = (d * sc as f32, dmin * m as f32);
                for l in 0..32 {
                    out[32 * s + l] = ds * q5_k_value(b, s, l) as f32 - ms;
                }
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
            let (d, dmin, scales, q) = quantize_k_affine(x, 31);
            b.d = d;
            b.dmin = dmin;
            b.scales = scales;
            b.qh = [0; 32];
            for i in 0..4 {
                for l in 0..32 {
                    let (q0, q1) = (q[64 * i + l], q[64 * i + 32 + l]);
                    b.qs[32 * i + l] = (q0 & 0xF) | ((q1 & 0xF) << 4);
                    b.qh[l] |= ((q0 >> 4) << (2 * i)) | ((q1 >> 4) << (2 * i + 1));
                }
            }
        }
    }
}

impl WeightFormat for BlockQ5K {
    type Act = BlockQ8K;
    fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let mut sumi = 0i32;
            let mut summ = 0i32;
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &a.scales);
                let dot: i32 = (0..32)
                    .map(|l| q5_k_value(a, s, l) as i32 * b.qs[32 * s + l] as i32)
                    .sum();
                sumi += sc as i32 * dot;
                summ += m as i32 * (b.bsums[2 * s] as i32 + b.bsums[2 * s + 1] as i32);
            }
            sum += b.d * (a.d.to_f32() * sumi as f32 - a.dmin.to_f32() * summ as f32);
        }
        sum
    }
}

/// The signed 6-bit values (`q - 32`) of a Q6_K block in element order.
#[inline]
fn q6_k_values(b: &BlockQ6K) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for h in 0..2 {
        let ql = &b.ql[64 * h..64 * h + 64];
        let qh = &b.qh[32 * h..32 * h + 32];
        let o = &mut out[128 * h..128 * h + 128];
        for l in 0..32 {
            o[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            o[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    out
}

impl Format for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const N: usize = QK_K;
    fn dequantize(blocks: &[Self], dst: &mut [f32]) {
        for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            let q = q6_k_values(b);
            for (i, o) in out.iter_mut().enumerate() {
                *o = d * b.scales[i / 16] as f32 * q[i] as f32;
            }
        }
    }
    fn quantize(src: &[f32], dst: &mut [Self]) {
        for (x, b) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
            let mut scale = [0f32; 16];
            for (s, sub) in scale.iter_mut().zip(x.chunks_exact(16)) {
                *s = signed_absmax(sub).0 / -32.0;
            }
            let (smax, _) = signed_absmax(&scale);
            b.d = f16::from_f32(smax / -128.0);
            let id = inv(b.d.to_f32());
            let mut q = [0u8; QK_K];
            for s in 0..16 {
                b.scales[s] = round_clamp(scale[s] * id, -128, 127) as i8;
                let ieff = inv(b.d.to_f32() * b.scales[s] as f32);
                for l in 0..16 {
                    q[16 * s + l] = (round_clamp(x[16 * s + l] * ieff, -32, 31) + 32) as u8;
                }
            }
            for h in 0..2 {
                let q = &q[128 * h..128 * h + 128];
                for l in 0..32 {
                    b.ql[64 * h + l] = (q[l] & 0xF) | ((q[l + 64] & 0xF) << 4);
                    b.ql[64 * h + l + 32] = (q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4);
                    b.qh[32 * h + l] = (q[l] >> 4)
                        | ((q[l + 32] >> 4) << 2)
                        | ((q[l + 64] >> 4) << 4)
                        | ((q[l + 96] >> 4) << 6);
                }
            }
        }
    }
}

impl WeightFormat for BlockQ6K {
    type Act = BlockQ8K;
    fn vec_dot(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sum = 0.0f32;
        for (a, b) in x.iter().zip(y) {
            let q = q6_k_values(a);
            let mut sumi = 0i32;
            for s in 0..16 {
                let dot: i32 = (16 * s..16 * s + 16)
                    .map(|i| q[i] as i32 * b.qs[i] as i32)
                    .sum();
                sumi += a.scales[s] as i32 * dot;
            }
            sum += a.d.to_f32() * b.d * sumi as f32;
        }
        sum
    }
}
