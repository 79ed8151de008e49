//! The continuous-batching engine (`deepedge::scheduler`) on the tiny random-weight models: requests run
//! together give the same greedy tokens and text as each run alone through `Session::generate` (itself
//! checked against transformers in `tiny_models.rs`/`tiny_moe.rs`), prefixes are reused from the prefix
//! cache, and queueing, cancellation, bad requests, embeddings and shutdown behave.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::tiny::{fixture, tiny_dir};
use deepedge::kv::KvType;
use deepedge::sample::SamplerParams;
use deepedge::scheduler::{Engine, EngineOptions, Event, Request, SubmitError, Summary};
use deepedge::session::GenerateParams;
use deepedge::{FinishReason, Model, Session, SessionOptions};

fn model(name: &str) -> Arc<Model> {
    let fx = fixture(name);
    let file = fx["gguf"]["F32"].as_str().expect("an F32 file");
    Arc::new(Model::load(tiny_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}")))
}

fn options(parallel: usize) -> EngineOptions {
    EngineOptions {
        parallel,
        n_ctx: 64,
        queue: 64,
        threads: Some(2),
        kv_type: KvType::F32,
        step_tokens: 8,
        prefix_cache_bytes: 64 << 20,
        prefix_min_tokens: 4,
    }
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::default()
    }
}

/// What a request produced, collected from its events.
#[derive(Debug, Default)]
struct Outcome {
    ids: Vec<u32>,
    text: String,
    summary: Option<Summary>,
    error: Option<String>,
}

type Receiver = mpsc::Receiver<Event>;

fn request(prompt: Vec<u32>, params: GenerateParams) -> (Request, Receiver) {
    let (tx, rx) = mpsc::channel();
    let request = Request {
        prompt,
        params,
        on_event: Box::new(move |event| tx.send(event).is_ok()),
    };
    (request, rx)
}

fn collect(rx: Receiver) -> Outcome {
    let mut out = Outcome::default();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            Event::Token { id, text } => {
                out.ids.push(id);
                out.text.push_str(&text);
            }
            Event::Done(summary) => {
                out.summary = Some(summary);
                return out;
            }
            Event::Failed(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    }
}

/// Prompts of different lengths (ids below the tiny vocabulary).
fn prompts(n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            (0..3 + 5 * i)
                .map(|j| ((i * 131 + j * 17 + 7) % 250) as u32)
                .collect()
        })
        .collect()
}

fn alone(m: &Arc<Model>, prompt: &[u32], params: &GenerateParams) -> (Vec<u32>, String) {
    let mut s = Session::new_cpu(
        Arc::clone(m),
        &SessionOptions {
            n_ctx: Some(64),
            threads: Some(2),
            kv_type: KvType::F32,
        },
    )
    .expect("session");
    let g = s
        .generate(prompt, params, None, |_| true)
        .expect("generate");
    (g.ids, g.text)
}

fn batched_equals_alone(name: &str) {
    let m = model(name);
    let engine = Engine::start(Arc::clone(&m), options(3)).expect("engine");
    let params = greedy(10);
    let prompts = prompts(7);
    // Seven requests, three sequences at a time: some wait, join mid-stream and prefill in chunks.
    let receivers: Vec<Receiver> = prompts
        .iter()
        .map(|p| {
            let (req, rx) = request(p.clone(), params.clone());
            engine.submit(req).expect("submit");
            rx
        })
        .collect();
    for (prompt, rx) in prompts.iter().zip(receivers) {
        let got = collect(rx);
        assert_eq!(got.error, None, "{name}");
        let (ids, text) = alone(&m, prompt, &params);
        assert_eq!(got.ids, ids, "{name}: prompt of {} tokens", prompt.len());
        assert_eq!(got.text, text, "{name}: text");
        let summary = got.summary.unwrap();
        assert_eq!(summary.finish, FinishReason::Length);
        assert_eq!(summary.prompt_tokens, prompt.len());
        assert_eq!(summary.completion_tokens, 10);
    }
    assert!(engine.stats().steps > 0);
}

#[test]
fn qwen2_batched_greedy_equals_alone() {
    batched_equals_alone("qwen2");
}

#[test]
fn gemma3_batched_greedy_equals_alone() {
    batched_equals_alone("gemma3");
}

#[test]
fn deepseek_v3_batched_greedy_equals_alone() {
    batched_equals_alone("deepseek-v3");
}

#[test]
fn qwen2moe_batched_greedy_equals_alone() {
    batched_equals_alone("qwen2moe");
}

#[test]
fn sampled_tokens_follow_the_seed_not_the_batch() {
    let m = model("llama");
    let engine = Engine::start(Arc::clone(&m), options(4)).expect("engine");
    let params = GenerateParams {
        max_tokens: 12,
        ignore_eos: true,
        sampler: SamplerParams {
            seed: 42,
            ..SamplerParams::LLAMA_CPP_DEFAULTS
        },
        ..GenerateParams::default()
    };
    let prompt = prompts(3).remove(2);
    let receivers: Vec<Receiver> = (0..3)
        .map(|_| {
            let (req, rx) = request(prompt.clone(), params.clone());
            engine.submit(req).expect("submit");
            rx
        })
        .collect();
    let (ids, _) = alone(&m, &prompt, &params);
    for rx in receivers {
        assert_eq!(collect(rx).ids, ids);
    }
}

#[test]
fn a_shared_prefix_is_reused_and_changes_nothing() {
    let m = model("qwen2");
    let engine = Engine::start(Arc::clone(&m), options(2)).expect("engine");
    let params = greedy(6);
    let system: Vec<u32> = (0..30).map(|j| (j * 13 + 5) % 250).collect();
    let first = [system.clone(), vec![11, 12, 13]].concat();
    let second = [system.clone(), vec![21, 22, 23, 24]].concat();

    let (req, rx) = request(first.clone(), params.clone());
    engine.submit(req).unwrap();
    let a = collect(rx);
    assert_eq!(a.summary.unwrap().cached_tokens, 0);

    let (req, rx) = request(second.clone(), params.clone());
    engine.submit(req).unwrap();
    let b = collect(rx);
    assert_eq!(
        b.summary.unwrap().cached_tokens,
        system.len(),
        "the system prompt comes from the cache"
    );
    assert_eq!(b.ids, alone(&m, &second, &params).0);

    // The same prompt again reuses all but its last token.
    let (req, rx) = request(second.clone(), params.clone());
    engine.submit(req).unwrap();
    let c = collect(rx);
    assert_eq!(c.summary.unwrap().cached_tokens, second.len() - 1);
    assert_eq!(c.ids, b.ids);
    let stats = engine.stats();
    assert_eq!(stats.prefix_hits, 2);
    assert!(stats.prefix_entries >= 1 && stats.prefix_bytes > 0);
}

#[test]
fn cancelled_and_disconnected_requests_leave_at_once() {
    let m = model("llama");
    let engine = Engine::start(Arc::clone(&m), options(2)).expect("engine");

    // The callback refuses the third token: the client went away.
    let (tx, rx) = mpsc::channel();
    let mut seen = 0;
    engine
        .submit(Request {
            prompt: vec![1, 2, 3],
            params: greedy(40),
            on_event: Box::new(move |event| {
                let is_token = matches!(event, Event::Token { .. });
                let _ = tx.send(event);
                seen += usize::from(is_token);
                seen < 3
            }),
        })
        .unwrap();
    let got = collect(rx);
    assert_eq!(got.ids.len(), 3);
    assert_eq!(got.summary.unwrap().finish, FinishReason::Cancelled);

    // A handle cancels from another thread.
    let (req, rx) = request(vec![4, 5, 6], greedy(40));
    let handle = engine.submit(req).unwrap();
    handle.cancel();
    let got = collect(rx);
    assert_eq!(got.summary.unwrap().finish, FinishReason::Cancelled);
    assert!(got.ids.len() < 40);
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let m = model("llama");
    let engine = Engine::start(Arc::clone(&m), options(1)).expect("engine");
    let submit = |prompt: Vec<u32>, params: GenerateParams| {
        engine
            .submit(request(prompt, params).0)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(submit(vec![], greedy(4)).contains("empty"));
    assert!(submit(vec![1; 64], greedy(4)).contains("does not fit the context of 64"));
    assert!(submit(vec![1_000_000], greedy(4)).contains("outside the vocabulary"));
    let bad_stop = GenerateParams {
        stop: vec![String::new()],
        ..greedy(4)
    };
    assert!(submit(vec![1], bad_stop).contains("stop strings"));
    let bad_temp = GenerateParams {
        sampler: SamplerParams {
            temperature: -1.0,
            ..SamplerParams::default()
        },
        ..greedy(4)
    };
    assert!(!submit(vec![1], bad_temp).is_empty());

    // A long max_tokens is capped by the context: 60-token prompt, 4 positions left.
    let (req, rx) = request(vec![3; 60], greedy(1000));
    engine.submit(req).unwrap();
    let got = collect(rx);
    assert_eq!(got.ids.len(), 4);
    assert_eq!(got.summary.unwrap().finish, FinishReason::Length);
}

#[test]
fn a_full_queue_refuses_and_the_rest_complete() {
    let m = model("llama");
    let engine = Engine::start(
        Arc::clone(&m),
        EngineOptions {
            queue: 1,
            ..options(1)
        },
    )
    .expect("engine");
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..4 {
        let (req, rx) = request(vec![1 + i, 2, 3], greedy(30));
        match engine.submit(req) {
            Ok(_) => accepted.push(rx),
            Err(SubmitError::QueueFull(1)) => refused += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(
        refused >= 1,
        "one running and one waiting at most leave no room"
    );
    for rx in accepted {
        let got = collect(rx);
        assert_eq!(got.ids.len(), 30);
    }
}

#[test]
fn embeddings_are_unit_vectors_per_input() {
    let m = model("qwen2");
    let engine = Engine::start(Arc::clone(&m), options(2)).expect("engine");
    let (tx, rx) = mpsc::channel();
    let inputs = vec![vec![1, 2, 3, 4], vec![9, 8, 7], vec![1, 2, 3, 4]];
    // Generation runs at the same time.
    let (req, gen_rx) = request(vec![5, 6, 7], greedy(8));
    engine.submit(req).unwrap();
    engine
        .embed(
            inputs.clone(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .unwrap();
    let vectors = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("embeddings");
    assert_eq!(vectors.len(), 3);
    for v in &vectors {
        assert_eq!(v.len(), m.hparams.n_embd);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(
        diff(&vectors[0], &vectors[2]) < 1e-5,
        "same input, same vector"
    );
    assert!(
        diff(&vectors[0], &vectors[1]) > 1e-3,
        "different inputs differ"
    );
    assert_eq!(collect(gen_rx).ids, alone(&m, &[5, 6, 7], &greedy(8)).0);
    assert!(engine
        .embed(vec![], Box::new(|_| {}))
        .unwrap_err()
        .to_string()
        .contains("nothing"));
}

#[test]
fn shutdown_finishes_in_flight_and_refuses_new() {
    let m = model("llama");
    let engine = Engine::start(Arc::clone(&m), options(1)).expect("engine");
    let (req, rx) = request(vec![1, 2, 3], greedy(20));
    engine.submit(req).unwrap();
    let (req2, rx2) = request(vec![4, 5, 6], greedy(5));
    engine.submit(req2).unwrap();
    engine.shutdown();
    assert!(matches!(
        engine.submit(request(vec![1], greedy(1)).0),
        Err(SubmitError::ShuttingDown)
    ));
    assert_eq!(collect(rx).ids.len(), 20);
    assert_eq!(collect(rx2).ids.len(), 5);
    for _ in 0..100 {
        if engine.is_finished() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the worker did not exit after shutdown");
}
