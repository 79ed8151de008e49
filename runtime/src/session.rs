//! Sessions: a backend with its KV cache plus the tokens it holds, and `generate`, which prefills a prompt,
//! samples, detokenizes incrementally and streams text to a callback.
//!
//! A session keeps its conversation: a new prompt that starts with the tokens already in the cache only
//! computes the new part (chat turns re-send the whole rendered conversation and pay only for the new
//! turn). Generation stops at an end-of-generation token (unless ignored), a stop string, the token budget,
//! the end of the context, or a cancel flag set from another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::cpu::{CpuBackend, CpuOptions};
use crate::backend::{Backend, LogitsRequest};
use crate::error::{Error, Result};
use crate::kv::KvType;
use crate::model::Model;
use crate::sample::{Sampler, SamplerParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token.
    Eos,
    /// A stop string.
    Stop,
    /// The token budget or the context ran out.
    Length,
    /// The callback or the cancel flag asked to stop.
    Cancelled,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Strings that end generation; they are not part of the returned text.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Render control tokens (e.g. `<|im_end|>`) in the text.
    pub render_special: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampler: SamplerParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            render_special: false,
        }
    }
}

/// A prompt for [`Session::complete`]: raw text, tokenized as `deepedge run -p` does
/// ([`Tokenizer::encode_prompt`](crate::tokenizer::Tokenizer::encode_prompt)), or token ids fed as they are.
#[derive(Clone, Copy, Debug)]
pub enum Prompt<'a> {
    Text(&'a str),
    Ids(&'a [u32]),
}

/// Time spent, in wall-clock seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub prefill_tokens: usize,
    pub prefill: Duration,
    pub decode_tokens: usize,
    pub decode: Duration,
}

impl Timings {
    pub fn prefill_tps(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill)
    }
    pub fn decode_tps(&self) -> f64 {
        rate(self.decode_tokens, self.decode)
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// The result of [`Session::generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (including a final end-of-generation token, if one was sampled).
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub timings: Timings,
}

/// A conversation with a model on one backend.
pub struct Session {
    backend: Box<dyn Backend>,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
}

/// Session options for the CPU backend.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Context size; `None` = min(model's training context, 4096).
    pub n_ctx: Option<usize>,
    pub threads: Option<usize>,
    pub kv_type: KvType,
}

/// Context used when none is given: the model's, capped at this.
pub const DEFAULT_MAX_CTX: usize = 4096;

impl Session {
    /// A session on the CPU backend.
    pub fn new_cpu(model: Arc<Model>, options: &SessionOptions) -> Result<Self> {
        let ctx_train = model.hparams.ctx_train;
        let n_ctx = options.n_ctx.unwrap_or(ctx_train.min(DEFAULT_MAX_CTX));
        if n_ctx > ctx_train {
            tracing::warn!(
                n_ctx,
                ctx_train,
                "context is longer than the model was trained for; quality may drop"
            );
        }
        let backend = CpuBackend::new(
            model,
            &CpuOptions {
                threads: options.threads,
                n_ctx,
                kv_type: options.kv_type,
                n_seq: 1,
            },
        )?;
        Ok(Self::with_backend(Box::new(backend)))
    }

    pub fn with_backend(backend: Box<dyn Backend>) -> Self {
        Self {
            backend,
            tokens: Vec::new(),
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        self.backend.model()
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn n_ctx(&self) -> usize {
        self.backend.n_ctx()
    }

    /// How often each expert was chosen, per MoE layer, over every token this session has run (prompt and
    /// generated); `None` for dense models.
    pub fn moe_stats(&self) -> Option<&crate::model::routing::MoeStats> {
        self.backend.moe_stats()
    }

    /// Restarts the expert counters.
    pub fn clear_moe_stats(&mut self) {
        self.backend.clear_moe_stats();
    }

    /// Tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.backend.truncate(0);
    }

    /// Checks that a prompt of `prompt` tokens fits the context, with room for one generated token.
    pub fn check_fits(&self, prompt: usize, generate: usize) -> Result<()> {
        if prompt == 0 {
            return Err(Error::InvalidArgument(
                "the prompt is empty (no tokens)".into(),
            ));
        }
        if prompt + generate > self.n_ctx() {
            return Err(Error::ContextOverflow {
                prompt,
                generate,
                ctx: self.n_ctx(),
                ctx_train: self.model().hparams.ctx_train,
            });
        }
        Ok(())
    }

    /// Makes the cache hold exactly `ids` and returns the logits requested for the part that had to be
    /// computed. Reuses the longest cached prefix.
    pub fn feed(&mut self, ids: &[u32], request: LogitsRequest) -> Result<Vec<f32>> {
        self.feed_counted(ids, request).map(|(logits, _)| logits)
    }

    /// [`Session::feed`], also returning how many tokens had to be computed (not reused from the cache).
    fn feed_counted(&mut self, ids: &[u32], request: LogitsRequest) -> Result<(Vec<f32>, usize)> {
        self.check_fits(ids.len(), 0)?;
        let mut common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        if common == ids.len() {
            common -= 1; // recompute the last token to get its logits
        }
        self.tokens.truncate(common);
        self.backend.truncate(common);
        let logits = self.backend.forward(&ids[common..], request)?;
        self.tokens.extend_from_slice(&ids[common..]);
        Ok((logits, ids.len() - common))
    }

    /// Appends `ids` to the cache as they are (no prefix reuse) and returns the requested logits.
    pub fn append(&mut self, ids: &[u32], request: LogitsRequest) -> Result<Vec<f32>> {
        if self.tokens.len() + ids.len() > self.n_ctx() {
            return Err(Error::ContextFull { ctx: self.n_ctx() });
        }
        let logits = self.backend.forward(ids, request)?;
        self.tokens.extend_from_slice(ids);
        Ok(logits)
    }

    /// Logits of every position of `ids`, computed from an empty cache (scoring, perplexity).
    pub fn score(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.reset();
        self.check_fits(ids.len(), 0)?;
        let logits = self.backend.forward(ids, LogitsRequest::All)?;
        self.tokens.extend_from_slice(ids);
        Ok(logits)
    }

    /// Generates a continuation of `prompt` as `deepedge run` does: the prompt is tokenized (text) or taken
    /// as it is (ids), checked to fit the context together with `params.max_tokens`, then generated with
    /// [`Session::generate`]. The CLI and every binding call this, so they produce the same text.
    pub fn complete(
        &mut self,
        prompt: Prompt<'_>,
        params: &GenerateParams,
        cancel: Option<&AtomicBool>,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let ids = match prompt {
            Prompt::Text(text) => self.model().tokenizer.encode_prompt(text)?,
            Prompt::Ids(ids) => ids.to_vec(),
        };
        self.check_fits(ids.len(), params.max_tokens)?;
        self.generate(&ids, params, cancel, on_text)
    }

    /// Generates a continuation of `prompt_ids`, streaming text pieces to `on_text` (return `false` to
    /// stop). `cancel` may be set from another thread.
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerateParams,
        cancel: Option<&AtomicBool>,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let model = Arc::clone(self.model());
        let mut sampler = Sampler::new(params.sampler.clone())?;
        let mut output = TextOutput::new(&model.tokenizer, params)?;

        let mut timings = Timings::default();
        let start = Instant::now();
        let (mut logits, computed) = self.feed_counted(prompt_ids, LogitsRequest::Last)?;
        timings.prefill = start.elapsed();
        timings.prefill_tokens = computed;

        let mut ids = Vec::new();
        let mut text = String::new();
        let decode_start = Instant::now();
        let mut finish = FinishReason::Length;
        let mut emit = |piece: &str, text: &mut String| -> bool {
            if piece.is_empty() {
                return true;
            }
            text.push_str(piece);
            on_text(piece)
        };
        while ids.len() < params.max_tokens {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                finish = FinishReason::Cancelled;
                break;
            }
            let id = sampler.sample(&mut logits, &self.tokens);
            ids.push(id);
            let (ready, ended) = output.push(id);
            if !emit(&ready, &mut text) {
                finish = FinishReason::Cancelled;
                break;
            }
            if let Some(reason) = ended {
                finish = reason;
                break;
            }
            if ids.len() == params.max_tokens || self.tokens.len() >= self.n_ctx() {
                break;
            }
            logits = self.backend.forward(&[id], LogitsRequest::Last)?;
            self.tokens.push(id);
            timings.decode_tokens += 1;
        }
        if matches!(finish, FinishReason::Length | FinishReason::Eos) {
            emit(&output.finish(), &mut text);
        }
        timings.decode = decode_start.elapsed();
        Ok(Generation {
            prompt_ids: prompt_ids.to_vec(),
            ids,
            text,
            finish,
            timings,
        })
    }
}

/// Turns sampled ids into the text a generation streams: end-of-generation tokens end it (unless
/// ignored), pieces are whole UTF-8 characters, stop strings end it and are cut from the text. Shared by
/// [`Session::generate`] and the batch scheduler so both produce the same text for the same ids.
pub(crate) struct TextOutput<'a> {
    tokenizer: &'a Tokenizer,
    decoder: StreamDecoder<'a>,
    stops: StopFilter,
    ignore_eos: bool,
}

impl<'a> TextOutput<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer, params: &GenerateParams) -> Result<Self> {
        if params.stop.iter().any(String::is_empty) {
            return Err(Error::InvalidArgument(
                "stop strings must not be empty".into(),
            ));
        }
        Ok(Self {
            tokenizer,
            decoder: StreamDecoder::new(tokenizer, params.render_special),
            stops: StopFilter::new(params.stop.clone()),
            ignore_eos: params.ignore_eos,
        })
    }

    /// Adds a sampled id: the text that can be emitted now, and why generation ends if this id ends it
    /// ([`FinishReason::Eos`] or [`FinishReason::Stop`]).
    pub(crate) fn push(&mut self, id: u32) -> (String, Option<FinishReason>) {
        if !self.ignore_eos && self.tokenizer.is_eog(id) {
            return (String::new(), Some(FinishReason::Eos));
        }
        let piece = self.decoder.push(id);
        let (ready, stopped) = self.stops.push(&piece);
        (ready, stopped.then_some(FinishReason::Stop))
    }

    /// The text still held back, once generation ended at the token budget or an end-of-generation token.
    pub(crate) fn finish(self) -> String {
        let mut stops = self.stops;
        let tail = self.decoder.finish();
        let (ready, _) = stops.push(&tail);
        ready + &stops.flush()
    }
}

/// Holds back streamed text that might be the start of a stop string.
struct StopFilter {
    stops: Vec<String>,
    pending: String,
    done: bool,
}

impl StopFilter {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            pending: String::new(),
            done: false,
        }
    }

    /// Adds text; returns what can be emitted and whether a stop string was reached.
    fn push(&mut self, piece: &str) -> (String, bool) {
        if self.done {
            return (String::new(), true);
        }
        self.pending.push_str(piece);
        if self.stops.is_empty() {
            return (std::mem::take(&mut self.pending), false);
        }
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            self.done = true;
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&k| s.is_char_boundary(k))
                    .map(move |k| &s[..k])
            })
            .filter(|prefix| self.pending.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::StopFilter;

    #[test]
    fn stop_filter_holds_back_prefixes_and_cuts_at_the_stop() {
        let stops = vec!["</end>".to_string(), "\n\n".to_string()];
        let mut f = StopFilter::new(stops.clone());
        assert_eq!(f.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(f.push("/e"), (String::new(), false));
        assert_eq!(f.push("x"), ("</ex".to_string(), false));
        assert_eq!(f.push("ok\n"), ("ok".to_string(), false));
        assert_eq!(f.push("\nmore"), (String::new(), true));
        let mut f = StopFilter::new(stops);
        assert_eq!(f.push("a</end>b"), ("a".to_string(), true));
        let none: Vec<String> = vec![];
        let mut f = StopFilter::new(none);
        assert_eq!(f.push("x"), ("x".to_string(), false));
    }
}
