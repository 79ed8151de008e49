//! AVX2 + FMA + F16C kernels for x86_64: `vec_dot` for every weight format and the Q8_0 / Q8_K
//! activation quantizers.
//!
//! These compute exactly what `reference` computes (same integer sums per (sub-)block, only the
//! float summation order differs) and are tested against it. The integer technique: unsigned 4/5/6-bit
//! weights times signed 8-bit activations with `vpmaddubsw` (pairs → i16), then `vpmaddwd` against
//! the per-sub-block scales (or ones) to i32, one float FMA per block into `__m256` accumulators and a
//! single horizontal sum at the end. Signed×signed products (Q4_0, Q5_0, Q8_0) move the sign onto
//! the activation with `vpsignb` first. Dequantization stays scalar (it is not on the decode path).
//!
//! Everything here is `unsafe` with `#[target_feature(enable = "avx2,fma,f16c")]`; the safe
//! wrappers in the kernel tables are only reachable after `simd_level()` detected those features.

use super::blocks::*;
use super::reference::{dequantize_bytes, fill_bsums, Format};
use super::{GgmlType, TypeKernels};
use half::{bf16, f16};
use std::arch::x86_64::*;

/// The AVX2 kernel table for `t`, if there is one. Only call after detecting AVX2, FMA and F16C.
pub fn table(t: GgmlType) -> Option<&'static TypeKernels> {
    use GgmlType as T;
    Some(match t {
        T::F32 => &F32,
        T::F16 => &F16,
        T::BF16 => &BF16,
        T::Q4_0 => &Q4_0,
        T::Q4_1 => &Q4_1,
        T::Q5_0 => &Q5_0,
        T::Q8_0 => &Q8_0,
        T::Q4_K => &Q4_K,
        T::Q5_K => &Q5_K,
        T::Q6_K => &Q6_K,
        _ => return None,
    })
}

macro_rules! kernel_table {
    ($name:ident, $t:ident, $vt:ident, $quant:expr, $dot:ident, $W:ty) => {
        kernel_table!($name, $t, $vt, $quant, $dot, $W, None);
    };
    ($name:ident, $t:ident, $vt:ident, $quant:expr, $dot:ident, $W:ty, $gemm:expr) => {
        pub(super) static $name: TypeKernels = TypeKernels {
            gemm: $gemm,
            weight_type: GgmlType::$t,
            vec_dot_type: GgmlType::$vt,
            quantize_activation: $quant,
            vec_dot: $dot,
            dequantize: dequantize_bytes::<$W>,
        };
    };
}

kernel_table!(F32, F32, F32, copy_f32, vec_dot_f32, f32);
kernel_table!(F16, F16, F32, copy_f32, vec_dot_f16, f16);
kernel_table!(BF16, BF16, F32, copy_f32, vec_dot_bf16, bf16);
kernel_table!(
    Q4_0,
    Q4_0,
    Q8_0,
    quantize_q8_0,
    vec_dot_q4_0,
    BlockQ4_0,
    Some(super::x86_gemm::AVX2_Q4_0)
);
kernel_table!(Q4_1, Q4_1, Q8_0, quantize_q8_0, vec_dot_q4_1, BlockQ4_1);
kernel_table!(
    Q5_0,
    Q5_0,
    Q8_0,
    quantize_q8_0,
    vec_dot_q5_0,
    BlockQ5_0,
    Some(super::x86_gemm::AVX2_Q5_0)
);
kernel_table!(
    Q8_0,
    Q8_0,
    Q8_0,
    quantize_q8_0,
    vec_dot_q8_0,
    BlockQ8_0,
    Some(super::x86_gemm::AVX2_Q8_0)
);
kernel_table!(
    Q4_K,
    Q4_K,
    Q8_K,
    quantize_q8_k,
    vec_dot_q4_k,
    BlockQ4K,
    Some(super::x86_gemm::AVX2_Q4_K)
);
kernel_table!(Q5_K, Q5_K, Q8_K, quantize_q8_k, vec_dot_q5_k, BlockQ5K);
kernel_table!(
    Q6_K,
    Q6_K,
    Q8_K,
    quantize_q8_k,
    vec_dot_q6_k,
    BlockQ6K,
    Some(super::x86_gemm::AVX2_Q6_K)
);

/// Safe byte-level wrapper around an AVX2 `vec_dot` kernel over block slices.
macro_rules! dot_wrapper {
    ($name:ident, $W:ty, $A:ty, $kernel:ident) => {
        pub(super) fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let x = cast_blocks::<$W>(&w[..n / <$W as Format>::N * size_of::<$W>()]);
            let y = cast_blocks::<$A>(&a[..n / <$A as Format>::N * size_of::<$A>()]);
            debug_assert_eq!(x.len() * <$W as Format>::N, y.len() * <$A as Format>::N);
            // SAFETY: the tables holding this wrapper are only handed out after `simd_level()`
            // detected AVX2, FMA and F16C.
            unsafe { $kernel(&x, &y) }
        }
    };
}

dot_wrapper!(vec_dot_f32, f32, f32, dot_f32);
dot_wrapper!(vec_dot_f16, f16, f32, dot_f16);
dot_wrapper!(vec_dot_bf16, bf16, f32, dot_bf16);
dot_wrapper!(vec_dot_q4_0, BlockQ4_0, BlockQ8_0, dot_q4_0);
dot_wrapper!(vec_dot_q4_1, BlockQ4_1, BlockQ8_0, dot_q4_1);
dot_wrapper!(vec_dot_q5_0, BlockQ5_0, BlockQ8_0, dot_q5_0);
dot_wrapper!(vec_dot_q8_0, BlockQ8_0, BlockQ8_0, dot_q8_0);
dot_wrapper!(vec_dot_q4_k, BlockQ4K, BlockQ8K, dot_q4_k);
dot_wrapper!(vec_dot_q5_k, BlockQ5K, BlockQ8K, dot_q5_k);
dot_wrapper!(vec_dot_q6_k, BlockQ6K, BlockQ8K, dot_q6_k);

fn copy_f32(src: &[f32], dst: &mut [u8]) {
    dst[..src.len() * 4].copy_from_slice(bytemuck::cast_slice(src));
}

pub(super) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    let nb = src.len() / QK;
    with_blocks_mut::<BlockQ8_0>(&mut dst[..nb * size_of::<BlockQ8_0>()], |b| {
        // SAFETY: see `dot_wrapper`.
        unsafe { quantize_q8_0_blocks(src, b) }
    });
}

pub(super) fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    let nb = src.len() / QK_K;
    with_blocks_mut::<BlockQ8K>(&mut dst[..nb * size_of::<BlockQ8K>()], |b| {
        // SAFETY: see `dot_wrapper`.
        unsafe { quantize_q8_k_blocks(src, b) }
    });
}

// ---------------------------------------------------------------------------------------------
// Helpers.

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_to_f32(h: f16) -> f32 {
    // A broadcast rather than `_mm_cvtsi32_si128`: the latter lets LLVM insert into a live register
    // (`vpinsrw`), chaining every block onto the accumulator's latency.
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h.to_bits() as i16)))
}

/// The four f16 at `p` as f32 lanes (reads 8 bytes, which must be in bounds). Block scales are read
/// this way rather than via a scalar `f16` → `__m128i` move: for the latter LLVM emits a `vpinsrw`
/// into a live register, which chains every block onto the accumulator's FMA latency.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load_f16x4(p: *const u8) -> __m128 {
    // Inline asm because LLVM narrows `_mm_cvtph_ps(_mm_loadl_epi64(p))` back to a `vpinsrw`.
    let r: __m128;
    std::arch::asm!(
        "vcvtph2ps {r}, qword ptr [{p}]",
        p = in(reg) p,
        r = out(xmm_reg) r,
        options(pure, readonly, nostack, preserves_flags),
    );
    r
}

/// `d(x) * d(y)` broadcast, for blocks that start with their f16 scale and are at least 8 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale_product<X, Y>(x: &X, y: &Y) -> __m256 {
    let dx = load_f16x4(x as *const X as *const u8);
    let dy = load_f16x4(y as *const Y as *const u8);
    _mm256_broadcastss_ps(_mm_mul_ss(dx, dy))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_to_f16(x: f32) -> f16 {
    f16::from_bits(
        _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT), 0) as u16,
    )
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum_ps(v: __m256) -> f32 {
    hsum_ps128(_mm_add_ps(
        _mm256_castps256_ps128(v),
        _mm256_extractf128_ps(v, 1),
    ))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum_ps128(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load256(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load128(p: *const u8) -> __m128i {
    _mm_loadu_si128(p as *const __m128i)
}

/// Signed 8-bit dot products of 32 lanes, summed in groups of 4 into 8 i32 lanes. `x` must not hold
/// -128 (true for every weight format here: |q| <= 16, or <= 127 for Q8_0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// Unsigned (< 128) × signed 8-bit dot products of 32 lanes, summed in groups of 4 into i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// The 32 nibbles of a 16-byte Q4 block, low nibbles (elements 0-15) in the low lane, high nibbles
/// (elements 16-31) in the high lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpack_nibbles_32(qs: &[u8; 16]) -> __m256i {
    let q = load128(qs.as_ptr());
    let m4 = _mm_set1_epi8(0xF);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    _mm256_set_m128i(hi, lo)
}

/// 0xFF in byte `j` where bit `j` of `bits` is set, 0 elsewhere.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn bytes_from_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let idx = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let spread = _mm256_shuffle_epi8(v, idx);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// Run `$block(x, y, acc)` over paired block slices with two independent accumulators and return
/// the horizontal sum.
macro_rules! two_acc_loop {
    ($x:expr, $y:expr, $block:ident) => {{
        let (x, y) = ($x, $y);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut xc = x.chunks_exact(2);
        let mut yc = y.chunks_exact(2);
        for (xp, yp) in (&mut xc).zip(&mut yc) {
            acc0 = $block(&xp[0], &yp[0], acc0);
            acc1 = $block(&xp[1], &yp[1], acc1);
        }
        for (xb, yb) in xc.remainder().iter().zip(yc.remainder()) {
            acc0 = $block(xb, yb, acc0);
        }
        hsum_ps(_mm256_add_ps(acc0, acc1))
    }};
}

// ---------------------------------------------------------------------------------------------
// 32-element formats against Q8_0.

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_block(x: &BlockQ8_0, y: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = scale_product(x, y);
    let qx = load256(x.qs.as_ptr() as *const u8);
    let qy = load256(y.qs.as_ptr() as *const u8);
    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    two_acc_loop!(x, y, q8_0_block)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_block(x: &BlockQ4_0, y: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = scale_product(x, y);
    let qx = _mm256_sub_epi8(unpack_nibbles_32(&x.qs), _mm256_set1_epi8(8));
    let qy = load256(y.qs.as_ptr() as *const u8);
    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    two_acc_loop!(x, y, q4_0_block)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_block(x: &BlockQ4_1, y: &BlockQ8_0, acc: __m256) -> __m256 {
    // Lanes [d·dy, m·dy, ..].
    let dm = _mm_mul_ps(
        load_f16x4(x as *const BlockQ4_1 as *const u8),
        _mm_broadcastss_ps(load_f16x4(y as *const BlockQ8_0 as *const u8)),
    );
    let qx = unpack_nibbles_32(&x.qs);
    let qy = load256(y.qs.as_ptr() as *const u8);
    let dot = _mm256_cvtepi32_ps(dot_u8_i8(qx, qy));
    let sum_y = _mm256_cvtepi32_ps(dot_u8_i8(_mm256_set1_epi8(1), qy));
    let acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), dot, acc);
    _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), sum_y, acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1(x: &[BlockQ4_1], y: &[BlockQ8_0]) -> f32 {
    two_acc_loop!(x, y, q4_1_block)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_block(x: &BlockQ5_0, y: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = scale_product(x, y);
    // q - 16 as i8: the nibble where bit 4 is set, the nibble | 0xF0 (= nibble - 16) where it is not.
    let high = bytes_from_bits(u32::from_le_bytes(x.qh));
    let qx = _mm256_or_si256(
        unpack_nibbles_32(&x.qs),
        _mm256_andnot_si256(high, _mm256_set1_epi8(0xF0u8 as i8)),
    );
    let qy = load256(y.qs.as_ptr() as *const u8);
    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    two_acc_loop!(x, y, q5_0_block)
}

// ---------------------------------------------------------------------------------------------
// k-quants against Q8_K.

/// Shuffle mask that broadcasts i16 lane `i` (0..8) of each 128-bit half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn broadcast_i16_mask(i: i32) -> __m256i {
    _mm256_set1_epi16((((2 * i + 1) << 8) | (2 * i)) as i16)
}

/// Q4_K / Q5_K block preamble: the 8 scales as i16 in both lanes, and the min correction
/// `-dmin * Σ min_j * bsum_j` folded into `acc_m`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales_and_mins(
    scales: &[u8; 12],
    dmin: f32,
    y: &BlockQ8K,
    acc_m: __m128,
) -> (__m256i, __m128) {
    let (sc, mn) = unpack_scales_mins_k4(scales);
    let ms = _mm256_cvtepu8_epi16(_mm_set_epi64x(mn as i64, sc as i64));
    let bs = load256(y.bsums.as_ptr() as *const u8);
    // Sums per 32-element sub-block.
    let q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    let prod = _mm_madd_epi16(_mm256_extracti128_si256(ms, 1), q8s);
    let acc_m = _mm_fmadd_ps(_mm_set1_ps(-dmin), _mm_cvtepi32_ps(prod), acc_m);
    (
        _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms)),
        acc_m,
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (a, b) in x.iter().zip(y) {
        // [d, dmin] (the first 8 bytes of the block: d, dmin, scales[0..4]) times the activation d.
        let dd = _mm_mul_ps(load_f16x4(a as *const _ as *const u8), _mm_set1_ps(b.d));
        let d = _mm_cvtss_f32(dd);
        let dmin = _mm_cvtss_f32(_mm_movehdup_ps(dd));
        let (scales, am) = k4_scales_and_mins(&a.scales, dmin, b, acc_m);
        acc_m = am;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let sc_l = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j as i32));
            let sc_h = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j as i32 + 1));
            let q4 = load256(a.qs.as_ptr().add(32 * j));
            let q4l = _mm256_and_si256(q4, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            let q8l = load256(b.qs.as_ptr().add(64 * j) as *const u8);
            let q8h = load256(b.qs.as_ptr().add(64 * j + 32) as *const u8);
            let pl = _mm256_madd_epi16(sc_l, _mm256_maddubs_epi16(q4l, q8l));
            let ph = _mm256_madd_epi16(sc_h, _mm256_maddubs_epi16(q4h, q8h));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) + hsum_ps128(acc_m)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let bit4 = _mm256_set1_epi8(0x10);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (a, b) in x.iter().zip(y) {
        // [d, dmin] (the first 8 bytes of the block: d, dmin, scales[0..4]) times the activation d.
        let dd = _mm_mul_ps(load_f16x4(a as *const _ as *const u8), _mm_set1_ps(b.d));
        let d = _mm_cvtss_f32(dd);
        let dmin = _mm_cvtss_f32(_mm_movehdup_ps(dd));
        let (scales, am) = k4_scales_and_mins(&a.scales, dmin, b, acc_m);
        acc_m = am;
        let mut hbits = load256(a.qh.as_ptr());
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let sc_l = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j as i32));
            let sc_h = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j as i32 + 1));
            let q4 = load256(a.qs.as_ptr().add(32 * j));
            // Bit 2j (2j + 1) of each qh byte is bit 4 of the low (high) sub-block's value; hbits
            // is shifted right by 2 per step so they are always bits 0 and 1.
            let hl = _mm256_and_si256(_mm256_slli_epi16(hbits, 4), bit4);
            let hh = _mm256_and_si256(_mm256_slli_epi16(hbits, 3), bit4);
            hbits = _mm256_srli_epi16(hbits, 2);
            let q5l = _mm256_or_si256(_mm256_and_si256(q4, m4), hl);
            let q5h = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), hh);
            let q8l = load256(b.qs.as_ptr().add(64 * j) as *const u8);
            let q8h = load256(b.qs.as_ptr().add(64 * j + 32) as *const u8);
            let pl = _mm256_madd_epi16(sc_l, _mm256_maddubs_epi16(q5l, q8l));
            let ph = _mm256_madd_epi16(sc_h, _mm256_maddubs_epi16(q5h, q8h));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) + hsum_ps128(acc_m)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    let mut acc = _mm256_setzero_ps();
    for (a, b) in x.iter().zip(y) {
        // d is the last field: read it as lane 3 of the 8 bytes ending the block.
        let dv = load_f16x4(a.scales.as_ptr().add(10) as *const u8);
        let d = b.d * _mm_cvtss_f32(_mm_shuffle_ps(dv, dv, 0xFF));
        let scales = load128(a.scales.as_ptr() as *const u8);
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let ql0 = load256(a.ql.as_ptr().add(64 * h));
            let ql1 = load256(a.ql.as_ptr().add(64 * h + 32));
            let qh = load256(a.qh.as_ptr().add(32 * h));
            // The four 32-element groups of this half, as unsigned 6-bit values.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                ),
            ];
            for (g, &qg) in q.iter().enumerate() {
                let q8 = load256(b.qs.as_ptr().add(128 * h + 32 * g) as *const u8);
                // (q - 32) · q8 = q · q8 - 32 · q8.
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(qg, q8), _mm256_maddubs_epi16(m32, q8));
                // Scales 8h + 2g (elements 0-15 of the group) and 8h + 2g + 1 (16-31).
                let s = (8 * h + 2 * g) as i64;
                let mask =
                    _mm_set_epi64x((s + 1) * 0x0101_0101_0101_0101, s * 0x0101_0101_0101_0101);
                let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, mask));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

// ---------------------------------------------------------------------------------------------
// Float weights against f32 activations.

macro_rules! float_dot {
    ($name:ident, $T:ty, $load:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(x: &[$T], y: &[f32]) -> f32 {
            let n = x.len().min(y.len());
            let (xp, yp) = (x.as_ptr(), y.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, a) in acc.iter_mut().enumerate() {
                    let off = i + 8 * k;
                    *a = _mm256_fmadd_ps($load(xp.add(off)), _mm256_loadu_ps(yp.add(off)), *a);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps($load(xp.add(i)), _mm256_loadu_ps(yp.add(i)), acc[0]);
                i += 8;
            }
            let mut sum = hsum_ps(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ));
            for j in i..n {
                sum += f32::from(x[j]) * y[j];
            }
            sum
        }
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32(p: *const f32) -> __m256 {
    _mm256_loadu_ps(p)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(load128(p as *const u8))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_bf16(p: *const bf16) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(load128(p as *const u8)),
        16,
    ))
}

float_dot!(dot_f32, f32, load_f32);
float_dot!(dot_f16, f16, load_f16);
float_dot!(dot_bf16, bf16, load_bf16);

// ---------------------------------------------------------------------------------------------
// Activation quantizers.

/// Round 32 floats times `id` to i8 (ties to even, saturating) and store them in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round_pack_32(v: &[__m256; 4], id: f32, out: *mut i8) {
    let mul = _mm256_set1_ps(id);
    let lim = _mm256_set1_ps(127.0);
    let neg = _mm256_set1_ps(-127.0);
    let mut q = [_mm256_setzero_si256(); 4];
    for (qk, &vk) in q.iter_mut().zip(v) {
        *qk = _mm256_cvtps_epi32(_mm256_min_ps(
            _mm256_max_ps(_mm256_mul_ps(vk, mul), neg),
            lim,
        ));
    }
    let p01 = _mm256_packs_epi32(q[0], q[1]);
    let p23 = _mm256_packs_epi32(q[2], q[3]);
    let p = _mm256_packs_epi16(p01, p23);
    // The packs work per 128-bit lane; restore element order.
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(out as *mut __m256i, p);
}

/// Load 32 floats; also return their lane-wise absolute maximum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_32(x: &[f32]) -> ([__m256; 4], __m256) {
    debug_assert!(x.len() >= 32);
    let p = x.as_ptr();
    let v = [
        _mm256_loadu_ps(p),
        _mm256_loadu_ps(p.add(8)),
        _mm256_loadu_ps(p.add(16)),
        _mm256_loadu_ps(p.add(24)),
    ];
    let sign = _mm256_set1_ps(-0.0);
    let a = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
    );
    (v, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_0_blocks(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let (v, amax) = load_32(x);
        let d = f32_to_f16(hmax_ps(amax) / 127.0);
        b.d = d;
        let d = f16_to_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        round_pack_32(&v, id, b.qs.as_mut_ptr());
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_k_blocks(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let mut amax = _mm256_setzero_ps();
        for c in x.chunks_exact(32) {
            amax = _mm256_max_ps(amax, load_32(c).1);
        }
        b.d = hmax_ps(amax) / 127.0;
        let id = if b.d != 0.0 { 1.0 / b.d } else { 0.0 };
        for (k, c) in x.chunks_exact(32).enumerate() {
            round_pack_32(&load_32(c).0, id, b.qs.as_mut_ptr().add(32 * k));
        }
        fill_bsums(b);
    }
}
