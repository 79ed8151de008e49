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
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    pub const SUPPORTED: &'static str = "llama, qwen2, gemma3";

    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
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
    /// Position multiplier (1/factor of linear scaling).
    pub freq_scale: f32,
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

        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = opt("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = req("feed_forward_length")?;
        let ctx_train = req("context_length")?;
        let bad = |msg: String| Error::Model(msg);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(bad(format!(
                "{}: {n_head} query heads cannot be grouped over {n_head_kv} key/value heads",
                key("attention.head_count_kv")
            )));
        }
        if n_layer == 0 || n_embd == 0 || n_ff == 0 {
            return Err(bad(format!(
                "{p}: block_count, embedding_length and feed_forward_length must be non-zero"
            )));
        }
        let head_dim = opt("attention.key_length")?.unwrap_or(n_embd / n_head);
        let v_dim = opt("attention.value_length")?.unwrap_or(head_dim);
        if head_dim == 0 || v_dim != head_dim {
            return Err(bad(format!(
                "{p}: key length {head_dim} and value length {v_dim} must be equal and non-zero"
            )));
        }
        let rms_eps = f
            .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| {
                Error::Gguf(crate::gguf::GgufError::MissingKey(key(
                    "attention.layer_norm_rms_epsilon",
                )))
            })? as f32;
        let n_rot = opt("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(format!(
                "{}: {n_rot} must be even and at most the head size {head_dim}",
                key("rope.dimension_count")
            )));
        }
        let freq_base = f.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32;
        let freq_scale = match f.opt_str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => {
                let factor = f.opt_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0) as f32;
                if factor <= 0.0 {
                    return Err(bad(format!(
                        "{}: must be positive",
                        key("rope.scaling.factor")
                    )));
                }
                1.0 / factor
            }
            Some(other) => {
                return Err(bad(format!(
                    "{}: rope scaling {other:?} is not supported for {p} (supported: none, linear)",
                    key("rope.scaling.type")
                )))
            }
        };
        let n_vocab = match f.opt_array("tokenizer.ggml.tokens")? {
            Some(tokens) => tokens.len(),
            None => req("vocab_size")?,
        };
        let style = match arch {
            Arch::Llama => RopeStyle::Normal,
            Arch::Qwen2 | Arch::Gemma3 => RopeStyle::Neox,
        };
        let rope = Rope {
            style,
            n_dims: n_rot,
            freq_base,
            freq_scale,
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
                    ..rope
                },
                Some((n_embd as f32).sqrt()),
            ),
            Arch::Llama | Arch::Qwen2 => (None, None, rope, None),
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
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
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

    /// Width of the Q projection.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
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
