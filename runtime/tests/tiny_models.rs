//! The CPU forward pass against Hugging Face `transformers` on tiny random-weight models
//! (`tests/tiny`, made by `tests/tiny/make_tiny_models.py`; float32 logits from transformers are the
//! reference).
//!
//! The fixtures cover what the real-model tests do not: the `llama` architecture (interleaved rope, q/k
//! permuted by the converter, GQA, no biases), tied embeddings with linear rope scaling, Qwen2's q/k/v biases,
//! Gemma 3's sliding window (4 tokens, five sliding layers and one global with their two rope bases, per-head
//! q/k norms, norm weights stored as `1 + w`), odd sizes (vocabularies of 260–300, head sizes 16 and 32, key
//! length ≠ embedding/heads), and F32, F16 and Q8_0 weights.
//!
//! Each sequence is checked twice: scored in one pass (`Session::score`, every position) and decoded one
//! token at a time after a reset (`Session::append`, KV cache and rope positions). Tolerances:
//! - F32 weights: max |logit − reference| ≤ 1e-3 and the same argmax at every position;
//! - F16 weights: ≤ 1e-2 and the same argmax;
//! - Q8_0 weights (activations quantized to Q8_0 as well, like llama.cpp): ≤ 0.25 and ≥ 90% argmax agreement.
//!
//! Every reference top-1/top-2 margin is ≥ 0.02 (≥ 0.1 for `llama`, whose sequences also check the F16 and
//! Q8_0 files); the generator asserts that transformers itself, run with Q8_0 weights and activations, stays
//! within the Q8_0 tolerances.

mod common;

use common::tiny::{argmax, cases, check, fixture, tiny_dir, F16, F32, Q8_0};

#[test]
fn llama_f32() {
    check("llama", "F32", F32);
}

#[test]
fn llama_f16() {
    check("llama", "F16", F16);
}

#[test]
fn llama_q8_0() {
    check("llama", "Q8_0", Q8_0);
}

#[test]
fn llama_tied_embeddings_linear_rope_scaling_f32() {
    check("llama-tied-linear", "F32", F32);
}

#[test]
fn qwen2_f32() {
    check("qwen2", "F32", F32);
}

#[test]
fn gemma3_f32() {
    check("gemma3", "F32", F32);
}

/// The fixtures are what the tests above think they are (guards against a regenerated file set drifting).
#[test]
fn fixtures_cover_every_model_and_weight_type() {
    let expect: [(&str, &[&str]); 4] = [
        ("llama", &["F32", "F16", "Q8_0"]),
        ("llama-tied-linear", &["F32"]),
        ("qwen2", &["F32"]),
        ("gemma3", &["F32"]),
    ];
    for (name, types) in expect {
        let fx = fixture(name);
        let files = fx["gguf"].as_object().expect("gguf files");
        let mut have: Vec<&str> = files.keys().map(String::as_str).collect();
        have.sort_unstable();
        let mut want = types.to_vec();
        want.sort_unstable();
        assert_eq!(have, want, "{name}: weight types");
        for file in files.values() {
            let path = tiny_dir().join(file.as_str().unwrap());
            assert!(path.exists(), "{} is missing", path.display());
        }
        for case in cases(&fx) {
            assert!((10..=16).contains(&case.ids.len()));
            for (row, &top) in case.logits.iter().zip(&case.argmax) {
                assert_eq!(argmax(row), top, "{name}: recorded argmax");
            }
        }
    }
}
