//! Tokenizer checks against real GGUF models and llama.cpp reference fixtures.
//!
//! Models come from `$DEEPEDGE_CACHE/models` (default `~/.cache/deepedge/models`, filled by
//! `scripts/fetch-models.sh`); a missing model makes its test print a SKIP line and pass. Reference ids come
//! from `tests/reference/fixtures/<model-key>.json`, produced by llama.cpp through node-llama-cpp
//! (`tests/reference/make_fixtures.mjs`): every `tokenize` entry must match exactly — plain prompt ids
//! (`parse_special = false`), ids with special-token parsing, and the detokenized text. This file tests
//! only the tokenizer; generation fixtures are checked elsewhere.

use std::time::Instant;

use deepedge::gguf::GgufFile;
use deepedge::tokenizer::{ChatMessage, StreamDecoder, Tokenizer};

mod common;

use common::{fixture, ids, model_path, GEMMA, QWEN};

/// Load a model's tokenizer, or `None` (with a SKIP note) when the model is not in the cache.
fn load(key: &str) -> Option<Tokenizer> {
    let path = model_path(key)?;
    let f = GgufFile::open(&path).expect("open GGUF");
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&f).expect("build tokenizer");
    eprintln!(
        "{key}: tokenizer built in {:.1} ms ({} tokens)",
        t0.elapsed().as_secs_f64() * 1e3,
        tok.n_vocab()
    );
    Some(tok)
}

/// Encoding `text` and streaming the ids back through a `StreamDecoder` gives `text` again.
fn assert_stream_round_trip(tok: &Tokenizer, text: &str) {
    let ids = tok.encode(text, false, false).unwrap();
    let mut dec = StreamDecoder::new(tok, false);
    let mut out = String::new();
    for &id in &ids {
        out.push_str(&dec.push(id));
    }
    out.push_str(&dec.finish());
    assert_eq!(out, text);
}

/// Compare every `tokenize` fixture entry; report all mismatches at once.
fn check_fixture(key: &str) {
    let Some(tok) = load(key) else { return };
    let fx = fixture(key);
    let entries = fx["tokenize"]
        .as_array()
        .expect("fixture has a tokenize list");
    let mut failures = Vec::new();
    let (mut ok_plain, mut ok_special, mut ok_detok) = (0, 0, 0);
    for e in entries {
        let text = e["text"].as_str().expect("text");
        let want = ids(&e["ids"]);
        let got = tok.encode(text, true, false).expect("encode");
        if got == want {
            ok_plain += 1;
        } else {
            failures.push(format!("plain {text:?}\n   want {want:?}\n   got  {got:?}"));
        }
        if let Some(want_sp) = e.get("ids_parse_special").map(ids) {
            let got_sp = tok.encode(text, true, true).expect("encode");
            if got_sp == want_sp {
                ok_special += 1;
            } else {
                failures.push(format!(
                    "parse_special {text:?}\n   want {want_sp:?}\n   got  {got_sp:?}"
                ));
            }
        }
        if let Some(want_detok) = e["detok"].as_str() {
            let got_detok = tok.decode(&want, false);
            if got_detok == want_detok {
                ok_detok += 1;
            } else {
                failures.push(format!(
                    "detok {text:?}\n   want {want_detok:?}\n   got  {got_detok:?}"
                ));
            }
        }
    }
    eprintln!(
        "{key}: {} entries; plain ids match {ok_plain}, parse_special ids match {ok_special}, detok match {ok_detok}",
        entries.len()
    );
    assert!(
        failures.is_empty(),
        "{key}: {} mismatches against llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn qwen_matches_llama_cpp_fixtures() {
    check_fixture(QWEN);
}

#[test]
fn gemma_matches_llama_cpp_fixtures() {
    check_fixture(GEMMA);
}

#[test]
fn qwen_known_facts() {
    let Some(tok) = load(QWEN) else { return };
    assert_eq!(tok.pre(), "qwen2");
    assert!(!tok.add_bos());
    assert_eq!(
        tok.encode("Hello world", true, false).unwrap(),
        [9707, 1879]
    );
    assert_eq!(tok.encode("", true, false).unwrap(), Vec::<u32>::new());
    // Control tokens are text unless special parsing is requested.
    let plain = tok.encode("<|im_start|>", false, false).unwrap();
    assert!(plain.len() > 1, "{plain:?}");
    assert_eq!(tok.encode("<|im_start|>", false, true).unwrap(), [151644]);
    for id in [151643, 151645] {
        assert!(tok.is_eog(id), "{id} should end generation");
    }
    assert!(!tok.is_eog(151644));
    // llama.cpp's end-of-generation list includes "</s>": Qwen's normal token 128247 becomes control.
    assert!(tok.is_eog(128247) && tok.is_control(128247));
    assert_eq!(tok.encode("</s>", false, true).unwrap(), [128247]);
    assert_eq!(tok.decode(&[128247], false), "");
    assert_eq!(tok.decode(&[9707, 1879], false), "Hello world");
    assert_eq!(tok.decode(&[151645], false), "");
    assert_eq!(tok.decode(&[151645], true), "<|im_end|>");
    // Round trip through the streaming decoder.
    assert_stream_round_trip(&tok, "Emoji: 😀🎉 and 中文, tabs\t\tand\nnewlines");
}

#[test]
fn gemma_known_facts() {
    let Some(tok) = load(GEMMA) else { return };
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), Some(2));
    assert_eq!(tok.encode("", true, false).unwrap(), [2]);
    let ids = tok.encode("Hello world", true, false).unwrap();
    assert_eq!(ids[0], 2);
    assert_eq!(tok.decode(&ids[1..], false), "Hello world");
    assert!(tok.is_eog(1), "<eos>");
    assert!(tok.is_eog(106), "<end_of_turn>");
    assert_eq!(
        tok.encode("<start_of_turn>", false, true).unwrap(),
        [105],
        "control token with parse_special"
    );
    assert_ne!(tok.encode("<start_of_turn>", false, false).unwrap(), [105]);
    assert_stream_round_trip(&tok, "Emoji: 😀🎉 and 中文, tabs\t\tand\nnewlines  end");
}

#[test]
fn qwen_chat_template_renders() {
    let Some(tok) = load(QWEN) else { return };
    let messages = [
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "hi"),
    ];
    let text = tok.apply_chat_template(&messages, true).unwrap();
    assert!(
        text.contains("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        "{text:?}"
    );
    assert!(text.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"));
    let ids = tok.encode(&text, false, true).unwrap();
    assert_eq!(ids[0], 151644);
}
