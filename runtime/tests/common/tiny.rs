//! The harness of the tiny random-weight model tests (`tests/tiny`): fixtures with transformers' float32
//! logits, and a check that scores each recorded sequence in one pass and again token by token.

use std::path::PathBuf;
use std::sync::Arc;

use deepedge::backend::LogitsRequest;
use deepedge::kv::KvType;
use deepedge::{Model, Session, SessionOptions};
use serde_json::Value;

pub fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/tiny")
}

pub fn fixture(name: &str) -> Value {
    let path = tiny_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run tests/tiny/make_tiny_models.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A recorded input sequence with transformers' logits.
pub struct Case {
    pub ids: Vec<u32>,
    /// `[position][n_vocab]`.
    pub logits: Vec<Vec<f32>>,
    pub argmax: Vec<usize>,
}

pub fn cases(fx: &Value) -> Vec<Case> {
    let n_vocab = fx["n_vocab"].as_u64().unwrap() as usize;
    fx["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let ids: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let logits: Vec<Vec<f32>> = c["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    let row: Vec<f32> = row
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                        .collect();
                    assert_eq!(row.len(), n_vocab);
                    row
                })
                .collect();
            let argmax = c["argmax"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(logits.len(), ids.len());
            Case {
                ids,
                logits,
                argmax,
            }
        })
        .collect()
}

/// Index of the largest logit (the first on ties), as `usize`.
pub fn argmax(row: &[f32]) -> usize {
    deepedge::sample::argmax(row) as usize
}

/// Differences of one run (one way of feeding one sequence) against the reference.
#[derive(Default)]
pub struct Diff {
    max_abs: f32,
    /// (case, position) of `max_abs`.
    worst: (usize, usize),
    positions: usize,
    argmax_agree: usize,
    /// (case, position, ours, reference) of every argmax disagreement.
    argmax_misses: Vec<(usize, usize, usize, usize)>,
}

impl Diff {
    fn add_row(
        &mut self,
        case: usize,
        pos: usize,
        ours: &[f32],
        reference: &[f32],
        ref_top: usize,
    ) {
        assert_eq!(ours.len(), reference.len(), "logit row width");
        assert!(
            ours.iter().all(|v| v.is_finite()),
            "case {case} position {pos}: non-finite logits"
        );
        let d = ours
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        if d > self.max_abs {
            self.max_abs = d;
            self.worst = (case, pos);
        }
        self.positions += 1;
        let top = argmax(ours);
        if top == ref_top {
            self.argmax_agree += 1;
        } else {
            self.argmax_misses.push((case, pos, top, ref_top));
        }
    }

    fn agreement(&self) -> f64 {
        self.argmax_agree as f64 / self.positions.max(1) as f64
    }
}

/// Tolerances of one weight type.
pub struct Tolerance {
    pub max_abs: f32,
    pub min_agreement: f64,
}

pub const F32: Tolerance = Tolerance {
    max_abs: 1e-3,
    min_agreement: 1.0,
};
pub const F16: Tolerance = Tolerance {
    max_abs: 1e-2,
    min_agreement: 1.0,
};
pub const Q8_0: Tolerance = Tolerance {
    max_abs: 0.25,
    min_agreement: 0.9,
};

/// Loads `<model>` (the fixture's GGUF of weight type `wtype`), runs every case both ways and checks them.
pub fn check(model: &str, wtype: &str, tol: Tolerance) {
    let fx = fixture(model);
    let file = fx["gguf"][wtype]
        .as_str()
        .unwrap_or_else(|| panic!("{model}.json has no {wtype} file"));
    let m = Model::load(tiny_dir().join(file)).unwrap_or_else(|e| panic!("{file} loads: {e}"));
    let n_vocab = fx["n_vocab"].as_u64().unwrap() as usize;
    assert_eq!(m.hparams.n_vocab, n_vocab, "{file}: vocabulary size");
    assert_eq!(m.hparams.arch.name(), fx["arch"].as_str().unwrap());
    let mut session = Session::new_cpu(
        Arc::new(m),
        &SessionOptions {
            n_ctx: Some(64),
            threads: Some(2),
            kv_type: KvType::F32,
        },
    )
    .expect("session");
    let cases = cases(&fx);

    let mut prefill = Diff::default();
    let mut decode = Diff::default();
    for (ci, case) in cases.iter().enumerate() {
        let logits = session.score(&case.ids).expect("score");
        assert_eq!(logits.len(), case.ids.len() * n_vocab);
        for (pos, ours) in logits.chunks_exact(n_vocab).enumerate() {
            prefill.add_row(ci, pos, ours, &case.logits[pos], case.argmax[pos]);
        }

        session.reset();
        for (pos, &id) in case.ids.iter().enumerate() {
            let ours = session
                .append(&[id], LogitsRequest::Last)
                .expect("decode step");
            assert_eq!(ours.len(), n_vocab);
            decode.add_row(ci, pos, &ours, &case.logits[pos], case.argmax[pos]);
        }
    }

    let mut failures = Vec::new();
    for (how, d) in [("prefill", &prefill), ("decode", &decode)] {
        eprintln!(
            "{file} {how}: max |Δlogit| = {:.3e} (case {}, position {}), argmax {}/{} ({:.1}%)",
            d.max_abs,
            d.worst.0,
            d.worst.1,
            d.argmax_agree,
            d.positions,
            100.0 * d.agreement()
        );
        if d.max_abs > tol.max_abs {
            failures.push(format!(
                "{how}: max |Δlogit| {:.3e} > {:.2e} at case {} position {}",
                d.max_abs, tol.max_abs, d.worst.0, d.worst.1
            ));
        }
        if d.agreement() < tol.min_agreement {
            failures.push(format!(
                "{how}: argmax agreement {:.1}% < {:.0}%; (case, position, ours, reference): {:?}",
                100.0 * d.agreement(),
                100.0 * tol.min_agreement,
                d.argmax_misses
            ));
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}
