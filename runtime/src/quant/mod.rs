//! Block formats and CPU kernels for the ggml tensor types.
//!
//! Each supported block format has a `#[repr(C)]` block struct with a size assert, a scalar reference
//! `dequantize`/`vec_dot`, and SIMD twins (AVX2 on x86_64, NEON on aarch64) tested against it.

mod types;

pub use types::GgmlType;
