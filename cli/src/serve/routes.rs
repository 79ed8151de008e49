//! The HTTP endpoints: OpenAI's chat completions, completions, embeddings and models, plus `/health`,
//! `/metrics` and llama.cpp-style `/tokenize`, `/detokenize` and `/apply-template`.
//!
//! A generation is submitted to the engine with a callback that forwards its events into a channel; the
//! handler reads the channel (collecting the text, or as server-sent events). Dropping the handler's future
//! or the response stream — a client that went away — drops the channel and a [`CancelOnDrop`] guard, so
//! the sequence leaves the batch at the next step.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use deepedge::scheduler::{Event, Request as EngineRequest, RequestHandle, Summary};
use deepedge::FinishReason;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::api::{
    parse_body, parse_inputs, ChatRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest,
    Plan, PromptIn, TemplateRequest, TokenizeRequest,
};
use super::error::ApiError;
use super::{AppState, MAX_BODY_BYTES};

type Shared = State<Arc<AppState>>;

/// Tokens a legacy completion generates when the request does not say (OpenAI's default).
const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts every response by status, and gives the ones produced without a JSON body (unknown routes,
/// wrong methods, oversized bodies) OpenAI's error shape.
pub async fn observe(State(state): Shared, request: Request, next: Next) -> Response {
    let response = match oversized(&request) {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    };
    let status = response.status();
    state.metrics.count_response(status.as_u16());
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let detail = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    ApiError::from_status(status, &String::from_utf8_lossy(&detail)).into_response()
}

/// A body announced as larger than the limit is refused before it is read (the limit layer alone would
/// read up to the limit first).
fn oversized(request: &Request) -> Option<ApiError> {
    let length: u64 = request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    (length > MAX_BODY_BYTES as u64).then(|| {
        ApiError::from_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is {length} bytes; the limit is {MAX_BODY_BYTES}"),
        )
    })
}

/// Refuses requests without the right `Authorization: Bearer KEY` when the service has a key.
pub async fn require_key(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), key.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// Compares without returning early at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn health(State(state): Shared) -> Response {
    match state.engine() {
        Ok(_) => Json(json!({"status": "ok", "model": state.model_id})).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading", "model": state.model_id})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): Shared) -> Response {
    let stats = state.engine().ok().map(|e| e.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(stats),
    )
        .into_response()
}

fn model_object(state: &AppState) -> Value {
    json!({"id": state.model_id, "object": "model", "created": state.created, "owned_by": "deepedge"})
}

pub async fn models(State(state): Shared) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&state)]}))
}

pub async fn model(State(state): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.check_model(Some(&id))?;
    Ok(Json(model_object(&state)))
}

/// Cancels the request when dropped: the answer was sent, or the client went away.
struct CancelOnDrop(RequestHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A generation in flight.
struct Running {
    events: UnboundedReceiver<Event>,
    _cancel: CancelOnDrop,
}

/// Submits a generation whose events arrive on [`Running::events`]; token timings and counts go to the
/// metrics as they happen, on the engine thread.
fn start(
    state: &Arc<AppState>,
    prompt: Vec<u32>,
    plan: &Plan,
    param: &str,
) -> Result<Running, ApiError> {
    let engine = state.engine()?;
    let (tx, events) = unbounded_channel();
    let shared = Arc::clone(state);
    let submitted = Instant::now();
    let mut last_token: Option<Instant> = None;
    let mut cancel_counted = false;
    let on_event = Box::new(move |event: Event| {
        let metrics = &shared.metrics;
        match &event {
            Event::Token { .. } => {
                let now = Instant::now();
                match last_token {
                    None => metrics.observe_first_token(now - submitted),
                    Some(t) => metrics.observe_inter_token(now - t),
                }
                last_token = Some(now);
            }
            Event::Done(s) => {
                metrics.add_tokens(s.prompt_tokens, s.completion_tokens);
                if s.finish == FinishReason::Cancelled && !cancel_counted {
                    cancel_counted = true;
                    metrics.count_cancelled();
                }
            }
            Event::Failed(_) => {}
        }
        let delivered = tx.send(event).is_ok();
        if !delivered && !cancel_counted {
            cancel_counted = true;
            metrics.count_cancelled();
        }
        delivered
    });
    let handle = engine
        .submit(EngineRequest {
            prompt,
            params: plan.params.clone(),
            on_event,
        })
        .map_err(|e| ApiError::from_submit(e, param))?;
    Ok(Running {
        events,
        _cancel: CancelOnDrop(handle),
    })
}

/// Waits for the whole text of a generation.
async fn collect(mut running: Running) -> Result<(String, Summary), ApiError> {
    let mut text = String::new();
    while let Some(event) = running.events.recv().await {
        match event {
            Event::Token { text: piece, .. } => text.push_str(&piece),
            Event::Done(summary) => return Ok((text, summary)),
            Event::Failed(e) => return Err(ApiError::from_engine(e, "prompt")),
        }
    }
    Err(ApiError::internal(
        "the engine stopped before the request finished",
    ))
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
    })
}

/// Which endpoint's shapes an answer takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// What every answer and chunk of one request carries.
struct Envelope {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

impl Envelope {
    fn new(state: &AppState, kind: Kind) -> Self {
        let n = state.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Self {
            kind,
            id: format!("{prefix}-{:08x}{n:08x}", state.created as u32),
            created: unix_now(),
            model: state.model_id.clone(),
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// The non-streamed answer.
    fn answer(&self, text: String, summary: &Summary) -> Value {
        let reason = finish_reason(summary.finish);
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": reason, "logprobs": null}),
            Kind::Completion => {
                json!({"index": 0, "text": text, "finish_reason": reason, "logprobs": null})
            }
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created,
            "model": self.model, "choices": [choice], "usage": usage(summary)})
    }

    /// A streamed chunk with one choice: `text` as the delta, or the role announcement, or the end.
    fn chunk(&self, text: Option<&str>, role: bool, finish: Option<FinishReason>) -> SseEvent {
        let reason = finish.map(finish_reason);
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(t) = text {
                    delta.insert("content".into(), t.into());
                }
                json!({"index": 0, "delta": delta, "finish_reason": reason, "logprobs": null})
            }
            Kind::Completion => json!({"index": 0, "text": text.unwrap_or(""),
                "finish_reason": reason, "logprobs": null}),
        };
        self.event(json!([choice]), None)
    }

    fn event(&self, choices: Value, usage: Option<Value>) -> SseEvent {
        let mut body = json!({"id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": choices});
        if let Some(u) = usage {
            body["usage"] = u;
        }
        SseEvent::default().data(body.to_string())
    }
}

/// Where a streamed answer is.
enum Phase {
    /// Chat streams open with a chunk announcing the assistant's role.
    Role,
    Tokens,
    Usage(Summary),
    Done,
    End,
}

/// A generation as server-sent events, ending with `data: [DONE]`.
struct EventStream {
    running: Running,
    envelope: Envelope,
    include_usage: bool,
    phase: Phase,
}

impl EventStream {
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::End) {
                Phase::Role => {
                    self.phase = Phase::Tokens;
                    if self.envelope.kind == Kind::Chat {
                        return Some(self.envelope.chunk(Some(""), true, None));
                    }
                }
                Phase::Tokens => {
                    self.phase = Phase::Tokens;
                    match self.running.events.recv().await {
                        Some(Event::Token { text, .. }) if !text.is_empty() => {
                            return Some(self.envelope.chunk(Some(&text), false, None))
                        }
                        Some(Event::Token { .. }) => {}
                        Some(Event::Done(summary)) => {
                            self.phase = if self.include_usage {
                                Phase::Usage(summary)
                            } else {
                                Phase::Done
                            };
                            let end = match self.envelope.kind {
                                Kind::Chat => None,
                                Kind::Completion => Some(""),
                            };
                            return Some(self.envelope.chunk(end, false, Some(summary.finish)));
                        }
                        Some(Event::Failed(e)) => {
                            self.phase = Phase::Done;
                            let body = ApiError::from_engine(e, "prompt").body();
                            return Some(SseEvent::default().data(body.to_string()));
                        }
                        None => {
                            self.phase = Phase::Done;
                            let body = ApiError::internal("the engine stopped").body();
                            return Some(SseEvent::default().data(body.to_string()));
                        }
                    }
                }
                Phase::Usage(summary) => {
                    self.phase = Phase::Done;
                    return Some(self.envelope.event(json!([]), Some(usage(&summary))));
                }
                Phase::Done => return Some(SseEvent::default().data("[DONE]")),
                Phase::End => return None,
            }
        }
    }
}

/// Runs a generation and answers with its text or streams it.
async fn respond(
    state: &Arc<AppState>,
    kind: Kind,
    prompt: Vec<u32>,
    plan: Plan,
    param: &str,
) -> Result<Response, ApiError> {
    let running = start(state, prompt, &plan, param)?;
    let envelope = Envelope::new(state, kind);
    if !plan.stream {
        let (text, summary) = collect(running).await?;
        return Ok(Json(envelope.answer(text, &summary)).into_response());
    }
    let stream = EventStream {
        running,
        envelope,
        include_usage: plan.include_usage,
        phase: Phase::Role,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        s.next_event().await.map(|e| (Ok::<_, Infallible>(e), s))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Tokenizes text off the async threads (a long prompt takes a while).
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
}

pub async fn chat_completions(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: ChatRequest = parse_body(&body)?;
    state.check_model(request.sampling.model.as_deref())?;
    let plan = request.sampling.plan(usize::MAX)?;
    let messages = request.messages()?;
    let engine = state.engine()?;
    let prompt = blocking(move || {
        let tokenizer = &engine.model().tokenizer;
        let rendered = tokenizer
            .render_chat_prompt(&messages)
            .map_err(|e| ApiError::from_engine(e, "messages"))?;
        tokenizer
            .encode_chat_prompt(&rendered)
            .map_err(|e| ApiError::from_engine(e, "messages"))
    })
    .await?;
    respond(&state, Kind::Chat, prompt, plan, "messages").await
}

pub async fn completions(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse_body(&body)?;
    state.check_model(request.sampling.model.as_deref())?;
    let plan = request.sampling.plan(COMPLETION_DEFAULT_MAX_TOKENS)?;
    let prompt = request.prompt()?;
    let engine = state.engine()?;
    let prompt = match prompt {
        PromptIn::Ids(ids) => ids,
        PromptIn::Text(text) => {
            blocking(move || {
                engine
                    .model()
                    .tokenizer
                    .encode_prompt(&text)
                    .map_err(|e| ApiError::from_engine(e, "prompt"))
            })
            .await?
        }
    };
    respond(&state, Kind::Completion, prompt, plan, "prompt").await
}

pub async fn embeddings(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: EmbeddingRequest = parse_body(&body)?;
    state.check_model(request.model.as_deref())?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_field(
                "encoding_format",
                format!("{other:?} is neither \"float\" nor \"base64\""),
            ))
        }
    };
    let engine = state.engine()?;
    let n_embd = engine.model().hparams.n_embd;
    if let Some(d) = request.dimensions {
        if usize::try_from(d) != Ok(n_embd) {
            return Err(ApiError::unsupported(
                "dimensions",
                &format!("a size other than the model's {n_embd}"),
            ));
        }
    }
    let inputs = parse_inputs(&request.input, "input")?;
    let tokenizer_engine = Arc::clone(&engine);
    let ids: Vec<Vec<u32>> = blocking(move || {
        inputs
            .into_iter()
            .map(|input| match input {
                PromptIn::Ids(ids) => Ok(ids),
                PromptIn::Text(text) => tokenizer_engine
                    .model()
                    .tokenizer
                    .encode_prompt(&text)
                    .map_err(|e| ApiError::from_engine(e, "input")),
            })
            .collect()
    })
    .await?;
    let prompt_tokens: usize = ids.iter().map(Vec::len).sum();
    let (tx, rx) = tokio::sync::oneshot::channel();
    engine
        .embed(
            ids,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )
        .map_err(|e| ApiError::from_submit(e, "input"))?;
    let vectors = rx
        .await
        .map_err(|_| ApiError::internal("the engine stopped before the embeddings were done"))?
        .map_err(|e| ApiError::from_engine(e, "input"))?;
    state.metrics.add_tokens(prompt_tokens, 0);
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "model": state.model_id,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}),
    )
    .into_response())
}

pub async fn tokenize(State(state): Shared, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: TokenizeRequest = parse_body(&body)?;
    let engine = state.engine()?;
    let tokens = blocking(move || {
        engine
            .model()
            .tokenizer
            .encode(&request.content, request.add_special, request.parse_special)
            .map_err(|e| ApiError::from_engine(e, "content"))
    })
    .await?;
    Ok(Json(json!({"tokens": tokens})))
}

pub async fn detokenize(State(state): Shared, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: DetokenizeRequest = parse_body(&body)?;
    let engine = state.engine()?;
    let tokenizer = &engine.model().tokenizer;
    if let Some(&id) = request
        .tokens
        .iter()
        .find(|&&id| id as usize >= tokenizer.n_vocab())
    {
        return Err(ApiError::bad_field(
            "tokens",
            format!("{id} is outside the vocabulary of {}", tokenizer.n_vocab()),
        ));
    }
    Ok(Json(
        json!({"content": tokenizer.decode(&request.tokens, false)}),
    ))
}

pub async fn apply_template(State(state): Shared, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: TemplateRequest = parse_body(&body)?;
    let messages = ChatRequest {
        messages: request.messages,
        sampling: Default::default(),
    }
    .messages()?;
    let engine = state.engine()?;
    let prompt = engine
        .model()
        .tokenizer
        .render_chat_prompt(&messages)
        .map_err(|e| ApiError::from_engine(e, "messages"))?;
    Ok(Json(json!({"prompt": prompt})))
}

/// Unknown routes.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::from_status(
        StatusCode::NOT_FOUND,
        &format!("no route for {} {}", request.method(), request.uri().path()),
    )
}
