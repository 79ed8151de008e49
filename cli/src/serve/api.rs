//! The OpenAI request bodies this service accepts, and their translation into the library's terms.
//!
//! Fields are checked here, before anything is queued: a bad value is a 400 naming the field. Unknown
//! fields are ignored (clients send many optional ones); known fields asking for something the service
//! does not do (`n` > 1, `logprobs`, penalties other than 0, `echo`, `suffix`) are refused rather than
//! silently dropped. Defaults are OpenAI's: temperature 1, top_p 1, a random seed, and for legacy
//! completions 16 tokens; a chat completion may run to the end of the context.

use deepedge::sample::SamplerParams;
use deepedge::tokenizer::ChatMessage;
use deepedge::GenerateParams;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;

/// Parses a JSON body, turning syntax and type errors into 400s.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON for this endpoint: {e}"
        ))
    })
}

/// Options of `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The sampling and output fields shared by chat and legacy completions.
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Value>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<i64>,
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<Value>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub best_of: Option<i64>,
    pub echo: Option<bool>,
    pub suffix: Option<Value>,
    /// llama.cpp-style extensions.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub ignore_eos: Option<bool>,
}

/// How a request is answered.
#[derive(Debug)]
pub struct Plan {
    pub params: GenerateParams,
    pub stream: bool,
    pub include_usage: bool,
}

impl Sampling {
    /// Checks the fields and builds generation parameters; `default_max_tokens` applies when neither
    /// `max_tokens` nor `max_completion_tokens` is given (the engine caps it by the context).
    pub fn plan(&self, default_max_tokens: usize) -> Result<Plan, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::unsupported("n", "more than one choice"));
        }
        if self.best_of.is_some_and(|n| n != 1) {
            return Err(ApiError::unsupported("best_of", "more than one candidate"));
        }
        let wants_logprobs = match &self.logprobs {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Number(n)) => n.as_u64() != Some(0),
            Some(_) => true,
        };
        if wants_logprobs || self.top_logprobs.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::unsupported(
                "logprobs",
                "returning log probabilities",
            ));
        }
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(ApiError::unsupported(
                    name,
                    "a non-zero penalty (use repeat_penalty)",
                ));
            }
        }
        if self.echo == Some(true) {
            return Err(ApiError::unsupported("echo", "echoing the prompt"));
        }
        if self.suffix.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::unsupported(
                "suffix",
                "a suffix (fill-in-the-middle)",
            ));
        }
        let (max_name, max) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => ("max_completion_tokens", Some(n)),
            (None, n) => ("max_tokens", n),
        };
        let max_tokens = match max {
            None => default_max_tokens,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => return Err(ApiError::bad_field(max_name, "must be at least 1")),
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_field(
                "temperature",
                "must be between 0 and 2",
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_field("top_p", "must be in (0, 1]"));
        }
        let top_k = match self.top_k {
            None => 0,
            Some(k) => usize::try_from(k)
                .map_err(|_| ApiError::bad_field("top_k", "must be 0 (off) or more"))?,
        };
        let min_p = self.min_p.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_p) {
            return Err(ApiError::bad_field("min_p", "must be in [0, 1]"));
        }
        let repeat_penalty = self.repeat_penalty.unwrap_or(1.0);
        if !(repeat_penalty.is_finite() && repeat_penalty > 0.0) {
            return Err(ApiError::bad_field(
                "repeat_penalty",
                "must be a positive number",
            ));
        }
        // A negative seed (some clients send signed 64-bit values) keeps its bits.
        let seed = self.seed.map_or_else(rand::random::<u64>, |s| s as u64);
        let stop = parse_stop(self.stop.as_ref())?;
        Ok(Plan {
            params: GenerateParams {
                max_tokens,
                sampler: SamplerParams {
                    temperature,
                    top_k,
                    top_p,
                    min_p,
                    repeat_penalty,
                    seed,
                    ..SamplerParams::default()
                },
                stop,
                ignore_eos: self.ignore_eos.unwrap_or(false),
                render_special: false,
            },
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }
}

/// Most stop strings a request may give (OpenAI allows 4; llama.cpp more).
const MAX_STOPS: usize = 16;

fn parse_stop(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::bad_field("stop", "must be a string or a list of strings")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_field(
                "stop",
                "must be a string or a list of strings",
            ))
        }
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::bad_field(
            "stop",
            format!("at most {MAX_STOPS} stop strings"),
        ));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::bad_field(
            "stop",
            "stop strings must not be empty",
        ));
    }
    Ok(stops)
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessageIn>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A message as clients send it: `content` a string, a list of text parts, or null.
#[derive(Debug, Deserialize)]
pub struct ChatMessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

/// Roles the chat templates know. `developer` (OpenAI's newer name for `system`) is rendered as `system`.
const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

impl ChatRequest {
    /// The conversation in the library's terms.
    pub fn messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_field(
                "messages",
                "must hold at least one message",
            ));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = if m.role == "developer" {
                    "system"
                } else {
                    m.role.as_str()
                };
                if !ROLES.contains(&role) {
                    return Err(ApiError::bad_field(
                        &format!("messages[{i}].role"),
                        format!(
                            "unknown role {:?} (system, developer, user, assistant, tool)",
                            m.role
                        ),
                    ));
                }
                Ok(ChatMessage::new(role, message_text(&m.content, i)?))
            })
            .collect()
    }
}

/// The text of a message's content: a string, or the concatenated `text` parts of a list.
fn message_text(content: &Value, index: usize) -> Result<String, ApiError> {
    let param = || format!("messages[{index}].content");
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some("text"), _) => {
                        return Err(ApiError::bad_field(
                            &param(),
                            "a text part needs a string `text`",
                        ))
                    }
                    (Some(other), _) => {
                        return Err(ApiError::unsupported(
                            &param(),
                            &format!("a content part of type {other:?} (only text)"),
                        ))
                    }
                    (None, _) => {
                        return Err(ApiError::bad_field(&param(), "each part needs a `type`"))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad_field(
            &param(),
            "must be a string or a list of text parts",
        )),
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Value,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A prompt as text (tokenized like `deepedge run -p`) or as token ids (fed as they are).
#[derive(Debug, PartialEq, Eq)]
pub enum PromptIn {
    Text(String),
    Ids(Vec<u32>),
}

impl CompletionRequest {
    /// One prompt: a string, a list of ids, or a one-element list of either.
    pub fn prompt(&self) -> Result<PromptIn, ApiError> {
        let mut inputs = parse_inputs(&self.prompt, "prompt")?;
        if inputs.len() != 1 {
            return Err(ApiError::unsupported(
                "prompt",
                "more than one prompt per request",
            ));
        }
        Ok(inputs.remove(0))
    }
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub input: Value,
    pub model: Option<String>,
    pub encoding_format: Option<String>,
    pub dimensions: Option<i64>,
}

/// Parses an OpenAI input list: a string, a list of strings, a list of ids, or a list of id lists.
pub fn parse_inputs(value: &Value, param: &str) -> Result<Vec<PromptIn>, ApiError> {
    let shape = || {
        ApiError::bad_field(
            param,
            "must be a string, a list of strings, a list of token ids, or a list of token-id lists",
        )
    };
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| ApiError::bad_field(param, format!("{v} is not a token id")))
            })
            .collect()
    };
    let inputs = match value {
        Value::String(s) => vec![PromptIn::Text(s.clone())],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::bad_field(param, "must not be empty"))
        }
        Value::Array(items) => match &items[0] {
            Value::Number(_) => vec![PromptIn::Ids(ids(items)?)],
            Value::String(_) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|s| PromptIn::Text(s.to_owned()))
                        .ok_or_else(shape)
                })
                .collect::<Result<_, _>>()?,
            Value::Array(_) => items
                .iter()
                .map(|v| {
                    v.as_array()
                        .ok_or_else(shape)
                        .and_then(|a| ids(a))
                        .map(PromptIn::Ids)
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(shape()),
        },
        _ => return Err(shape()),
    };
    if inputs
        .iter()
        .any(|p| matches!(p, PromptIn::Ids(ids) if ids.is_empty()))
    {
        return Err(ApiError::bad_field(
            param,
            "a token-id list must not be empty",
        ));
    }
    Ok(inputs)
}

/// `POST /tokenize` (llama.cpp's server shape).
#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub content: String,
    /// Add BOS (and EOS where the model does) as `deepedge run -p` does.
    #[serde(default = "yes")]
    pub add_special: bool,
    /// Read control-token text (`<|im_start|>`) as the control token.
    #[serde(default)]
    pub parse_special: bool,
}

fn yes() -> bool {
    true
}

/// `POST /detokenize`.
#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

/// `POST /apply-template`: the chat template rendered, as a chat completion would feed it.
#[derive(Debug, Deserialize)]
pub struct TemplateRequest {
    pub messages: Vec<ChatMessageIn>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sampling(v: Value) -> Sampling {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_openai_s() {
        let plan = sampling(json!({})).plan(16).unwrap();
        assert_eq!(plan.params.max_tokens, 16);
        assert_eq!(plan.params.sampler.temperature, 1.0);
        assert_eq!(plan.params.sampler.top_p, 1.0);
        assert_eq!(plan.params.sampler.top_k, 0);
        assert_eq!(plan.params.sampler.min_p, 0.0);
        assert!(!plan.stream && !plan.include_usage);
    }

    #[test]
    fn fields_are_read() {
        let plan = sampling(json!({"max_tokens": 5, "max_completion_tokens": 7, "temperature": 0,
            "top_p": 0.5, "seed": -1, "stop": "x", "stream": true, "stream_options": {"include_usage": true}}))
        .plan(16)
        .unwrap();
        assert_eq!(plan.params.max_tokens, 7, "max_completion_tokens wins");
        assert_eq!(plan.params.sampler.temperature, 0.0);
        assert_eq!(plan.params.sampler.top_p, 0.5);
        assert_eq!(plan.params.sampler.seed, u64::MAX);
        assert_eq!(plan.params.stop, ["x"]);
        assert!(plan.stream && plan.include_usage);
    }

    #[test]
    fn bad_fields_name_the_field() {
        for (body, param) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"logprobs": 3}), "logprobs"),
            (json!({"temperature": 3}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"stop": 3}), "stop"),
            (json!({"stop": [""]}), "stop"),
            (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
            (json!({"echo": true}), "echo"),
        ] {
            let e = sampling(body.clone()).plan(16).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert!(
            sampling(json!({"logprobs": false, "n": 1, "frequency_penalty": 0}))
                .plan(1)
                .is_ok()
        );
    }

    #[test]
    fn inputs_take_every_openai_shape() {
        let parse = |v: Value| parse_inputs(&v, "input");
        assert_eq!(parse(json!("a")).unwrap(), [PromptIn::Text("a".into())]);
        assert_eq!(
            parse(json!(["a", "b"])).unwrap(),
            [PromptIn::Text("a".into()), PromptIn::Text("b".into())]
        );
        assert_eq!(parse(json!([1, 2])).unwrap(), [PromptIn::Ids(vec![1, 2])]);
        assert_eq!(
            parse(json!([[1], [2, 3]])).unwrap(),
            [PromptIn::Ids(vec![1]), PromptIn::Ids(vec![2, 3])]
        );
        for bad in [
            json!([]),
            json!([[]]),
            json!([1, -2]),
            json!(["a", 1]),
            json!({"a": 1}),
            json!(7),
        ] {
            assert_eq!(parse(bad.clone()).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn chat_content_parts_are_joined_and_roles_checked() {
        let req: ChatRequest = serde_json::from_value(json!({"messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
        ]}))
        .unwrap();
        let m = req.messages().unwrap();
        assert_eq!(m[0], ChatMessage::new("system", "be brief"));
        assert_eq!(m[1], ChatMessage::new("user", "hi there"));
        for bad in [
            json!({"messages": []}),
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}),
            json!({"messages": [{"role": "user", "content": 5}]}),
        ] {
            let req: ChatRequest = serde_json::from_value(bad.clone()).unwrap();
            assert_eq!(req.messages().unwrap_err().status, 400, "{bad}");
        }
    }
}
