//! Mixture-of-experts and DeepSeek models against references, on tiny random-weight models
//! (`tests/tiny`, made by `tests/tiny/make_tiny_moe_models.py`).
//!
//! - F32 files against transformers' float32 logits: every position of two sequences, scored in one pass
//!   and token by token, within 1e-3 with the same argmax; and 16 greedy tokens equal to transformers'.
//!   Covered: `deepseek2` as DeepSeek-V3 (sigmoid scoring + selection bias, 4 groups with 2 kept, normalized
//!   weights × 2.5, a shared expert, a leading dense layer, YaRN, no query LoRA, split `attn_k_b`/`attn_v_b`)
//!   and as DeepSeek-V2 (softmax, top-3 unnormalized × 1.5, two shared experts, query LoRA, joint
//!   `attn_kv_b`); `qwen2moe` (sigmoid-gated shared expert, q/k/v biases); `qwen3moe` (q/k norms, normalized
//!   top-2); Mixtral (`llama` with experts).
//! - Q8_0 copies of the same files against llama.cpp's output for them (`<name>.llamacpp.json`, made by
//!   `tests/reference/tiny_moe_llamacpp.mjs`): argmax agreement ≥ 95% and log-softmax within 0.25.
//! - The MLA cache holds the latent, expert utilization is counted, and bad expert metadata or tensors are
//!   errors that name the key or tensor.

mod common;

use std::sync::Arc;

use common::tiny::{argmax, cases, check, fixture, tiny_dir, F32};
use deepedge::gguf::writer::GgufWriter;
use deepedge::gguf::{GgufFile, Value};
use deepedge::kv::KvType;
use deepedge::sample::SamplerParams;
use deepedge::session::GenerateParams;
use deepedge::{Model, Session, SessionOptions};
use serde_json::Value as Json;

const MODELS: [&str; 5] = [
    "deepseek-v3",
    "deepseek-v2",
    "qwen2moe",
    "qwen3moe",
    "mixtral",
];

fn session(file: &str) -> Session {
    session_with(file, KvType::F32)
}

fn session_with(file: &str, kv_type: KvType) -> Session {
    let m = Model::load(tiny_dir().join(file)).unwrap_or_else(|e| panic!("{file} loads: {e}"));
    Session::new_cpu(
        Arc::new(m),
        &SessionOptions {
            n_ctx: Some(64),
            threads: Some(2),
            kv_type,
        },
    )
    .expect("session")
}

#[test]
fn deepseek_v3_f32() {
    check("deepseek-v3", "F32", F32);
}

#[test]
fn deepseek_v2_f32() {
    check("deepseek-v2", "F32", F32);
}

#[test]
fn qwen2moe_f32() {
    check("qwen2moe", "F32", F32);
}

#[test]
fn qwen3moe_f32() {
    check("qwen3moe", "F32", F32);
}

#[test]
fn mixtral_f32() {
    check("mixtral", "F32", F32);
}

/// 16 greedy tokens after the first sequence equal transformers' (whose every step has a clear argmax and
/// no near-tie in routing).
#[test]
fn greedy_tokens_equal_transformers() {
    for name in MODELS {
        let fx = fixture(name);
        let case = &fx["cases"][0];
        let ids = json_ids(&case["ids"]);
        let expected = json_ids(&case["greedy"]["tokens"]);
        let mut s = session(fx["gguf"]["F32"].as_str().unwrap());
        let params = GenerateParams {
            max_tokens: expected.len(),
            sampler: SamplerParams::default(),
            ignore_eos: true,
            ..GenerateParams::default()
        };
        let g = s.generate(&ids, &params, None, |_| true).expect("generate");
        assert_eq!(g.ids, expected, "{name}: greedy tokens");
    }
}

/// A Q8_0 copy against llama.cpp running the same file: argmax agreement ≥ 95% over every position of the
/// recorded sequences and log-softmax within 0.25 everywhere.
fn q8_0_matches_llama_cpp(name: &str) {
    let fx = fixture(name);
    let reference: Json = serde_json::from_str(
        &std::fs::read_to_string(tiny_dir().join(format!("{name}.llamacpp.json")))
            .expect("llama.cpp fixture (tests/reference/tiny_moe_llamacpp.mjs)"),
    )
    .expect("JSON");
    let q8 = &reference["files"]["Q8_0"];
    assert_eq!(q8["file"], fx["gguf"]["Q8_0"], "{name}: fixture files");
    // An f32 cache: attention in f32, as llama.cpp runs it for the fixture.
    let mut s = session_with(q8["file"].as_str().unwrap(), KvType::F32);
    let n_vocab = fx["n_vocab"].as_u64().unwrap() as usize;
    let (mut agree, mut total, mut max_diff) = (0usize, 0usize, 0f32);
    let lc_cases = q8["cases"].as_array().unwrap();
    assert_eq!(lc_cases.len(), cases(&fx).len(), "{name}: llama.cpp cases");
    for (case, lc) in cases(&fx).iter().zip(lc_cases) {
        let logits = s.score(&case.ids).expect("score");
        for (row, lc_row) in logits
            .chunks_exact(n_vocab)
            .zip(lc["log_probs"].as_array().unwrap())
        {
            let ours = log_softmax(row);
            let theirs: Vec<f32> = lc_row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            total += 1;
            agree += usize::from(argmax(&ours) == argmax(&theirs));
            let d = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            max_diff = max_diff.max(d);
        }
    }
    eprintln!(
        "{name} Q8_0 vs llama.cpp: argmax {agree}/{total}, max |Δ log-softmax| {max_diff:.4}"
    );
    assert!(
        agree as f64 >= 0.95 * total as f64,
        "{name}: argmax {agree}/{total}"
    );
    assert!(max_diff <= 0.25, "{name}: max |Δ log-softmax| {max_diff}");
}

#[test]
fn deepseek_v3_q8_0_vs_llama_cpp() {
    q8_0_matches_llama_cpp("deepseek-v3");
}

#[test]
fn deepseek_v2_q8_0_vs_llama_cpp() {
    q8_0_matches_llama_cpp("deepseek-v2");
}

#[test]
fn qwen2moe_q8_0_vs_llama_cpp() {
    q8_0_matches_llama_cpp("qwen2moe");
}

#[test]
fn qwen3moe_q8_0_vs_llama_cpp() {
    q8_0_matches_llama_cpp("qwen3moe");
}

#[test]
fn mixtral_q8_0_vs_llama_cpp() {
    q8_0_matches_llama_cpp("mixtral");
}

/// DeepSeek's cache holds the latent and the rope key per layer, not expanded keys and values.
#[test]
fn mla_cache_is_the_latent_size() {
    for name in ["deepseek-v3", "deepseek-v2"] {
        let fx = fixture(name);
        let cfg = &fx["config"];
        let get = |k: &str| cfg[k].as_u64().unwrap() as usize;
        let s = session(fx["gguf"]["F32"].as_str().unwrap());
        let latent = get("num_hidden_layers") * (get("kv_lora_rank") + get("qk_rope_head_dim")) * 4;
        assert_eq!(s.backend().kv_bytes_per_token(), latent, "{name}");
        let expanded = get("num_hidden_layers")
            * get("num_attention_heads")
            * (get("qk_nope_head_dim") + get("qk_rope_head_dim") + get("v_head_dim"))
            * 4;
        assert!(latent * 4 <= expanded, "{name}: {latent} vs {expanded}");
    }
}

/// Every token of every MoE layer is counted `n_expert_used` times; dense layers are not counted.
#[test]
fn expert_utilization_is_counted() {
    let fx = fixture("deepseek-v3");
    let mut s = session(fx["gguf"]["F32"].as_str().unwrap());
    let ids = json_ids(&fx["cases"][0]["ids"]);
    s.score(&ids).unwrap();
    let stats = s.moe_stats().expect("MoE model has stats");
    let used = fx["config"]["num_experts_per_tok"].as_u64().unwrap();
    let u = stats.utilization();
    assert_eq!(
        u.iter().map(|l| l.layer).collect::<Vec<_>>(),
        vec![1, 2],
        "layer 0 is dense"
    );
    for l in &u {
        assert_eq!(l.assignments, ids.len() as u64 * used, "layer {}", l.layer);
        assert!(
            l.max_over_mean >= 1.0 && l.normalized_entropy > 0.0 && l.normalized_entropy <= 1.0
        );
    }
    s.clear_moe_stats();
    assert!(s
        .moe_stats()
        .unwrap()
        .utilization()
        .iter()
        .all(|l| l.assignments == 0));
    let dense = session("llama.gguf");
    assert!(dense.moe_stats().is_none());
}

/// Rewrites `file` with metadata edits (`Some(None)` drops a key) and without `drop_tensor`, then loads it.
fn load_edited(
    file: &str,
    edit: &[(&str, Option<Value>)],
    drop_tensor: Option<&str>,
) -> deepedge::Result<Model> {
    let f = GgufFile::open(tiny_dir().join(file)).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        match edit.iter().find(|(key, _)| key == k) {
            Some((_, Some(new))) => w.add(k, new.clone()),
            Some((_, None)) => &mut w,
            None => w.add(k, v.clone()),
        };
    }
    for t in f.tensors() {
        if Some(t.name.as_str()) != drop_tensor {
            w.add_tensor(&t.name, t.ggml_type, &t.dims, f.tensor_data(t).to_vec());
        }
    }
    let edited = GgufFile::from_bytes(&w.to_bytes()).expect("edited file parses");
    Model::from_gguf(Arc::new(edited))
}

#[test]
fn bad_expert_metadata_and_tensors_are_clear_errors() {
    let err = |file: &str, edit: &[(&str, Option<Value>)], drop: Option<&str>| -> String {
        match load_edited(file, edit, drop) {
            Ok(_) => panic!("{file} with {edit:?} / without {drop:?} loaded"),
            Err(e) => e.to_string(),
        }
    };
    // The unedited copy loads (the edits below are what fails).
    load_edited("deepseek-v3.gguf", &[], None).expect("unedited copy loads");

    let e = err(
        "deepseek-v3.gguf",
        &[("deepseek2.expert_used_count", Some(Value::U32(9)))],
        None,
    );
    assert!(
        e.contains("deepseek2.expert_used_count") && e.contains("1..=8"),
        "{e}"
    );
    // The file's expert tensors hold 8 experts; a count of 16 contradicts them.
    let e = err(
        "mixtral.gguf",
        &[("llama.expert_count", Some(Value::U32(16)))],
        None,
    );
    assert!(e.contains("ffn_gate_inp") || e.contains("_exps"), "{e}");
    let e = err(
        "deepseek-v3.gguf",
        &[("deepseek2.expert_gating_func", Some(Value::U32(3)))],
        None,
    );
    assert!(
        e.contains("deepseek2.expert_gating_func") && e.contains("scoring function 3"),
        "{e}"
    );
    let e = err(
        "deepseek-v3.gguf",
        &[("deepseek2.expert_group_used_count", Some(Value::U32(5)))],
        None,
    );
    assert!(e.contains("expert_group_used_count"), "{e}");
    let e = err("qwen2moe.gguf", &[("qwen2moe.expert_count", None)], None);
    assert!(e.contains("qwen2moe.expert_count"), "{e}");
    let e = err("qwen3moe.gguf", &[], Some("blk.1.ffn_down_exps.weight"));
    assert!(e.contains("blk.1.ffn_down_exps.weight"), "{e}");
    let e = err("deepseek-v3.gguf", &[], Some("blk.2.attn_v_b.weight"));
    assert!(e.contains("blk.2.attn_v_b.weight"), "{e}");
    let e = err(
        "qwen2moe.gguf",
        &[],
        Some("blk.0.ffn_gate_inp_shexp.weight"),
    );
    assert!(e.contains("blk.0.ffn_gate_inp_shexp.weight"), "{e}");
}

/// The fixture set is what the tests above expect.
#[test]
fn fixtures_cover_every_moe_model() {
    for name in MODELS {
        let fx = fixture(name);
        for wtype in ["F32", "Q8_0"] {
            let file = fx["gguf"][wtype]
                .as_str()
                .unwrap_or_else(|| panic!("{name} {wtype}"));
            assert!(tiny_dir().join(file).exists(), "{file} is missing");
        }
        let cs = cases(&fx);
        assert_eq!(cs.len(), 2);
        for case in &cs {
            for (row, &top) in case.logits.iter().zip(&case.argmax) {
                assert_eq!(argmax(row), top, "{name}: recorded argmax");
            }
        }
        assert_eq!(json_ids(&fx["cases"][0]["greedy"]["tokens"]).len(), 16);
    }
}

fn json_ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
    row.iter().map(|&v| v - lse).collect()
}
