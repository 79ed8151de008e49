//! Byte-exact block structs for the quantized ggml formats, plus the small helpers every kernel shares.
//!
//! Each struct mirrors one `block_*` type of ggml (`ggml-common.h`): same field order, same sizes, no
//! padding, so a slice of GGUF tensor bytes can be reinterpreted as a slice of blocks with
//! [`bytemuck`]. This module holds layouts only; the arithmetic lives in `reference` (scalar) and the
//! SIMD modules. It is not a general tensor type: a block knows nothing about rows or shapes.
//!
//! Alignment: blocks holding `f16` fields have alignment 2 (GGUF data is 32-byte aligned and every
//! block size is even, so weight rows always cast without copying). [`BlockQ8K`] holds an `f32` and
//! has alignment 4; it is only produced by our activation quantizer. [`cast_blocks`] copies into an
//! aligned buffer in the (practically never seen) case a byte slice is misaligned, so callers may
//! pass any `&[u8]`.

use bytemuck::{Pod, Zeroable};
use half::f16;
use std::borrow::Cow;

/// Elements per block of the "legacy" formats (Q4_0, Q4_1, Q5_0, Q8_0, Q8_1).
pub const QK: usize = 32;
/// Elements per super-block of the k-quant formats (Q4_K, Q5_K, Q6_K, Q8_K).
pub const QK_K: usize = 256;

/// 4-bit symmetric: `x = d * (q - 8)`, element `j < 16` in the low nibble of `qs[j]`, element
/// `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// 4-bit affine: `x = d * q + m`, nibble layout as [`BlockQ4_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// 5-bit symmetric: `x = d * (q - 16)`; the low 4 bits as in [`BlockQ4_0`], bit 4 of element `j` is
/// bit `j` of the little-endian `u32` in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// 8-bit symmetric: `x = d * q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// 8-bit symmetric with the block sum: `x = d * q`, `s = d * Σq` (activation type for Q4_1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

/// 4-bit k-quant: 8 sub-blocks of 32, each with a 6-bit scale and 6-bit min packed into `scales`
/// (see [`unpack_scales_mins_k4`]); `x = d * sc * q - dmin * m`. Sub-blocks `2i` and `2i + 1` share
/// the 32 bytes `qs[32i..32i + 32]`: low nibbles for `2i`, high nibbles for `2i + 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// 5-bit k-quant: as [`BlockQ4K`] plus bit 4 of every value: for sub-block `s`, element `l` of it
/// (`l < 32`) takes bit `s` of `qh[l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

/// 6-bit k-quant: 16 sub-blocks of 16 with signed 8-bit scales, `x = d * sc * (q - 32)`. Note `d`
/// comes last. Layout of each 128-element half `h`: with `ql = ql[64h..]`, `qh = qh[32h..]`, for
/// `l < 32`: element `l` = low nibble of `ql[l]` | bits 0-1 of `qh[l]`, `l + 32` = low nibble of
/// `ql[l + 32]` | bits 2-3, `l + 64` = high nibble of `ql[l]` | bits 4-5, `l + 96` = high nibble of
/// `ql[l + 32]` | bits 6-7 (the `qh` bits become bits 4-5 of `q`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

/// 8-bit activation block for the k-quants: `x = d * q`, `bsums[i] = Σ q[16i..16i + 16]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// f16 → f32 without a CPU feature check: move exponent and mantissa into f32 position and rescale
/// by 2^112. Exact for normals, subnormals and zeros; infinities and NaNs come out as large finite
/// values (block scales never hold them).
#[inline(always)]
pub fn f16_to_f32_finite(h: f16) -> f32 {
    let b = h.to_bits() as u32;
    let mag = f32::from_bits((b & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    if b & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K block, 6 bits each.
///
/// Packing: for `j < 4`, the low 6 bits of `q[j]` (scale) and `q[j + 4]` (min); for `j >= 4`, the
/// low nibble of `q[j + 4]` plus the top 2 bits of `q[j - 4]` as bits 4-5 (scale), and the high
/// nibble of `q[j + 4]` plus the top 2 bits of `q[j]` (min).
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All 8 scales and 8 mins of a Q4_K / Q5_K block at once, as little-endian byte vectors
/// (byte `j` of the first word is scale `j`, of the second min `j`). Same packing as [`scale_min_k4`],
/// done with 32-bit word operations.
#[inline(always)]
pub fn unpack_scales_mins_k4(q: &[u8; 12]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let u0 = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    let u1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
    let u2 = u32::from_le_bytes([q[8], q[9], q[10], q[11]]);
    let sc_lo = u0 & LOW6;
    let mn_lo = u1 & LOW6;
    let sc_hi = (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4);
    let mn_hi = ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4);
    (
        sc_lo as u64 | ((sc_hi as u64) << 32),
        mn_lo as u64 | ((mn_hi as u64) << 32),
    )
}

/// Inverse of [`scale_min_k4`]: pack 8 scales and 8 mins (each < 64) into 12 bytes.
pub fn pack_scale_min_k4(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        debug_assert!(sc[j] < 64 && mn[j] < 64 && sc[j + 4] < 64 && mn[j + 4] < 64);
        q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
    }
    q
}

/// View `bytes` as a slice of `T`, copying into an aligned buffer only when `bytes` is misaligned
/// for `T`. Trailing bytes that do not fill a whole `T` are an error in debug builds and ignored
/// otherwise.
#[inline]
pub fn cast_blocks<T: Pod>(bytes: &[u8]) -> Cow<'_, [T]> {
    debug_assert_eq!(bytes.len() % size_of::<T>(), 0);
    let bytes = &bytes[..bytes.len() - bytes.len() % size_of::<T>()];
    match bytemuck::try_cast_slice(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut v = vec![T::zeroed(); bytes.len() / size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
            Cow::Owned(v)
        }
    }
}

/// Write `blocks` produced by `fill` into `dst` bytes: in place when `dst` is aligned for `T`,
/// through a temporary buffer otherwise.
#[inline]
pub fn with_blocks_mut<T: Pod>(dst: &mut [u8], fill: impl FnOnce(&mut [T])) {
    debug_assert_eq!(dst.len() % size_of::<T>(), 0);
    match bytemuck::try_cast_slice_mut::<u8, T>(dst) {
        Ok(s) => fill(s),
        Err(_) => {
            let mut tmp = vec![T::zeroed(); dst.len() / size_of::<T>()];
            fill(&mut tmp);
            dst.copy_from_slice(bytemuck::cast_slice(&tmp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_type_table() {
        use crate::quant::GgmlType as T;
        assert_eq!(size_of::<BlockQ4_0>(), T::Q4_0.block_bytes());
        assert_eq!(size_of::<BlockQ4_1>(), T::Q4_1.block_bytes());
        assert_eq!(size_of::<BlockQ5_0>(), T::Q5_0.block_bytes());
        assert_eq!(size_of::<BlockQ8_0>(), T::Q8_0.block_bytes());
        assert_eq!(size_of::<BlockQ8_1>(), T::Q8_1.block_bytes());
        assert_eq!(size_of::<BlockQ4K>(), T::Q4_K.block_bytes());
        assert_eq!(size_of::<BlockQ5K>(), T::Q5_K.block_bytes());
        assert_eq!(size_of::<BlockQ6K>(), T::Q6_K.block_bytes());
        assert_eq!(size_of::<BlockQ8K>(), T::Q8_K.block_bytes());
        assert_eq!(align_of::<BlockQ4K>(), 2);
        assert_eq!(align_of::<BlockQ6K>(), 2);
    }

    #[test]
    fn k4_scale_packing_round_trips_and_word_unpack_agrees() {
        let mut seed = 0x1234_5678u32;
        for _ in 0..200 {
            let mut sc = [0u8; 8];
            let mut mn = [0u8; 8];
            for j in 0..8 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                sc[j] = (seed >> 10) as u8 & 63;
                mn[j] = (seed >> 20) as u8 & 63;
            }
            let q = pack_scale_min_k4(&sc, &mn);
            let (ws, wm) = unpack_scales_mins_k4(&q);
            for j in 0..8 {
                assert_eq!(scale_min_k4(j, &q), (sc[j], mn[j]));
                assert_eq!((ws >> (8 * j)) as u8, sc[j]);
                assert_eq!((wm >> (8 * j)) as u8, mn[j]);
            }
        }
    }

    #[test]
    fn finite_f16_conversion_is_exact() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(
                    f16_to_f32_finite(h).to_bits(),
                    h.to_f32().to_bits(),
                    "{bits:#x}"
                );
            }
        }
    }

    #[test]
    fn misaligned_bytes_still_cast() {
        let blocks = [
            BlockQ8K::zeroed(),
            BlockQ8K {
                d: 2.5,
                ..BlockQ8K::zeroed()
            },
        ];
        let mut bytes = vec![0u8; 1];
        bytes.extend_from_slice(bytemuck::cast_slice(&blocks));
        let view = cast_blocks::<BlockQ8K>(&bytes[1..]);
        assert_eq!(view.len(), 2);
        assert_eq!(view[1].d, 2.5);
        let mut out = vec![0u8; 1 + 292];
        with_blocks_mut::<BlockQ8K>(&mut out[1..], |b| b[0].d = 1.5);
        assert_eq!(cast_blocks::<BlockQ8K>(&out[1..])[0].d, 1.5);
    }
}
