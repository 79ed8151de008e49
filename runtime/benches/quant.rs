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

criterion_group!(benches, bench_vec_dot, bench_gemm);
criterion_main!(benches);

/// `rows × n_tokens` dots of n = 896 (Qwen2.5-0.5B's width): the tiled `gemm` of this CPU against a
/// loop of `vec_dot` calls. 4864 rows (the FFN) do not fit in L2, as in a real decode step.
fn bench_gemm(c: &mut Criterion) {
    const COLS: usize = 896;
    let mut group = c.benchmark_group("gemm_896");
    for t in [GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_0] {
        let k = kernels(t).unwrap();
        let Some(gemm) = k.gemm else { continue };
        for (rows, n_tokens) in [(4864usize, 1usize), (65536, 1), (64, 128)] {
            let mut s = 7u32;
            let x: Vec<f32> = (0..rows * COLS)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            let rb = t.bytes_for(COLS as u64).unwrap() as usize;
            let mut w = vec![0u8; rows * rb];
            for (src, dst) in x.chunks(COLS).zip(w.chunks_mut(rb)) {
                quantize_row(t, src, dst).unwrap();
            }
            let ab = k.vec_dot_type.bytes_for(COLS as u64).unwrap() as usize;
            let mut a = vec![0u8; n_tokens * ab];
            for (src, dst) in x.chunks(COLS).zip(a.chunks_mut(ab)).take(n_tokens) {
                (k.quantize_activation)(src, dst);
            }
            let mut out = vec![0f32; rows * n_tokens];
            group.throughput(Throughput::Elements((rows * n_tokens * COLS) as u64));
            let id = format!("{}/{}x{}", t.name(), rows, n_tokens);
            group.bench_function(BenchmarkId::new("gemm", &id), |b| {
                b.iter(|| (gemm.run)(COLS, black_box(&w), rows, black_box(&a), n_tokens, &mut out))
            });
            group.bench_function(BenchmarkId::new("vec_dot", &id), |b| {
                b.iter(|| {
                    for r in 0..rows {
                        for tk in 0..n_tokens {
                            out[tk * rows + r] = (k.vec_dot)(
                                COLS,
                                black_box(&w[r * rb..(r + 1) * rb]),
                                &a[tk * ab..(tk + 1) * ab],
                            );
                        }
                    }
                })
            });
        }
    }
    group.finish();
}
