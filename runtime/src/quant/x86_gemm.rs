//! Tiled matrix kernels ("gemm") for x86_64: many (weight row, token) dot products per call.
//!
//! A tile of `R` weight rows × `T` tokens keeps `R·T` float accumulators in registers. For each
//! block index the `R` weight blocks are unpacked once (and reused for the `T` tokens) and each
//! activation block is loaded once (and reused for the `R` rows); every output gets a single
//! horizontal sum at the end. With `T = 1` the same kernel is a multi-row matrix-vector product
//! (the decode path).
//!
//! Two flavours of the integer dot product: AVX2 (`vpmaddubsw` + `vpmaddwd`, 16 registers, smaller
//! tiles) and AVX-512 VNNI on 256-bit registers (`vpdpbusd`, 32 registers, 4×4 tiles). Both compute
//! exactly the integer sums of the scalar reference per (sub-)block; only the float summation order
//! differs. `vpdpbusd` multiplies unsigned by signed bytes, so signed weights are offset to unsigned
//! (`q + off`) and `off · Σ a` is subtracted per activation block (`Σ a` computed once per token).

// The AVX-512 target features and `_mm256_dpbusd_epi32` are stable since Rust 1.89; the workspace
// `rust-version` (1.88) must be raised to 1.89 for this module (the toolchain here is 1.95).

use super::avx2::{
    broadcast_i16_mask, bytes_from_bits, hsum_ps, hsum_ps128, load128, load256, load_f16x4,
    quantize_q8_0, quantize_q8_k, vec_dot_q4_0, vec_dot_q4_k, vec_dot_q5_0, vec_dot_q6_k,
    vec_dot_q8_0,
};
use super::blocks::*;
use super::reference::dequantize_bytes;
use super::{Gemm, GgmlType, TypeKernels};
use std::arch::x86_64::*;

/// The VNNI kernel tables: the AVX2 ones with a VNNI `gemm`, for types that have one.
/// Only call after detecting AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
pub fn vnni_table(t: GgmlType) -> Option<&'static TypeKernels> {
    use GgmlType as T;
    Some(match t {
        T::Q4_0 => &VNNI_Q4_0,
        T::Q5_0 => &VNNI_Q5_0,
        T::Q8_0 => &VNNI_Q8_0,
        T::Q4_K => &WIDE_Q4_K,
        T::Q6_K => &WIDE_Q6_K,
        _ => return None,
    })
}

macro_rules! vnni_table {
    ($name:ident, $t:ident, $vt:ident, $quant:expr, $dot:ident, $W:ty, $gemm:ident) => {
        vnni_table!($name, $t, $vt, $quant, $dot, $W, $gemm, "avx512vnni");
    };
    ($name:ident, $t:ident, $vt:ident, $quant:expr, $dot:ident, $W:ty, $gemm:ident, $isa:literal) => {
        static $name: TypeKernels = TypeKernels {
            weight_type: GgmlType::$t,
            vec_dot_type: GgmlType::$vt,
            quantize_activation: $quant,
            vec_dot: $dot,
            dequantize: dequantize_bytes::<$W>,
            gemm: Some(Gemm {
                isa: $isa,
                run: $gemm,
            }),
        };
    };
}

vnni_table!(
    VNNI_Q4_0,
    Q4_0,
    Q8_0,
    quantize_q8_0,
    vec_dot_q4_0,
    BlockQ4_0,
    gemm_q4_0_vnni
);
vnni_table!(
    VNNI_Q5_0,
    Q5_0,
    Q8_0,
    quantize_q8_0,
    vec_dot_q5_0,
    BlockQ5_0,
    gemm_q5_0_vnni
);
vnni_table!(
    VNNI_Q8_0,
    Q8_0,
    Q8_0,
    quantize_q8_0,
    vec_dot_q8_0,
    BlockQ8_0,
    gemm_q8_0_vnni
);

vnni_table!(
    WIDE_Q4_K,
    Q4_K,
    Q8_K,
    quantize_q8_k,
    vec_dot_q4_k,
    BlockQ4K,
    gemm_q4_k_wide,
    "avx512vl"
);
vnni_table!(
    WIDE_Q6_K,
    Q6_K,
    Q8_K,
    quantize_q8_k,
    vec_dot_q6_k,
    BlockQ6K,
    gemm_q6_k_wide,
    "avx512vl"
);

pub(super) const AVX2_Q4_0: Gemm = Gemm {
    isa: "avx2",
    run: gemm_q4_0_avx2,
};
pub(super) const AVX2_Q5_0: Gemm = Gemm {
    isa: "avx2",
    run: gemm_q5_0_avx2,
};
pub(super) const AVX2_Q8_0: Gemm = Gemm {
    isa: "avx2",
    run: gemm_q8_0_avx2,
};

/// Calls `$tile::<R, T>` for the runtime tile shape `($rr, $tt)`, both in `1..=4`.
macro_rules! dispatch_tile {
    ($tile:ident, $rr:expr, $tt:expr, $($arg:expr),*) => {
        match ($rr, $tt) {
            (4, 4) => $tile::<4, 4>($($arg),*),
            (4, 3) => $tile::<4, 3>($($arg),*),
            (4, 2) => $tile::<4, 2>($($arg),*),
            (4, 1) => $tile::<4, 1>($($arg),*),
            (3, 4) => $tile::<3, 4>($($arg),*),
            (3, 3) => $tile::<3, 3>($($arg),*),
            (3, 2) => $tile::<3, 2>($($arg),*),
            (3, 1) => $tile::<3, 1>($($arg),*),
            (2, 4) => $tile::<2, 4>($($arg),*),
            (2, 3) => $tile::<2, 3>($($arg),*),
            (2, 2) => $tile::<2, 2>($($arg),*),
            (2, 1) => $tile::<2, 1>($($arg),*),
            (1, 4) => $tile::<1, 4>($($arg),*),
            (1, 3) => $tile::<1, 3>($($arg),*),
            (1, 2) => $tile::<1, 2>($($arg),*),
            (1, 1) => $tile::<1, 1>($($arg),*),
            _ => unreachable!("tile shape"),
        }
    };
}

/// A tile kernel dispatched on its runtime shape: `(rr, tt, nb, w, w_row_bytes, a, a_row_bytes,
/// out, out_stride)`.
type TileFn = unsafe fn(usize, usize, usize, *const u8, usize, *const u8, usize, *mut f32, usize);
/// Unpacks `n` consecutive weight blocks at `src` into Q8_0-shaped blocks (f16 scale + 32 unsigned
/// bytes) at `dst`.
type UnpackFn = unsafe fn(src: *const u8, n: usize, dst: *mut u8);

/// A [`TileFn`] for the const-generic tile kernel `$tile`.
macro_rules! dispatcher {
    ($name:ident, $tile:ident) => {
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            rr: usize,
            tt: usize,
            nb: usize,
            w: *const u8,
            wrb: usize,
            a: *const u8,
            arb: usize,
            o: *mut f32,
            os: usize,
        ) {
            dispatch_tile!($tile, rr, tt, nb, w, wrb, a, arb, o, os)
        }
    };
}

/// Sweeps `rows × n_tokens` in tiles of at most `$rmax × $tmax`, rows outer (the tile's weight rows
/// stay in L1 while every token streams by). With `$prep = Some((unpack, tile))` and more than one
/// token tile, each row tile is first unpacked into Q8_0-shaped blocks of unsigned bytes and `tile`
/// runs on those, so the unpacking is not repeated for every token tile.
macro_rules! driver {
    ($gemm:ident, $tile:ident, $wbs:expr, $rmax:literal, $tmax:literal, $prep:expr) => {
        fn $gemm(n: usize, w: &[u8], rows: usize, a: &[u8], n_tokens: usize, out: &mut [f32]) {
            dispatcher!(raw_tile, $tile);
            let nb = n / QK;
            let (wrb, arb) = (nb * $wbs, nb * size_of::<BlockQ8_0>());
            assert!(
                n % QK == 0
                    && w.len() >= rows * wrb
                    && a.len() >= n_tokens * arb
                    && out.len() >= rows * n_tokens,
                "gemm: bad sizes"
            );
            let (wp, ap, op) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
            // Unpacked rows of the current row tile (Q8_0-shaped blocks), when worth it.
            let prep: Option<(UnpackFn, TileFn)> = $prep;
            let mut buf = match prep {
                Some(_) if n_tokens > $tmax => vec![0u8; $rmax * arb],
                _ => Vec::new(),
            };
            let mut r0 = 0;
            while r0 < rows {
                // One token (decode) is bound by DRAM bandwidth: single-row tiles stream each row
                // sequentially, which measured faster than interleaving several rows.
                let rr = (rows - r0).min(if n_tokens == 1 { 1 } else { $rmax });
                // SAFETY: r0 < rows, in bounds of w.
                let w_tile = unsafe { wp.add(r0 * wrb) };
                if let (false, Some((unpack, _))) = (buf.is_empty(), prep) {
                    // SAFETY: rr rows of nb blocks are in bounds of w (assert) and of buf.
                    unsafe { unpack(w_tile, rr * nb, buf.as_mut_ptr()) };
                }
                let mut t0 = 0;
                while t0 < n_tokens {
                    let tt = (n_tokens - t0).min($tmax);
                    // SAFETY: the tables holding this kernel are only handed out after detecting
                    // its CPU features; the tile reads rows r0..r0 + rr and tokens t0..t0 + tt and
                    // writes out[t * rows + r] for those, all in bounds by the assert above.
                    unsafe {
                        let (a, o) = (ap.add(t0 * arb), op.add(t0 * rows + r0));
                        match prep {
                            Some((_, ptile)) if !buf.is_empty() => {
                                ptile(rr, tt, nb, buf.as_ptr(), arb, a, arb, o, rows)
                            }
                            _ => raw_tile(rr, tt, nb, w_tile, wrb, a, arb, o, rows),
                        }
                    }
                    t0 += tt;
                }
                r0 += rr;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// 32-element formats against Q8_0.

/// The 32 nibbles of the 16 bytes at `p` (low nibbles first), as bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles_32(p: *const u8) -> __m256i {
    let q = load128(p);
    let m4 = _mm_set1_epi8(0xF);
    _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16(q, 4), m4),
        _mm_and_si128(q, m4),
    )
}

/// Q4_0 block at `p` as unsigned bytes `q + 8` (0..15).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_q4_0(p: *const u8) -> (__m256i, __m256i) {
    let u = nibbles_32(p.add(2));
    (u, u)
}

/// Q5_0 block at `p` as unsigned bytes `q + 16` (0..31).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_q5_0(p: *const u8) -> (__m256i, __m256i) {
    let qh = u32::from_le_bytes(std::ptr::read_unaligned(p.add(2) as *const [u8; 4]));
    let high = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
    let u = _mm256_or_si256(nibbles_32(p.add(6)), high);
    (u, u)
}

/// Q8_0 block at `p` as unsigned bytes `q + 128` (for `vpdpbusd`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_q8_0_offset(p: *const u8) -> (__m256i, __m256i) {
    let u = _mm256_xor_si256(load256(p.add(2)), _mm256_set1_epi8(0x80u8 as i8));
    (u, u)
}

/// Q8_0 block at `p` as (|q|, q) for the sign trick (`vpmaddubsw` would saturate on `q + 128`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_q8_0_sign(p: *const u8) -> (__m256i, __m256i) {
    let q = load256(p.add(2));
    (_mm256_sign_epi8(q, q), q)
}

/// `-OFF · (sums of 4 consecutive activation bytes)`, the offset correction, VNNI flavour.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn corr_vnni<const OFF: u8>(a: __m256i) -> __m256i {
    let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(OFF as i8), a);
    _mm256_sub_epi32(_mm256_setzero_si256(), s)
}

/// The same with `vpmaddubsw` (`OFF · 127 · 2` fits in i16 for OFF ≤ 16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn corr_avx2<const OFF: u8>(a: __m256i) -> __m256i {
    let s = _mm256_maddubs_epi16(_mm256_set1_epi8(OFF as i8), a);
    _mm256_sub_epi32(
        _mm256_setzero_si256(),
        _mm256_madd_epi16(s, _mm256_set1_epi16(1)),
    )
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn corr_none(_a: __m256i) -> __m256i {
    _mm256_setzero_si256()
}

/// i32 lanes of `corr + Σ u · a` (groups of 4), VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_vnni(u: (__m256i, __m256i), a: __m256i, corr: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(corr, u.0, a)
}

/// The same with `vpmaddubsw` + `vpmaddwd` (u < 128 and small enough not to saturate).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pair_avx2(u: (__m256i, __m256i), a: __m256i, corr: __m256i) -> __m256i {
    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u.0, a), _mm256_set1_epi16(1));
    _mm256_add_epi32(p, corr)
}

/// Sign trick: `|q| · (a · sign q)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pair_avx2_sign(u: (__m256i, __m256i), a: __m256i, _corr: __m256i) -> __m256i {
    let s = _mm256_sign_epi8(a, u.1);
    _mm256_madd_epi16(_mm256_maddubs_epi16(u.0, s), _mm256_set1_epi16(1))
}

/// How far ahead (bytes) the tile kernels prefetch each weight row.
const PREFETCH: usize = 4096;

/// A tile kernel for a 32-element format against Q8_0: `$prep` unpacks a weight block to bytes,
/// `$corr` gives the per-activation-block offset correction and `$pair` the integer dot.
macro_rules! legacy_tile {
    ($tile:ident, $feat:literal, $bs:expr, $prep:ident, $corr:expr, $pair:ident) => {
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn $tile<const R: usize, const T: usize>(
            nb: usize,
            w: *const u8,
            wrb: usize,
            a: *const u8,
            arb: usize,
            out: *mut f32,
            ostride: usize,
        ) {
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut u = [(_mm256_setzero_si256(), _mm256_setzero_si256()); R];
                let mut dw = [_mm256_setzero_ps(); R];
                for r in 0..R {
                    let p = w.add(r * wrb + b * $bs);
                    // The R rows are R interleaved streams; the hardware prefetcher alone leaves
                    // them waiting on DRAM when the weights do not fit in cache (decode).
                    _mm_prefetch::<_MM_HINT_T0>(p.add(PREFETCH) as *const i8);
                    u[r] = $prep(p);
                    dw[r] = _mm256_broadcastss_ps(load_f16x4(p));
                }
                for t in 0..T {
                    let p = a.add(t * arb + b * size_of::<BlockQ8_0>());
                    let av = load256(p.add(2));
                    let da = _mm256_broadcastss_ps(load_f16x4(p));
                    let corr = $corr(av);
                    for r in 0..R {
                        let v = $pair(u[r], av, corr);
                        acc[r][t] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(v),
                            _mm256_mul_ps(dw[r], da),
                            acc[r][t],
                        );
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    *out.add(t * ostride + r) = hsum_ps(acc[r][t]);
                }
            }
        }
    };
}

legacy_tile!(
    tile_q4_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    18,
    prep_q4_0,
    corr_vnni::<8>,
    pair_vnni
);
legacy_tile!(
    tile_q5_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    22,
    prep_q5_0,
    corr_vnni::<16>,
    pair_vnni
);
legacy_tile!(
    tile_q8_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    34,
    prep_q8_0_offset,
    corr_vnni::<128>,
    pair_vnni
);
legacy_tile!(
    tile_q4_0_avx2,
    "avx2,fma,f16c",
    18,
    prep_q4_0,
    corr_avx2::<8>,
    pair_avx2
);
legacy_tile!(
    tile_q5_0_avx2,
    "avx2,fma,f16c",
    22,
    prep_q5_0,
    corr_avx2::<16>,
    pair_avx2
);
legacy_tile!(
    tile_q8_0_avx2,
    "avx2,fma,f16c",
    34,
    prep_q8_0_sign,
    corr_none,
    pair_avx2_sign
);

/// Unpacks with `$prep` (see [`UnpackFn`]).
macro_rules! unpacker {
    ($name:ident, $bs:expr, $prep:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(src: *const u8, n: usize, dst: *mut u8) {
            for i in 0..n {
                let (p, d) = (src.add(i * $bs), dst.add(i * size_of::<BlockQ8_0>()));
                std::ptr::copy_nonoverlapping(p, d, 2);
                _mm256_storeu_si256(d.add(2) as *mut __m256i, $prep(p).0);
            }
        }
    };
}

unpacker!(unpack_q4_0, 18, prep_q4_0);
unpacker!(unpack_q5_0, 22, prep_q5_0);
unpacker!(unpack_q8_0_offset, 34, prep_q8_0_offset);

/// An unpacked block: its bytes are already the unsigned values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_unpacked(p: *const u8) -> (__m256i, __m256i) {
    let u = load256(p.add(2));
    (u, u)
}

legacy_tile!(
    tile_u8_off8_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    34,
    prep_unpacked,
    corr_vnni::<8>,
    pair_vnni
);
legacy_tile!(
    tile_u8_off16_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    34,
    prep_unpacked,
    corr_vnni::<16>,
    pair_vnni
);
legacy_tile!(
    tile_u8_off128_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    34,
    prep_unpacked,
    corr_vnni::<128>,
    pair_vnni
);
legacy_tile!(
    tile_u8_off8_avx2,
    "avx2,fma,f16c",
    34,
    prep_unpacked,
    corr_avx2::<8>,
    pair_avx2
);
legacy_tile!(
    tile_u8_off16_avx2,
    "avx2,fma,f16c",
    34,
    prep_unpacked,
    corr_avx2::<16>,
    pair_avx2
);
dispatcher!(u8_off8_vnni, tile_u8_off8_vnni);
dispatcher!(u8_off16_vnni, tile_u8_off16_vnni);
dispatcher!(u8_off128_vnni, tile_u8_off128_vnni);
dispatcher!(u8_off8_avx2, tile_u8_off8_avx2);
dispatcher!(u8_off16_avx2, tile_u8_off16_avx2);

driver!(
    gemm_q4_0_vnni,
    tile_q4_0_vnni,
    18,
    4,
    4,
    Some((unpack_q4_0, u8_off8_vnni))
);
driver!(
    gemm_q5_0_vnni,
    tile_q5_0_vnni,
    22,
    4,
    4,
    Some((unpack_q5_0, u8_off16_vnni))
);
driver!(
    gemm_q8_0_vnni,
    tile_q8_0_vnni,
    34,
    4,
    4,
    Some((unpack_q8_0_offset, u8_off128_vnni))
);
driver!(
    gemm_q4_0_avx2,
    tile_q4_0_avx2,
    18,
    4,
    2,
    Some((unpack_q4_0, u8_off8_avx2))
);
driver!(
    gemm_q5_0_avx2,
    tile_q5_0_avx2,
    22,
    4,
    2,
    Some((unpack_q5_0, u8_off16_avx2))
);
driver!(gemm_q8_0_avx2, tile_q8_0_avx2, 34, 4, 2, None);

// ---------------------------------------------------------------------------------------------
// k-quants against Q8_K: one weight row × up to 4 tokens per tile. Each super-block is unpacked
// (values and sub-block scales) once into registers and dotted with every token's block.

/// Q8_K block layout: `d: f32` at 0, `qs` at 4, `bsums` at 260.
const Q8K_QS: usize = 4;
const Q8K_BSUMS: usize = 4 + QK_K;

macro_rules! k_tiles {
    ($q4k:ident, $q6k:ident, $feat:literal) => {
        #[target_feature(enable = $feat)]
        unsafe fn $q4k<const T: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
        ) -> [f32; T] {
            let m4 = _mm256_set1_epi8(0xF);
            let mut acc = [_mm256_setzero_ps(); T];
            let mut acc_m = [_mm_setzero_ps(); T];
            for b in 0..nb {
                let x = w.add(b * size_of::<BlockQ4K>());
                _mm_prefetch::<_MM_HINT_T0>(x.add(PREFETCH) as *const i8);
                let dd = load_f16x4(x); // [d, dmin, ..]
                let sc_bytes = std::ptr::read_unaligned(x.add(4) as *const [u8; 12]);
                let (sc, mn) = unpack_scales_mins_k4(&sc_bytes);
                let scales =
                    _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi64x(0, sc as i64)));
                let mins = _mm_cvtepu8_epi16(_mm_set_epi64x(0, mn as i64));
                let mut q = [_mm256_setzero_si256(); 8];
                let mut s = [_mm256_setzero_si256(); 8];
                for j in 0..4 {
                    let q4 = load256(x.add(16 + 32 * j));
                    q[2 * j] = _mm256_and_si256(q4, m4);
                    q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                    s[2 * j] = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j as i32));
                    s[2 * j + 1] =
                        _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j as i32 + 1));
                }
                for t in 0..T {
                    let y = a.add(t * arb + b * size_of::<BlockQ8K>());
                    let yd = _mm_set1_ps(std::ptr::read_unaligned(y as *const f32));
                    let mut sumi = _mm256_setzero_si256();
                    for k in 0..8 {
                        let q8 = load256(y.add(Q8K_QS + 32 * k));
                        let p = _mm256_madd_epi16(s[k], _mm256_maddubs_epi16(q[k], q8));
                        sumi = _mm256_add_epi32(sumi, p);
                    }
                    let ddy = _mm_mul_ps(dd, yd);
                    acc[t] = _mm256_fmadd_ps(
                        _mm256_broadcastss_ps(ddy),
                        _mm256_cvtepi32_ps(sumi),
                        acc[t],
                    );
                    let bs = load256(y.add(Q8K_BSUMS));
                    let q8s =
                        _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                    let prod = _mm_cvtepi32_ps(_mm_madd_epi16(mins, q8s));
                    let dmin = _mm_shuffle_ps(ddy, ddy, 0x55);
                    acc_m[t] = _mm_fnmadd_ps(dmin, prod, acc_m[t]);
                }
            }
            let mut out = [0f32; T];
            for t in 0..T {
                out[t] = hsum_ps(acc[t]) + hsum_ps128(acc_m[t]);
            }
            out
        }

        #[target_feature(enable = $feat)]
        unsafe fn $q6k<const T: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
        ) -> [f32; T] {
            let m4 = _mm256_set1_epi8(0xF);
            let m2 = _mm256_set1_epi8(3);
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..nb {
                let x = w.add(b * size_of::<BlockQ6K>());
                _mm_prefetch::<_MM_HINT_T0>(x.add(PREFETCH) as *const i8);
                let dv = load_f16x4(x.add(202)); // d is lane 3
                let d = _mm_shuffle_ps(dv, dv, 0xFF);
                let sc8 = load128(x.add(192));
                let sc16 = _mm256_cvtepi8_epi16(sc8);
                let mut q = [_mm256_setzero_si256(); 8];
                let mut s = [_mm256_setzero_si256(); 8];
                for h in 0..2 {
                    let ql0 = load256(x.add(64 * h));
                    let ql1 = load256(x.add(64 * h + 32));
                    let qh = load256(x.add(128 + 32 * h));
                    let hi = |sh: i32| match sh {
                        0 => _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                        2 => _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                        4 => _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                        _ => _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                    };
                    q[4 * h] = _mm256_or_si256(_mm256_and_si256(ql0, m4), hi(0));
                    q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), hi(2));
                    q[4 * h + 2] =
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), hi(4));
                    q[4 * h + 3] =
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), hi(6));
                    for g in 0..4 {
                        let sidx = (8 * h + 2 * g) as i64;
                        let mask = _mm_set_epi64x(
                            (sidx + 1) * 0x0101_0101_0101_0101,
                            sidx * 0x0101_0101_0101_0101,
                        );
                        s[4 * h + g] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, mask));
                    }
                }
                for t in 0..T {
                    let y = a.add(t * arb + b * size_of::<BlockQ8K>());
                    let yd = _mm_set1_ps(std::ptr::read_unaligned(y as *const f32));
                    let mut sumi = _mm256_setzero_si256();
                    for k in 0..8 {
                        let q8 = load256(y.add(Q8K_QS + 32 * k));
                        let p = _mm256_madd_epi16(s[k], _mm256_maddubs_epi16(q[k], q8));
                        sumi = _mm256_add_epi32(sumi, p);
                    }
                    // (q - 32) · q8 summed with the scales: subtract 32 · Σ_s sc_s · bsum_s.
                    let bs = load256(y.add(Q8K_BSUMS));
                    let corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
                    sumi = _mm256_sub_epi32(sumi, corr);
                    acc[t] = _mm256_fmadd_ps(
                        _mm256_broadcastss_ps(_mm_mul_ps(d, yd)),
                        _mm256_cvtepi32_ps(sumi),
                        acc[t],
                    );
                }
            }
            let mut out = [0f32; T];
            for t in 0..T {
                out[t] = hsum_ps(acc[t]);
            }
            out
        }
    };
}

k_tiles!(tile_q4_k_avx2, tile_q6_k_avx2, "avx2,fma,f16c");
k_tiles!(
    tile_q4_k_wide,
    tile_q6_k_wide,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl"
);

/// Driver for the k-quant tiles: each row against tokens in groups of 4.
macro_rules! k_driver {
    ($gemm:ident, $tile:ident, $W:ty) => {
        fn $gemm(n: usize, w: &[u8], rows: usize, a: &[u8], n_tokens: usize, out: &mut [f32]) {
            let nb = n / QK_K;
            let (wrb, arb) = (nb * size_of::<$W>(), nb * size_of::<BlockQ8K>());
            assert!(
                n % QK_K == 0
                    && w.len() >= rows * wrb
                    && a.len() >= n_tokens * arb
                    && out.len() >= rows * n_tokens,
                "gemm: bad sizes"
            );
            for r in 0..rows {
                let wr = w[r * wrb..].as_ptr();
                let mut t0 = 0;
                while t0 < n_tokens {
                    let tt = (n_tokens - t0).min(4);
                    let ap = a[t0 * arb..].as_ptr();
                    // SAFETY: features detected before the table is handed out; row r and tokens
                    // t0..t0 + tt are in bounds by the assert.
                    let v: &[f32] = unsafe {
                        match tt {
                            4 => &$tile::<4>(nb, wr, ap, arb),
                            3 => &$tile::<3>(nb, wr, ap, arb),
                            2 => &$tile::<2>(nb, wr, ap, arb),
                            _ => &$tile::<1>(nb, wr, ap, arb),
                        }
                    };
                    for (i, &x) in v.iter().enumerate() {
                        out[(t0 + i) * rows + r] = x;
                    }
                    t0 += tt;
                }
            }
        }
    };
}

k_driver!(gemm_q4_k_avx2, tile_q4_k_avx2, BlockQ4K);
k_driver!(gemm_q6_k_avx2, tile_q6_k_avx2, BlockQ6K);
k_driver!(gemm_q4_k_wide, tile_q4_k_wide, BlockQ4K);
k_driver!(gemm_q6_k_wide, tile_q6_k_wide, BlockQ6K);

pub(super) const AVX2_Q4_K: Gemm = Gemm {
    isa: "avx2",
    run: gemm_q4_k_avx2,
};
pub(super) const AVX2_Q6_K: Gemm = Gemm {
    isa: "avx2",
    run: gemm_q6_k_avx2,
};
