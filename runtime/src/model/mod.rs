//! Models: hyper-parameters plus weight handles into the memory-mapped GGUF file.
//!
//! A [`Model`] describes the network once — per layer an [`Attention`] variant and an [`Ffn`] variant, with
//! their norms — and backends execute it. Weights are [`Weight`] handles (type, shape, byte range of the
//! map), never copies. Tensor names follow llama.cpp's (`blk.N.attn_q.weight`, ...). New architectures add a
//! variant to the enums, not flags.

mod config;
pub mod routing;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

pub use config::{Arch, Gating, Hparams, MlaParams, MoeParams, Rope, RopeStyle, Yarn, MAX_EXPERTS};

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

    /// Rows `rows` of this weight as a weight of their own (a sub-range of the map).
    pub fn row_range(&self, rows: Range<usize>, name: String) -> Weight {
        debug_assert!(rows.end <= self.rows);
        let rb = self.row_bytes();
        Weight {
            name,
            ggml_type: self.ggml_type,
            cols: self.cols,
            rows: rows.len(),
            range: self.range.start + rows.start * rb..self.range.start + rows.end * rb,
        }
    }
}

/// `count` matrices of the same shape stored back to back in one 3-D tensor (ggml `ne = [cols, rows,
/// count]`): the experts of a layer, or DeepSeek's per-head `attn_k_b`/`attn_v_b`.
#[derive(Clone, Debug)]
pub struct Stacked {
    /// The whole tensor, viewed as `count × rows` rows of `cols`.
    pub all: Weight,
    pub count: usize,
    /// Rows of one matrix.
    pub rows: usize,
}

impl Stacked {
    /// Matrix `i` as a weight of its own (a sub-range of the map; nothing is copied).
    pub fn get(&self, i: usize) -> Weight {
        self.all.row_range(
            i * self.rows..(i + 1) * self.rows,
            format!("{}[{i}]", self.all.name),
        )
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
    /// Routed experts (plus shared ones): see [`MoeFfn`].
    Moe(Box<MoeFfn>),
}

/// A mixture-of-experts FFN: a router scores the experts per token, the top `n_expert_used` run as
/// gated SiLU FFNs and are summed with their routing weights, and shared experts (if any) run on every
/// token. Routing parameters are in [`Hparams::moe`](crate::model::Hparams).
#[derive(Clone, Debug)]
pub struct MoeFfn {
    /// `ffn_gate_inp`: `n_embd → n_expert` router logits.
    pub router: Weight,
    /// `exp_probs_b`: DeepSeek-V3's bias added to the scores for selection only.
    pub selection_bias: Option<Weight>,
    pub gate: Stacked,
    pub up: Stacked,
    pub down: Stacked,
    pub shared: Option<SharedExpert>,
}

/// Experts every token goes through (DeepSeek's shared experts, Qwen2-MoE's gated shared expert).
#[derive(Clone, Debug)]
pub struct SharedExpert {
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
    /// `ffn_gate_inp_shexp` (Qwen2-MoE): the output is scaled by `sigmoid(gate_inp · x)`.
    pub gate_inp: Option<Weight>,
}

/// How MLA computes its queries.
#[derive(Clone, Debug)]
pub enum MlaQuery {
    /// `attn_q` (DeepSeek-V2-Lite and other models without a query LoRA).
    Full(Weight),
    /// `attn_q_b(rms_norm(attn_q_a(x)))`.
    LowRank { a: Weight, norm: Weight, b: Weight },
}

/// The up-projections of MLA's latent to per-head keys (without rope) and values.
#[derive(Clone, Debug)]
pub enum MlaKvB {
    /// `attn_k_b` (per head `k_b^T`: `nope → rank`) and `attn_v_b` (per head `rank → v`), as current
    /// llama.cpp converters write them for the absorbed form.
    Split { k_b: Stacked, v_b: Stacked },
    /// `attn_kv_b`: `rank → n_head × (nope + v)`, as older converters wrote it.
    Joint(Weight),
}

/// Multi-head latent attention (DeepSeek-V2/V3).
#[derive(Clone, Debug)]
pub struct MlaAttention {
    pub q: MlaQuery,
    /// `attn_kv_a_mqa`: `n_embd → kv_lora_rank + qk_rope` (the latent, then the shared rope key).
    pub kv_a: Weight,
    pub kv_a_norm: Weight,
    pub kv_b: MlaKvB,
    pub o: Weight,
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
    /// Latent attention: see [`MlaAttention`].
    Mla(MlaAttention),
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
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            layers.push(w.layer(&hp, il)?);
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
                Attention::Mla(m) => {
                    match &m.q {
                        MlaQuery::Full(q) => all.push(q),
                        MlaQuery::LowRank { a, norm, b } => all.extend([a, norm, b]),
                    }
                    all.extend([&m.kv_a, &m.kv_a_norm, &m.o]);
                    match &m.kv_b {
                        MlaKvB::Split { k_b, v_b } => all.extend([&k_b.all, &v_b.all]),
                        MlaKvB::Joint(kv_b) => all.push(kv_b),
                    }
                }
            }
            match &l.ffn {
                Ffn::Gated { gate, up, down, .. } => all.extend([gate, up, down]),
                Ffn::Moe(m) => {
                    all.extend([&m.router, &m.gate.all, &m.up.all, &m.down.all]);
                    all.extend(m.selection_bias.as_ref());
                    if let Some(s) = &m.shared {
                        all.extend([&s.gate, &s.up, &s.down]);
                        all.extend(s.gate_inp.as_ref());
                    }
                }
            }
        }
        all
    }

    /// Bytes of weights read to decode one token: every matrix once, plus one embedding row; of a layer's
    /// routed experts only the `n_expert_used` a token is routed to.
    pub fn weight_bytes_per_token(&self) -> usize {
        let all: usize = self.weights().iter().map(|w| w.range.len()).sum();
        let embd = self.token_embd.range.len();
        let tied = self.output.range == self.token_embd.range;
        let unused_experts: usize = match &self.hparams.moe {
            Some(moe) => self
                .layers
                .iter()
                .filter_map(|l| match &l.ffn {
                    Ffn::Moe(m) => {
                        let experts =
                            m.gate.all.range.len() + m.up.all.range.len() + m.down.all.range.len();
                        Some(experts / moe.n_expert * (moe.n_expert - moe.n_expert_used))
                    }
                    Ffn::Gated { .. } => None,
                })
                .sum(),
            None => 0,
        };
        // The embedding table is only read one row per token, unless it doubles as the LM head.
        all - if tied { 0 } else { embd } + self.token_embd.row_bytes() - unused_experts
    }
}

/// Looks up tensors and checks their shapes and types while building a [`Model`].
struct WeightLoader<'a> {
    file: &'a GgufFile,
}

impl WeightLoader<'_> {
    /// The weights of layer `il`, checked against the hyper-parameters.
    fn layer(&self, hp: &Hparams, il: usize) -> Result<Layer> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let e = hp.n_embd;
        let gemma = hp.arch == Arch::Gemma3;
        let attention = match &hp.mla {
            Some(mla) => Attention::Mla(self.mla(hp, mla, il)?),
            None => {
                let (q_dim, kv_dim) = (hp.q_dim(), hp.kv_dim());
                let biases = matches!(hp.arch, Arch::Qwen2 | Arch::Qwen2Moe);
                let qk_norm = matches!(hp.arch, Arch::Gemma3 | Arch::Qwen3Moe);
                Attention::Gqa {
                    q: self.matrix(&n("attn_q.weight"), e, q_dim)?,
                    k: self.matrix(&n("attn_k.weight"), e, kv_dim)?,
                    v: self.matrix(&n("attn_v.weight"), e, kv_dim)?,
                    o: self.matrix(&n("attn_output.weight"), q_dim, e)?,
                    q_bias: self.bias(&n("attn_q.bias"), q_dim, biases)?,
                    k_bias: self.bias(&n("attn_k.bias"), kv_dim, biases)?,
                    v_bias: self.bias(&n("attn_v.bias"), kv_dim, biases)?,
                    q_norm: self.bias(&n("attn_q_norm.weight"), hp.head_dim, qk_norm)?,
                    k_norm: self.bias(&n("attn_k_norm.weight"), hp.head_dim, qk_norm)?,
                }
            }
        };
        let ffn = match &hp.moe {
            Some(moe) if hp.is_moe_layer(il) => Ffn::Moe(Box::new(self.moe(hp, moe, il)?)),
            _ => Ffn::Gated {
                gate: self.matrix(&n("ffn_gate.weight"), e, hp.n_ff)?,
                up: self.matrix(&n("ffn_up.weight"), e, hp.n_ff)?,
                down: self.matrix(&n("ffn_down.weight"), hp.n_ff, e)?,
                activation: if gemma {
                    Activation::GeluTanh
                } else {
                    Activation::Silu
                },
            },
        };
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm.weight"), e)?,
            attention,
            post_attn_norm: self.bias(&n("post_attention_norm.weight"), e, gemma)?,
            ffn_norm: self.vector(&n("ffn_norm.weight"), e)?,
            ffn,
            post_ffn_norm: self.bias(&n("post_ffw_norm.weight"), e, gemma)?,
        })
    }

    fn mla(&self, hp: &Hparams, m: &crate::model::MlaParams, il: usize) -> Result<MlaAttention> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let (e, heads) = (hp.n_embd, hp.n_head);
        let q_dim = heads * (m.qk_nope + m.qk_rope);
        let rank = m.kv_lora_rank;
        let q = if self.file.tensor(&n("attn_q_a.weight")).is_some() {
            let r = m.q_lora_rank;
            if r == 0 {
                return Err(Error::Model(format!(
                    "{}: attention.q_lora_rank is missing or 0 but the file has a query LoRA",
                    n("attn_q_a.weight")
                )));
            }
            MlaQuery::LowRank {
                a: self.matrix(&n("attn_q_a.weight"), e, r)?,
                norm: self.vector(&n("attn_q_a_norm.weight"), r)?,
                b: self.matrix(&n("attn_q_b.weight"), r, q_dim)?,
            }
        } else {
            MlaQuery::Full(self.matrix(&n("attn_q.weight"), e, q_dim)?)
        };
        let kv_b = if self.file.tensor(&n("attn_kv_b.weight")).is_some() {
            MlaKvB::Joint(self.matrix(
                &n("attn_kv_b.weight"),
                rank,
                heads * (m.qk_nope + m.v_head_dim),
            )?)
        } else {
            MlaKvB::Split {
                k_b: self.stacked(&n("attn_k_b.weight"), m.qk_nope, rank, heads)?,
                v_b: self.stacked(&n("attn_v_b.weight"), rank, m.v_head_dim, heads)?,
            }
        };
        Ok(MlaAttention {
            q,
            kv_a: self.matrix(&n("attn_kv_a_mqa.weight"), e, rank + m.qk_rope)?,
            kv_a_norm: self.vector(&n("attn_kv_a_norm.weight"), rank)?,
            kv_b,
            o: self.matrix(&n("attn_output.weight"), heads * m.v_head_dim, e)?,
        })
    }

    fn moe(&self, hp: &Hparams, m: &crate::model::MoeParams, il: usize) -> Result<MoeFfn> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let (e, ne, ff) = (hp.n_embd, m.n_expert, m.n_ff_exp);
        let shared = if m.n_ff_shexp > 0 || self.file.tensor(&n("ffn_gate_shexp.weight")).is_some()
        {
            let sff = m.n_ff_shexp;
            Some(SharedExpert {
                gate: self.matrix(&n("ffn_gate_shexp.weight"), e, sff)?,
                up: self.matrix(&n("ffn_up_shexp.weight"), e, sff)?,
                down: self.matrix(&n("ffn_down_shexp.weight"), sff, e)?,
                gate_inp: self.bias(
                    &n("ffn_gate_inp_shexp.weight"),
                    e,
                    hp.arch == Arch::Qwen2Moe,
                )?,
            })
        } else {
            None
        };
        Ok(MoeFfn {
            router: self.matrix(&n("ffn_gate_inp.weight"), e, ne)?,
            selection_bias: self.optional_vector(&n("exp_probs_b.bias"), ne)?,
            gate: self.stacked(&n("ffn_gate_exps.weight"), e, ff, ne)?,
            up: self.stacked(&n("ffn_up_exps.weight"), e, ff, ne)?,
            down: self.stacked(&n("ffn_down_exps.weight"), ff, e, ne)?,
            shared,
        })
    }

    /// A 3-D tensor of `count` matrices of `rows × cols`.
    fn stacked(&self, name: &str, cols: usize, rows: usize, count: usize) -> Result<Stacked> {
        let info = self.file.require_tensor(name)?;
        let dims_ok = info.dims.len() == 3
            && info.dims[0] == cols as u64
            && info.dims[1] == rows as u64
            && info.dims[2] == count as u64;
        if !dims_ok {
            return Err(Error::Tensor {
                tensor: name.into(),
                problem: format!(
                    "shape {} does not match the hyper-parameters (expected [{cols}, {rows}, {count}])",
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
        Ok(Stacked {
            all: self.handle(info),
            count,
            rows,
        })
    }

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
