//! NEON kernels for aarch64: `vec_dot` for every weight format and the Q8_0 / Q8_K activation
//! quantizers, in two flavours: with the `dotprod` extension (`sdot`) and without (`smull` +
//! pairwise accumulate).
//!
//! Same integer sums per (sub-)block as `reference`, one float multiply-add per block, so results
//! agree with it up to float summation order. Each kernel body is written once, generic over an
//! [`I8Dot`] strategy, and instantiated inside a `#[target_feature]` entry point per flavour.
//! Dequantization stays scalar. F16 weights are widened with `half`'s slice conversion.

use super::blocks::*;
use super::reference::{dequantize_bytes, fill_bsums, Format};
use super::{GgmlType, TypeKernels};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use std::arch::aarch64::*;

/// The NEON kernel table for `t`; `dotprod` selects the `sdot` flavour (only pass `true` after
/// detecting the `dotprod` feature).
pub fn table(t: GgmlType, dotprod: bool) -> Option<&'static TypeKernels> {
    use GgmlType as T;
    Some(match (t, dotprod) {
        (T::F32, _) => &F32,
        (T::F16, _) => &F16,
        (T::BF16, _) => &BF16,
        (T::Q4_0, false) => &mull::Q4_0,
        (T::Q4_1, false) => &mull::Q4_1,
        (T::Q5_0, false) => &mull::Q5_0,
        (T::Q8_0, false) => &mull::Q8_0,
        (T::Q4_K, false) => &mull::Q4_K,
        (T::Q5_K, false) => &mull::Q5_K,
        (T::Q6_K, false) => &mull::Q6_K,
        (T::Q4_0, true) => &sdot::Q4_0,
        (T::Q4_1, true) => &sdot::Q4_1,
        (T::Q5_0, true) => &sdot::Q5_0,
        (T::Q8_0, true) => &sdot::Q8_0,
        (T::Q4_K, true) => &sdot::Q4_K,
        (T::Q5_K, true) => &sdot::Q5_K,
        (T::Q6_K, true) => &sdot::Q6_K,
        _ => return None,
    })
}

/// How to accumulate 16 signed byte products into 4 i32 lanes (each lane gets 4 products).
pub trait I8Dot {
    /// # Safety
    /// NEON (and for [`Sdot`] the `dotprod` feature) must be available.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// Widening multiply and pairwise add; plain ARMv8 NEON.
pub struct Mull;
impl I8Dot for Mull {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// `sdot` (ARMv8.2 dot product extension).
pub struct Sdot;
impl I8Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        std::arch::asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }
}

#[inline(always)]
unsafe fn dot32<D: I8Dot>(a0: int8x16_t, a1: int8x16_t, y: *const i8) -> int32x4_t {
    D::dot(
        D::dot(vdupq_n_s32(0), a0, vld1q_s8(y)),
        a1,
        vld1q_s8(y.add(16)),
    )
}

#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> (uint8x16_t, uint8x16_t) {
    let q = vld1q_u8(qs);
    (vandq_u8(q, vdupq_n_u8(0xF)), vshrq_n_u8(q, 4))
}

#[inline(always)]
unsafe fn dot_q8_0<D: I8Dot>(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (a, b) in x.iter().zip(y) {
        let p = dot32::<D>(
            vld1q_s8(a.qs.as_ptr()),
            vld1q_s8(a.qs.as_ptr().add(16)),
            b.qs.as_ptr(),
        );
        acc = vfmaq_f32(
            acc,
            vcvtq_f32_s32(p),
            vdupq_n_f32(f16_to_f32_finite(a.d) * f16_to_f32_finite(b.d)),
        );
    }
    vaddvq_f32(acc)
}

#[inline(always)]
unsafe fn dot_q4_0<D: I8Dot>(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let eight = vdupq_n_s8(8);
    for (a, b) in x.iter().zip(y) {
        let (lo, hi) = nibbles(a.qs.as_ptr());
        let lo = vsubq_s8(vreinterpretq_s8_u8(lo), eight);
        let hi = vsubq_s8(vreinterpretq_s8_u8(hi), eight);
        let p = dot32::<D>(lo, hi, b.qs.as_ptr());
        acc = vfmaq_f32(
            acc,
            vcvtq_f32_s32(p),
            vdupq_n_f32(f16_to_f32_finite(a.d) * f16_to_f32_finite(b.d)),
        );
    }
    vaddvq_f32(acc)
}

#[inline(always)]
unsafe fn dot_q4_1<D: I8Dot>(x: &[BlockQ4_1], y: &[BlockQ8_0]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let ones = vdupq_n_s8(1);
    for (a, b) in x.iter().zip(y) {
        let (lo, hi) = nibbles(a.qs.as_ptr());
        let p = dot32::<D>(
            vreinterpretq_s8_u8(lo),
            vreinterpretq_s8_u8(hi),
            b.qs.as_ptr(),
        );
        let s = dot32::<D>(ones, ones, b.qs.as_ptr());
        let dy = f16_to_f32_finite(b.d);
        acc = vfmaq_f32(
            acc,
            vcvtq_f32_s32(p),
            vdupq_n_f32(f16_to_f32_finite(a.d) * dy),
        );
        acc = vfmaq_f32(
            acc,
            vcvtq_f32_s32(s),
            vdupq_n_f32(f16_to_f32_finite(a.m) * dy),
        );
    }
    vaddvq_f32(acc)
}

#[inline(always)]
unsafe fn dot_q5_0<D: I8Dot>(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bits = vld1q_u8(BITS.as_ptr());
    let f0 = vdupq_n_u8(0xF0);
    let mut acc = vdupq_n_f32(0.0);
    for (a, b) in x.iter().zip(y) {
        let (lo, hi) = nibbles(a.qs.as_ptr());
        // 0xFF where bit 4 of the value is set; where it is not, nibble | 0xF0 = nibble - 16.
        let h = a.qh;
        let mlo = vtstq_u8(vcombine_u8(vdup_n_u8(h[0]), vdup_n_u8(h[1])), bits);
        let mhi = vtstq_u8(vcombine_u8(vdup_n_u8(h[2]), vdup_n_u8(h[3])), bits);
        let lo = vreinterpretq_s8_u8(vorrq_u8(lo, vbicq_u8(f0, mlo)));
        let hi = vreinterpretq_s8_u8(vorrq_u8(hi, vbicq_u8(f0, mhi)));
        let p = dot32::<D>(lo, hi, b.qs.as_ptr());
        acc = vfmaq_f32(
            acc,
            vcvtq_f32_s32(p),
            vdupq_n_f32(f16_to_f32_finite(a.d) * f16_to_f32_finite(b.d)),
        );
    }
    vaddvq_f32(acc)
}

/// `Σ_j min_j · (bsum_{2j} + bsum_{2j+1})` for a Q4_K / Q5_K block.
#[inline(always)]
unsafe fn k4_min_sum(mins: u64, y: &BlockQ8K) -> i32 {
    let q8s = vpaddq_s16(
        vld1q_s16(y.bsums.as_ptr()),
        vld1q_s16(y.bsums.as_ptr().add(8)),
    );
    let m = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(mins)));
    let prod = vaddq_s32(
        vmull_s16(vget_low_s16(m), vget_low_s16(q8s)),
        vmull_high_s16(m, q8s),
    );
    vaddvq_s32(prod)
}

#[inline(always)]
unsafe fn dot_q4_k<D: I8Dot>(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        let (sc, mn) = unpack_scales_mins_k4(&a.scales);
        let sc = sc.to_le_bytes();
        let summ = k4_min_sum(mn, b);
        let mut sumv = vdupq_n_s32(0);
        for j in 0..4 {
            let (l0, h0) = nibbles(a.qs.as_ptr().add(32 * j));
            let (l1, h1) = nibbles(a.qs.as_ptr().add(32 * j + 16));
            let yp = b.qs.as_ptr().add(64 * j);
            let pl = dot32::<D>(vreinterpretq_s8_u8(l0), vreinterpretq_s8_u8(l1), yp);
            let ph = dot32::<D>(vreinterpretq_s8_u8(h0), vreinterpretq_s8_u8(h1), yp.add(32));
            sumv = vmlaq_n_s32(sumv, pl, sc[2 * j] as i32);
            sumv = vmlaq_n_s32(sumv, ph, sc[2 * j + 1] as i32);
        }
        let sumi = vaddvq_s32(sumv);
        sum +=
            b.d * (f16_to_f32_finite(a.d) * sumi as f32 - f16_to_f32_finite(a.dmin) * summ as f32);
    }
    sum
}

#[inline(always)]
unsafe fn dot_q5_k<D: I8Dot>(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let bit4 = vdupq_n_u8(0x10);
    let mut sum = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        let (sc, mn) = unpack_scales_mins_k4(&a.scales);
        let sc = sc.to_le_bytes();
        let summ = k4_min_sum(mn, b);
        let mut qh0 = vld1q_u8(a.qh.as_ptr());
        let mut qh1 = vld1q_u8(a.qh.as_ptr().add(16));
        let mut sumv = vdupq_n_s32(0);
        for j in 0..4 {
            let (l0, h0) = nibbles(a.qs.as_ptr().add(32 * j));
            let (l1, h1) = nibbles(a.qs.as_ptr().add(32 * j + 16));
            // Bits 2j and 2j + 1 of qh, kept at bits 0 and 1 by shifting qh right 2 per step.
            let l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(qh0, 4), bit4));
            let l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(qh1, 4), bit4));
            let h0 = vorrq_u8(h0, vandq_u8(vshlq_n_u8(qh0, 3), bit4));
            let h1 = vorrq_u8(h1, vandq_u8(vshlq_n_u8(qh1, 3), bit4));
            qh0 = vshrq_n_u8(qh0, 2);
            qh1 = vshrq_n_u8(qh1, 2);
            let yp = b.qs.as_ptr().add(64 * j);
            let pl = dot32::<D>(vreinterpretq_s8_u8(l0), vreinterpretq_s8_u8(l1), yp);
            let ph = dot32::<D>(vreinterpretq_s8_u8(h0), vreinterpretq_s8_u8(h1), yp.add(32));
            sumv = vmlaq_n_s32(sumv, pl, sc[2 * j] as i32);
            sumv = vmlaq_n_s32(sumv, ph, sc[2 * j + 1] as i32);
        }
        let sumi = vaddvq_s32(sumv);
        sum +=
            b.d * (f16_to_f32_finite(a.d) * sumi as f32 - f16_to_f32_finite(a.dmin) * summ as f32);
    }
    sum
}

#[inline(always)]
unsafe fn dot_q6_k<D: I8Dot>(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m4 = vdupq_n_u8(0xF);
    let m2 = vdupq_n_u8(3);
    let m32 = vdupq_n_s8(32);
    let mut sum = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        let mut sumv = vdupq_n_s32(0);
        for h in 0..2 {
            let ql = a.ql.as_ptr().add(64 * h);
            let (ql0, ql1) = (vld1q_u8(ql), vld1q_u8(ql.add(16)));
            let (ql2, ql3) = (vld1q_u8(ql.add(32)), vld1q_u8(ql.add(48)));
            let qh0 = vld1q_u8(a.qh.as_ptr().add(32 * h));
            let qh1 = vld1q_u8(a.qh.as_ptr().add(32 * h + 16));
            // The eight 16-element groups of this half (see `BlockQ6K`), unsigned 6-bit.
            let g = [
                vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8(vandq_u8(qh0, m2), 4)),
                vorrq_u8(vandq_u8(ql1, m4), vshlq_n_u8(vandq_u8(qh1, m2), 4)),
                vorrq_u8(
                    vandq_u8(ql2, m4),
                    vshlq_n_u8(vandq_u8(vshrq_n_u8(qh0, 2), m2), 4),
                ),
                vorrq_u8(
                    vandq_u8(ql3, m4),
                    vshlq_n_u8(vandq_u8(vshrq_n_u8(qh1, 2), m2), 4),
                ),
                vorrq_u8(
                    vshrq_n_u8(ql0, 4),
                    vshlq_n_u8(vandq_u8(vshrq_n_u8(qh0, 4), m2), 4),
                ),
                vorrq_u8(
                    vshrq_n_u8(ql1, 4),
                    vshlq_n_u8(vandq_u8(vshrq_n_u8(qh1, 4), m2), 4),
                ),
                vorrq_u8(vshrq_n_u8(ql2, 4), vshlq_n_u8(vshrq_n_u8(qh0, 6), 4)),
                vorrq_u8(vshrq_n_u8(ql3, 4), vshlq_n_u8(vshrq_n_u8(qh1, 6), 4)),
            ];
            for (k, &q) in g.iter().enumerate() {
                let q = vsubq_s8(vreinterpretq_s8_u8(q), m32);
                let yv = vld1q_s8(b.qs.as_ptr().add(128 * h + 16 * k));
                let p = D::dot(vdupq_n_s32(0), q, yv);
                sumv = vmlaq_n_s32(sumv, p, a.scales[8 * h + k] as i32);
            }
        }
        sum += f16_to_f32_finite(a.d) * b.d * vaddvq_s32(sumv) as f32;
    }
    sum
}

/// Byte-level wrappers and kernel tables of one dot-product flavour.
macro_rules! flavour {
    ($m:ident, $D:ty, $feat:literal) => {
        mod $m {
            use super::*;

            macro_rules! wrap {
                ($name:ident, $W:ty, $A:ty, $kernel:ident) => {
                    fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
                        #[target_feature(enable = $feat)]
                        unsafe fn inner(x: &[$W], y: &[$A]) -> f32 {
                            $kernel::<$D>(x, y)
                        }
                        let x = cast_blocks::<$W>(&w[..n / <$W as Format>::N * size_of::<$W>()]);
                        let y = cast_blocks::<$A>(&a[..n / <$A as Format>::N * size_of::<$A>()]);
                        // SAFETY: this flavour's table is only handed out when its features
                        // were detected.
                        unsafe { inner(&x, &y) }
                    }
                };
            }

            wrap!(vec_dot_q4_0, BlockQ4_0, BlockQ8_0, dot_q4_0);
            wrap!(vec_dot_q4_1, BlockQ4_1, BlockQ8_0, dot_q4_1);
            wrap!(vec_dot_q5_0, BlockQ5_0, BlockQ8_0, dot_q5_0);
            wrap!(vec_dot_q8_0, BlockQ8_0, BlockQ8_0, dot_q8_0);
            wrap!(vec_dot_q4_k, BlockQ4K, BlockQ8K, dot_q4_k);
            wrap!(vec_dot_q5_k, BlockQ5K, BlockQ8K, dot_q5_k);
            wrap!(vec_dot_q6_k, BlockQ6K, BlockQ8K, dot_q6_k);

            macro_rules! table {
                ($name:ident, $t:ident, $vt:ident, $q:ident, $dot:ident, $W:ty) => {
                    pub static $name: TypeKernels = TypeKernels {
                        weight_type: GgmlType::$t,
                        vec_dot_type: GgmlType::$vt,
                        quantize_activation: $q,
                        vec_dot: $dot,
                        dequantize: dequantize_bytes::<$W>,
                        gemm: None,
                    };
                };
            }

            table!(Q4_0, Q4_0, Q8_0, quantize_q8_0, vec_dot_q4_0, BlockQ4_0);
            table!(Q4_1, Q4_1, Q8_0, quantize_q8_0, vec_dot_q4_1, BlockQ4_1);
            table!(Q5_0, Q5_0, Q8_0, quantize_q8_0, vec_dot_q5_0, BlockQ5_0);
            table!(Q8_0, Q8_0, Q8_0, quantize_q8_0, vec_dot_q8_0, BlockQ8_0);
            table!(Q4_K, Q4_K, Q8_K, quantize_q8_k, vec_dot_q4_k, BlockQ4K);
            table!(Q5_K, Q5_K, Q8_K, quantize_q8_k, vec_dot_q5_k, BlockQ5K);
            table!(Q6_K, Q6_K, Q8_K, quantize_q8_k, vec_dot_q6_k, BlockQ6K);
        }
    };
}

flavour!(mull, Mull, "neon");
flavour!(sdot, Sdot, "neon,dotprod");

// ---------------------------------------------------------------------------------------------
// Float weights.

static F32: TypeKernels = TypeKernels {
    weight_type: GgmlType::F32,
    vec_dot_type: GgmlType::F32,
    quantize_activation: copy_f32,
    vec_dot: vec_dot_f32,
    dequantize: dequantize_bytes::<f32>,
    gemm: None,
};
static F16: TypeKernels = TypeKernels {
    weight_type: GgmlType::F16,
    vec_dot_type: GgmlType::F32,
    quantize_activation: copy_f32,
    vec_dot: vec_dot_f16,
    dequantize: dequantize_bytes::<f16>,
    gemm: None,
};
static BF16: TypeKernels = TypeKernels {
    weight_type: GgmlType::BF16,
    vec_dot_type: GgmlType::F32,
    quantize_activation: copy_f32,
    vec_dot: vec_dot_bf16,
    dequantize: dequantize_bytes::<bf16>,
    gemm: None,
};

fn copy_f32(src: &[f32], dst: &mut [u8]) {
    dst[..src.len() * 4].copy_from_slice(bytemuck::cast_slice(src));
}

/// f32 dot with four vector accumulators.
fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    // SAFETY: NEON is baseline on aarch64; all loads are within `n`.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let off = i + 4 * k;
                *a = vfmaq_f32(
                    *a,
                    vld1q_f32(x.as_ptr().add(off)),
                    vld1q_f32(y.as_ptr().add(off)),
                );
            }
            i += 16;
        }
        let mut sum = vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ));
        for j in i..n {
            sum += x[j] * y[j];
        }
        sum
    }
}

fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = cast_blocks::<f32>(&w[..4 * n]);
    let y = cast_blocks::<f32>(&a[..4 * n]);
    dot_f32(&x, &y)
}

fn vec_dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = cast_blocks::<f16>(&w[..2 * n]);
    let y = cast_blocks::<f32>(&a[..4 * n]);
    let mut buf = [0f32; 256];
    let mut sum = 0.0;
    for (xc, yc) in x.chunks(256).zip(y.chunks(256)) {
        let b = &mut buf[..xc.len()];
        xc.convert_to_f32_slice(b);
        sum += dot_f32(b, yc);
    }
    sum
}

fn vec_dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let x = cast_blocks::<bf16>(&w[..2 * n]);
    let y = cast_blocks::<f32>(&a[..4 * n]);
    let mut buf = [0f32; 256];
    let mut sum = 0.0;
    for (xc, yc) in x.chunks(256).zip(y.chunks(256)) {
        let b = &mut buf[..xc.len()];
        xc.convert_to_f32_slice(b);
        sum += dot_f32(b, yc);
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers.

/// Largest |x| of a slice whose length is a multiple of 16.
#[inline(always)]
unsafe fn absmax(x: &[f32]) -> f32 {
    let mut m = vdupq_n_f32(0.0);
    for c in x.chunks_exact(4) {
        m = vmaxq_f32(m, vabsq_f32(vld1q_f32(c.as_ptr())));
    }
    vmaxvq_f32(m)
}

/// Round 16 floats times `id` to i8 (ties to even, saturating) and store them.
#[inline(always)]
unsafe fn round_pack_16(x: *const f32, id: f32, out: *mut i8) {
    let q: [int32x4_t; 4] = [
        vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x), id)),
        vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x.add(4)), id)),
        vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x.add(8)), id)),
        vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x.add(12)), id)),
    ];
    let lo = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
    let hi = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
    let p = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
    // Match the reference's clamp to [-127, 127].
    vst1q_s8(out, vmaxq_s8(p, vdupq_n_s8(-127)));
}

fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    let nb = src.len() / QK;
    with_blocks_mut::<BlockQ8_0>(&mut dst[..nb * size_of::<BlockQ8_0>()], |blocks| {
        for (x, b) in src.chunks_exact(QK).zip(blocks.iter_mut()) {
            // SAFETY: NEON is baseline on aarch64; `x` holds 32 floats, `b.qs` 32 bytes.
            unsafe {
                b.d = f16::from_f32(absmax(x) / 127.0);
                let d = f16_to_f32_finite(b.d);
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                round_pack_16(x.as_ptr(), id, b.qs.as_mut_ptr());
                round_pack_16(x.as_ptr().add(16), id, b.qs.as_mut_ptr().add(16));
            }
        }
    });
}

fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    let nb = src.len() / QK_K;
    with_blocks_mut::<BlockQ8K>(&mut dst[..nb * size_of::<BlockQ8K>()], |blocks| {
        for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
            // SAFETY: NEON is baseline on aarch64; `x` holds 256 floats, `b.qs` 256 bytes.
            unsafe {
                b.d = absmax(x) / 127.0;
                let id = if b.d != 0.0 { 1.0 / b.d } else { 0.0 };
                for k in 0..QK_K / 16 {
                    round_pack_16(x.as_ptr().add(16 * k), id, b.qs.as_mut_ptr().add(16 * k));
                }
            }
            fill_bsums(b);
        }
    });
}
