//! The command-line contract: usage errors, one-line errors with a non-zero exit, and the JSON shapes of
//! `run`, `score`, `tokenize`, `bench`, `inspect` and `perplexity` on the real default model.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn deepedge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepedge"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("deepedge runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// A model file from the cache, or `None` (SKIP) when it is not cached and not required.
fn cached_model(file: &str) -> Option<String> {
    let cache = std::env::var_os("DEEPEDGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/deepedge")
        });
    let path = cache.join("models").join(file);
    if path.exists() {
        return Some(path.display().to_string());
    }
    assert!(
        std::env::var("DEEPEDGE_REQUIRE_MODELS").as_deref() != Ok("1"),
        "{} missing with DEEPEDGE_REQUIRE_MODELS=1",
        path.display()
    );
    eprintln!(
        "SKIP: {} not cached; run scripts/fetch-models.sh",
        path.display()
    );
    None
}

/// The default model.
fn qwen() -> Option<String> {
    cached_model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}

#[test]
fn misuse_gives_usage_errors() {
    for args in [
        &[][..],
        &["run"],
        &["run", "-m", "x.gguf"],
        &["run", "-m", "x.gguf", "-p", "hi", "--ids", "1,2"],
        &["run", "-m", "x.gguf", "--ids", "1,x"],
        &["run", "-m", "x.gguf", "-p", "hi", "-n", "-3"],
        &["run", "-m", "x.gguf", "-p", "hi", "--backend", "tpu"],
        &["score", "-m", "x.gguf"],
        &["frobnicate"],
    ] {
        let o = deepedge(args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?} should be a usage error: {}",
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains("Usage") || err.contains("--help"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_files_give_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("deepedge-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"hello, I am not a model").unwrap();
    let cases = [
        (dir.join("missing.gguf"), "cannot read"),
        (not_gguf, "not a GGUF file"),
    ];
    for (path, message) in cases {
        let p = path.display().to_string();
        for args in [
            vec!["run", "-m", &p, "-p", "hi"],
            vec!["inspect", "-m", &p],
            vec!["tokenize", "-m", &p, "-p", "x"],
        ] {
            let o = deepedge(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            let err = stderr(&o);
            assert!(
                err.starts_with("error: ") && err.contains(message),
                "{args:?}: {err}"
            );
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{args:?}: more than one line: {err}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_json_shape_and_greedy_determinism() {
    let Some(m) = qwen() else { return };
    let args = [
        "run",
        "-m",
        &m,
        "-p",
        "def fibonacci(n):",
        "-n",
        "8",
        "--temp",
        "0",
        "--json",
    ];
    let a = json(&deepedge(&args));
    // llama.cpp's (node-llama-cpp 3.21.1) tokenization of the prompt; Qwen adds no BOS.
    assert_eq!(a["prompt_ids"], serde_json::json!([750, 75698, 1445, 1648]));
    assert_eq!(a["ids"].as_array().unwrap().len(), 8);
    assert!(a["text"].is_string());
    for k in ["load_s", "prefill_tps", "decode_tps"] {
        assert!(a["timings"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    let b = json(&deepedge(&args));
    assert_eq!(a["ids"], b["ids"]);
    // --ids are fed as they are and give the same continuation.
    let ids: Vec<String> = a["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let c = json(&deepedge(&[
        "run",
        "-m",
        &m,
        "--ids",
        &ids.join(","),
        "-n",
        "8",
        "--temp",
        "0",
        "--json",
    ]));
    assert_eq!(a["ids"], c["ids"]);
}

#[test]
fn run_streams_text_without_json() {
    let Some(m) = qwen() else { return };
    let o = deepedge(&[
        "run",
        "-m",
        &m,
        "-p",
        "The capital of France is",
        "-n",
        "4",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8(o.stdout).unwrap().contains("Paris"));
}

#[test]
fn prompt_longer_than_the_context_is_a_clear_error() {
    let Some(m) = qwen() else { return };
    let long = "word ".repeat(100);
    let o = deepedge(&["run", "-m", &m, "-p", &long, "--ctx", "32", "-n", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not fit the context of 32 tokens"),
        "{}",
        stderr(&o)
    );
    let o = deepedge(&["run", "-m", &m, "--ids", "1,999999", "-n", "1"]);
    assert!(
        stderr(&o).contains("outside the vocabulary"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn score_tokenize_inspect_bench_json_shapes() {
    let Some(m) = qwen() else { return };
    let s = json(&deepedge(&[
        "score",
        "-m",
        &m,
        "--ids",
        "9707,1879,0",
        "--json",
    ]));
    assert_eq!(s["argmax"].as_array().unwrap().len(), 3);
    assert_eq!(s["last_logits"].as_array().unwrap().len(), 151936);

    let t = json(&deepedge(&[
        "tokenize",
        "-m",
        &m,
        "-p",
        "Hello world",
        "--json",
    ]));
    assert_eq!(t["ids"], serde_json::json!([9707, 1879]));

    let i = json(&deepedge(&["inspect", "-m", &m, "--json"]));
    assert_eq!(i["metadata"]["general.architecture"], "qwen2");
    // 24 blocks × 12 tensors + token_embd, output_norm, output.
    assert_eq!(i["tensors"].as_array().unwrap().len(), 291);
    assert_eq!(i["memory"]["kv_bytes_per_token"], 24 * 2 * 128 * 2);

    let b = json(&deepedge(&[
        "bench", "-m", &m, "-p", "8", "-n", "4", "-r", "1", "--json",
    ]));
    for k in ["pp_tps", "tg_tps", "load_s", "peak_rss_mib"] {
        assert!(b[k].as_f64().unwrap() > 0.0, "{k}");
    }
}

#[test]
fn perplexity_json_shape() {
    let Some(m) = qwen() else { return };
    let text =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/fixtures/gpl-3.txt");
    let p = json(&deepedge(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        &text.display().to_string(),
        "-c",
        "64",
        "--chunks",
        "2",
        "--json",
    ]));
    assert_eq!(p["chunks"], 2);
    assert!(p["tokens"].as_u64().unwrap() > 1000);
    assert!(p["ppl"].as_f64().unwrap() > 1.0);
}

#[test]
fn stop_strings_end_the_text_before_them() {
    let Some(m) = qwen() else { return };
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "-m",
            &m,
            "-p",
            "def fibonacci(n):",
            "-n",
            "24",
            "--temp",
            "0",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&deepedge(&args))
    };
    let full = run(&[]);
    let full_text = full["text"].as_str().unwrap();
    let cut = full_text
        .find("return")
        .expect("a fibonacci body returns something");
    let stopped = run(&["--stop", "return"]);
    // The text up to (not including) the first stop string, and nothing after it.
    assert_eq!(stopped["text"].as_str().unwrap(), &full_text[..cut]);
}

#[test]
fn chat_reads_turns_from_stdin_and_falls_back_to_chatml() {
    use std::io::Write;
    // Gemma-3-270M's GGUF has no chat template.
    let Some(gemma) = cached_model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepedge"))
        .args(["chat", "-m", &gemma, "--temp", "0", "-n", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello\n/reset\nHi again\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("using ChatML"));
    // A prompt before each of the three lines and one more before end of input, where chat leaves cleanly.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.matches("> ").count() >= 4, "{stdout}");
    assert!(stdout.ends_with("> \n"), "{stdout}");
}
