//! Fuzz target: the GGUF reader over arbitrary bytes.
//!
//! `GgufFile::from_bytes` must return `Ok` or `Err` for any input, never panic, read out of bounds or
//! allocate without bound. When it accepts a file, everything a model loader would read is touched:
//! every metadata value (recursively through nested arrays), the typed accessors, and every tensor's
//! shape accessors and data bytes, so a tensor table that passed validation but lies is caught here.

#![no_main]

use deepedge::gguf::{Array, GgufFile, Value};
use libfuzzer_sys::fuzz_target;

/// Folds values into a checksum without overflow checks (fuzz builds have debug assertions on).
fn mix(acc: u64, x: u64) -> u64 {
    acc.rotate_left(5).wrapping_add(x)
}

fn touch_array(a: &Array) -> u64 {
    let mut sum = mix(a.len() as u64, a.element_type() as u64);
    match a {
        Array::Array(inner) => sum = inner.iter().map(touch_array).fold(sum, mix),
        Array::String(v) => sum = v.iter().map(|s| s.len() as u64).fold(sum, mix),
        _ => {}
    }
    a.to_i64_vec()
        .map_or(sum, |v| v.iter().map(|&x| x as u64).fold(sum, mix))
}

fn touch(f: &GgufFile) -> u64 {
    let mut sum = 0u64;
    for (key, value) in f.metadata() {
        sum = mix(sum, key.len() as u64);
        sum = mix(sum, value.to_string().len() as u64);
        sum = mix(sum, value.as_u64().unwrap_or(0));
        sum = mix(sum, value.as_i64().unwrap_or(0) as u64);
        sum = mix(sum, value.as_f64().map_or(0, f64::to_bits));
        sum = mix(sum, u64::from(value.as_bool().unwrap_or(false)));
        sum = mix(sum, value.as_str().map_or(0, |s| s.len() as u64));
        if let Value::Array(a) = value {
            sum = mix(sum, touch_array(a));
        }
        assert!(f.get(key).is_some());
        let _ = (
            f.opt_u64(key),
            f.opt_f64(key),
            f.opt_str(key),
            f.opt_bool(key),
            f.opt_array(key),
        );
    }
    let _ = f.architecture().map(|a| a.len());
    sum = mix(
        sum,
        u64::from(f.version()) ^ f.alignment() as u64 ^ f.data_offset() as u64,
    );
    for t in f.tensors() {
        sum = mix(sum, t.n_elements() ^ t.row_len() as u64 ^ t.n_rows() as u64);
        sum = mix(sum, t.shape_string().len() as u64);
        let range = f.tensor_range(t);
        let data = f.tensor_data(t);
        assert_eq!(data.len(), range.len());
        assert_eq!(data.len() as u64, t.size);
        assert!(range.end <= f.file_size());
        assert_eq!(range.start % f.alignment(), 0);
        sum = data.iter().map(|&b| u64::from(b)).fold(sum, mix);
        assert!(std::ptr::eq(f.require_tensor(&t.name).unwrap(), t));
    }
    sum
}

fuzz_target!(|data: &[u8]| {
    match GgufFile::from_bytes(data) {
        Ok(f) => {
            std::hint::black_box(touch(&f));
        }
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
});
