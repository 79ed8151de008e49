//! `deepedge inspect`: a model file's metadata, tensor table and memory needs.
//!
//! Works on any GGUF file the reader accepts, including architectures the runtime cannot run (the memory
//! estimate then says why it is missing).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use deepedge::gguf::{Array, GgufFile, Value};
use deepedge::kv::KvType;
use deepedge::model::Hparams;
use deepedge::session::DEFAULT_MAX_CTX;
use serde_json::{json, Value as Json};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Path to a GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Context size for the memory estimate (default: the model's, at most 4096).
    #[arg(long = "ctx")]
    pub ctx: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arrays longer than this are summarized as `[type; len]`.
const ARRAY_PREVIEW: usize = 16;

pub fn inspect(args: InspectArgs) -> Result<()> {
    let f = GgufFile::open(&args.model)?;
    let weights: u64 = f.tensors().iter().map(|t| t.size).sum();
    let mut by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = by_type.entry(t.ggml_type.to_string()).or_default();
        e.0 += 1;
        e.1 += t.size;
    }
    let memory = match Hparams::from_gguf(&f) {
        Ok(hp) => {
            let ctx = args.ctx.unwrap_or(hp.ctx_train.min(DEFAULT_MAX_CTX));
            let (k_row, v_row) = hp.kv_row_lens();
            let kv_per_token = hp.n_layer * (k_row + v_row) * KvType::F16.bytes();
            let mut memory = json!({
                "architecture": hp.arch.name(),
                "n_layer": hp.n_layer, "n_embd": hp.n_embd, "n_head": hp.n_head, "n_head_kv": hp.n_head_kv,
                "head_dim": hp.head_dim, "n_ff": hp.n_ff, "n_vocab": hp.n_vocab, "ctx_train": hp.ctx_train,
                "attention": if hp.mla.is_some() { "mla (latent KV cache)" } else { "gqa" },
                "weights_bytes": weights,
                "kv_type": "f16",
                "kv_bytes_per_token": kv_per_token,
                "ctx": ctx,
                "kv_bytes": kv_per_token * ctx,
                "total_bytes": weights as usize + kv_per_token * ctx,
            });
            if let Some(m) = &hp.mla {
                memory["mla"] = json!({
                    "q_lora_rank": m.q_lora_rank, "kv_lora_rank": m.kv_lora_rank, "qk_nope": m.qk_nope,
                    "qk_rope": m.qk_rope, "v_head_dim": m.v_head_dim,
                    // What a cache of expanded per-head keys and values would take instead.
                    "expanded_kv_bytes_per_token":
                        hp.n_layer * hp.n_head * (m.qk_nope + m.qk_rope + m.v_head_dim) * KvType::F16.bytes(),
                });
            }
            if let Some(m) = &hp.moe {
                memory["experts"] = json!({
                    "n_expert": m.n_expert, "n_expert_used": m.n_expert_used, "n_ff_exp": m.n_ff_exp,
                    "n_ff_shexp": m.n_ff_shexp, "gating": format!("{:?}", m.gating).to_lowercase(),
                    "norm_topk": m.norm_topk, "weights_scale": m.weights_scale, "n_group": m.n_group,
                    "n_group_used": m.n_group_used, "leading_dense_layers": m.leading_dense,
                });
            }
            memory
        }
        Err(e) => json!({ "weights_bytes": weights, "unsupported": e.to_string() }),
    };
    if args.json {
        let metadata: serde_json::Map<String, Json> = f
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect();
        let tensors: Vec<Json> = f
            .tensors()
            .iter()
            .map(|t| json!({ "name": t.name, "type": t.ggml_type.name(), "shape": t.dims, "bytes": t.size }))
            .collect();
        println!(
            "{}",
            json!({
                "file": args.model.display().to_string(), "file_size": f.file_size(), "version": f.version(),
                "alignment": f.alignment(), "metadata": metadata, "tensors": tensors, "memory": memory,
            })
        );
        return Ok(());
    }
    println!(
        "{}: GGUF v{}, {} bytes, {} tensors, alignment {}",
        args.model.display(),
        f.version(),
        f.file_size(),
        f.tensors().len(),
        f.alignment()
    );
    println!("\nmetadata ({} keys):", f.metadata().len());
    for (k, v) in f.metadata() {
        println!("  {k:<50} {v}");
    }
    println!("\ntensors:");
    for t in f.tensors() {
        println!(
            "  {:<40} {:<8} {:<20} {:>12}",
            t.name,
            t.ggml_type.name(),
            t.shape_string(),
            t.size
        );
    }
    println!("\nweights by type:");
    for (ty, (n, bytes)) in &by_type {
        println!(
            "  {ty:<8} {n:>5} tensors {:>10.1} MiB",
            *bytes as f64 / (1 << 20) as f64
        );
    }
    println!("\nmemory:");
    if let Json::Object(m) = &memory {
        for (k, v) in m {
            println!("  {k:<20} {v}");
        }
    }
    Ok(())
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) if a.len() > ARRAY_PREVIEW => {
            json!(format!("[{}; {}]", a.element_type().name(), a.len()))
        }
        Value::Array(a) => array_json(a),
    }
}

fn array_json(a: &Array) -> Json {
    match a {
        Array::U8(v) => json!(v),
        Array::I8(v) => json!(v),
        Array::U16(v) => json!(v),
        Array::I16(v) => json!(v),
        Array::U32(v) => json!(v),
        Array::I32(v) => json!(v),
        Array::F32(v) => json!(v),
        Array::Bool(v) => json!(v),
        Array::String(v) => json!(v),
        Array::U64(v) => json!(v),
        Array::I64(v) => json!(v),
        Array::F64(v) => json!(v),
        Array::Array(v) => Json::Array(v.iter().map(array_json).collect()),
    }
}
