//! Block formats and CPU kernels for the ggml tensor types.
//!
//! Each supported block format has a `#[repr(C)]` block struct with a size assert ([`blocks`]), a
//! scalar reference `dequantize`/`quantize`/`vec_dot` (`reference`), and SIMD twins (AVX2+FMA on
//! x86_64, NEON on aarch64) tested against it. Layouts follow ggml's `ggml-common.h` bit for bit,
//! because the weights come straight out of GGUF files; the code is our own.
//!
//! This module is the kernel layer only: it knows blocks and rows, not tensors, threads or models.
//! Callers pick a [`TypeKernels`] table once per weight type with [`kernels`], quantize each
//! activation row to `vec_dot_type` with `quantize_activation`, then call `vec_dot` per weight row.
//!
//! Activation (vec-dot) types: Q4_0, Q4_1, Q5_0, Q8_0 → Q8_0 (Q4_1's min term uses the activation
//! block's integer sum, instead of ggml's Q8_1 whose f16 block sum can overflow); Q4_K, Q5_K,
//! Q6_K → Q8_K; F32, F16, BF16 → F32 (F16 weights take f32 activations, unlike ggml's f16).
//!
//! Buffers are plain bytes. Weight rows cast in place (every block type holding `f16` fields has
//! alignment 2, GGUF data is 32-aligned). Activation buffers may have any alignment: a misaligned
//! Q8_K buffer (alignment 4) is copied into an aligned one, which is correct but slow, so allocate
//! them from the global allocator (`Vec<u8>`, always ≥ 8-aligned in practice) and index them at
//! multiples of the block size.

pub mod blocks;
mod reference;
mod types;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86_gemm;

#[cfg(test)]
mod tests;

pub use types::GgmlType;

use std::fmt;

/// Kernel table for one weight type, chosen once for this CPU.
#[derive(Debug)]
pub struct TypeKernels {
    pub weight_type: GgmlType,
    /// Type the activations must be quantized to before calling `vec_dot` (e.g. Q8_0, Q8_K, F32).
    pub vec_dot_type: GgmlType,
    /// Quantize `src.len()` f32 values (a multiple of vec_dot_type's block size) into `dst` bytes
    /// (vec_dot_type layout; `dst` holds at least `vec_dot_type.bytes_for(src.len())` bytes).
    pub quantize_activation: fn(src: &[f32], dst: &mut [u8]),
    /// Dot product of one weight row (raw bytes, `n` elements) with one activation row (raw bytes of
    /// vec_dot_type). `n` must be a multiple of both block sizes.
    pub vec_dot: fn(n: usize, weight_row: &[u8], activation_row: &[u8]) -> f32,
    /// Dequantize `dst.len()` elements from raw weight bytes.
    pub dequantize: fn(src: &[u8], dst: &mut [f32]),
    /// A tiled kernel computing many (row, token) dots per call, when this CPU has one for the type.
    pub gemm: Option<Gemm>,
}

/// `out[t * rows + r] = vec_dot(n, w_row(r), a_row(t))` for `r < rows`, `t < n_tokens`: `w` holds
/// `rows` consecutive weight rows of `n` elements, `a` holds `n_tokens` consecutive activation rows
/// (vec_dot_type) and `out` at least `rows * n_tokens` values. Unpacked weight blocks are reused
/// across tokens and activation blocks across rows, with one horizontal sum per output.
pub type GemmFn = fn(n: usize, w: &[u8], rows: usize, a: &[u8], n_tokens: usize, out: &mut [f32]);

/// A tiled matrix kernel and the instruction set it was built for (for tests and diagnostics).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub isa: &'static str,
    pub run: GemmFn,
}

/// A type without CPU kernels (quantized formats we do not compute with, integer types, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedType(pub GgmlType);

impl fmt::Display for UnsupportedType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no CPU kernels for tensor type {}", self.0)
    }
}

impl std::error::Error for UnsupportedType {}

/// The SIMD level the kernels were compiled for and detected on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Scalar,
    /// x86_64 with AVX2, FMA and F16C.
    Avx2,
    /// x86_64 with AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI (`vpdpbusd` on 256-bit registers).
    Avx512Vnni,
    /// aarch64 NEON without the dot-product extension.
    Neon,
    /// aarch64 NEON with `sdot` (`dotprod`).
    NeonDotProd,
}

/// The best SIMD level available on this CPU (detected once, then cached).
pub fn simd_level() -> SimdLevel {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(detect_simd_level)
}

fn detect_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
                && std::env::var_os("DEEPEDGE_NO_VNNI").is_none()
            {
                return SimdLevel::Avx512Vnni;
            }
            return SimdLevel::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return SimdLevel::NeonDotProd;
        }
        return SimdLevel::Neon;
    }
    #[allow(unreachable_code)]
    SimdLevel::Scalar
}

/// The kernels for `t` on this CPU (best SIMD path available), or an error for types without kernels.
pub fn kernels(t: GgmlType) -> Result<&'static TypeKernels, UnsupportedType> {
    let simd = match simd_level() {
        SimdLevel::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => avx2::table(t),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512Vnni => x86_gemm::vnni_table(t).or_else(|| avx2::table(t)),
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => neon::table(t, false),
        #[cfg(target_arch = "aarch64")]
        SimdLevel::NeonDotProd => neon::table(t, true),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    match simd {
        Some(k) => Ok(k),
        None => scalar_kernels(t),
    }
}

/// The same, forced to the scalar reference (used by tests and for A/B checks).
pub fn scalar_kernels(t: GgmlType) -> Result<&'static TypeKernels, UnsupportedType> {
    use GgmlType as T;
    Ok(match t {
        T::F32 => &reference::F32,
        T::F16 => &reference::F16,
        T::BF16 => &reference::BF16,
        T::Q4_0 => &reference::Q4_0,
        T::Q4_1 => &reference::Q4_1,
        T::Q5_0 => &reference::Q5_0,
        T::Q8_0 => &reference::Q8_0,
        T::Q4_K => &reference::Q4_K,
        T::Q5_K => &reference::Q5_K,
        T::Q6_K => &reference::Q6_K,
        _ => return Err(UnsupportedType(t)),
    })
}

/// Quantize a row of f32 weights into `t` (reference quantizer), for tests and the `quantize` command.
///
/// `src.len()` must be a multiple of `t.block_size()` and `dst` hold at least
/// `t.bytes_for(src.len())` bytes. Besides the weight types of [`kernels`] this also accepts the
/// activation types Q8_1 and Q8_K.
pub fn quantize_row(t: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), UnsupportedType> {
    use blocks::*;
    use reference::quantize_bytes;
    use GgmlType as T;
    match t {
        T::F32 => quantize_bytes::<f32>(src, dst),
        T::F16 => quantize_bytes::<half::f16>(src, dst),
        T::BF16 => quantize_bytes::<half::bf16>(src, dst),
        T::Q4_0 => quantize_bytes::<BlockQ4_0>(src, dst),
        T::Q4_1 => quantize_bytes::<BlockQ4_1>(src, dst),
        T::Q5_0 => quantize_bytes::<BlockQ5_0>(src, dst),
        T::Q8_0 => quantize_bytes::<BlockQ8_0>(src, dst),
        T::Q8_1 => quantize_bytes::<BlockQ8_1>(src, dst),
        T::Q4_K => quantize_bytes::<BlockQ4K>(src, dst),
        T::Q5_K => quantize_bytes::<BlockQ5K>(src, dst),
        T::Q6_K => quantize_bytes::<BlockQ6K>(src, dst),
        T::Q8_K => quantize_bytes::<BlockQ8K>(src, dst),
        _ => return Err(UnsupportedType(t)),
    }
    Ok(())
}

/// Dequantize `dst.len()` elements of type `t` (any type [`quantize_row`] accepts).
pub fn dequantize_row(t: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), UnsupportedType> {
    use blocks::*;
    use reference::dequantize_bytes;
    use GgmlType as T;
    match t {
        T::Q8_1 => dequantize_bytes::<BlockQ8_1>(src, dst),
        T::Q8_K => dequantize_bytes::<BlockQ8K>(src, dst),
        _ => (kernels(t)?.dequantize)(src, dst),
    }
    Ok(())
}

impl GgmlType {
    /// Whether this type has CPU kernels (`kernels(self)` succeeds), i.e. can be a weight type.
    pub fn has_kernels(self) -> bool {
        scalar_kernels(self).is_ok()
    }
}
