//! Token samplers: greedy, temperature, top-k, top-p, min-p and a repetition penalty, driven by an explicit,
//! seeded RNG so the same seed gives the same tokens.
//!
//! The chain and its order follow llama.cpp's common sampler: penalties → top-k → top-p → min-p →
//! temperature → draw. Temperature 0 (or below) is greedy: the first index of the largest logit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Sampling settings. The defaults are greedy.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p ×` the most likely one; 0 = off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens by this; 1 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerParams {
    /// llama.cpp's common sampling defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no
    /// repetition penalty over the last 64 tokens), which `deepedge run`, `chat` and the bindings use unless
    /// told otherwise. The seed is 0 here; callers set their own.
    pub const LLAMA_CPP_DEFAULTS: SamplerParams = SamplerParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 0,
    };

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a finite number ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1]");
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad("repeat penalty must be a positive number");
        }
        Ok(())
    }
}

/// A sampler with its own RNG state.
pub struct Sampler {
    params: SamplerParams,
    rng: ChaCha8Rng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Result<Self> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Self {
            params,
            rng,
            candidates: Vec::new(),
        })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Picks the next token from `logits` (modified in place by the penalty); `history` is the sequence so
    /// far, for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 && p.repeat_last_n > 0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut seen = std::collections::HashSet::with_capacity(recent.len());
            for &id in recent {
                if seen.insert(id) {
                    if let Some(l) = logits.get_mut(id as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repeat_penalty
                        } else {
                            *l * p.repeat_penalty
                        };
                    }
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }

        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(by_logit_desc);
        if p.top_p < 1.0 || p.min_p > 0.0 {
            let probs = softmax(c.iter().map(|x| x.1), 1.0);
            let mut keep = c.len();
            if p.top_p < 1.0 {
                let mut cum = 0.0;
                for (i, pr) in probs.iter().enumerate() {
                    cum += pr;
                    if cum >= p.top_p {
                        keep = i + 1;
                        break;
                    }
                }
            }
            if p.min_p > 0.0 {
                let floor = probs[0] * p.min_p;
                keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count().max(1));
            }
            c.truncate(keep.max(1));
        }
        let probs = softmax(c.iter().map(|x| x.1), p.temperature);
        let r: f32 = self.rng.random();
        let mut cum = 0.0;
        for (i, pr) in probs.iter().enumerate() {
            cum += pr;
            if r < cum {
                return c[i].0;
            }
        }
        c[c.len() - 1].0
    }
}

/// Index of the largest value (the first one on ties), as ggml's argmax.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let mut out: Vec<f32> = logits.map(|l| ((l - max) / temperature).exp()).collect();
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|p| *p /= sum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(f: impl FnOnce(&mut SamplerParams)) -> Sampler {
        let mut p = SamplerParams::default();
        f(&mut p);
        Sampler::new(p).unwrap()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = sampler(|_| {});
        assert_eq!(s.sample(&mut [0.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn repeat_penalty_changes_greedy_choice() {
        let mut s = sampler(|p| p.repeat_penalty = 2.0);
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[1]), 2);
        // Negative logits are pushed further down.
        let mut logits = [-1.0, -2.0];
        let mut s = sampler(|p| p.repeat_penalty = 3.0);
        assert_eq!(s.sample(&mut logits, &[0]), 1);
        assert_eq!(logits, [-3.0, -2.0]);
    }

    #[test]
    fn same_seed_same_tokens_and_filters_hold() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let run = |seed| {
            let mut s = sampler(|p| {
                p.temperature = 1.0;
                p.seed = seed;
            });
            (0..20)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));

        let mut top_order: Vec<u32> = (0..50).collect();
        top_order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let mut s = sampler(|p| {
            p.temperature = 5.0;
            p.top_k = 3;
        });
        for _ in 0..200 {
            assert!(top_order[..3].contains(&s.sample(&mut logits.clone(), &[])));
        }
        let mut s = sampler(|p| {
            p.temperature = 1.0;
            p.min_p = 1.0;
        });
        assert_eq!(s.sample(&mut logits.clone(), &[]), top_order[0]);
        let mut s = sampler(|p| {
            p.temperature = 1.0;
            p.top_p = 1e-6;
        });
        assert_eq!(s.sample(&mut logits.clone(), &[]), top_order[0]);
    }

    #[test]
    fn invalid_params_are_rejected() {
        for f in [
            |p: &mut SamplerParams| p.temperature = -1.0,
            |p: &mut SamplerParams| p.top_p = 0.0,
            |p: &mut SamplerParams| p.min_p = 2.0,
            |p: &mut SamplerParams| p.repeat_penalty = 0.0,
        ] {
            let mut p = SamplerParams::default();
            f(&mut p);
            assert!(Sampler::new(p).is_err());
        }
    }
}
