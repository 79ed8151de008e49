//! Criterion benchmark of the quant `vec_dot` kernels: one weight row of n = 4096 against one
//! quantized activation row, scalar reference vs the best SIMD path of this CPU.
//!
//! This measures the kernel alone on cache-resident data; it is not a matmul or decode benchmark.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use deepedge::quant::{kernels, quantize_row, scalar_kernels, GgmlType};
use std::hint::black_box;

const N: usize = 4096;

fn row(seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..N)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench_vec_dot(c: &mut Criterion) {
    let mut group = c.benchmark_group("vec_dot_4096");
    group.throughput(Throughput::Elements(N as u64));
    for t in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_K,
        GgmlType::F16,
    ] {
        let mut w = vec![0u8; t.bytes_for(N as u64).unwrap() as usize];
        quantize_row(t, &row(1), &mut w).unwrap();
        for (name, k) in [
            ("scalar", scalar_kernels(t).unwrap()),
            ("simd", kernels(t).unwrap()),
        ] {
            let mut a = vec![0u8; k.vec_dot_type.bytes_for(N as u64).unwrap() as usize];
            (k.quantize_activation)(&row(2), &mut a);
            group.bench_with_input(
                BenchmarkId::new(t.name(), name),
                &(w.clone(), a),
                |b, (w, a)| b.iter(|| (k.vec_dot)(N, black_box(w), black_box(a))),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_vec_dot);
criterion_main!(benches);
