//! Evaluation of a model on text: perplexity the way llama.cpp's `llama-perplexity` computes it, and
//! teacher-forced top-1 agreement with a reference continuation.
//!
//! Perplexity: tokenize the whole text (BOS added when the model adds one), cut it into chunks of `n_ctx`
//! tokens, set each chunk's first token to BOS when the model adds BOS, evaluate each chunk from an empty
//! cache and score only the predictions of its second half (positions `n_ctx/2 .. n_ctx-1`), so every scored
//! token has at least `n_ctx/2` tokens of context.

use crate::error::{Error, Result};
use crate::sample::argmax;
use crate::session::Session;

/// The text of a perplexity file as llama.cpp's `-f` reads it: one trailing newline dropped.
pub fn perplexity_text(file_contents: &str) -> &str {
    file_contents.strip_suffix('\n').unwrap_or(file_contents)
}

/// Result of [`perplexity`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// Chunks evaluated.
    pub chunks: usize,
    /// Tokens in the whole text.
    pub tokens: usize,
    /// Predictions scored.
    pub scored: usize,
}

/// Perplexity of `tokens` (already tokenized with BOS as the model wants) in chunks of `n_ctx`, at most
/// `max_chunks` of them. `progress` is called after each chunk with (done, total, running perplexity).
pub fn perplexity(
    session: &mut Session,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: Option<usize>,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Perplexity> {
    if n_ctx < 4 {
        return Err(Error::InvalidArgument(
            "perplexity chunks must be at least 4 tokens".into(),
        ));
    }
    let available = tokens.len() / n_ctx;
    if available == 0 {
        return Err(Error::InvalidArgument(format!(
            "the text has {} tokens; perplexity needs at least one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let model = std::sync::Arc::clone(session.model());
    let tok = &model.tokenizer;
    let n_vocab = model.hparams.n_vocab;
    let n_chunks = max_chunks.map_or(available, |n| n.min(available));
    let first = n_ctx / 2;
    let (mut nll, mut scored) = (0f64, 0usize);
    for i in 0..n_chunks {
        let mut chunk = tokens[i * n_ctx..(i + 1) * n_ctx].to_vec();
        if let (true, Some(bos)) = (tok.add_bos(), tok.bos()) {
            chunk[0] = bos;
        }
        let logits = session.score(&chunk)?;
        for j in first..n_ctx - 1 {
            nll -= log_softmax_at(
                &logits[j * n_vocab..(j + 1) * n_vocab],
                chunk[j + 1] as usize,
            );
            scored += 1;
        }
        progress(i + 1, n_chunks, (nll / scored as f64).exp());
    }
    Ok(Perplexity {
        ppl: (nll / scored as f64).exp(),
        chunks: n_chunks,
        tokens: tokens.len(),
        scored,
    })
}

/// `log softmax(row)[index]`, accumulated in f64.
pub fn log_softmax_at(row: &[f32], index: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[index] as f64 - max - sum.ln()
}

/// Per-position outcome of [`teacher_forced`].
#[derive(Clone, Debug, PartialEq)]
pub struct ForcedStep {
    /// The reference's token at this position.
    pub expected: u32,
    /// Our top-1 given the reference's prefix.
    pub ours: u32,
    /// Our logit of `expected` minus our logit of `ours` (≤ 0; 0 when they agree).
    pub margin: f32,
    /// Our logit of `expected` minus our logit of the reference's runner-up, when one was given: compare it
    /// with the reference's own gap for a continuous measure of agreement.
    pub gap_to_runner_up: Option<f32>,
}

/// Feeds `prompt ++ continuation` in one pass and reports, for each continuation token, our top-1
/// prediction given the reference's own prefix (teacher forcing). `runner_up` optionally holds the
/// reference's second choice at each step.
pub fn teacher_forced(
    session: &mut Session,
    prompt: &[u32],
    continuation: &[u32],
    runner_up: Option<&[u32]>,
) -> Result<Vec<ForcedStep>> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument(
            "teacher forcing needs a non-empty prompt".into(),
        ));
    }
    let n_vocab = session.model().hparams.n_vocab;
    let mut all = prompt.to_vec();
    all.extend_from_slice(continuation);
    // The last continuation token is never an input whose prediction we need.
    let logits = session.score(&all[..all.len() - 1])?;
    Ok(continuation
        .iter()
        .enumerate()
        .map(|(i, &expected)| {
            let row = &logits[(prompt.len() - 1 + i) * n_vocab..(prompt.len() + i) * n_vocab];
            let ours = argmax(row);
            let gap_to_runner_up = runner_up
                .and_then(|r| r.get(i))
                .and_then(|&other| row.get(other as usize))
                .map(|&other| row[expected as usize] - other);
            ForcedStep {
                expected,
                ours,
                margin: row[expected as usize] - row[ours as usize],
                gap_to_runner_up,
            }
        })
        .collect())
}
