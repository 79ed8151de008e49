//! Batched forward passes over several sequences (`Backend::forward_batch`, what `deepedge serve`'s
//! scheduler runs) against transformers' float32 logits on the tiny random-weight models (`tests/tiny`).
//!
//! Continuous batching must not change results: each sequence is fed in a schedule that mixes prefill
//! chunks, single decode tokens, sequences joining while others run, and a sequence that starts from a
//! prefix copied out of another one's cache — and every position's logits must still match the reference
//! within 1e-3 with the same argmax, as the single-sequence tests require. Covers dense (llama, qwen2,
//! gemma3 with its sliding window), latent attention (DeepSeek-V2/V3) and experts (Qwen2-MoE, Mixtral).

mod common;

use std::sync::Arc;

use common::tiny::{argmax, cases, fixture, tiny_dir, Case};
use deepedge::backend::cpu::{CpuBackend, CpuOptions};
use deepedge::backend::{Backend, LogitsRequest, SeqTokens};
use deepedge::kv::KvType;
use deepedge::Model;

fn backend(model: &str, n_seq: usize) -> CpuBackend {
    let fx = fixture(model);
    let file = fx["gguf"]["F32"].as_str().expect("an F32 file");
    let m = Model::load(tiny_dir().join(file)).unwrap_or_else(|e| panic!("{file} loads: {e}"));
    CpuBackend::new(
        Arc::new(m),
        &CpuOptions {
            threads: Some(2),
            n_ctx: 64,
            kv_type: KvType::F32,
            n_seq,
        },
    )
    .expect("backend")
}

/// One sequence of the schedule: which case it replays, from which position, in chunks of what size.
struct Feed<'a> {
    seq: usize,
    case: &'a Case,
    next: usize,
    chunk: usize,
    /// Step at which it joins the batch.
    joins_at: usize,
}

/// Checks one row of our logits against the reference row of `case` at `pos`; returns |Δ|max.
fn check_row(model: &str, seq: usize, pos: usize, ours: &[f32], case: &Case) -> f32 {
    let reference = &case.logits[pos];
    assert_eq!(ours.len(), reference.len(), "{model}: logit row width");
    assert!(ours.iter().all(|v| v.is_finite()), "{model}: non-finite");
    let d = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        d <= 1e-3,
        "{model}: sequence {seq} position {pos}: max |Δlogit| {d:.3e} > 1e-3"
    );
    assert_eq!(
        argmax(ours),
        case.argmax[pos],
        "{model}: sequence {seq} position {pos}: argmax"
    );
    d
}

fn continuous_batching_matches_reference(model: &str) {
    let fx = fixture(model);
    let cases = cases(&fx);
    let (a, b) = (&cases[0], &cases[1]);
    let n_vocab = fx["n_vocab"].as_u64().unwrap() as usize;
    let mut be = backend(model, 4);

    // Sequence 1 starts at step 2 from the first 4 positions of sequence 0, copied.
    const COPY_AT: usize = 2;
    const COPIED: usize = 4;
    let mut feeds = [
        Feed {
            seq: 0,
            case: a,
            next: 0,
            chunk: 5,
            joins_at: 0,
        },
        Feed {
            seq: 3,
            case: b,
            next: 0,
            chunk: 6,
            joins_at: 1,
        },
        Feed {
            seq: 1,
            case: a,
            next: COPIED,
            chunk: 1,
            joins_at: COPY_AT,
        },
    ];
    let mut worst = 0f32;
    let mut rows_checked = 0;
    for step in 0.. {
        if step == COPY_AT {
            assert!(be.seq_len(0) >= COPIED);
            be.copy_seq_prefix(0, 1, COPIED).expect("copy a prefix");
            assert_eq!(be.seq_len(1), COPIED);
        }
        let batch: Vec<SeqTokens> = feeds
            .iter()
            .filter(|f| f.joins_at <= step && f.next < f.case.ids.len())
            .map(|f| {
                let end = (f.next + f.chunk).min(f.case.ids.len());
                SeqTokens {
                    seq: f.seq,
                    tokens: &f.case.ids[f.next..end],
                    // Chunks ask for every row, single tokens for the last: both paths are checked.
                    output: if f.chunk > 1 {
                        LogitsRequest::All
                    } else {
                        LogitsRequest::Last
                    },
                }
            })
            .collect();
        if batch.is_empty() {
            break;
        }
        let out = be.forward_batch(&batch).expect("batched forward");
        assert_eq!(out.len(), batch.len());
        for (entry, rows) in batch.iter().zip(&out) {
            let feed = feeds.iter_mut().find(|f| f.seq == entry.seq).unwrap();
            assert_eq!(rows.len(), n_vocab * entry.tokens.len().min(feed.chunk));
            let first = feed.next + entry.tokens.len() - rows.len() / n_vocab;
            for (k, row) in rows.chunks_exact(n_vocab).enumerate() {
                worst = worst.max(check_row(model, entry.seq, first + k, row, feed.case));
                rows_checked += 1;
            }
            feed.next += entry.tokens.len();
            assert_eq!(be.seq_len(entry.seq), feed.next);
        }
        // After the first chunk, sequence 0 decodes one token at a time.
        feeds[0].chunk = 1;
    }
    assert_eq!(
        rows_checked,
        a.ids.len() + b.ids.len() + a.ids.len() - COPIED
    );
    eprintln!("{model}: {rows_checked} rows in a continuous batch, max |Δlogit| = {worst:.3e}");
}

#[test]
fn llama_continuous_batch() {
    continuous_batching_matches_reference("llama");
}

#[test]
fn qwen2_continuous_batch() {
    continuous_batching_matches_reference("qwen2");
}

#[test]
fn gemma3_continuous_batch() {
    continuous_batching_matches_reference("gemma3");
}

#[test]
fn deepseek_v3_continuous_batch() {
    continuous_batching_matches_reference("deepseek-v3");
}

#[test]
fn deepseek_v2_continuous_batch() {
    continuous_batching_matches_reference("deepseek-v2");
}

#[test]
fn qwen2moe_continuous_batch() {
    continuous_batching_matches_reference("qwen2moe");
}

#[test]
fn mixtral_continuous_batch() {
    continuous_batching_matches_reference("mixtral");
}

#[test]
fn hidden_states_are_the_lm_head_input() {
    // The LM head applied to the returned hidden states gives the logits (tied embedding: output =
    // token_embd), so `Hidden` rows are the final-normed states embeddings are pooled from.
    let fx = fixture("llama");
    let case = &cases(&fx)[0];
    let mut be = backend("llama", 2);
    let out = be
        .forward_batch(&[
            SeqTokens {
                seq: 0,
                tokens: &case.ids,
                output: LogitsRequest::Hidden,
            },
            SeqTokens {
                seq: 1,
                tokens: &case.ids,
                output: LogitsRequest::All,
            },
        ])
        .expect("forward");
    let m = be.model();
    let (e, n_vocab) = (m.hparams.n_embd, m.hparams.n_vocab);
    assert_eq!(out[0].len(), case.ids.len() * e);
    assert_eq!(out[1].len(), case.ids.len() * n_vocab);
    let mut row = vec![0f32; e];
    let hidden_last = &out[0][(case.ids.len() - 1) * e..];
    let logits_last = &out[1][(case.ids.len() - 1) * n_vocab..];
    for (id, &logit) in logits_last.iter().enumerate().step_by(37) {
        deepedge::backend::cpu::matmul::dequantize_row(&m.output, m.data(&m.output), id, &mut row)
            .expect("row");
        let dot: f32 = row.iter().zip(hidden_last).map(|(a, b)| a * b).sum();
        assert!(
            (dot - logit).abs() <= 1e-3 * logit.abs().max(1.0),
            "token {id}: {dot} vs {logit}"
        );
    }
}

#[test]
fn a_bad_batch_is_an_error_and_changes_no_cache() {
    let mut be = backend("llama", 2);
    be.forward_batch(&[SeqTokens {
        seq: 0,
        tokens: &[1, 2, 3],
        output: LogitsRequest::None,
    }])
    .expect("prefill");
    let bad_batches: [(&str, Vec<SeqTokens>); 4] = [
        (
            "appears twice",
            vec![
                SeqTokens {
                    seq: 1,
                    tokens: &[1],
                    output: LogitsRequest::Last,
                },
                SeqTokens {
                    seq: 1,
                    tokens: &[2],
                    output: LogitsRequest::Last,
                },
            ],
        ),
        (
            "does not exist",
            vec![SeqTokens {
                seq: 2,
                tokens: &[1],
                output: LogitsRequest::Last,
            }],
        ),
        (
            "outside the vocabulary",
            vec![
                SeqTokens {
                    seq: 0,
                    tokens: &[4],
                    output: LogitsRequest::Last,
                },
                SeqTokens {
                    seq: 1,
                    tokens: &[1_000_000],
                    output: LogitsRequest::Last,
                },
            ],
        ),
        (
            "context",
            vec![
                SeqTokens {
                    seq: 0,
                    tokens: &[4],
                    output: LogitsRequest::Last,
                },
                SeqTokens {
                    seq: 1,
                    tokens: &[7; 65],
                    output: LogitsRequest::Last,
                },
            ],
        ),
    ];
    for (what, batch) in bad_batches {
        let err = be.forward_batch(&batch).expect_err(what).to_string();
        assert!(
            err.contains(what) || (what == "context" && err.contains("full")),
            "{what}: {err}"
        );
        assert_eq!(
            (be.seq_len(0), be.seq_len(1)),
            (3, 0),
            "{what}: caches untouched"
        );
    }
    assert!(
        be.copy_seq_prefix(0, 1, 4).is_err(),
        "more than sequence 0 holds"
    );
    assert!(be.copy_seq_prefix(0, 0, 1).is_err(), "onto itself");
    assert!(be.copy_seq_prefix(0, 5, 1).is_err(), "no such sequence");
}
