//! The MoE / DeepSeek tiny models through the command line, against transformers' float32 output
//! (`tests/tiny/<name>.json`, made by `tests/tiny/make_tiny_moe_models.py`): `deepedge score --ids` gives
//! transformers' argmax at every position and its last-position logits within 1e-3, and
//! `deepedge run --ids … --temp 0 --ignore-eos` its 16 greedy tokens. `--moe-stats` reports every MoE
//! layer's assignments and refuses dense models.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const MODELS: [&str; 5] = [
    "deepseek-v3",
    "deepseek-v2",
    "qwen2moe",
    "qwen3moe",
    "mixtral",
];
/// Largest |logit − transformers' logit| allowed at the last position (F32 weights).
const MAX_LOGIT_DIFF: f64 = 1e-3;

fn tiny(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/tiny")
        .join(file)
        .display()
        .to_string()
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(tiny(&format!("{name}.json"))).expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn deepedge_json(args: &[&str]) -> Value {
    let o: Output = Command::new(env!("CARGO_BIN_EXE_deepedge"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("deepedge runs");
    assert!(
        o.status.success(),
        "deepedge {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is one JSON object")
}

fn id_list(v: &Value) -> String {
    let ids: Vec<String> = v
        .as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id").to_string())
        .collect();
    ids.join(",")
}

#[test]
fn score_matches_transformers_on_every_moe_model() {
    for name in MODELS {
        let fx = fixture(name);
        let model = tiny(fx["gguf"]["F32"].as_str().unwrap());
        for (ci, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
            let ids = id_list(&case["ids"]);
            // The reference is float32 end to end, so the KV cache is too (the default f16 cache rounds
            // keys and values to 11 significant bits, about 1e-3 on these logits).
            let out = deepedge_json(&[
                "score",
                "-m",
                &model,
                "--ids",
                &ids,
                "--kv-type",
                "f32",
                "--json",
            ]);
            assert_eq!(out["argmax"], case["argmax"], "{name} case {ci}: argmax");
            let expected = case["logits"].as_array().unwrap().last().unwrap();
            let ours = out["last_logits"].as_array().unwrap();
            assert_eq!(ours.len(), expected.as_array().unwrap().len());
            let max_diff = ours
                .iter()
                .zip(expected.as_array().unwrap())
                .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
                .fold(0f64, f64::max);
            eprintln!("{name} case {ci}: max |Δ last logits| {max_diff:.2e}");
            assert!(
                max_diff <= MAX_LOGIT_DIFF,
                "{name} case {ci}: last logits differ by {max_diff}"
            );
        }
    }
}

#[test]
fn greedy_run_matches_transformers_on_every_moe_model() {
    for name in MODELS {
        let fx = fixture(name);
        let model = tiny(fx["gguf"]["F32"].as_str().unwrap());
        let case = &fx["cases"][0];
        let expected = &case["greedy"]["tokens"];
        let n = expected.as_array().unwrap().len().to_string();
        let out = deepedge_json(&[
            "run",
            "-m",
            &model,
            "--ids",
            &id_list(&case["ids"]),
            "-n",
            &n,
            "--temp",
            "0",
            "--ignore-eos",
            "--json",
        ]);
        assert_eq!(&out["ids"], expected, "{name}: greedy tokens");
    }
}

#[test]
fn moe_stats_count_every_assignment_and_refuse_dense_models() {
    let fx = fixture("deepseek-v3");
    let model = tiny(fx["gguf"]["F32"].as_str().unwrap());
    let prompt = &fx["cases"][0]["ids"];
    let n_prompt = prompt.as_array().unwrap().len();
    let out = deepedge_json(&[
        "run",
        "-m",
        &model,
        "--ids",
        &id_list(prompt),
        "-n",
        "4",
        "--temp",
        "0",
        "--ignore-eos",
        "--moe-stats",
        "--json",
    ]);
    let cfg = &fx["config"];
    let used = cfg["num_experts_per_tok"].as_u64().unwrap() as usize;
    let n_expert = cfg["n_routed_experts"].as_u64().unwrap() as usize;
    let layers = out["moe_stats"].as_array().expect("moe_stats");
    let moe_layers: Vec<u64> = layers
        .iter()
        .map(|l| l["layer"].as_u64().unwrap())
        .collect();
    assert_eq!(moe_layers, vec![1, 2], "layer 0 is the leading dense layer");
    // The prompt and every generated token but the last go through the model.
    let tokens = n_prompt + 4 - 1;
    for l in layers {
        let counts = l["counts"].as_array().unwrap();
        assert_eq!(counts.len(), n_expert);
        let total: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
        assert_eq!(total, (tokens * used) as u64, "{l}");
        assert_eq!(l["assignments"].as_u64(), Some(total));
        let entropy = l["normalized_entropy"].as_f64().unwrap();
        assert!(entropy > 0.0 && entropy <= 1.0, "{l}");
        assert!(l["max_over_mean"].as_f64().unwrap() >= 1.0, "{l}");
    }

    let o = Command::new(env!("CARGO_BIN_EXE_deepedge"))
        .args(["run", "-m", &tiny("llama.gguf"), "--ids", "1,2", "-n", "1"])
        .arg("--moe-stats")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dense model"), "{err}");
}
