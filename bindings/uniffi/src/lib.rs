//! Kotlin and Swift bindings of deepedge, described with uniffi's proc macros and generated in library
//! mode (`bindings/uniffi/generate.sh`) into `kotlin/` and `swift/`.
//!
//! The surface is what a mobile app needs: [`Model`] (load a GGUF file, one-shot `generate`, tokenize),
//! [`Session`] (a chat conversation that keeps its KV cache), [`GenerateOptions`] with llama.cpp's
//! defaults, streaming through [`TokenListener`] (a foreign trait the app implements), cancellation with
//! a [`CancelToken`] any thread may raise, and one flat error enum ([`DeepedgeError`], a Kotlin exception
//! / Swift `Error`). It is a thin shell over [`deepedge::LoadedModel`] and [`deepedge::Conversation`]:
//! prompts are handled exactly as `deepedge run` and `deepedge chat` handle them. uniffi itself catches
//! panics at the boundary (they arrive as its internal-error exception) and manages object lifetimes
//! (`close()` in Kotlin, ARC in Swift).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use deepedge::sample::SamplerParams;
use deepedge::{
    Conversation, Error, ErrorKind, FinishReason as LibFinish, GenerateParams,
    Generation as LibGen, LoadedModel, Prompt, SessionOptions,
};

uniffi::setup_scaffolding!();

/// What went wrong, by kind; the message says which argument, file or limit.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum DeepedgeError {
    /// A parameter out of range, an empty prompt, an unknown token id.
    #[error("{0}")]
    InvalidArgument(String),
    /// The model file is missing, unreadable, malformed or unsupported.
    #[error("{0}")]
    Load(String),
    /// The prompt (plus the tokens to generate) does not fit the context.
    #[error("{0}")]
    ContextOverflow(String),
    /// An allocation failed.
    #[error("{0}")]
    OutOfMemory(String),
    /// Anything else while tokenizing or running the model.
    #[error("{0}")]
    Runtime(String),
}

impl From<Error> for DeepedgeError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::InvalidArgument => Self::InvalidArgument(message),
            ErrorKind::Load => Self::Load(message),
            ErrorKind::Context => Self::ContextOverflow(message),
            ErrorKind::OutOfMemory => Self::OutOfMemory(message),
            ErrorKind::Runtime => Self::Runtime(message),
        }
    }
}

type Result<T> = std::result::Result<T, DeepedgeError>;

/// How a model is opened.
#[derive(Clone, Debug, uniffi::Record)]
pub struct ModelOptions {
    /// Context size in tokens of each generation and session; 0 = the model's, at most 4096.
    #[uniffi(default = 0)]
    pub context_size: u32,
    /// Worker threads; 0 = one per core.
    #[uniffi(default = 0)]
    pub threads: u32,
}

/// How to generate. The defaults are `deepedge run`'s (llama.cpp's sampling chain); temperature 0 is
/// greedy. `default_generate_options()` returns the same values from the library itself.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct GenerateOptions {
    #[uniffi(default = 128)]
    pub max_tokens: u32,
    #[uniffi(default = 0.8)]
    pub temperature: f32,
    /// 0 = off.
    #[uniffi(default = 40)]
    pub top_k: u32,
    /// 1 = off.
    #[uniffi(default = 0.95)]
    pub top_p: f32,
    /// 0 = off.
    #[uniffi(default = 0.05)]
    pub min_p: f32,
    /// 1 = off.
    #[uniffi(default = 1.0)]
    pub repeat_penalty: f32,
    #[uniffi(default = 64)]
    pub repeat_last_n: u32,
    #[uniffi(default = 0)]
    pub seed: u64,
    /// Strings that end generation; they are not part of the text.
    #[uniffi(default = [])]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    #[uniffi(default = false)]
    pub ignore_eos: bool,
}

/// The library's defaults for [`GenerateOptions`] (what the record's field defaults spell out).
#[uniffi::export]
pub fn default_generate_options() -> GenerateOptions {
    let s = SamplerParams::LLAMA_CPP_DEFAULTS;
    let g = GenerateParams::default();
    GenerateOptions {
        max_tokens: g.max_tokens as u32,
        temperature: s.temperature,
        top_k: s.top_k as u32,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n as u32,
        seed: s.seed,
        stop: g.stop,
        ignore_eos: g.ignore_eos,
    }
}

impl GenerateOptions {
    fn params(&self) -> GenerateParams {
        GenerateParams {
            max_tokens: self.max_tokens as usize,
            sampler: SamplerParams {
                temperature: self.temperature,
                top_k: self.top_k as usize,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n as usize,
                seed: self.seed,
            },
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            render_special: false,
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum FinishReason {
    /// An end-of-generation token.
    Eos,
    /// A stop string.
    Stop,
    /// `max_tokens` or the context ran out.
    Length,
    /// The listener returned false or the cancel token was raised.
    Cancelled,
}

/// A finished generation.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Generation {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
}

impl From<LibGen> for Generation {
    fn from(g: LibGen) -> Self {
        Self {
            finish_reason: match g.finish {
                LibFinish::Eos => FinishReason::Eos,
                LibFinish::Stop => FinishReason::Stop,
                LibFinish::Length => FinishReason::Length,
                LibFinish::Cancelled => FinishReason::Cancelled,
            },
            prompt_tokens: g.prompt_ids.len() as u32,
            generated_tokens: g.ids.len() as u32,
            prefill_tokens_per_second: g.timings.prefill_tps(),
            decode_tokens_per_second: g.timings.decode_tps(),
            text: g.text,
        }
    }
}

/// Receives generated text as it is produced, on the thread that called `generate`/`send`.
#[uniffi::export(foreign)]
pub trait TokenListener: Send + Sync {
    /// One piece of text (never split inside a character); return false to stop.
    fn on_token(&self, piece: String) -> bool;
}

/// A flag that stops the generations it is given, raised from any thread.
#[derive(Debug, Default, uniffi::Object)]
pub struct CancelToken {
    flag: AtomicBool,
}

#[uniffi::export]
impl CancelToken {
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stops generations watching this token before their next token.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Lowers the flag for reuse.
    pub fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Runs one generation with an optional listener and cancel token.
fn run_with(
    listener: Option<Arc<dyn TokenListener>>,
    cancel: Option<Arc<CancelToken>>,
    generate: impl FnOnce(Option<&AtomicBool>, &mut dyn FnMut(&str) -> bool) -> deepedge::Result<LibGen>,
) -> Result<Generation> {
    let mut on_text = |piece: &str| {
        listener
            .as_ref()
            .is_none_or(|l| l.on_token(piece.to_string()))
    };
    let flag = cancel.as_ref().map(|c| &c.flag);
    Ok(generate(flag, &mut on_text)?.into())
}

/// A loaded model: the weights are memory-mapped and shared by its sessions.
#[derive(uniffi::Object)]
pub struct Model {
    inner: LoadedModel,
}

#[uniffi::export]
impl Model {
    /// Opens a GGUF model file. Throws `DeepedgeException.Load` (Kotlin) / `DeepedgeError.Load` (Swift)
    /// when the file is missing or not a model.
    #[uniffi::constructor]
    pub fn load(path: String, options: ModelOptions) -> Result<Arc<Self>> {
        let options = SessionOptions {
            n_ctx: (options.context_size > 0).then_some(options.context_size as usize),
            threads: (options.threads > 0).then_some(options.threads as usize),
            ..SessionOptions::default()
        };
        Ok(Arc::new(Self {
            inner: LoadedModel::load(path, options)?,
        }))
    }

    /// Completes a raw-text prompt from an empty context, as `deepedge run -p` does, streaming to
    /// `listener`. Calls on the same model wait for each other; use sessions or other models to run in
    /// parallel.
    pub fn generate(
        &self,
        prompt: String,
        options: GenerateOptions,
        listener: Option<Arc<dyn TokenListener>>,
        cancel: Option<Arc<CancelToken>>,
    ) -> Result<Generation> {
        let params = options.params();
        run_with(listener, cancel, |flag, on_text| {
            self.inner
                .complete(Prompt::Text(&prompt), &params, flag, on_text)
        })
    }

    /// Token ids of `text`; `add_special` adds BOS when the model does, `parse_special` turns control
    /// token text such as `<|im_start|>` into its id.
    pub fn tokenize(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .model()
            .tokenizer
            .encode(&text, add_special, parse_special)
            .map_err(Error::from)?)
    }

    /// The text of token ids; control tokens are shown only with `render_special`.
    pub fn detokenize(&self, tokens: Vec<u32>, render_special: bool) -> Result<String> {
        let tokenizer = &self.inner.model().tokenizer;
        let n_vocab = tokenizer.n_vocab();
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(Error::TokenOutOfRange { id, n_vocab }.into());
        }
        Ok(tokenizer.decode(&tokens, render_special))
    }

    /// Tokens each generation and session may hold.
    pub fn context_size(&self) -> u32 {
        self.inner.n_ctx() as u32
    }
}

/// A chat conversation over a model, with its own KV cache: each `send` renders the conversation with
/// the model's chat template (ChatML when it has none) and computes only the new turn.
#[derive(uniffi::Object)]
pub struct Session {
    conversation: Mutex<Conversation>,
}

impl Session {
    fn conversation(&self) -> std::sync::MutexGuard<'_, Conversation> {
        // A panic during a turn may leave it half-done: start the conversation over rather than fail.
        self.conversation.lock().unwrap_or_else(|poisoned| {
            self.conversation.clear_poison();
            let mut c = poisoned.into_inner();
            c.reset();
            c
        })
    }
}

#[uniffi::export]
impl Session {
    #[uniffi::constructor]
    pub fn new(model: Arc<Model>, system_prompt: Option<String>) -> Result<Arc<Self>> {
        let conversation = model.inner.new_conversation(system_prompt.as_deref())?;
        Ok(Arc::new(Self {
            conversation: Mutex::new(conversation),
        }))
    }

    /// Sends a user message and returns the assistant's answer, streamed to `listener`. A turn that does
    /// not fit the context throws `ContextOverflow` and leaves the conversation as it was.
    pub fn send(
        &self,
        message: String,
        options: GenerateOptions,
        listener: Option<Arc<dyn TokenListener>>,
        cancel: Option<Arc<CancelToken>>,
    ) -> Result<Generation> {
        let params = options.params();
        let mut conversation = self.conversation();
        run_with(listener, cancel, |flag, on_text| {
            conversation.send(&message, &params, flag, on_text)
        })
    }

    /// Forgets the conversation except the system prompt.
    pub fn reset(&self) {
        self.conversation().reset();
    }

    /// Tokens in the session's cache.
    pub fn token_count(&self) -> u32 {
        self.conversation().session().tokens().len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_to_the_library_and_defaults_agree() {
        let o = default_generate_options();
        let p = o.params();
        assert_eq!(p.sampler, SamplerParams::LLAMA_CPP_DEFAULTS);
        assert_eq!(p.max_tokens, GenerateParams::default().max_tokens);
    }

    #[test]
    fn a_missing_file_is_a_load_error() {
        let e = Model::load(
            "/nonexistent/model.gguf".into(),
            ModelOptions {
                context_size: 0,
                threads: 0,
            },
        )
        .err()
        .unwrap();
        assert!(matches!(&e, DeepedgeError::Load(m) if m.contains("/nonexistent/model.gguf")));
    }
}
