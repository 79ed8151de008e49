//! Cross-format tests of the quant kernels through the public API: quantize/dequantize round trips,
//! scalar `vec_dot` against an f64 dot of the dequantized rows, SIMD against scalar (proptest), and
//! hand-built blocks whose bytes and expected values are derived from the format definitions alone.

use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WEIGHT_TYPES: [GgmlType; 10] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Roughly normal values (sum of uniforms) times `scale`, with an occasional outlier.
fn random_row(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let g: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 1.7;
            let outlier = if rng.random::<f32>() < 0.01 { 8.0 } else { 1.0 };
            g * scale * outlier
        })
        .collect()
}

fn quantized(t: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; t.bytes_for(x.len() as u64).unwrap() as usize];
    quantize_row(t, x, &mut out).unwrap();
    out
}

fn dequantized(t: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_row(t, bytes, &mut out).unwrap();
    out
}

/// `(Σ w·a, Σ |w·a|)` in f64.
fn dot_f64(w: &[f32], a: &[f32]) -> (f64, f64) {
    w.iter().zip(a).fold((0.0, 0.0), |(s, m), (&x, &y)| {
        let p = x as f64 * y as f64;
        (s + p, m + p.abs())
    })
}

fn block_elems(t: GgmlType) -> usize {
    let k = scalar_kernels(t).unwrap();
    t.block_size().max(k.vec_dot_type.block_size())
}

#[test]
fn supported_types_and_errors() {
    for t in GgmlType::ALL {
        assert_eq!(t.has_kernels(), WEIGHT_TYPES.contains(&t), "{t}");
        assert_eq!(kernels(t).is_ok(), t.has_kernels());
    }
    let err = kernels(GgmlType::IQ2_XXS).unwrap_err();
    assert_eq!(err, UnsupportedType(GgmlType::IQ2_XXS));
    assert!(err.to_string().contains("iq2_xxs"));
    assert!(quantize_row(GgmlType::Q2_K, &[0.0; 256], &mut [0u8; 84]).is_err());
    for t in WEIGHT_TYPES {
        let k = kernels(t).unwrap();
        assert_eq!(k.weight_type, t);
        assert_eq!(k.vec_dot_type, scalar_kernels(t).unwrap().vec_dot_type);
    }
}

#[test]
fn quantize_dequantize_round_trip_error_is_bounded() {
    // Relative RMS error bounds (error RMS / data RMS) for near-normal data.
    let bounds = [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 3e-4),
        (GgmlType::BF16, 2e-3),
        (GgmlType::Q8_0, 0.01),
        (GgmlType::Q8_1, 0.01),
        (GgmlType::Q8_K, 0.025),
        (GgmlType::Q6_K, 0.03),
        (GgmlType::Q5_0, 0.075),
        (GgmlType::Q5_K, 0.05),
        (GgmlType::Q4_0, 0.16),
        (GgmlType::Q4_1, 0.11),
        (GgmlType::Q4_K, 0.11),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (t, bound) in bounds {
        let x = random_row(&mut rng, 4096, 0.37);
        let y = dequantized(t, &quantized(t, &x), x.len());
        let err: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let rms: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        let rel = (err / rms).sqrt();
        assert!(rel <= bound, "{t}: relative RMS error {rel} > {bound}");
        // All-zero input must stay zero (no NaN from a zero scale).
        let z = dequantized(t, &quantized(t, &vec![0.0; 256]), 256);
        assert!(z.iter().all(|&v| v == 0.0), "{t}: zeros");
    }
}

#[test]
fn scalar_vec_dot_matches_f64_dot_of_dequantized_rows() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for t in WEIGHT_TYPES {
        let k = scalar_kernels(t).unwrap();
        for nb in [1, 3, 16] {
            let n = nb * block_elems(t);
            let w = quantized(t, &random_row(&mut rng, n, 0.05));
            let a = quantized(k.vec_dot_type, &random_row(&mut rng, n, 3.0));
            let (exact, mag) = dot_f64(&dequantized(t, &w, n), &dequantized(k.vec_dot_type, &a, n));
            let got = (k.vec_dot)(n, &w, &a) as f64;
            let tol = 2e-6 * mag + 1e-30;
            assert!(
                (got - exact).abs() <= tol,
                "{t} n={n}: {got} vs {exact} (tol {tol})"
            );
        }
    }
}

#[test]
fn simd_activation_quantizers_match_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for t in WEIGHT_TYPES {
        let (fast, slow) = (kernels(t).unwrap(), scalar_kernels(t).unwrap());
        let vt = fast.vec_dot_type;
        let x = random_row(&mut rng, 1024, 1.3);
        let mut a = vec![0u8; vt.bytes_for(1024).unwrap() as usize];
        let mut b = a.clone();
        (fast.quantize_activation)(&x, &mut a);
        (slow.quantize_activation)(&x, &mut b);
        let (da, db) = (dequantized(vt, &a, 1024), dequantized(vt, &b, 1024));
        for (i, (p, q)) in da.iter().zip(&db).enumerate() {
            // At most one quantization step apart (ties may round differently).
            assert!(
                (p - q).abs() <= 0.011 * 1.3 * 8.0,
                "{t}/{vt} elem {i}: {p} vs {q}"
            );
        }
        if vt == GgmlType::Q8_K {
            for blk in blocks::cast_blocks::<blocks::BlockQ8K>(&a).iter() {
                for (s, q) in blk.bsums.iter().zip(blk.qs.chunks_exact(16)) {
                    assert_eq!(*s as i32, q.iter().map(|&v| v as i32).sum::<i32>());
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn simd_vec_dot_matches_scalar(
        ti in 0..WEIGHT_TYPES.len(),
        nb in 1usize..=12,
        wexp in -12i32..=12,
        aexp in -12i32..=12,
        seed in any::<u64>(),
    ) {
        let t = WEIGHT_TYPES[ti];
        let (fast, slow) = (kernels(t).unwrap(), scalar_kernels(t).unwrap());
        let n = nb * block_elems(t);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = quantized(t, &random_row(&mut rng, n, 2f32.powi(wexp)));
        let a = quantized(slow.vec_dot_type, &random_row(&mut rng, n, 2f32.powi(aexp)));
        let (_, mag) = dot_f64(&dequantized(t, &w, n), &dequantized(slow.vec_dot_type, &a, n));
        let s = (slow.vec_dot)(n, &w, &a) as f64;
        let f = (fast.vec_dot)(n, &w, &a) as f64;
        // Scales near the f16 limit (Q4_1 with wexp = 12) can overflow to inf, where summation
        // order decides between inf and NaN; nothing to compare there.
        prop_assume!(s.is_finite());
        // Integer paths differ only in float summation order; float types accumulate in f32.
        let rel = match t { GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1e-5, _ => 2e-6 };
        prop_assert!((s - f).abs() <= rel * mag + 1e-35, "{} n={}: simd {} scalar {}", t, n, f, s);
        // Dequantize must agree bit for bit.
        prop_assert_eq!(
            dequantized(t, &w, n),
            { let mut o = vec![0f32; n]; (slow.dequantize)(&w, &mut o); o }
        );
    }
}

#[test]
fn misaligned_activation_buffers_work() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for t in WEIGHT_TYPES {
        let k = kernels(t).unwrap();
        let n = 2 * block_elems(t);
        let w = quantized(t, &random_row(&mut rng, n, 1.0));
        let x = random_row(&mut rng, n, 1.0);
        let len = k.vec_dot_type.bytes_for(n as u64).unwrap() as usize;
        let mut aligned = vec![0u8; len];
        (k.quantize_activation)(&x, &mut aligned);
        let mut shifted = vec![0u8; len + 1];
        (k.quantize_activation)(&x, &mut shifted[1..]);
        assert_eq!(&shifted[1..], &aligned[..], "{t}");
        assert_eq!(
            (k.vec_dot)(n, &w, &shifted[1..]),
            (k.vec_dot)(n, &w, &aligned),
            "{t}"
        );
    }
}

/// A Q4_0 block written out by hand: `d = 0.5` (f16 0x3800, little-endian `00 38`), and
/// `qs[j] = j | (15 - j) << 4`, so element `j < 16` is `(j - 8) * 0.5` and element `16 + j` is
/// `(15 - j - 8) * 0.5 = (7 - j) * 0.5`.
#[test]
fn hand_built_q4_0_block() {
    let mut w = vec![0x00, 0x38];
    w.extend_from_slice(&[
        0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5, 0x96, 0x87, 0x78, 0x69, 0x5A, 0x4B, 0x3C, 0x2D, 0x1E,
        0x0F,
    ]);
    let expected: Vec<f32> = [
        -4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0,
        3.5, //
        3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0,
    ]
    .to_vec();
    for k in [
        kernels(GgmlType::Q4_0).unwrap(),
        scalar_kernels(GgmlType::Q4_0).unwrap(),
    ] {
        let mut out = vec![0f32; 32];
        (k.dequantize)(&w, &mut out);
        assert_eq!(out, expected);
        // Q8_0 activation: d = 1.0 (0x3C00), q = 1 for the first 16 elements and 0 after, so the
        // dot is 0.5 * Σ_{j<16} (j - 8) = 0.5 * (120 - 128) = -4.0.
        let mut a = vec![0x00, 0x3C];
        a.extend((0..32).map(|j| u8::from(j < 16)));
        assert_eq!((k.vec_dot)(32, &w, &a), -4.0);
    }
}

/// A Q4_K block written out by hand. `d = 1.0` (`00 3C`), `dmin = 0.5` (`00 38`).
/// Sub-block scales `[1, 2, 3, 4, 40, 6, 7, 8]`, mins `[0, 2, 4, 6, 8, 10, 12, 63]`, packed per the
/// format: bytes 0-3 = scale j | (scale j+4 >> 4) << 6 → `81 02 03 04` (40 = 0b10_1000);
/// bytes 4-7 = min j | (min j+4 >> 4) << 6 → `00 02 04 C6` (63 = 0b11_1111);
/// bytes 8-11 = (scale j+4 & 15) | (min j+4 & 15) << 4 → `88 A6 C7 F8`.
/// All 128 `qs` bytes are `0x31`: q = 1 in even sub-blocks (low nibble), 3 in odd ones (high).
/// Element value = d·scale·q − dmin·min: sub-blocks give 1·1 − 0 = 1, 2·3 − 1 = 5, 3·1 − 2 = 1,
/// 4·3 − 3 = 9, 40·1 − 4 = 36, 6·3 − 5 = 13, 7·1 − 6 = 1, 8·3 − 31.5 = −7.5.
#[test]
fn hand_built_q4_k_block() {
    let mut w = vec![0x00, 0x3C, 0x00, 0x38];
    w.extend_from_slice(&[
        0x81, 0x02, 0x03, 0x04, 0x00, 0x02, 0x04, 0xC6, 0x88, 0xA6, 0xC7, 0xF8,
    ]);
    w.extend_from_slice(&[0x31; 128]);
    let per_sub = [1.0, 5.0, 1.0, 9.0, 36.0, 13.0, 1.0, -7.5f32];
    let expected: Vec<f32> = per_sub.iter().flat_map(|&v| [v; 32]).collect();
    // Q8_K activation: d = 0.25 (f32 0x3E800000), every q = 4 (value 1.0), bsums = 16·4 = 64.
    let mut a = vec![0x00, 0x00, 0x80, 0x3E];
    a.extend_from_slice(&[4u8; 256]);
    for _ in 0..16 {
        a.extend_from_slice(&[64, 0]);
    }
    // Dot = Σ_sub 32 · value = 32 · 58.5 = 1872.
    for k in [
        kernels(GgmlType::Q4_K).unwrap(),
        scalar_kernels(GgmlType::Q4_K).unwrap(),
    ] {
        let mut out = vec![0f32; 256];
        (k.dequantize)(&w, &mut out);
        assert_eq!(out, expected);
        assert_eq!((k.vec_dot)(256, &w, &a), 1872.0);
    }
}

#[test]
fn simd_tables_are_used_where_available() {
    let simd = simd_level() != SimdLevel::Scalar;
    for t in WEIGHT_TYPES {
        let same = std::ptr::eq(kernels(t).unwrap(), scalar_kernels(t).unwrap());
        assert_eq!(same, !simd, "{t} on {:?}", simd_level());
    }
}

/// Every tiled `gemm` this CPU can run: the table's own, plus the AVX2 one on VNNI CPUs.
fn gemm_kernels(t: GgmlType) -> Vec<Gemm> {
    #[allow(unused_mut)]
    let mut v: Vec<Gemm> = kernels(t).unwrap().gemm.into_iter().collect();
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx512Vnni {
        v.extend(super::avx2::table(t).and_then(|k| k.gemm));
    }
    v
}

#[test]
fn vnni_gemm_is_used_where_available() {
    #[cfg(target_arch = "x86_64")]
    {
        let vnni = is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && simd_level() != SimdLevel::Scalar
            && std::env::var_os("DEEPEDGE_NO_VNNI").is_none();
        assert_eq!(simd_level() == SimdLevel::Avx512Vnni, vnni);
        for t in [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0] {
            let isa = kernels(t).unwrap().gemm.map(|g| g.isa);
            let want = match simd_level() {
                SimdLevel::Avx512Vnni => Some("avx512vnni"),
                SimdLevel::Avx2 => Some("avx2"),
                _ => None,
            };
            assert_eq!(isa, want, "{t}");
            if vnni {
                let isas: Vec<_> = gemm_kernels(t).iter().map(|g| g.isa).collect();
                assert_eq!(isas, ["avx512vnni", "avx2"], "{t}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Tiled kernels against the scalar `vec_dot` per (row, token), edge tiles included.
    #[test]
    fn gemm_matches_scalar_vec_dot(
        ti in 0..WEIGHT_TYPES.len(),
        nb in 1usize..=5,
        rows in 1usize..=11,
        n_tokens in 1usize..=10,
        wexp in -8i32..=8,
        aexp in -8i32..=8,
        seed in any::<u64>(),
    ) {
        let t = WEIGHT_TYPES[ti];
        let slow = scalar_kernels(t).unwrap();
        let gemms = gemm_kernels(t);
        if !gemms.is_empty() {
            let vt = slow.vec_dot_type;
            let n = nb * block_elems(t);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let w: Vec<u8> = (0..rows)
                .flat_map(|_| quantized(t, &random_row(&mut rng, n, 2f32.powi(wexp))))
                .collect();
            let a: Vec<u8> = (0..n_tokens)
                .flat_map(|_| quantized(vt, &random_row(&mut rng, n, 2f32.powi(aexp))))
                .collect();
            let (wb, ab) = (w.len() / rows, a.len() / n_tokens);
            for g in gemms {
                let mut out = vec![f32::NAN; rows * n_tokens];
                (g.run)(n, &w, rows, &a, n_tokens, &mut out);
                for r in 0..rows {
                    for tk in 0..n_tokens {
                        let (wr, ar) = (&w[r * wb..(r + 1) * wb], &a[tk * ab..(tk + 1) * ab]);
                        let (_, mag) = dot_f64(&dequantized(t, wr, n), &dequantized(vt, ar, n));
                        let s = (slow.vec_dot)(n, wr, ar) as f64;
                        let f = out[tk * rows + r] as f64;
                        prop_assert!(
                            (s - f).abs() <= 2e-6 * mag + 1e-35,
                            "{} {} n={} r={} t={}: gemm {} scalar {}", t, g.isa, n, r, tk, f, s
                        );
                    }
                }
            }
        }
    }
}
