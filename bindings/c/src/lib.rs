//! The deepedge C ABI: `extern "C"` functions over the `deepedge` library, described by the cbindgen-made
//! header `include/deepedge.h` (committed; `generate-header.sh` remakes it and CI fails when it is stale).
//!
//! What it is: models, generation with a streaming callback, chat sessions, tokenize/detokenize and
//! cancel handles for C, C++, Go, Zig and other native callers. Prompts go through the same library
//! call as `deepedge run -p` ([`deepedge::LoadedModel::complete`]) and sessions through the same
//! [`deepedge::Conversation`] as `deepedge chat`, so the text is the same for the same arguments.
//! What it is not: a second implementation of anything — every decision is the library's.
//!
//! Safety at the boundary, following the usual rules for Rust libraries with a C ABI (the Rust FFI
//! omnibus, and SQLite's and libcurl's error conventions):
//! - every entry point runs inside [`std::panic::catch_unwind`]; a panic becomes
//!   `DEEPEDGE_ERROR_INTERNAL` with a message, never an unwind into C;
//! - handles are opaque numbers looked up in a [`deepedge::HandleTable`], never dereferenced: NULL, a
//!   freed handle, a double free or a handle of the wrong kind is detected, and a handle freed on one
//!   thread while another uses it stays valid until that call returns;
//! - strings and token arrays handed out are recorded, so freeing one twice (or freeing a pointer that
//!   did not come from here) is ignored rather than corrupting the heap;
//! - sizes that come from the caller (token counts, stop-string counts) are bounded before anything is
//!   allocated from them.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use deepedge::sample::SamplerParams;
use deepedge::{
    Conversation, Error, ErrorKind, FinishReason, GenerateParams, Generation, HandleTable,
    LoadedModel, Prompt, SessionOptions,
};

/// Major version of the library (semantic versioning).
pub const DEEPEDGE_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const DEEPEDGE_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const DEEPEDGE_VERSION_PATCH: u32 = 0;
/// Version of this ABI: raised whenever a signature, a struct layout or a constant changes
/// incompatibly. Compare with `deepedge_abi_version()` to detect a header/library mismatch.
pub const DEEPEDGE_ABI_VERSION: u32 = 1;

/// Success.
pub const DEEPEDGE_OK: i32 = 0;
/// A NULL or dead handle, a NULL or non-UTF-8 string, or a parameter out of range.
pub const DEEPEDGE_ERROR_INVALID_ARGUMENT: i32 = -1;
/// The model file is missing, unreadable, malformed or of an unsupported kind.
pub const DEEPEDGE_ERROR_LOAD: i32 = -2;
/// The prompt (plus the tokens to generate) does not fit the context.
pub const DEEPEDGE_ERROR_CONTEXT: i32 = -3;
/// An allocation (e.g. the KV cache) failed.
pub const DEEPEDGE_ERROR_OUT_OF_MEMORY: i32 = -4;
/// Any other failure while tokenizing or running the model.
pub const DEEPEDGE_ERROR_RUNTIME: i32 = -5;
/// A bug in deepedge (a panic caught at the boundary). The handle stays usable.
pub const DEEPEDGE_ERROR_INTERNAL: i32 = -6;

/// Most stop strings one generation accepts.
pub const DEEPEDGE_MAX_STOP_STRINGS: usize = 64;

/// A loaded model (weights memory-mapped, shared by its sessions). Opaque.
pub struct DeepedgeModel {
    _opaque: [u8; 0],
}

/// A chat conversation over a model, with its own KV cache. Opaque.
pub struct DeepedgeSession {
    _opaque: [u8; 0],
}

/// A cancel flag that any thread may raise while a generation that was given it runs. Opaque.
pub struct DeepedgeCancel {
    _opaque: [u8; 0],
}

/// Called with each piece of generated text (UTF-8, NUL-terminated, never split inside a character);
/// return false to stop generating. The string is valid only during the call.
pub type DeepedgeTokenCallback =
    Option<unsafe extern "C" fn(piece: *const c_char, user_data: *mut c_void) -> bool>;

/// Model loading options. Get the defaults from `deepedge_model_params_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DeepedgeModelParams {
    /// Context size in tokens of each generation or session; 0 = the model's, at most 4096 (as
    /// `deepedge run`). The KV cache of that size is allocated per handle and per session.
    pub n_ctx: u32,
    /// Worker threads; 0 = one per core.
    pub n_threads: u32,
}

/// Generation options. Get the defaults (llama.cpp's, as `deepedge run`) from
/// `deepedge_generate_params_default()` and change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DeepedgeGenerateParams {
    /// Most tokens to generate (default 128).
    pub max_tokens: u32,
    /// 0 is greedy (default 0.8).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off (default 40).
    pub top_k: u32,
    /// Nucleus sampling threshold; 1 = off (default 0.95).
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely; 0 = off (default 0.05).
    pub min_p: f32,
    /// Repetition penalty; 1 = off (default 1).
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over (default 64).
    pub repeat_last_n: u32,
    /// RNG seed: the same seed gives the same text (default 0).
    pub seed: u64,
    /// Keep generating past end-of-generation tokens (default false).
    pub ignore_eos: bool,
    /// `n_stop` UTF-8 strings that end generation (not part of the text); may be NULL when n_stop is 0.
    pub stop: *const *const c_char,
    /// Number of stop strings, at most DEEPEDGE_MAX_STOP_STRINGS.
    pub n_stop: usize,
    /// A cancel handle to watch, or NULL.
    pub cancel: *const DeepedgeCancel,
}

/// Why a generation ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeepedgeFinishReason {
    /// An end-of-generation token.
    Eos = 0,
    /// A stop string.
    Stop = 1,
    /// max_tokens or the context ran out.
    Length = 2,
    /// The callback returned false or the cancel handle was raised.
    Cancelled = 3,
}

/// What a generation did, besides its text.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DeepedgeGenerationInfo {
    pub finish_reason: DeepedgeFinishReason,
    /// Prompt tokens (after tokenization).
    pub n_prompt_tokens: u32,
    /// Prompt tokens actually computed (the rest was reused from the session's cache).
    pub n_prefill_tokens: u32,
    /// Generated tokens, including a final end-of-generation token.
    pub n_generated_tokens: u32,
    /// Prompt processing speed, tokens per second.
    pub prefill_tokens_per_second: f64,
    /// Generation speed, tokens per second.
    pub decode_tokens_per_second: f64,
}

// ---------------------------------------------------------------------------------------------------
// Errors and the panic guard.

/// An error on its way to C: a status code and a message.
struct FfiError {
    code: i32,
    message: String,
}

impl FfiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: DEEPEDGE_ERROR_INVALID_ARGUMENT,
            message: message.into(),
        }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        let code = match e.kind() {
            ErrorKind::InvalidArgument => DEEPEDGE_ERROR_INVALID_ARGUMENT,
            ErrorKind::Load => DEEPEDGE_ERROR_LOAD,
            ErrorKind::Context => DEEPEDGE_ERROR_CONTEXT,
            ErrorKind::OutOfMemory => DEEPEDGE_ERROR_OUT_OF_MEMORY,
            ErrorKind::Runtime => DEEPEDGE_ERROR_RUNTIME,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

type FfiResult<T> = Result<T, FfiError>;

/// Clears `*error_out`, runs `body` without letting a panic escape, and on failure stores the message in
/// `*error_out` (when it is not NULL) and returns `on_error(code)`.
fn guard<T>(
    error_out: *mut *mut c_char,
    on_error: impl FnOnce(i32) -> T,
    body: impl FnOnce() -> FfiResult<T>,
) -> T {
    if !error_out.is_null() {
        // SAFETY: the caller passes NULL or a pointer to writable storage for one `char*`.
        unsafe { *error_out = std::ptr::null_mut() };
    }
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(FfiError {
            code: DEEPEDGE_ERROR_INTERNAL,
            message: format!("internal error (please report): {what}"),
        })
    });
    match outcome {
        Ok(value) => value,
        Err(e) => {
            if !error_out.is_null() {
                // SAFETY: as above.
                unsafe { *error_out = hand_out_string(e.message) };
            }
            on_error(e.code)
        }
    }
}

/// Runs a body that returns nothing and cannot report an error, without letting a panic escape.
fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

// ---------------------------------------------------------------------------------------------------
// Handles: opaque numbers mapped to shared objects.

/// Looks up a C handle in its table.
fn live<T, H>(table: &HandleTable<T>, handle: *const H) -> FfiResult<Arc<T>> {
    Ok(table.get(handle as u64)?)
}

/// Hands a new object to C as an opaque handle.
fn handle_of<T, H>(table: &HandleTable<T>, value: T) -> *mut H {
    table.insert(value) as usize as *mut H
}

static MODELS: HandleTable<LoadedModel> = HandleTable::new("DeepedgeModel handle");
static SESSIONS: HandleTable<Mutex<Conversation>> = HandleTable::new("DeepedgeSession handle");
static CANCELS: HandleTable<AtomicBool> = HandleTable::new("DeepedgeCancel handle");

/// Locks a session's mutex. A panic caught while it was held may have left the conversation
/// half-updated, so the `reset` given here puts it back in a known state first.
fn lock_or_reset<'a, T>(m: &'a Mutex<T>, reset: impl FnOnce(&mut T)) -> MutexGuard<'a, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            let mut g = poisoned.into_inner();
            reset(&mut g);
            m.clear_poison();
            g
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Memory handed out to C: strings and token arrays, recorded so that a double free is harmless.

/// The values are held only to own the memory C points into; removing an entry frees it.
#[allow(dead_code)]
enum Owned {
    Text(CString),
    Tokens(Box<[u32]>),
}

static OWNED: LazyLock<Mutex<HashMap<usize, Owned>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn owned() -> MutexGuard<'static, HashMap<usize, Owned>> {
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A C copy of `text`. C strings end at NUL, so a NUL character (which models can emit) becomes U+FFFD.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// Hands `text` to C, to be freed with `deepedge_string_free`.
fn hand_out_string(text: impl AsRef<str>) -> *mut c_char {
    let s = c_string(text.as_ref());
    let ptr = s.as_ptr() as *mut c_char;
    owned().insert(ptr as usize, Owned::Text(s));
    ptr
}

/// Hands `tokens` to C, to be freed with `deepedge_tokens_free`. An empty array is a non-NULL pointer
/// too (`Box<[u32]>` of length 0 has a dangling pointer, so one element is allocated).
fn hand_out_tokens(tokens: Vec<u32>) -> *mut u32 {
    let storage: Box<[u32]> = if tokens.is_empty() {
        Box::new([0])
    } else {
        tokens.into_boxed_slice()
    };
    let ptr = storage.as_ptr() as *mut u32;
    owned().insert(ptr as usize, Owned::Tokens(storage));
    ptr
}

// ---------------------------------------------------------------------------------------------------
// Reading arguments.

/// A required UTF-8 string argument.
fn read_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|e| FfiError::invalid(format!("{what} is not valid UTF-8: {e}")))
}

fn sampler_params(p: &DeepedgeGenerateParams) -> SamplerParams {
    SamplerParams {
        temperature: p.temperature,
        top_k: p.top_k as usize,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n as usize,
        seed: p.seed,
    }
}

/// The library's parameters and the cancel flag (if any) for a C parameter struct.
fn generate_params(
    p: &DeepedgeGenerateParams,
) -> FfiResult<(GenerateParams, Option<Arc<AtomicBool>>)> {
    if p.n_stop > DEEPEDGE_MAX_STOP_STRINGS {
        return Err(FfiError::invalid(format!(
            "n_stop is {}, more than DEEPEDGE_MAX_STOP_STRINGS ({DEEPEDGE_MAX_STOP_STRINGS})",
            p.n_stop
        )));
    }
    let mut stop = Vec::with_capacity(p.n_stop);
    if p.n_stop > 0 {
        if p.stop.is_null() {
            return Err(FfiError::invalid("stop is NULL but n_stop is not 0"));
        }
        // SAFETY: the caller passes `n_stop` readable pointers (bounded above).
        let ptrs = unsafe { std::slice::from_raw_parts(p.stop, p.n_stop) };
        for (i, &s) in ptrs.iter().enumerate() {
            stop.push(read_str(s, &format!("stop[{i}]"))?.to_string());
        }
    }
    let cancel = if p.cancel.is_null() {
        None
    } else {
        Some(live(&CANCELS, p.cancel)?)
    };
    let params = GenerateParams {
        max_tokens: p.max_tokens as usize,
        sampler: sampler_params(p),
        stop,
        ignore_eos: p.ignore_eos,
        render_special: false,
    };
    params.sampler.validate()?;
    Ok((params, cancel))
}

/// The C-facing text callback: each piece as a temporary C string.
fn piece_sink(cb: DeepedgeTokenCallback, user_data: *mut c_void) -> impl FnMut(&str) -> bool {
    move |piece: &str| match cb {
        None => true,
        Some(f) => {
            let c = c_string(piece);
            // SAFETY: `f` is the caller's callback; `c` outlives the call.
            unsafe { f(c.as_ptr(), user_data) }
        }
    }
}

fn info_of(g: &Generation) -> DeepedgeGenerationInfo {
    let saturate = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    DeepedgeGenerationInfo {
        finish_reason: match g.finish {
            FinishReason::Eos => DeepedgeFinishReason::Eos,
            FinishReason::Stop => DeepedgeFinishReason::Stop,
            FinishReason::Length => DeepedgeFinishReason::Length,
            FinishReason::Cancelled => DeepedgeFinishReason::Cancelled,
        },
        n_prompt_tokens: saturate(g.prompt_ids.len()),
        n_prefill_tokens: saturate(g.timings.prefill_tokens),
        n_generated_tokens: saturate(g.ids.len()),
        prefill_tokens_per_second: g.timings.prefill_tps(),
        decode_tokens_per_second: g.timings.decode_tps(),
    }
}

/// Writes a finished generation's outputs where the caller asked for them.
fn write_outputs(
    g: &Generation,
    text_out: *mut *mut c_char,
    info_out: *mut DeepedgeGenerationInfo,
) {
    if !text_out.is_null() {
        // SAFETY: the caller passes NULL or storage for one `char*`.
        unsafe { *text_out = hand_out_string(&g.text) };
    }
    if !info_out.is_null() {
        // SAFETY: the caller passes NULL or storage for one struct.
        unsafe { *info_out = info_of(g) };
    }
}

/// Clears an optional output pointer so that it is NULL on failure.
fn clear_out<T>(out: *mut *mut T) {
    if !out.is_null() {
        // SAFETY: the caller passes NULL or storage for one pointer.
        unsafe { *out = std::ptr::null_mut() };
    }
}

/// A one-shot completion on a model handle, as `deepedge run -p`: from an empty cache every time.
fn complete_on_model(
    m: *mut DeepedgeModel,
    prompt: *const c_char,
    params: &GenerateParams,
    cancel: Option<&AtomicBool>,
    on_text: impl FnMut(&str) -> bool,
) -> FfiResult<Generation> {
    let model = live(&MODELS, m)?;
    let prompt = read_str(prompt, "prompt")?;
    Ok(model.complete(Prompt::Text(prompt), params, cancel, on_text)?)
}

/// Parameters of the four-argument functions: llama.cpp's defaults with these three set.
fn simple_params(max_tokens: u32, temperature: f32, seed: u64) -> FfiResult<GenerateParams> {
    let params = GenerateParams {
        max_tokens: max_tokens as usize,
        sampler: SamplerParams {
            temperature,
            seed,
            ..SamplerParams::LLAMA_CPP_DEFAULTS
        },
        stop: Vec::new(),
        ignore_eos: false,
        render_special: false,
    };
    params.sampler.validate()?;
    Ok(params)
}

// ---------------------------------------------------------------------------------------------------
// Version.

/// The library version, e.g. "0.1.0" (static storage: do not free).
#[no_mangle]
pub extern "C" fn deepedge_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// DEEPEDGE_ABI_VERSION of the library that is loaded.
#[no_mangle]
pub extern "C" fn deepedge_abi_version() -> u32 {
    DEEPEDGE_ABI_VERSION
}

// ---------------------------------------------------------------------------------------------------
// Models.

/// The default model parameters.
#[no_mangle]
pub extern "C" fn deepedge_model_params_default() -> DeepedgeModelParams {
    DeepedgeModelParams {
        n_ctx: 0,
        n_threads: 0,
    }
}

/// Loads a GGUF model with the default parameters. Returns NULL and sets *error_out (when error_out is
/// not NULL; free it with deepedge_string_free) on failure.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `error_out` is NULL or points to a writable `char*`.
#[no_mangle]
pub unsafe extern "C" fn deepedge_model_load(
    path: *const c_char,
    error_out: *mut *mut c_char,
) -> *mut DeepedgeModel {
    let defaults = deepedge_model_params_default();
    deepedge_model_load_with_params(path, &defaults, error_out)
}

/// Loads a GGUF model. `params` may be NULL for the defaults. Returns NULL and sets *error_out on failure.
///
/// # Safety
/// As `deepedge_model_load`; `params` is NULL or points to a `DeepedgeModelParams`.
#[no_mangle]
pub unsafe extern "C" fn deepedge_model_load_with_params(
    path: *const c_char,
    params: *const DeepedgeModelParams,
    error_out: *mut *mut c_char,
) -> *mut DeepedgeModel {
    guard(
        error_out,
        |_| std::ptr::null_mut(),
        || {
            let path = read_str(path, "path")?;
            // SAFETY: the caller passes NULL or a valid struct.
            let params = unsafe { params.as_ref() }
                .copied()
                .unwrap_or_else(|| deepedge_model_params_default());
            let options = SessionOptions {
                n_ctx: (params.n_ctx > 0).then_some(params.n_ctx as usize),
                threads: (params.n_threads > 0).then_some(params.n_threads as usize),
                ..SessionOptions::default()
            };
            let model = LoadedModel::load(path, options)?;
            Ok(handle_of(&MODELS, model))
        },
    )
}

/// Frees a model. Sessions made from it keep the weights alive until they are freed. NULL, or a model
/// already freed, is ignored. A call still running on this handle on another thread finishes first.
#[no_mangle]
pub extern "C" fn deepedge_model_free(m: *mut DeepedgeModel) {
    guard_void(|| drop(MODELS.remove(m as u64)));
}

/// The context size (tokens) of the model's generations and sessions; 0 for an invalid handle.
#[no_mangle]
pub extern "C" fn deepedge_model_n_ctx(m: *const DeepedgeModel) -> u32 {
    let mut n = 0;
    guard_void(|| {
        if let Ok(model) = live(&MODELS, m) {
            n = u32::try_from(model.n_ctx()).unwrap_or(u32::MAX);
        }
    });
    n
}

/// The vocabulary size; 0 for an invalid handle.
#[no_mangle]
pub extern "C" fn deepedge_model_n_vocab(m: *const DeepedgeModel) -> u32 {
    let mut n = 0;
    guard_void(|| {
        if let Ok(model) = live(&MODELS, m) {
            n = model.model().tokenizer.n_vocab() as u32;
        }
    });
    n
}

// ---------------------------------------------------------------------------------------------------
// One-shot generation on a model handle.

/// Generates up to `max_tokens` tokens after `prompt` (raw text, tokenized as `deepedge run -p` does)
/// with llama.cpp's default sampling at `temperature` (0 = greedy) and `seed`. Returns the text (free it
/// with deepedge_string_free), or NULL and *error_out on failure. The text equals what
/// `deepedge run -m MODEL -p PROMPT -n MAX_TOKENS --temp TEMPERATURE --seed SEED` prints.
///
/// # Safety
/// `m` is a handle from deepedge_model_load (or anything: invalid values are detected); `prompt` is NULL
/// or a NUL-terminated string; `error_out` is NULL or points to a writable `char*`.
#[no_mangle]
pub unsafe extern "C" fn deepedge_generate(
    m: *mut DeepedgeModel,
    prompt: *const c_char,
    max_tokens: u32,
    temperature: f32,
    seed: u64,
    error_out: *mut *mut c_char,
) -> *mut c_char {
    guard(
        error_out,
        |_| std::ptr::null_mut(),
        || {
            let params = simple_params(max_tokens, temperature, seed)?;
            let g = complete_on_model(m, prompt, &params, None, |_| true)?;
            Ok(hand_out_string(&g.text))
        },
    )
}

/// As deepedge_generate, streaming each piece of text to `cb` (which may be NULL) as it is generated;
/// `cb` returning false stops early, which is not an error. Returns DEEPEDGE_OK (0) or a negative
/// DEEPEDGE_ERROR_* code with *error_out set.
///
/// # Safety
/// As deepedge_generate; `cb` is NULL or a function that is safe to call with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn deepedge_generate_stream(
    m: *mut DeepedgeModel,
    prompt: *const c_char,
    max_tokens: u32,
    temperature: f32,
    seed: u64,
    cb: DeepedgeTokenCallback,
    user_data: *mut c_void,
    error_out: *mut *mut c_char,
) -> i32 {
    guard(
        error_out,
        |code| code,
        || {
            let params = simple_params(max_tokens, temperature, seed)?;
            complete_on_model(m, prompt, &params, None, piece_sink(cb, user_data))?;
            Ok(DEEPEDGE_OK)
        },
    )
}

/// The default generation parameters (llama.cpp's sampling defaults, 128 tokens, no stop strings, no
/// cancel handle).
#[no_mangle]
pub extern "C" fn deepedge_generate_params_default() -> DeepedgeGenerateParams {
    let s = SamplerParams::LLAMA_CPP_DEFAULTS;
    let defaults = GenerateParams::default();
    DeepedgeGenerateParams {
        max_tokens: defaults.max_tokens as u32,
        temperature: s.temperature,
        top_k: s.top_k as u32,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n as u32,
        seed: s.seed,
        ignore_eos: defaults.ignore_eos,
        stop: std::ptr::null(),
        n_stop: 0,
        cancel: std::ptr::null(),
    }
}

/// The general one-shot generation: every sampling option, stop strings, a cancel handle, streaming to
/// `cb` (may be NULL), the whole text in *text_out (may be NULL; free with deepedge_string_free) and
/// what happened in *info_out (may be NULL). `params` NULL means the defaults. Returns DEEPEDGE_OK or a
/// negative code with *error_out set (and *text_out NULL).
///
/// # Safety
/// As deepedge_generate_stream; `params` is NULL or a valid struct whose `stop` holds `n_stop` strings;
/// `text_out`, `info_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn deepedge_generate_with_params(
    m: *mut DeepedgeModel,
    prompt: *const c_char,
    params: *const DeepedgeGenerateParams,
    cb: DeepedgeTokenCallback,
    user_data: *mut c_void,
    text_out: *mut *mut c_char,
    info_out: *mut DeepedgeGenerationInfo,
    error_out: *mut *mut c_char,
) -> i32 {
    clear_out(text_out);
    guard(
        error_out,
        |code| code,
        || {
            // SAFETY: the caller passes NULL or a valid struct.
            let p = unsafe { params.as_ref() }
                .copied()
                .unwrap_or_else(|| deepedge_generate_params_default());
            let (params, cancel) = generate_params(&p)?;
            let g = complete_on_model(
                m,
                prompt,
                &params,
                cancel.as_deref(),
                piece_sink(cb, user_data),
            )?;
            write_outputs(&g, text_out, info_out);
            Ok(DEEPEDGE_OK)
        },
    )
}

// ---------------------------------------------------------------------------------------------------
// Tokens.

/// Most tokens `deepedge_detokenize` accepts in one call.
pub const DEEPEDGE_MAX_DETOKENIZE: usize = 1 << 24;

/// Tokenizes `text`. `add_special` adds BOS when the model does (as prompts get); `parse_special` turns
/// control-token text such as "<|im_start|>" into its id. On success *tokens_out holds *n_tokens_out ids
/// (free with deepedge_tokens_free; never NULL, also for 0 tokens).
///
/// # Safety
/// `text` is NULL or a NUL-terminated string; `tokens_out`, `n_tokens_out` are writable.
#[no_mangle]
pub unsafe extern "C" fn deepedge_tokenize(
    m: *mut DeepedgeModel,
    text: *const c_char,
    add_special: bool,
    parse_special: bool,
    tokens_out: *mut *mut u32,
    n_tokens_out: *mut usize,
    error_out: *mut *mut c_char,
) -> i32 {
    clear_out(tokens_out);
    guard(
        error_out,
        |code| code,
        || {
            if tokens_out.is_null() || n_tokens_out.is_null() {
                return Err(FfiError::invalid(
                    "tokens_out and n_tokens_out must not be NULL",
                ));
            }
            let model = live(&MODELS, m)?;
            let text = read_str(text, "text")?;
            let ids = model
                .model()
                .tokenizer
                .encode(text, add_special, parse_special)
                .map_err(Error::from)?;
            let n = ids.len();
            // SAFETY: both checked non-NULL above; the caller passes writable storage.
            unsafe {
                *n_tokens_out = n;
                *tokens_out = hand_out_tokens(ids);
            }
            Ok(DEEPEDGE_OK)
        },
    )
}

/// Frees an array from deepedge_tokenize. NULL, or an array already freed, is ignored.
#[no_mangle]
pub extern "C" fn deepedge_tokens_free(tokens: *mut u32) {
    guard_void(|| {
        let mut map = owned();
        if let Some(Owned::Tokens(_)) = map.get(&(tokens as usize)) {
            map.remove(&(tokens as usize));
        }
    });
}

/// The text of `n_tokens` ids (control tokens shown only with `render_special`). Returns the text (free
/// with deepedge_string_free), or NULL and *error_out for an invalid handle or an id outside the
/// vocabulary.
///
/// # Safety
/// `tokens` points to `n_tokens` ids (may be NULL when n_tokens is 0).
#[no_mangle]
pub unsafe extern "C" fn deepedge_detokenize(
    m: *mut DeepedgeModel,
    tokens: *const u32,
    n_tokens: usize,
    render_special: bool,
    error_out: *mut *mut c_char,
) -> *mut c_char {
    guard(
        error_out,
        |_| std::ptr::null_mut(),
        || {
            let model = live(&MODELS, m)?;
            let tokenizer = &model.model().tokenizer;
            if n_tokens > DEEPEDGE_MAX_DETOKENIZE {
                return Err(FfiError::invalid(format!(
                    "n_tokens is {n_tokens}, more than DEEPEDGE_MAX_DETOKENIZE"
                )));
            }
            let ids: &[u32] = if n_tokens == 0 {
                &[]
            } else if tokens.is_null() {
                return Err(FfiError::invalid("tokens is NULL but n_tokens is not 0"));
            } else {
                // SAFETY: the caller passes `n_tokens` readable ids (bounded above).
                unsafe { std::slice::from_raw_parts(tokens, n_tokens) }
            };
            let n_vocab = tokenizer.n_vocab();
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                return Err(Error::TokenOutOfRange { id, n_vocab }.into());
            }
            Ok(hand_out_string(tokenizer.decode(ids, render_special)))
        },
    )
}

/// Frees a string returned by this library. NULL, a string already freed, or a pointer this library did
/// not return (such as deepedge_version()'s) is ignored.
#[no_mangle]
pub extern "C" fn deepedge_string_free(s: *mut c_char) {
    guard_void(|| {
        let mut map = owned();
        if let Some(Owned::Text(_)) = map.get(&(s as usize)) {
            map.remove(&(s as usize));
        }
    });
}

// ---------------------------------------------------------------------------------------------------
// Cancel handles.

/// A new cancel handle, not raised. Give it to generations in DeepedgeGenerateParams.cancel.
#[no_mangle]
pub extern "C" fn deepedge_cancel_new() -> *mut DeepedgeCancel {
    guard(
        std::ptr::null_mut(),
        |_| std::ptr::null_mut(),
        || Ok(handle_of(&CANCELS, AtomicBool::new(false))),
    )
}

/// Raises the flag: generations watching it stop before their next token. Any thread, any time;
/// invalid handles are ignored.
#[no_mangle]
pub extern "C" fn deepedge_cancel_request(c: *const DeepedgeCancel) {
    guard_void(|| {
        if let Ok(flag) = live(&CANCELS, c) {
            flag.store(true, Ordering::SeqCst);
        }
    });
}

/// Lowers the flag so the handle can be used for another generation.
#[no_mangle]
pub extern "C" fn deepedge_cancel_reset(c: *const DeepedgeCancel) {
    guard_void(|| {
        if let Ok(flag) = live(&CANCELS, c) {
            flag.store(false, Ordering::SeqCst);
        }
    });
}

/// Whether the flag is raised (false for an invalid handle).
#[no_mangle]
pub extern "C" fn deepedge_cancel_is_requested(c: *const DeepedgeCancel) -> bool {
    let mut raised = false;
    guard_void(|| {
        if let Ok(flag) = live(&CANCELS, c) {
            raised = flag.load(Ordering::SeqCst);
        }
    });
    raised
}

/// Frees a cancel handle. A generation watching it keeps watching its flag until it ends.
#[no_mangle]
pub extern "C" fn deepedge_cancel_free(c: *mut DeepedgeCancel) {
    guard_void(|| drop(CANCELS.remove(c as u64)));
}

// ---------------------------------------------------------------------------------------------------
// Sessions: chat conversations.

/// A new chat session on a model, with its own KV cache and an optional system prompt (NULL for none).
/// Turns are rendered with the model's chat template (ChatML when it has none), as `deepedge chat`.
/// Returns NULL and *error_out on failure.
///
/// # Safety
/// `system_prompt` is NULL or a NUL-terminated string; `error_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn deepedge_session_new(
    m: *mut DeepedgeModel,
    system_prompt: *const c_char,
    error_out: *mut *mut c_char,
) -> *mut DeepedgeSession {
    guard(
        error_out,
        |_| std::ptr::null_mut(),
        || {
            let model = live(&MODELS, m)?;
            let system = if system_prompt.is_null() {
                None
            } else {
                Some(read_str(system_prompt, "system_prompt")?)
            };
            let conversation = model.new_conversation(system)?;
            Ok(handle_of(&SESSIONS, Mutex::new(conversation)))
        },
    )
}

/// Sends a user message and generates the assistant's answer, streamed to `cb` (may be NULL), whole in
/// *reply_out (may be NULL; free with deepedge_string_free), with *info_out (may be NULL). Only the new
/// turn is computed; the earlier ones are in the session's cache. A turn that does not fit the context
/// fails with DEEPEDGE_ERROR_CONTEXT and leaves the conversation as it was.
///
/// # Safety
/// As deepedge_generate_with_params.
#[no_mangle]
pub unsafe extern "C" fn deepedge_session_send(
    s: *mut DeepedgeSession,
    user_message: *const c_char,
    params: *const DeepedgeGenerateParams,
    cb: DeepedgeTokenCallback,
    user_data: *mut c_void,
    reply_out: *mut *mut c_char,
    info_out: *mut DeepedgeGenerationInfo,
    error_out: *mut *mut c_char,
) -> i32 {
    clear_out(reply_out);
    guard(
        error_out,
        |code| code,
        || {
            let session = live(&SESSIONS, s)?;
            let message = read_str(user_message, "user_message")?;
            // SAFETY: the caller passes NULL or a valid struct.
            let p = unsafe { params.as_ref() }
                .copied()
                .unwrap_or_else(|| deepedge_generate_params_default());
            let (params, cancel) = generate_params(&p)?;
            let mut conversation = lock_or_reset(&session, Conversation::reset);
            let g = conversation.send(
                message,
                &params,
                cancel.as_deref(),
                piece_sink(cb, user_data),
            )?;
            write_outputs(&g, reply_out, info_out);
            Ok(DEEPEDGE_OK)
        },
    )
}

/// Tokens in the session's cache (the conversation so far); 0 for an invalid handle.
#[no_mangle]
pub extern "C" fn deepedge_session_n_tokens(s: *const DeepedgeSession) -> u32 {
    let mut n = 0;
    guard_void(|| {
        if let Ok(session) = live(&SESSIONS, s) {
            let conversation = lock_or_reset(&session, Conversation::reset);
            n = conversation.session().tokens().len() as u32;
        }
    });
    n
}

/// Forgets the conversation except the system prompt.
#[no_mangle]
pub extern "C" fn deepedge_session_reset(s: *mut DeepedgeSession) {
    guard_void(|| {
        if let Ok(session) = live(&SESSIONS, s) {
            lock_or_reset(&session, Conversation::reset).reset();
        }
    });
}

/// Frees a session. NULL, or a session already freed, is ignored.
#[no_mangle]
pub extern "C" fn deepedge_session_free(s: *mut DeepedgeSession) {
    guard_void(|| drop(SESSIONS.remove(s as u64)));
}

// ---------------------------------------------------------------------------------------------------
// Diagnostics.

/// Objects handed out and not yet freed: models, sessions, cancel handles, strings and token arrays. A
/// leak check for tests and debug builds of applications; 0 once everything is freed.
#[no_mangle]
pub extern "C" fn deepedge_live_objects() -> usize {
    let mut n = 0;
    guard_void(|| n = MODELS.len() + SESSIONS.len() + CANCELS.len() + owned().len());
    n
}

#[cfg(test)]
mod tests;
