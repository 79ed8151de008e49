//! Shared helpers of the integration tests: where the real models and llama.cpp's reference fixtures are.
//!
//! Real-model tests call [`model_path`]: when the model is not in the cache the test prints a SKIP line and
//! returns — unless `DEEPEDGE_REQUIRE_MODELS=1` (set by `scripts/test.sh`, hence by CI), where a missing
//! model fails the test instead of silently passing.
#![allow(dead_code)]

pub mod tiny;

use std::path::PathBuf;

/// Qwen2.5-Coder-0.5B-Instruct Q4_K_M, the default model.
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m";
/// Gemma-3-270M Q4_K_M.
pub const GEMMA: &str = "gemma-3-270m-q4_k_m";

/// `$DEEPEDGE_CACHE/models` (default `~/.cache/deepedge/models`).
pub fn models_dir() -> PathBuf {
    let cache = std::env::var_os("DEEPEDGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/deepedge")
        });
    cache.join("models")
}

/// The cached model file for `key`, or `None` (after printing why) when the test should skip.
pub fn model_path(key: &str) -> Option<PathBuf> {
    let path = models_dir().join(format!("{key}.gguf"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("DEEPEDGE_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
        panic!(
            "{} is missing and DEEPEDGE_REQUIRE_MODELS=1: run scripts/fetch-models.sh",
            path.display()
        );
    }
    eprintln!(
        "SKIP: {} not in the cache; run scripts/fetch-models.sh",
        path.display()
    );
    None
}

/// Directory of the committed llama.cpp reference fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/fixtures")
}

/// The llama.cpp fixture of a model (`tests/reference/fixtures/<key>.json`).
pub fn fixture(key: &str) -> serde_json::Value {
    let path = fixtures_dir().join(format!("{key}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A JSON array of integers as token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("a token id") as u32)
        .collect()
}
