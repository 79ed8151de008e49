//! Models: hyper-parameters plus weight handles into the memory-mapped GGUF file.
//!
//! A [`Model`] describes the network once — per layer an [`Attention`] variant and an [`Ffn`] variant, with
//! their norms — and backends execute it. Weights are [`Weight`] handles (type, shape, byte range of the
//! map), never copies. Tensor names follow llama.cpp's (`blk.N.attn_q.weight`, ...). New architectures add a
//! variant to the enums, not flags.

mod config;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

pub use config::{Arch, Hparams, Rope, RopeStyle};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;
use crate::tokenizer::Tokenizer;

/// A weight matrix or vector in the map: `rows` rows of `cols` elements of `ggml_type`.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub ggml_type: GgmlType,
    /// Elements per row (ggml `ne[0]`, the input width of a matmul).
    pub cols: usize,
    /// Rows (the output width of a matmul).
    pub rows: usize,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

impl Weight {
    pub fn row_bytes(&self) -> usize {
        (self.range.len()) / self.rows.max(1)
    }
}

/// Feed-forward block of a layer.
#[derive(Clone, Debug)]
pub enum Ffn {
    /// `down(act(gate(x)) * up(x))`.
    Gated {
        gate: Weight,
        up: Weight,
        down: Weight,
        activation: Activation,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
}

/// Attention block of a layer.
#[derive(Clone, Debug)]
pub enum Attention {
    /// Multi-head attention with grouped key/value heads (covers MHA and MQA).
    Gqa {
        q: Weight,
        k: Weight,
        v: Weight,
        o: Weight,
        q_bias: Option<Weight>,
        k_bias: Option<Weight>,
        v_bias: Option<Weight>,
        /// Per-head RMS norms of q and k before rope (Gemma 3, Qwen 3).
        q_norm: Option<Weight>,
        k_norm: Option<Weight>,
    },
}

/// One transformer block.
#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Weight,
    pub attention: Attention,
    /// Norm on the attention output before the residual add (Gemma).
    pub post_attn_norm: Option<Weight>,
    pub ffn_norm: Weight,
    pub ffn: Ffn,
    /// Norm on the FFN output before the residual add (Gemma).
    pub post_ffn_norm: Option<Weight>,
}

/// A loaded model: the file, its hyper-parameters, weight handles and tokenizer.
pub struct Model {
    pub file: Arc<GgufFile>,
    pub hparams: Hparams,
    pub token_embd: Weight,
    pub layers: Vec<Layer>,
    pub output_norm: Weight,
    /// The LM head (`output.weight`, or the token embedding when tied).
    pub output: Weight,
    /// Llama-3 style per-dimension rope frequency factors.
    pub rope_freqs: Option<Weight>,
    pub tokenizer: Tokenizer,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("arch", &self.hparams.arch)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl Model {
    /// Opens and validates a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let _span = tracing::info_span!("load", path = %path.as_ref().display()).entered();
        let file = Arc::new(GgufFile::open(path)?);
        Self::from_gguf(file)
    }

    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Self> {
        let hp = Hparams::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() != hp.n_vocab {
            return Err(Error::Model(format!(
                "tokenizer has {} tokens but the model expects {}",
                tokenizer.n_vocab(),
                hp.n_vocab
            )));
        }
        let w = WeightLoader { file: &file };
        let (e, v) = (hp.n_embd, hp.n_vocab);
        let token_embd = w.matrix("token_embd.weight", e, v)?;
        let output_norm = w.vector("output_norm.weight", e)?;
        let output = match w.optional_matrix("output.weight", e, v)? {
            Some(out) => out,
            None => token_embd.clone(),
        };
        let rope_freqs = w.optional_vector("rope_freqs.weight", hp.rope.n_dims / 2)?;
        let gemma = hp.arch == Arch::Gemma3;
        let qwen = hp.arch == Arch::Qwen2;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let (q_dim, kv_dim) = (hp.q_dim(), hp.kv_dim());
            let attention = Attention::Gqa {
                q: w.matrix(&n("attn_q.weight"), e, q_dim)?,
                k: w.matrix(&n("attn_k.weight"), e, kv_dim)?,
                v: w.matrix(&n("attn_v.weight"), e, kv_dim)?,
                o: w.matrix(&n("attn_output.weight"), q_dim, e)?,
                q_bias: w.bias(&n("attn_q.bias"), q_dim, qwen)?,
                k_bias: w.bias(&n("attn_k.bias"), kv_dim, qwen)?,
                v_bias: w.bias(&n("attn_v.bias"), kv_dim, qwen)?,
                q_norm: w.bias(&n("attn_q_norm.weight"), hp.head_dim, gemma)?,
                k_norm: w.bias(&n("attn_k_norm.weight"), hp.head_dim, gemma)?,
            };
            let ffn = Ffn::Gated {
                gate: w.matrix(&n("ffn_gate.weight"), e, hp.n_ff)?,
                up: w.matrix(&n("ffn_up.weight"), e, hp.n_ff)?,
                down: w.matrix(&n("ffn_down.weight"), hp.n_ff, e)?,
                activation: if gemma {
                    Activation::GeluTanh
                } else {
                    Activation::Silu
                },
            };
            layers.push(Layer {
                attn_norm: w.vector(&n("attn_norm.weight"), e)?,
                attention,
                post_attn_norm: w.bias(&n("post_attention_norm.weight"), e, gemma)?,
                ffn_norm: w.vector(&n("ffn_norm.weight"), e)?,
                ffn,
                post_ffn_norm: w.bias(&n("post_ffw_norm.weight"), e, gemma)?,
            });
        }
        Ok(Self {
            file,
            hparams: hp,
            token_embd,
            layers,
            output_norm,
            output,
            rope_freqs,
            tokenizer,
        })
    }

    /// Bytes of a weight's data in the map.
    pub fn data(&self, w: &Weight) -> &[u8] {
        &self.file.bytes()[w.range.clone()]
    }

    /// Every weight of the model, each once (the tied head is not repeated).
    pub fn weights(&self) -> Vec<&Weight> {
        let mut all = vec![&self.token_embd, &self.output_norm];
        if self.output.range != self.token_embd.range {
            all.push(&self.output);
        }
        all.extend(self.rope_freqs.as_ref());
        for l in &self.layers {
            all.push(&l.attn_norm);
            all.push(&l.ffn_norm);
            all.extend(l.post_attn_norm.as_ref());
            all.extend(l.post_ffn_norm.as_ref());
            match &l.attention {
                Attention::Gqa {
                    q,
                    k,
                    v,
                    o,
                    q_bias,
                    k_bias,
                    v_bias,
                    q_norm,
                    k_norm,
                } => {
                    all.extend([q, k, v, o]);
                    all.extend(
                        [q_bias, k_bias, v_bias, q_norm, k_norm]
                            .into_iter()
                            .flatten(),
                    );
                }
            }
            match &l.ffn {
                Ffn::Gated { gate, up, down, .. } => all.extend([gate, up, down]),
            }
        }
        all
    }

    /// Bytes of weights read to decode one token: every matrix once, plus one embedding row.
    pub fn weight_bytes_per_token(&self) -> usize {
        let all: usize = self.weights().iter().map(|w| w.range.len()).sum();
        let embd = self.token_embd.range.len();
        let tied = self.output.range == self.token_embd.range;
        // The embedding table is only read one row per token, unless it doubles as the LM head.
        all - if tied { 0 } else { embd } + self.token_embd.row_bytes()
    }
}

/// Looks up tensors and checks their shapes and types while building a [`Model`].
struct WeightLoader<'a> {
    file: &'a GgufFile,
}

impl WeightLoader<'_> {
    fn handle(&self, info: &TensorInfo) -> Weight {
        Weight {
            name: info.name.clone(),
            ggml_type: info.ggml_type,
            cols: info.row_len(),
            rows: info.n_rows(),
            range: self.file.tensor_range(info),
        }
    }

    fn check(&self, info: &TensorInfo, cols: usize, rows: usize) -> Result<Weight> {
        let w = self.handle(info);
        if w.cols != cols || w.rows != rows || info.dims.len() > 2 {
            return Err(Error::Tensor {
                tensor: info.name.clone(),
                problem: format!(
                    "shape {} does not match the hyper-parameters (expected [{cols}, {rows}])",
                    info.shape_string()
                ),
            });
        }
        if !info.ggml_type.has_kernels() {
            return Err(Error::UnsupportedType {
                tensor: info.name.clone(),
                ggml_type: info.ggml_type,
            });
        }
        Ok(w)
    }

    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Weight> {
        self.check(self.file.require_tensor(name)?, cols, rows)
    }

    fn optional_matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Option<Weight>> {
        self.file
            .tensor(name)
            .map(|t| self.check(t, cols, rows))
            .transpose()
    }

    /// A 1-D tensor, read as f32 by the backends (norm weights and biases are F32 in practice).
    fn vector(&self, name: &str, len: usize) -> Result<Weight> {
        self.optional_vector(name, len)?
            .ok_or_else(|| crate::gguf::GgufError::MissingTensor(name.into()).into())
    }

    fn optional_vector(&self, name: &str, len: usize) -> Result<Option<Weight>> {
        let Some(info) = self.file.tensor(name) else {
            return Ok(None);
        };
        self.check(info, len, 1).map(Some)
    }

    /// A vector that the architecture requires when `required`, and ignores otherwise.
    fn bias(&self, name: &str, len: usize, required: bool) -> Result<Option<Weight>> {
        if required {
            self.vector(name, len).map(Some)
        } else {
            self.optional_vector(name, len)
        }
    }
}
