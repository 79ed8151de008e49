//! AVX2 kernels (stub).
use super::{GgmlType, TypeKernels};
pub fn table(_t: GgmlType) -> Option<&'static TypeKernels> {
    None
}
