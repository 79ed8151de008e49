//! Continuous batching: many requests share one model, one forward pass per step.
//!
//! Decoding is memory-bound, so a step that advances eight sequences reads the weights once instead of eight
//! times. The [`Engine`] owns a batching backend on a worker thread and runs steps while there is work:
//!
//! 1. **Intake** — requests wait in a bounded queue ([`SubmitError::QueueFull`] beyond it); between steps
//!    they join the batch while fewer than `parallel` sequences run.
//! 2. **Prefix reuse** — a joining request looks up the [`PrefixCache`] (the KV caches of finished
//!    sequences, bounded by a memory budget, LRU) and copies the longest shared prefix instead of computing it.
//! 3. **Step** — every decoding sequence contributes its last sampled token; prefilling sequences
//!    contribute chunks of their prompts from what is left of the step's token budget, so a long prompt is
//!    prefilled over several steps while the running streams keep flowing. One
//!    [`Backend::forward_batch`] runs them all, each sequence attending to its own cache.
//! 4. **Sampling and text** — each sequence samples with its own seeded sampler and turns ids into text
//!    exactly as [`Session::generate`](crate::Session::generate) does (end-of-generation, UTF-8-safe pieces,
//!    stop strings), streaming events to the request's callback.
//! 5. **Leaving** — a sequence that finishes, whose callback returns `false` (a client went away) or whose
//!    [`RequestHandle`] is cancelled leaves at once; its cache goes to the prefix cache or is released.
//!
//! A sequence's greedy tokens do not depend on what else is in the batch (beyond float rounding): rows are
//! independent through every matrix product and attention only reads the sequence's own cache (checked
//! against transformers in `runtime/tests/batching.rs`). Embedding inputs run through the same steps and
//! are mean-pooled over the final-normed hidden states and L2-normalized.

pub mod prefix_cache;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use self::prefix_cache::PrefixCache;
use crate::backend::cpu::{CpuBackend, CpuOptions};
use crate::backend::{Backend, LogitsRequest, SeqTokens};
use crate::error::{Error, Result};
use crate::kv::KvType;
use crate::model::Model;
use crate::sample::Sampler;
use crate::session::{FinishReason, GenerateParams, TextOutput};
use crate::tokenizer::Tokenizer;

/// How an [`Engine`] runs.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Sequences decoded together.
    pub parallel: usize,
    /// Context of each sequence (prompt + generated tokens).
    pub n_ctx: usize,
    /// Requests that may wait for a free sequence; more are refused.
    pub queue: usize,
    /// CPU threads; `None` = one per core.
    pub threads: Option<usize>,
    pub kv_type: KvType,
    /// Most tokens one step runs: decoding sequences take one each, prompt chunks share the rest.
    pub step_tokens: usize,
    /// Memory the prefix cache may hold; 0 turns it off.
    pub prefix_cache_bytes: usize,
    /// Shortest shared prefix worth reusing, in tokens.
    pub prefix_min_tokens: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            parallel: 4,
            n_ctx: 4096,
            queue: 64,
            threads: None,
            kv_type: KvType::default(),
            step_tokens: 256,
            prefix_cache_bytes: 512 << 20,
            prefix_min_tokens: 16,
        }
    }
}

/// What a request hears about its progress, in order: any number of `Token`s, then one `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    /// A generated token and the text it completed (possibly empty: part of a character, or held back as
    /// the possible start of a stop string). When the token ends the generation, `text` includes what was
    /// held back.
    Token {
        id: u32,
        text: String,
    },
    Done(Summary),
    Failed(Error),
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    /// Generated tokens, counting a final end-of-generation token.
    pub completion_tokens: usize,
    /// Prompt tokens copied from the prefix cache instead of computed.
    pub cached_tokens: usize,
}

/// Receives a request's events on the engine's thread; returning `false` cancels the request (e.g. the
/// client disconnected).
pub type EventSink = Box<dyn FnMut(Event) -> bool + Send>;

/// A generation request.
pub struct Request {
    /// Prompt token ids (see [`Tokenizer::encode_prompt`](crate::tokenizer::Tokenizer::encode_prompt) and
    /// the chat template for text).
    pub prompt: Vec<u32>,
    /// `max_tokens` is capped by what is left of the context after the prompt.
    pub params: GenerateParams,
    pub on_event: EventSink,
}

/// Cancels a submitted request from any thread; it leaves the batch at the next step.
#[derive(Clone, Debug)]
pub struct RequestHandle {
    cancel: Arc<AtomicBool>,
}

impl RequestHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full ({0} requests waiting)")]
    QueueFull(usize),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Invalid(#[from] Error),
}

/// Replies to an embedding request with one vector per input.
pub type EmbedReply = Box<dyn FnOnce(Result<Vec<Vec<f32>>>) + Send>;

/// Figures of a running engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Requests waiting for a sequence.
    pub queued: usize,
    /// Sequences running.
    pub active: usize,
    /// Requests that reused a cached prefix.
    pub prefix_hits: u64,
    /// Prompt tokens copied from the prefix cache.
    pub prefix_tokens_reused: u64,
    pub prefix_entries: usize,
    pub prefix_bytes: usize,
    /// KV memory allocated over all sequences.
    pub kv_allocated_bytes: usize,
    /// Steps run (forward passes).
    pub steps: u64,
}

#[derive(Default)]
struct Shared {
    accepting: AtomicBool,
    queued: AtomicUsize,
    stats: Mutex<EngineStats>,
    steps: AtomicU64,
}

enum Command {
    Generate(Pending),
    Embed(EmbedJob),
    Shutdown,
}

struct Pending {
    prompt: Vec<u32>,
    params: GenerateParams,
    on_event: EventSink,
    cancel: Arc<AtomicBool>,
}

struct EmbedJob {
    inputs: Vec<Vec<u32>>,
    vectors: Vec<Vec<f32>>,
    seq: Option<usize>,
    reply: EmbedReply,
}

/// A model serving many requests at once on a worker thread. Dropping it shuts it down and waits for
/// the requests in flight.
pub struct Engine {
    model: Arc<Model>,
    options: EngineOptions,
    commands: Mutex<Sender<Command>>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts an engine on the CPU backend.
    pub fn start(model: Arc<Model>, options: EngineOptions) -> Result<Self> {
        if options.parallel == 0 || options.step_tokens == 0 {
            return Err(Error::InvalidArgument(
                "parallel sequences and step tokens must be at least 1".into(),
            ));
        }
        // Running sequences, as many again for the prefix cache, and one for embeddings.
        let n_seq = 2 * options.parallel + 1;
        let backend = CpuBackend::new(
            Arc::clone(&model),
            &CpuOptions {
                threads: options.threads,
                n_ctx: options.n_ctx,
                kv_type: options.kv_type,
                n_seq,
            },
        )?;
        let shared = Arc::new(Shared::default());
        shared.accepting.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let worker = {
            let shared = Arc::clone(&shared);
            let options = options.clone();
            std::thread::Builder::new()
                .name("deepedge-engine".into())
                .spawn(move || Worker::new(Box::new(backend), options, shared).run(rx))
                .map_err(|e| {
                    Error::InvalidArgument(format!("cannot start the engine thread: {e}"))
                })?
        };
        Ok(Self {
            model,
            options,
            commands: Mutex::new(tx),
            shared,
            worker: Some(worker),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Queues a request. Fails at once for an empty prompt, a prompt that does not leave room for one
    /// generated token, bad sampling parameters, a full queue, or an engine shutting down.
    pub fn submit(&self, request: Request) -> std::result::Result<RequestHandle, SubmitError> {
        check_prompt(&self.model, &request.prompt, self.options.n_ctx, 1)?;
        request.params.sampler.validate()?;
        TextOutput::new(&self.model.tokenizer, &request.params)?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.enqueue(Command::Generate(Pending {
            prompt: request.prompt,
            params: request.params,
            on_event: request.on_event,
            cancel: Arc::clone(&cancel),
        }))?;
        Ok(RequestHandle { cancel })
    }

    /// Queues the embedding of `inputs` (token ids each); `reply` gets one normalized vector per input.
    pub fn embed(
        &self,
        inputs: Vec<Vec<u32>>,
        reply: EmbedReply,
    ) -> std::result::Result<(), SubmitError> {
        if inputs.is_empty() {
            return Err(Error::InvalidArgument("nothing to embed".into()).into());
        }
        for input in &inputs {
            // Embedding inputs may fill the whole context: nothing is generated after them.
            check_prompt(&self.model, input, self.options.n_ctx, 0)?;
        }
        self.enqueue(Command::Embed(EmbedJob {
            vectors: Vec::with_capacity(inputs.len()),
            inputs,
            seq: None,
            reply,
        }))
    }

    fn enqueue(&self, command: Command) -> std::result::Result<(), SubmitError> {
        if !self.shared.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        let limit = self.options.queue;
        let queued = self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= limit {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(SubmitError::QueueFull(limit));
        }
        let sent = self
            .commands
            .lock()
            .map_err(|_| SubmitError::ShuttingDown)?
            .send(command);
        if sent.is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(SubmitError::ShuttingDown);
        }
        Ok(())
    }

    pub fn stats(&self) -> EngineStats {
        let mut stats = self.shared.stats.lock().map(|s| *s).unwrap_or_default();
        stats.queued = self.shared.queued.load(Ordering::Relaxed);
        stats.steps = self.shared.steps.load(Ordering::Relaxed);
        stats
    }

    /// Stops accepting requests; those already submitted run to their end, then the worker exits.
    pub fn shutdown(&self) {
        self.shared.accepting.store(false, Ordering::Relaxed);
        if let Ok(tx) = self.commands.lock() {
            let _ = tx.send(Command::Shutdown);
        }
    }

    /// Whether the worker has exited (after [`Engine::shutdown`] and the last request).
    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| w.is_finished())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A prompt must be non-empty, in the vocabulary, and leave room for `generate` tokens in `n_ctx`.
fn check_prompt(model: &Model, prompt: &[u32], n_ctx: usize, generate: usize) -> Result<()> {
    let n_vocab = model.hparams.n_vocab;
    if prompt.is_empty() {
        return Err(Error::InvalidArgument(
            "the prompt is empty (no tokens)".into(),
        ));
    }
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= n_vocab) {
        return Err(Error::TokenOutOfRange { id, n_vocab });
    }
    if prompt.len() + generate > n_ctx {
        return Err(Error::ContextOverflow {
            prompt: prompt.len(),
            generate,
            ctx: n_ctx,
            ctx_train: model.hparams.ctx_train,
        });
    }
    Ok(())
}

/// A sequence in the batch.
struct Active<'m> {
    seq: usize,
    /// Prompt then generated ids; `tokens[..fed]` are in the cache.
    tokens: Vec<u32>,
    prompt_len: usize,
    fed: usize,
    max_tokens: usize,
    generated: usize,
    cached_tokens: usize,
    sampler: Sampler,
    output: Option<TextOutput<'m>>,
    on_event: EventSink,
    cancel: Arc<AtomicBool>,
}

impl Active<'_> {
    fn summary(&self, finish: FinishReason) -> Summary {
        Summary {
            finish,
            prompt_tokens: self.prompt_len,
            completion_tokens: self.generated,
            cached_tokens: self.cached_tokens,
        }
    }
}

/// What a step asks of one batch entry.
enum Part {
    /// Tokens `range` of an active sequence.
    Sequence { index: usize, range: Range<usize> },
    /// The current input of the embedding job at the queue's front.
    Embedding,
}

struct Worker {
    backend: Box<dyn Backend>,
    options: EngineOptions,
    shared: Arc<Shared>,
    free: Vec<usize>,
    cache: PrefixCache,
    waiting: VecDeque<Pending>,
    embeds: VecDeque<EmbedJob>,
    accepting: bool,
}

impl Worker {
    fn new(backend: Box<dyn Backend>, options: EngineOptions, shared: Arc<Shared>) -> Self {
        let cache = PrefixCache::new(
            options.prefix_cache_bytes,
            backend.kv_bytes_per_token(),
            options.prefix_min_tokens,
        );
        Self {
            free: (0..backend.max_seqs()).rev().collect(),
            backend,
            options,
            shared,
            cache,
            waiting: VecDeque::new(),
            embeds: VecDeque::new(),
            accepting: true,
        }
    }

    fn run(mut self, commands: Receiver<Command>) {
        let model = Arc::clone(self.backend.model());
        let tokenizer = &model.tokenizer;
        let mut active: Vec<Active<'_>> = Vec::new();
        loop {
            let idle = active.is_empty() && self.waiting.is_empty() && self.embeds.is_empty();
            if idle {
                if !self.accepting {
                    break;
                }
                match commands.recv() {
                    Ok(command) => self.take(command),
                    Err(_) => break,
                }
            }
            while let Ok(command) = commands.try_recv() {
                self.take(command);
            }
            self.admit(&mut active, tokenizer);
            if !active.is_empty() || !self.embeds.is_empty() {
                self.step(&mut active);
            }
            self.publish(active.len());
        }
        self.publish(0);
    }

    fn take(&mut self, command: Command) {
        match command {
            Command::Generate(p) => self.waiting.push_back(p),
            Command::Embed(job) => self.embeds.push_back(job),
            Command::Shutdown => self.accepting = false,
        }
    }

    fn publish(&self, active: usize) {
        if let Ok(mut stats) = self.shared.stats.lock() {
            stats.active = active;
            stats.prefix_entries = self.cache.len();
            stats.prefix_bytes = self.cache.bytes();
            stats.kv_allocated_bytes = self.backend.kv_allocated_bytes();
        }
    }

    /// A free sequence, evicting the least recently used cached prefix if none is free.
    fn take_seq(&mut self) -> Option<usize> {
        if let Some(seq) = self.free.pop() {
            return Some(seq);
        }
        let seq = self.cache.evict_lru()?;
        self.backend.truncate_seq(seq, 0);
        Some(seq)
    }

    fn release(&mut self, seq: usize) {
        self.backend.truncate_seq(seq, 0);
        self.free.push(seq);
    }

    /// Moves waiting requests into the batch while there is room, reusing cached prefixes.
    fn admit<'m>(&mut self, active: &mut Vec<Active<'m>>, tokenizer: &'m Tokenizer) {
        while active.len() < self.options.parallel {
            let Some(mut p) = self.waiting.pop_front() else {
                break;
            };
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            let prompt_len = p.prompt.len();
            let summary = |finish| Summary {
                finish,
                prompt_tokens: prompt_len,
                completion_tokens: 0,
                cached_tokens: 0,
            };
            if p.cancel.load(Ordering::Relaxed) {
                (p.on_event)(Event::Done(summary(FinishReason::Cancelled)));
                continue;
            }
            let max_tokens = p.params.max_tokens.min(self.options.n_ctx - prompt_len);
            if max_tokens == 0 {
                (p.on_event)(Event::Done(summary(FinishReason::Length)));
                continue;
            }
            let (sampler, output) = match (
                Sampler::new(p.params.sampler.clone()),
                TextOutput::new(tokenizer, &p.params),
            ) {
                (Ok(s), Ok(o)) => (s, o),
                (Err(e), _) | (_, Err(e)) => {
                    (p.on_event)(Event::Failed(e));
                    continue;
                }
            };
            let Some(seq) = self.take_seq() else {
                // Cannot happen while the backend holds more sequences than `parallel`.
                self.waiting.push_front(p);
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                break;
            };
            // Reuse at most all but the last prompt token: its logits are needed.
            let mut cached_tokens = 0;
            if let Some(hit) = self.cache.lookup(&p.prompt[..prompt_len - 1]) {
                match self.backend.copy_seq_prefix(hit.seq, seq, hit.len) {
                    Ok(()) => {
                        cached_tokens = hit.len;
                        if let Ok(mut stats) = self.shared.stats.lock() {
                            stats.prefix_hits += 1;
                            stats.prefix_tokens_reused += hit.len as u64;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("prefix reuse failed, computing the prompt: {e}");
                        self.backend.truncate_seq(seq, 0);
                    }
                }
            }
            active.push(Active {
                seq,
                tokens: p.prompt,
                prompt_len,
                fed: cached_tokens,
                max_tokens,
                generated: 0,
                cached_tokens,
                sampler,
                output: Some(output),
                on_event: p.on_event,
                cancel: p.cancel,
            });
        }
    }

    /// One forward pass over every running sequence (and an embedding input, if one waits).
    fn step(&mut self, active: &mut Vec<Active<'_>>) {
        // Cancelled sequences leave before the step.
        let mut i = 0;
        while i < active.len() {
            if active[i].cancel.load(Ordering::Relaxed) {
                let a = active.swap_remove(i);
                self.finish(a, FinishReason::Cancelled);
            } else {
                i += 1;
            }
        }

        let mut budget = self.options.step_tokens;
        let mut parts = Vec::new();
        for (index, a) in active.iter().enumerate() {
            if a.fed >= a.prompt_len {
                parts.push(Part::Sequence {
                    index,
                    range: a.fed..a.tokens.len(),
                });
                budget = budget.saturating_sub(1);
            }
        }
        for (index, a) in active.iter().enumerate() {
            if a.fed < a.prompt_len && budget > 0 {
                let take = (a.prompt_len - a.fed).min(budget);
                budget -= take;
                parts.push(Part::Sequence {
                    index,
                    range: a.fed..a.fed + take,
                });
            }
        }
        if self.embeds.front().is_some_and(|job| job.seq.is_none()) {
            let seq = self.take_seq();
            if let Some(job) = self.embeds.front_mut() {
                job.seq = seq;
            }
        }
        if self.embeds.front().is_some_and(|job| job.seq.is_some()) {
            parts.push(Part::Embedding);
        }
        if parts.is_empty() {
            return;
        }

        let outputs = {
            let embedding = self.embeds.front();
            let batch: Vec<SeqTokens<'_>> = parts
                .iter()
                .map(|part| match part {
                    Part::Sequence { index, range } => {
                        let a = &active[*index];
                        SeqTokens {
                            seq: a.seq,
                            tokens: &a.tokens[range.clone()],
                            output: if range.end == a.tokens.len() {
                                LogitsRequest::Last
                            } else {
                                LogitsRequest::None
                            },
                        }
                    }
                    Part::Embedding => {
                        let job = embedding.expect("an embedding job");
                        SeqTokens {
                            seq: job.seq.expect("a sequence"),
                            tokens: &job.inputs[job.vectors.len()],
                            output: LogitsRequest::Hidden,
                        }
                    }
                })
                .collect();
            let _span = tracing::debug_span!("step", entries = batch.len()).entered();
            self.backend.forward_batch(&batch)
        };
        self.shared.steps.fetch_add(1, Ordering::Relaxed);

        let outputs = match outputs {
            Ok(outputs) => outputs,
            Err(e) => {
                // Nothing a request did (inputs were checked on submit): fail every part of the step.
                tracing::error!("step failed: {e}");
                let message = e.to_string();
                let mut indices: Vec<usize> = parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Sequence { index, .. } => Some(*index),
                        Part::Embedding => None,
                    })
                    .collect();
                indices.sort_unstable_by_key(|&i| std::cmp::Reverse(i));
                for index in indices {
                    let mut a = active.swap_remove(index);
                    (a.on_event)(Event::Failed(Error::Model(message.clone())));
                    self.release(a.seq);
                }
                if parts.iter().any(|p| matches!(p, Part::Embedding)) {
                    self.fail_embedding(Error::Model(message));
                }
                return;
            }
        };

        let mut finished = Vec::new();
        for (part, out) in parts.iter().zip(outputs) {
            match part {
                Part::Embedding => self.embedding_done(out),
                Part::Sequence { index, range } => {
                    let a = &mut active[*index];
                    a.fed = range.end;
                    if out.is_empty() {
                        continue; // a prompt chunk
                    }
                    if let Some(finish) = sample_next(a, out) {
                        finished.push((*index, finish));
                    }
                }
            }
        }
        finished.sort_unstable_by_key(|&(i, _)| std::cmp::Reverse(i));
        for (index, finish) in finished {
            let a = active.swap_remove(index);
            self.finish(a, finish);
        }
    }

    /// Ends a sequence: tells its request and hands its cache to the prefix cache (or releases it).
    fn finish(&mut self, mut a: Active<'_>, finish: FinishReason) {
        let summary = a.summary(finish);
        (a.on_event)(Event::Done(summary));
        let cached = a.tokens[..a.fed].to_vec();
        let released = if self.options.prefix_cache_bytes == 0 {
            vec![a.seq]
        } else {
            self.cache.insert(a.seq, cached)
        };
        for seq in released {
            self.release(seq);
        }
    }

    fn embedding_done(&mut self, hidden: Vec<f32>) {
        let e = self.backend.model().hparams.n_embd;
        let Some(job) = self.embeds.front_mut() else {
            return;
        };
        job.vectors.push(mean_pool_normalized(&hidden, e));
        if let Some(seq) = job.seq {
            self.backend.truncate_seq(seq, 0);
        }
        if job.vectors.len() == job.inputs.len() {
            let job = self.embeds.pop_front().expect("the front job");
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            if let Some(seq) = job.seq {
                self.release(seq);
            }
            (job.reply)(Ok(job.vectors));
        }
    }

    fn fail_embedding(&mut self, e: Error) {
        if let Some(job) = self.embeds.pop_front() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            if let Some(seq) = job.seq {
                self.release(seq);
            }
            (job.reply)(Err(e));
        }
    }
}

/// Samples a sequence's next token from `logits` and streams it; returns why it ends, if it does.
fn sample_next(a: &mut Active<'_>, mut logits: Vec<f32>) -> Option<FinishReason> {
    let id = a.sampler.sample(&mut logits, &a.tokens[..a.fed]);
    a.tokens.push(id);
    a.generated += 1;
    let output = a.output.as_mut().expect("text output until the end");
    let (mut text, ended) = output.push(id);
    let finish = ended.or_else(|| (a.generated >= a.max_tokens).then_some(FinishReason::Length));
    if matches!(finish, Some(FinishReason::Length | FinishReason::Eos)) {
        text.push_str(&a.output.take().expect("text output").finish());
    }
    if !(a.on_event)(Event::Token { id, text }) {
        return Some(FinishReason::Cancelled);
    }
    finish
}

/// The mean of `rows` (each `width` wide), scaled to unit length.
fn mean_pool_normalized(rows: &[f32], width: usize) -> Vec<f32> {
    let n = (rows.len() / width.max(1)).max(1);
    let mut mean = vec![0f32; width];
    for row in rows.chunks_exact(width) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x);
    }
    mean.iter_mut().for_each(|m| *m /= n as f32);
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        mean.iter_mut().for_each(|m| *m /= norm);
    }
    mean
}
