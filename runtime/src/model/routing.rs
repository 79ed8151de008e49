//! Mixture-of-experts routing: which experts a token goes to, with which weights, and how evenly a run
//! used them.
//!
//! [`select_experts`] is the reference every backend reproduces, following llama.cpp's `build_moe_ffn`
//! (which published GGUF files are made for): scores are the softmax or the sigmoid of the router
//! logits; a selection bias (DeepSeek-V3's `exp_probs_b`) is added for choosing only; with expert groups,
//! each group is scored by the sum of its two best experts and only the best `n_group_used` groups stay
//! eligible; the top `n_expert_used` eligible experts are chosen (the lower index first on exact ties); their
//! unbiased scores are renormalized to sum to 1 when the model says so, then multiplied by
//! `weights_scale`.

use super::config::{Gating, MoeParams};

/// Smallest sum llama.cpp divides by when renormalizing weights (the smallest normal f16).
const MIN_WEIGHT_SUM: f32 = 6.103_515_6e-5;

/// Chooses the experts of one token from its router logits (`n_expert` floats), writing
/// `(expert, weight)` pairs into `out` (cleared first), best first.
pub fn select_experts(
    logits: &[f32],
    selection_bias: Option<&[f32]>,
    moe: &MoeParams,
    out: &mut Vec<(usize, f32)>,
) {
    let n = logits.len();
    debug_assert_eq!(n, moe.n_expert);
    let scores: Vec<f32> = match moe.gating {
        Gating::Softmax => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|&e| e / sum).collect()
        }
        Gating::Sigmoid => logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect(),
    };
    let mut choice: Vec<f32> = match selection_bias {
        Some(b) => scores.iter().zip(b).map(|(s, b)| s + b).collect(),
        None => scores.clone(),
    };
    if moe.n_group > 1 {
        let per_group = n / moe.n_group;
        let group_score = |g: usize| -> f32 {
            let mut best = [f32::NEG_INFINITY; 2];
            for &s in &choice[g * per_group..(g + 1) * per_group] {
                if s > best[0] {
                    best = [s, best[0]];
                } else if s > best[1] {
                    best[1] = s;
                }
            }
            if per_group == 1 {
                best[0]
            } else {
                best[0] + best[1]
            }
        };
        let group_scores: Vec<f32> = (0..moe.n_group).map(group_score).collect();
        let kept = top_indices(&group_scores, moe.n_group_used);
        for g in 0..moe.n_group {
            if !kept.contains(&g) {
                choice[g * per_group..(g + 1) * per_group].fill(f32::NEG_INFINITY);
            }
        }
    }
    out.clear();
    out.extend(
        top_indices(&choice, moe.n_expert_used)
            .into_iter()
            .map(|e| (e, scores[e])),
    );
    if moe.norm_topk {
        let sum = out.iter().map(|&(_, w)| w).sum::<f32>().max(MIN_WEIGHT_SUM);
        out.iter_mut().for_each(|(_, w)| *w /= sum);
    }
    if moe.weights_scale != 1.0 {
        out.iter_mut().for_each(|(_, w)| *w *= moe.weights_scale);
    }
}

/// Indices of the `k` largest values, largest first; the lower index wins exact ties.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// How often each expert was chosen, per layer, over the tokens a backend has processed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoeStats {
    /// Per layer: `None` for dense layers, else a count per expert.
    pub layers: Vec<Option<Vec<u64>>>,
}

/// Utilization figures of one MoE layer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerUtilization {
    pub layer: usize,
    /// Token-to-expert assignments (tokens × experts per token).
    pub assignments: u64,
    pub counts: Vec<u64>,
    /// Busiest expert's count over the mean count (1 = perfectly even; `n_expert / n_expert_used` at
    /// worst).
    pub max_over_mean: f64,
    /// Entropy of the assignment distribution over ln(n_expert): 1 = perfectly even, 0 = one expert.
    pub normalized_entropy: f64,
}

impl MoeStats {
    /// Empty counters for the MoE layers of a model (`is_moe(il)`).
    pub fn new(n_layer: usize, n_expert: usize, is_moe: impl Fn(usize) -> bool) -> Self {
        Self {
            layers: (0..n_layer)
                .map(|il| is_moe(il).then(|| vec![0; n_expert]))
                .collect(),
        }
    }

    pub fn record(&mut self, layer: usize, expert: usize) {
        if let Some(Some(counts)) = self.layers.get_mut(layer) {
            counts[expert] += 1;
        }
    }

    pub fn clear(&mut self) {
        self.layers.iter_mut().flatten().for_each(|c| c.fill(0));
    }

    /// Figures of every MoE layer.
    pub fn utilization(&self) -> Vec<LayerUtilization> {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(layer, counts)| {
                let counts = counts.as_ref()?;
                let total: u64 = counts.iter().sum();
                let n = counts.len() as f64;
                let mean = total as f64 / n;
                let max = counts.iter().copied().max().unwrap_or(0) as f64;
                let entropy: f64 = counts
                    .iter()
                    .filter(|&&c| c > 0)
                    .map(|&c| {
                        let p = c as f64 / total as f64;
                        -p * p.ln()
                    })
                    .sum();
                Some(LayerUtilization {
                    layer,
                    assignments: total,
                    counts: counts.clone(),
                    max_over_mean: if total == 0 { 0.0 } else { max / mean },
                    normalized_entropy: if n > 1.0 { entropy / n.ln() } else { 1.0 },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(
        gating: Gating,
        used: usize,
        norm: bool,
        scale: f32,
        groups: (usize, usize),
    ) -> MoeParams {
        MoeParams {
            n_expert: 8,
            n_expert_used: used,
            n_ff_exp: 4,
            n_ff_shexp: 0,
            gating,
            norm_topk: norm,
            weights_scale: scale,
            n_group: groups.0,
            n_group_used: groups.1,
            leading_dense: 0,
        }
    }

    #[test]
    fn softmax_top_k_with_and_without_normalization() {
        let logits = [0.0, 3.0, 1.0, 2.0, -1.0, 0.5, 2.5, 0.0];
        let z: f32 = logits.iter().map(|l: &f32| l.exp()).sum();
        let mut out = Vec::new();
        select_experts(
            &logits,
            None,
            &params(Gating::Softmax, 2, false, 1.0, (1, 1)),
            &mut out,
        );
        assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 6]);
        assert!((out[0].1 - 3f32.exp() / z).abs() < 1e-6);
        select_experts(
            &logits,
            None,
            &params(Gating::Softmax, 2, true, 2.0, (1, 1)),
            &mut out,
        );
        let (a, b) = (3f32.exp(), 2.5f32.exp());
        assert!((out[0].1 - 2.0 * a / (a + b)).abs() < 1e-6);
        assert!((out[1].1 - 2.0 * b / (a + b)).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_bias_chooses_but_does_not_weigh() {
        let logits = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut bias = [0.0f32; 8];
        bias[5] = 2.0; // expert 5 wins the selection on its bias alone
        let mut out = Vec::new();
        select_experts(
            &logits,
            Some(&bias),
            &params(Gating::Sigmoid, 2, false, 1.0, (1, 1)),
            &mut out,
        );
        assert_eq!(out[0], (5, 0.5));
        assert_eq!(out[1].0, 1);
        assert!((out[1].1 - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn group_limit_keeps_experts_of_the_best_groups_only() {
        // Groups of two: {0,1} {2,3} {4,5} {6,7}. Expert 0 is the single best, but its group's sum of the
        // top two (5 + -5) loses to groups {2,3} (2 + 2) and {6,7} (1.5 + 1.5).
        let logits = [5.0, -5.0, 2.0, 2.0, 0.0, 0.0, 1.5, 1.5];
        let mut out = Vec::new();
        select_experts(
            &logits,
            None,
            &params(Gating::Sigmoid, 3, false, 1.0, (4, 2)),
            &mut out,
        );
        let mut chosen: Vec<usize> = out.iter().map(|e| e.0).collect();
        chosen.sort();
        assert_eq!(chosen.len(), 3);
        assert!(
            chosen.iter().all(|e| [2, 3, 6, 7].contains(e)),
            "{chosen:?}"
        );
        // Without the limit expert 0 is chosen.
        select_experts(
            &logits,
            None,
            &params(Gating::Sigmoid, 3, false, 1.0, (1, 1)),
            &mut out,
        );
        assert_eq!(out[0].0, 0);
    }

    #[test]
    fn ties_prefer_the_lower_index() {
        let logits = [1.0; 8];
        let mut out = Vec::new();
        select_experts(
            &logits,
            None,
            &params(Gating::Softmax, 3, false, 1.0, (1, 1)),
            &mut out,
        );
        assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn utilization_figures() {
        let mut s = MoeStats::new(2, 4, |il| il == 1);
        for e in [0, 0, 1, 2] {
            s.record(1, e);
        }
        s.record(0, 3); // dense layer: ignored
        let u = s.utilization();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].layer, 1);
        assert_eq!(u[0].assignments, 4);
        assert_eq!(u[0].counts, vec![2, 1, 1, 0]);
        assert!((u[0].max_over_mean - 2.0).abs() < 1e-12);
        let h = -(0.5f64 * 0.5f64.ln() + 2.0 * 0.25 * 0.25f64.ln());
        assert!((u[0].normalized_entropy - h / 4f64.ln()).abs() < 1e-12);
        s.clear();
        assert_eq!(s.utilization()[0].assignments, 0);
    }
}
