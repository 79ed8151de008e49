//! Errors in OpenAI's shape, `{"error":{"message":..,"type":..,"param":..,"code":..}}`, with the HTTP status
//! each kind of failure gets: a client's mistake is a 4xx, only the service's own trouble is a 5xx.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use deepedge::scheduler::SubmitError;
use deepedge::Error;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `server_error`.
    pub kind: &'static str,
    pub code: Option<&'static str>,
    /// The request field at fault, where there is one.
    pub param: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
        }
    }

    /// A malformed request (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// A field with a bad value (400), named in `param`.
    pub fn bad_field(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::bad_request(format!("{param}: {}", message.into()));
        e.param = Some(param.to_owned());
        e.code = Some("invalid_value");
        e
    }

    /// A field asking for something this service does not do (400).
    pub fn unsupported(param: &str, what: &str) -> Self {
        let mut e = Self::bad_field(param, format!("{what} is not supported"));
        e.code = Some("unsupported_parameter");
        e
    }

    pub fn unknown_model(asked: &str, served: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the model `{asked}` does not exist; this server runs `{served}`"),
        );
        e.code = Some("model_not_found");
        e.param = Some("model".into());
        e
    }

    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or incorrect API key: send `Authorization: Bearer KEY`",
        );
        e.code = Some("invalid_api_key");
        e
    }

    pub fn loading() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the model is still loading; retry when /health answers 200",
        );
        e.code = Some("model_loading");
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The answer for any status that was produced without a JSON body (unknown routes, wrong methods,
    /// oversized bodies): `detail` is what the layer that refused it said, if anything.
    pub fn from_status(status: StatusCode, detail: &str) -> Self {
        let reason = status.canonical_reason().unwrap_or("error");
        let message = if detail.trim().is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}: {}", detail.trim())
        };
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let mut e = Self::new(status, kind, message);
        e.code = match status {
            StatusCode::NOT_FOUND => Some("not_found"),
            StatusCode::METHOD_NOT_ALLOWED => Some("method_not_allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => Some("request_too_large"),
            _ => None,
        };
        e
    }

    /// An error of the library, for a request that `param` describes.
    pub fn from_engine(error: impl Into<Error>, param: &str) -> Self {
        let error = error.into();
        match error {
            Error::ContextOverflow { .. } => {
                let mut e = Self::bad_request(error.to_string());
                e.code = Some("context_length_exceeded");
                e.param = Some(param.to_owned());
                e
            }
            Error::TokenOutOfRange { .. } | Error::InvalidArgument(_) | Error::Tokenizer(_) => {
                let mut e = Self::bad_request(error.to_string());
                e.param = Some(param.to_owned());
                e
            }
            Error::OutOfMemory { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                error.to_string(),
            ),
            other => Self::internal(other.to_string()),
        }
    }

    pub fn from_submit(error: SubmitError, param: &str) -> Self {
        match error {
            SubmitError::QueueFull(n) => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    format!("the server is busy ({n} requests already waiting); retry later"),
                );
                e.code = Some("queue_full");
                e
            }
            SubmitError::ShuttingDown => {
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "the server is shutting down",
                );
                e.code = Some("shutting_down");
                e
            }
            SubmitError::Invalid(error) => Self::from_engine(error, param),
        }
    }

    /// The JSON body, also sent as an SSE event when a stream fails after it started.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        (self.status, Json(self.body())).into_response()
    }
}
