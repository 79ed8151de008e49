//! Element-wise and row-wise CPU operations of the forward pass: RMS norm, rotary embeddings, activations,
//! softmax and attention over the KV cache.
//!
//! They follow ggml's CPU definitions (`ggml_compute_forward_rms_norm`, `ggml_rope_cache_init`,
//! `ggml_vec_gelu_f32` without its f16 table, softmax with max subtraction) so that results stay close to
//! llama.cpp's. Matrix products live in [`super::matmul`].

use half::f16;
use rayon::prelude::*;

use crate::kv::KvRows;
use crate::model::{Activation, Rope, RopeStyle};

/// `out = x / sqrt(mean(x²) + eps) * w`, per row of `w.len()` elements, in place.
pub fn rms_norm_rows(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let sum: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / ((sum / row.len() as f64) as f32 + eps).sqrt();
        row.iter_mut()
            .zip(w)
            .for_each(|(v, &g)| *v = *v * scale * g);
    }
}

/// `x += b`, per row of `b.len()` elements.
pub fn add_rows(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(v, &a)| *v += a);
    }
}

/// `a = act(a) * b`.
pub fn gated_activation(a: &mut [f32], b: &[f32], activation: Activation) {
    match activation {
        Activation::Silu => a.iter_mut().zip(b).for_each(|(g, &u)| *g = silu(*g) * u),
        Activation::GeluTanh => a
            .iter_mut()
            .zip(b)
            .for_each(|(g, &u)| *g = gelu_tanh(*g) * u),
    }
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation (Hendrycks & Gimpel), as ggml computes it.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// Cosines and sines of rotary embeddings for a run of positions: `[n_pos][n_dims/2]` each.
pub struct RopeTable {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RopeTable {
    /// Angles as ggml's rope cache computes them: `theta_i = p · scale · base^(-2i/n) / factor_i`, with the
    /// power accumulated by repeated multiplication in f32. With YaRN, dimensions below the correction
    /// range keep their original frequency, those above it are interpolated, a linear ramp blends the two
    /// in between, and cos/sin are scaled by the YaRN magnitude.
    pub fn new(
        rope: &Rope,
        positions: impl Iterator<Item = usize>,
        freq_factors: Option<&[f32]>,
    ) -> Self {
        let half = rope.n_dims / 2;
        let theta_scale = rope.freq_base.powf(-2.0 / rope.n_dims as f32);
        let yarn = rope.yarn.map(|y| (yarn_corr_dims(rope, &y), y.magnitude));
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for p in positions {
            let mut theta = p as f32;
            for i in 0..half {
                let factor = freq_factors.map_or(1.0, |f| f[i]);
                let extrapolated = theta / factor;
                let interpolated = rope.freq_scale * extrapolated;
                let (t, magnitude) = match yarn {
                    Some(((low, high), magnitude)) => {
                        let ramp =
                            1.0 - ((i as f32 - low) / (high - low).max(0.001)).clamp(0.0, 1.0);
                        (interpolated * (1.0 - ramp) + extrapolated * ramp, magnitude)
                    }
                    None => (interpolated, 1.0),
                };
                cos.push(t.cos() * magnitude);
                sin.push(t.sin() * magnitude);
                theta *= theta_scale;
            }
        }
        Self { half, cos, sin }
    }

    /// Rotates every head of every token in `x` (`[n_tokens][n_heads × head_dim]`).
    pub fn apply(&self, x: &mut [f32], head_dim: usize, style: RopeStyle) {
        let n_tokens = self.cos.len() / self.half.max(1);
        let row = x.len() / n_tokens.max(1);
        for (t, token) in x.chunks_exact_mut(row).enumerate() {
            let cos = &self.cos[t * self.half..(t + 1) * self.half];
            let sin = &self.sin[t * self.half..(t + 1) * self.half];
            for head in token.chunks_exact_mut(head_dim) {
                for i in 0..self.half {
                    let (a, b) = match style {
                        RopeStyle::Normal => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + self.half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos[i] - x1 * sin[i];
                    head[b] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }
}

/// YaRN's correction range `(low, high)` in dimension pairs (ggml's `ggml_rope_yarn_corr_dims`): pairs
/// below `low` turn more than `beta_fast` times over the original context and keep their frequency,
/// pairs above `high` turn fewer than `beta_slow` times and are interpolated.
fn yarn_corr_dims(rope: &Rope, y: &crate::model::Yarn) -> (f32, f32) {
    let n = rope.n_dims as f32;
    let dim = |rotations: f32| {
        n * (y.n_ctx_orig as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * rope.freq_base.ln())
    };
    let low = dim(y.beta_fast).floor().max(0.0);
    let high = dim(y.beta_slow).ceil().min(n - 1.0);
    (low, high)
}

/// Shape of an attention call.
pub struct AttentionShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Width of a query/key head.
    pub head_dim: usize,
    /// Width of a value head (of an output head).
    pub v_dim: usize,
    /// Elements per position in the K and V planes.
    pub k_stride: usize,
    pub v_stride: usize,
    pub scale: f32,
    /// Position of the first query token.
    pub pos0: usize,
    /// Sliding window, if the layer has one: a query at `p` sees keys at `p - window + 1 ..= p`.
    pub window: Option<usize>,
}

impl AttentionShape {
    /// Grouped-query attention over K and V planes of `n_head_kv × head_dim`.
    pub fn gqa(n_head: usize, n_head_kv: usize, head_dim: usize, scale: f32, pos0: usize) -> Self {
        Self {
            n_head,
            n_head_kv,
            head_dim,
            v_dim: head_dim,
            k_stride: n_head_kv * head_dim,
            v_stride: n_head_kv * head_dim,
            scale,
            pos0,
            window: None,
        }
    }
}

/// Causal attention of `q` (`[n_tokens][n_head × head_dim]`) over the cached keys and values of positions
/// `0..pos0 + n_tokens`, writing `out` (`[n_tokens][n_head × v_dim]`). Values may live in the K plane
/// (pass it as `v`): latent attention reads them from the first `v_dim` elements of each K row. Parallel
/// over (token, head).
pub fn attention(q: &[f32], k: &KvRows, v: &KvRows, out: &mut [f32], s: &AttentionShape) {
    let hd = s.head_dim;
    let group = s.n_head / s.n_head_kv;
    out.par_chunks_mut(s.v_dim).enumerate().for_each_init(
        || (Vec::<f32>::new(), vec![0f32; s.v_dim]),
        |(scores, acc), (idx, o)| {
            let (t, h) = (idx / s.n_head, idx % s.n_head);
            let p = s.pos0 + t;
            let first = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let kvh = h / group;
            let qh = &q[idx * hd..(idx + 1) * hd];
            scores.clear();
            for j in first..=p {
                scores.push(dot_kv(qh, k, j * s.k_stride + kvh * hd) * s.scale);
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (j, &w) in (first..=p).zip(scores.iter()) {
                axpy_kv(acc, w, v, j * s.v_stride + kvh * s.v_dim);
            }
            let inv = 1.0 / sum;
            o.iter_mut()
                .zip(acc.iter())
                .for_each(|(o, &a)| *o = a * inv);
        },
    );
}

#[inline]
fn dot_kv(q: &[f32], k: &KvRows, at: usize) -> f32 {
    match k {
        KvRows::F32(k) => dot_f32(q, &k[at..at + q.len()]),
        KvRows::F16(k) => dot_f16(q, &k[at..at + q.len()]),
    }
}

#[inline]
fn axpy_kv(acc: &mut [f32], w: f32, v: &KvRows, at: usize) {
    match v {
        KvRows::F32(v) => {
            let n = acc.len();
            acc.iter_mut()
                .zip(&v[at..at + n])
                .for_each(|(a, &x)| *a += w * x)
        }
        KvRows::F16(v) => axpy_f16(acc, w, &v[at..at + acc.len()]),
    }
}

#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorize without reassociation concerns.
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[inline]
fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    let mut acc = [0f32; 8];
    let mut conv = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&y[..], &mut conv);
        for i in 0..8 {
            acc[i] += x[i] * conv[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y.to_f32()).sum::<f32>()
}

#[inline]
fn axpy_f16(acc: &mut [f32], w: f32, v: &[f16]) {
    let mut conv = [0f32; 8];
    let (ca, ra) = acc.as_chunks_mut::<8>();
    let (cv, rv) = v.as_chunks::<8>();
    for (a, y) in ca.iter_mut().zip(cv) {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&y[..], &mut conv);
        for i in 0..8 {
            a[i] += w * conv[i];
        }
    }
    ra.iter_mut()
        .zip(rv)
        .for_each(|(a, y)| *a += w * y.to_f32());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_definition() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rms_norm_rows(&mut x, &[1.0, 1.0, 2.0, 0.5], 0.0);
        let rms = (30.0f32 / 4.0).sqrt();
        let expect = [1.0 / rms, 2.0 / rms, 6.0 / rms, 2.0 / rms];
        for (a, b) in x.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position_angle() {
        let rope = Rope {
            style: RopeStyle::Neox,
            n_dims: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            yarn: None,
        };
        let table = RopeTable::new(&rope, [3usize].into_iter(), None);
        // NeoX pairs (0,2) with angle 3 and (1,3) with angle 3·10000^(-1/2) = 0.03.
        let mut x = vec![1.0, 1.0, 0.0, 0.0];
        table.apply(&mut x, 4, RopeStyle::Neox);
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[2] - 3f32.sin()).abs() < 1e-6);
        assert!((x[1] - 0.03f32.cos()).abs() < 1e-6 && (x[3] - 0.03f32.sin()).abs() < 1e-6);
        let mut y = vec![1.0, 0.0, 1.0, 0.0];
        table.apply(&mut y, 4, RopeStyle::Normal);
        assert!((y[0] - 3f32.cos()).abs() < 1e-6 && (y[1] - 3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn attention_with_one_key_returns_its_value_and_window_masks() {
        let shape = |pos0, window| AttentionShape {
            window,
            ..AttentionShape::gqa(2, 1, 2, 1.0, pos0)
        };
        let k = KvRows::F32(vec![1.0, 0.0, 0.0, 1.0, 5.0, 5.0]);
        let v = KvRows::F32(vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        let q = vec![1.0, 0.0, 0.0, 1.0];
        let mut out = vec![0.0; 4];
        attention(&q, &k, &v, &mut out, &shape(0, None));
        assert_eq!(out, vec![10.0, 20.0, 10.0, 20.0]);
        // Window of one at position 2: only key 2 is visible.
        attention(&q, &k, &v, &mut out, &shape(2, Some(1)));
        assert_eq!(out, vec![50.0, 60.0, 50.0, 60.0]);
        // Positions 0 and 1 with q=(1,0): softmax over scores (1, 0).
        attention(&q[..2].repeat(2), &k, &v, &mut out, &shape(1, None));
        let w0 = 1f32.exp() / (1f32.exp() + 1.0);
        assert!((out[0] - (10.0 * w0 + 30.0 * (1.0 - w0))).abs() < 1e-4);
    }
}
