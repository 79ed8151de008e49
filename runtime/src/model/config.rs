//! Model hyper-parameters read from GGUF metadata under the architecture's prefix (`qwen2.block_count`, ...).
//!
//! Key names and defaults follow llama.cpp's `llama-model.cpp` so published GGUF files load unchanged. What
//! differs between architectures (rope style, sliding-window pattern, embedding scale, norms) is decided here,
//! once, and the forward pass reads it from [`Hparams`].

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// The transformer architectures this runtime runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama and its relatives; with `llama.expert_count` set, Mixtral.
    Llama,
    Qwen2,
    Gemma3,
    /// Qwen1.5-MoE / Qwen2-MoE: routed experts plus a sigmoid-gated shared expert.
    Qwen2Moe,
    /// Qwen3-MoE: per-head q/k norms, normalized top-k routing.
    Qwen3Moe,
    /// DeepSeek-V2/V3 (and R1 and the distills that keep this architecture): MLA + DeepSeekMoE.
    Deepseek2,
}

impl Arch {
    pub const SUPPORTED: &'static str =
        "llama (incl. Mixtral), qwen2, gemma3, qwen2moe, qwen3moe, deepseek2";

    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            "qwen2moe" => Arch::Qwen2Moe,
            "qwen3moe" => Arch::Qwen3Moe,
            "deepseek2" => Arch::Deepseek2,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Deepseek2 => "deepseek2",
        }
    }

    /// Whether every file of this architecture has experts (Llama has them only as Mixtral).
    fn requires_experts(self) -> bool {
        matches!(self, Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Deepseek2)
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` — the original llama layout.
    Normal,
    /// Halves `(x[i], x[i + n/2])` — GPT-NeoX layout, used by Qwen2 and Gemma.
    Neox,
}

/// Rotary embedding parameters of one layer kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub style: RopeStyle,
    /// Number of dimensions of a head that are rotated.
    pub n_dims: usize,
    pub freq_base: f32,
    /// Position multiplier (1/factor of linear or YaRN scaling).
    pub freq_scale: f32,
    /// YaRN: interpolate the low frequencies only, and scale the rotation's magnitude.
    pub yarn: Option<Yarn>,
}

/// YaRN rope scaling (`rope.scaling.type = yarn`), as ggml's `rope_yarn` computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// Training context before the extension (`rope.scaling.original_context_length`).
    pub n_ctx_orig: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// Multiplier of cos/sin (the "attention factor" folded into the rotation).
    pub magnitude: f32,
}

/// How a router turns logits into expert scores (`expert_gating_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    Softmax,
    /// Sigmoid (DeepSeek-V3), usually with a selection bias (`exp_probs_b`).
    Sigmoid,
}

/// Mixture-of-experts hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeParams {
    pub n_expert: usize,
    /// Experts each token is routed to.
    pub n_expert_used: usize,
    /// Hidden width of one routed expert.
    pub n_ff_exp: usize,
    /// Hidden width of the shared expert(s) (0 = none).
    pub n_ff_shexp: usize,
    pub gating: Gating,
    /// Renormalize the selected experts' weights to sum to 1.
    pub norm_topk: bool,
    /// Multiplier of the selected experts' weights (`expert_weights_scale`, DeepSeek's routed scaling).
    pub weights_scale: f32,
    /// Expert groups and how many of them a token may use (group-limited routing; 1 and 1 = none).
    pub n_group: usize,
    pub n_group_used: usize,
    /// The first `leading_dense` layers have a dense FFN instead of experts.
    pub leading_dense: usize,
}

/// Multi-head latent attention (DeepSeek-V2/V3) sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlaParams {
    /// Rank of the query's low-rank projection (0 = a full `attn_q`).
    pub q_lora_rank: usize,
    /// Width of the compressed key/value latent that the cache holds.
    pub kv_lora_rank: usize,
    /// Per-head query/key dimensions without and with rope.
    pub qk_nope: usize,
    pub qk_rope: usize,
    /// Per-head value width.
    pub v_head_dim: usize,
}

/// Hyper-parameters of a dense transformer.
#[derive(Clone, Debug)]
pub struct Hparams {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub ctx_train: usize,
    pub rms_eps: f32,
    /// Rope of full-attention layers.
    pub rope: Rope,
    /// Rope of sliding-window layers (differs for Gemma 3).
    pub rope_swa: Rope,
    /// Window of sliding-window layers, in tokens.
    pub sliding_window: Option<usize>,
    /// Every `swa_period`-th layer (the last of each period) uses full attention; the others use the window.
    pub swa_period: Option<usize>,
    /// Multiplier applied to the token embeddings (Gemma: sqrt(n_embd)).
    pub embed_scale: Option<f32>,
    /// Scale applied to q·k.
    pub attn_scale: f32,
    /// Experts, for mixture-of-experts models.
    pub moe: Option<MoeParams>,
    /// Latent attention sizes, for DeepSeek-V2/V3.
    pub mla: Option<MlaParams>,
}

impl Hparams {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch = Arch::from_name(f.architecture()?)?;
        let p = arch.name();
        let key = |k: &str| format!("{p}.{k}");
        let req = |k: &str| -> Result<usize> { to_usize(f.require_u64(&key(k))?, &key(k)) };
        let opt = |k: &str| -> Result<Option<usize>> {
            f.opt_u64(&key(k))?
                .map(|v| to_usize(v, &key(k)))
                .transpose()
        };
        let bad = |msg: String| Error::Model(msg);

        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = opt("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = opt("feed_forward_length")?.unwrap_or(0);
        let ctx_train = req("context_length")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(bad(format!(
                "{}: {n_head} query heads cannot be grouped over {n_head_kv} key/value heads",
                key("attention.head_count_kv")
            )));
        }
        if n_layer == 0 || n_embd == 0 {
            return Err(bad(format!(
                "{p}: block_count and embedding_length must be non-zero"
            )));
        }
        let moe = read_moe(f, arch, n_layer, n_ff)?;
        // Dense layers need a feed-forward width: all of them without experts, the leading ones with.
        let dense_layers = moe.as_ref().map_or(n_layer, |m| m.leading_dense);
        if dense_layers > 0 && n_ff == 0 {
            return Err(bad(format!(
                "{}: must be non-zero for the model's {dense_layers} dense layers",
                key("feed_forward_length")
            )));
        }
        let mla = if arch == Arch::Deepseek2 {
            Some(read_mla(f, p)?)
        } else {
            None
        };
        let head_dim = match &mla {
            Some(m) => m.qk_nope + m.qk_rope,
            None => opt("attention.key_length")?.unwrap_or(n_embd / n_head),
        };
        if mla.is_none() {
            let v_dim = opt("attention.value_length")?.unwrap_or(head_dim);
            if head_dim == 0 || v_dim != head_dim {
                return Err(bad(format!(
                    "{p}: key length {head_dim} and value length {v_dim} must be equal and non-zero"
                )));
            }
        }
        let rms_eps = f
            .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| {
                Error::Gguf(crate::gguf::GgufError::MissingKey(key(
                    "attention.layer_norm_rms_epsilon",
                )))
            })? as f32;
        let n_rot = opt("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 || mla.is_some_and(|m| m.qk_rope != n_rot) {
            return Err(bad(format!(
                "{}: {n_rot} must be even and at most the head size {head_dim}",
                key("rope.dimension_count")
            )));
        }
        let freq_base = f.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32;
        let scaling_factor = || -> Result<f32> {
            let factor = f.opt_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0) as f32;
            if factor <= 0.0 || !factor.is_finite() {
                return Err(bad(format!(
                    "{}: must be positive",
                    key("rope.scaling.factor")
                )));
            }
            Ok(factor)
        };
        // Extra attention-logit scale of DeepSeek's YaRN (its `mscale_all_dim`, stored as 0.1·m).
        let mut yarn_attn_mscale = 1.0f32;
        let (freq_scale, yarn) = match f.opt_str(&key("rope.scaling.type"))? {
            None | Some("none") => (1.0, None),
            Some("linear") => (1.0 / scaling_factor()?, None),
            Some("yarn") => {
                let factor = scaling_factor()?;
                let n_ctx_orig = opt("rope.scaling.original_context_length")?.unwrap_or(ctx_train);
                let attn_factor =
                    f.opt_f64(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0) as f32;
                // ggml scales cos/sin by 1 + 0.1·ln(factor) (times attn_factor); DeepSeek's converter
                // expects that cancelled (its mscale and mscale_all_dim are equal) and applies
                // 1 + log_mul·ln(factor), squared, to the attention logits instead.
                let magnitude = if arch == Arch::Deepseek2 {
                    let log_mul = f
                        .opt_f64(&key("rope.scaling.yarn_log_multiplier"))?
                        .unwrap_or(0.0) as f32;
                    yarn_attn_mscale = 1.0 + log_mul * factor.ln();
                    attn_factor
                } else {
                    attn_factor * (1.0 + 0.1 * factor.ln())
                };
                let beta = |k: &str, default: f32| -> Result<f32> {
                    Ok(f.opt_f64(&key(k))?.map_or(default, |v| v as f32))
                };
                let yarn = Yarn {
                    n_ctx_orig,
                    beta_fast: beta("rope.scaling.yarn_beta_fast", 32.0)?,
                    beta_slow: beta("rope.scaling.yarn_beta_slow", 1.0)?,
                    magnitude,
                };
                (1.0 / factor, Some(yarn))
            }
            Some(other) => {
                return Err(bad(format!(
                    "{}: rope scaling {other:?} is not supported for {p} (supported: none, linear, yarn)",
                    key("rope.scaling.type")
                )))
            }
        };
        let n_vocab = match f.opt_array("tokenizer.ggml.tokens")? {
            Some(tokens) => tokens.len(),
            None => req("vocab_size")?,
        };
        let style = match arch {
            Arch::Llama | Arch::Deepseek2 => RopeStyle::Normal,
            Arch::Qwen2 | Arch::Gemma3 | Arch::Qwen2Moe | Arch::Qwen3Moe => RopeStyle::Neox,
        };
        let rope = Rope {
            style,
            n_dims: n_rot,
            freq_base,
            freq_scale,
            yarn,
        };
        let (sliding_window, swa_period, rope_swa, embed_scale) = match arch {
            // llama.cpp: Gemma 3 uses a window on five of every six layers, with rope base 10000 and no scaling
            // on those layers.
            Arch::Gemma3 => (
                Some(opt("attention.sliding_window")?.unwrap_or(4096)),
                Some(6),
                Rope {
                    freq_base: 10_000.0,
                    freq_scale: 1.0,
                    yarn: None,
                    ..rope
                },
                Some((n_embd as f32).sqrt()),
            ),
            _ => (None, None, rope, None),
        };
        Ok(Self {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            ctx_train,
            rms_eps,
            rope,
            rope_swa,
            sliding_window,
            swa_period,
            embed_scale,
            attn_scale: yarn_attn_mscale * yarn_attn_mscale / (head_dim as f32).sqrt(),
            moe,
            mla,
        })
    }

    /// Whether layer `il` attends through the sliding window.
    pub fn is_swa_layer(&self, il: usize) -> bool {
        match (self.sliding_window, self.swa_period) {
            (Some(_), Some(period)) => il % period < period - 1,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The window of layer `il`, if it has one.
    pub fn window(&self, il: usize) -> Option<usize> {
        self.sliding_window.filter(|_| self.is_swa_layer(il))
    }

    pub fn rope_for_layer(&self, il: usize) -> &Rope {
        if self.is_swa_layer(il) {
            &self.rope_swa
        } else {
            &self.rope
        }
    }

    /// Width of the K (and V) projection: key/value heads × head size.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Widths of one position's K and V rows in the cache of one layer. Latent attention caches the
    /// compressed latent plus the rope key in the K row and reads values from that same row.
    pub fn kv_row_lens(&self) -> (usize, usize) {
        match &self.mla {
            Some(m) => (m.kv_lora_rank + m.qk_rope, 0),
            None => (self.kv_dim(), self.kv_dim()),
        }
    }

    /// Whether layer `il` routes to experts (rather than running a dense FFN).
    pub fn is_moe_layer(&self, il: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| il >= m.leading_dense)
    }

    /// Width of the Q projection.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}

/// Most experts a layer may have (llama.cpp's `LLAMA_MAX_EXPERTS` is 512).
pub const MAX_EXPERTS: usize = 512;

/// Reads `<arch>.expert_*` keys: `None` for a dense model, an error for inconsistent counts.
fn read_moe(f: &GgufFile, arch: Arch, n_layer: usize, n_ff: usize) -> Result<Option<MoeParams>> {
    let p = arch.name();
    let key = |k: &str| format!("{p}.{k}");
    let opt = |k: &str| -> Result<Option<usize>> {
        f.opt_u64(&key(k))?
            .map(|v| to_usize(v, &key(k)))
            .transpose()
    };
    let bad = |msg: String| Error::Model(msg);
    let n_expert = opt("expert_count")?.unwrap_or(0);
    if n_expert == 0 {
        if arch.requires_experts() {
            return Err(Error::Gguf(crate::gguf::GgufError::MissingKey(key(
                "expert_count",
            ))));
        }
        return Ok(None);
    }
    if n_expert > MAX_EXPERTS {
        return Err(bad(format!(
            "{}: {n_expert} experts is more than the supported {MAX_EXPERTS}",
            key("expert_count")
        )));
    }
    let n_expert_used = opt("expert_used_count")?
        .ok_or_else(|| Error::Gguf(crate::gguf::GgufError::MissingKey(key("expert_used_count"))))?;
    if n_expert_used == 0 || n_expert_used > n_expert {
        return Err(bad(format!(
            "{}: {n_expert_used} experts per token is not within 1..={n_expert} ({})",
            key("expert_used_count"),
            key("expert_count")
        )));
    }
    // Mixtral keeps the expert width in feed_forward_length; the others have their own key.
    let n_ff_exp = match arch {
        Arch::Llama => opt("expert_feed_forward_length")?.unwrap_or(n_ff),
        _ => opt("expert_feed_forward_length")?.ok_or_else(|| {
            Error::Gguf(crate::gguf::GgufError::MissingKey(key(
                "expert_feed_forward_length",
            )))
        })?,
    };
    if n_ff_exp == 0 {
        return Err(bad(format!(
            "{}: the experts' hidden width must be non-zero",
            key("expert_feed_forward_length")
        )));
    }
    let n_ff_shexp = match arch {
        Arch::Qwen2Moe => opt("expert_shared_feed_forward_length")?.unwrap_or(0),
        Arch::Deepseek2 => n_ff_exp
            .checked_mul(opt("expert_shared_count")?.unwrap_or(0))
            .filter(|&w| w <= 1 << 32)
            .ok_or_else(|| bad(format!("{}: implausibly large", key("expert_shared_count"))))?,
        _ => 0,
    };
    let gating = match f.opt_u64(&key("expert_gating_func"))? {
        None | Some(0) | Some(1) => Gating::Softmax,
        Some(2) => Gating::Sigmoid,
        Some(other) => {
            return Err(bad(format!(
                "{}: scoring function {other} is not supported (1 = softmax, 2 = sigmoid)",
                key("expert_gating_func")
            )))
        }
    };
    // llama.cpp: Mixtral and Qwen3-MoE always renormalize the top-k weights, Qwen2-MoE never does,
    // DeepSeek says so in its metadata.
    let norm_topk = match arch {
        Arch::Llama | Arch::Qwen3Moe => true,
        Arch::Deepseek2 => f.opt_bool(&key("expert_weights_norm"))?.unwrap_or(false),
        _ => false,
    };
    let weights_scale = match arch {
        Arch::Deepseek2 => f.opt_f64(&key("expert_weights_scale"))?.unwrap_or(1.0) as f32,
        _ => 1.0,
    };
    if !weights_scale.is_finite() {
        return Err(bad(format!(
            "{}: must be finite",
            key("expert_weights_scale")
        )));
    }
    let n_group = opt("expert_group_count")?.unwrap_or(1).max(1);
    let n_group_used = opt("expert_group_used_count")?.unwrap_or(n_group);
    if n_expert % n_group != 0
        || n_group_used == 0
        || n_group_used > n_group
        || n_expert_used > n_group_used * (n_expert / n_group)
    {
        return Err(bad(format!(
            "{}/{}: {n_group} groups with {n_group_used} used cannot route {n_expert_used} of {n_expert} experts",
            key("expert_group_count"),
            key("expert_group_used_count")
        )));
    }
    let leading_dense = opt("leading_dense_block_count")?.unwrap_or(0);
    if leading_dense > n_layer {
        return Err(bad(format!(
            "{}: {leading_dense} dense layers but only {n_layer} layers",
            key("leading_dense_block_count")
        )));
    }
    Ok(Some(MoeParams {
        n_expert,
        n_expert_used,
        n_ff_exp,
        n_ff_shexp,
        gating,
        norm_topk,
        weights_scale,
        n_group,
        n_group_used,
        leading_dense,
    }))
}

/// Reads the latent-attention sizes of a `deepseek2` file. Files converted for llama.cpp's MLA path carry
/// the per-head sizes under `key_length_mla`/`value_length_mla` (their plain `key_length` is the latent's);
/// older files carry them under `key_length`/`value_length`.
fn read_mla(f: &GgufFile, p: &str) -> Result<MlaParams> {
    let key = |k: &str| format!("{p}.{k}");
    let opt = |k: &str| -> Result<Option<usize>> {
        f.opt_u64(&key(k))?
            .map(|v| to_usize(v, &key(k)))
            .transpose()
    };
    let req = |k: &str| -> Result<usize> { to_usize(f.require_u64(&key(k))?, &key(k)) };
    let kv_lora_rank = req("attention.kv_lora_rank")?;
    let q_lora_rank = opt("attention.q_lora_rank")?.unwrap_or(0);
    let qk_head = match opt("attention.key_length_mla")? {
        Some(v) => v,
        None => req("attention.key_length")?,
    };
    let v_head_dim = match opt("attention.value_length_mla")? {
        Some(v) => v,
        None => req("attention.value_length")?,
    };
    let qk_rope = req("rope.dimension_count")?;
    if kv_lora_rank == 0 || v_head_dim == 0 || qk_rope == 0 || qk_rope >= qk_head {
        return Err(Error::Model(format!(
            "{p}: latent attention sizes do not fit (kv_lora_rank {kv_lora_rank}, key length {qk_head}, \
             rope dimensions {qk_rope}, value length {v_head_dim})"
        )));
    }
    Ok(MlaParams {
        q_lora_rank,
        kv_lora_rank,
        qk_nope: qk_head - qk_rope,
        qk_rope,
        v_head_dim,
    })
}

fn to_usize(v: u64, key: &str) -> Result<usize> {
    // Hyper-parameters beyond this are not a real model; refusing them keeps later size arithmetic safe.
    const LIMIT: u64 = 1 << 32;
    if v > LIMIT {
        return Err(Error::Model(format!(
            "{key}: value {v} is implausibly large"
        )));
    }
    Ok(v as usize)
}
