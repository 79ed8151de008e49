//! NEON kernels (stub).
use super::{GgmlType, TypeKernels};
pub fn table(_t: GgmlType, _dot: bool) -> Option<&'static TypeKernels> {
    None
}
