//! The library's error type: every fallible public function returns [`Error`].
//!
//! Errors carry the offending key, tensor, value or limit in their message, so one line on stderr is
//! enough for a user to know what is wrong. Binaries wrap these in `anyhow`; the library never panics on
//! bad input.

use crate::gguf::GgufError;
use crate::quant::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("unsupported architecture {0:?} (supported: {supported})", supported = crate::model::Arch::SUPPORTED)]
    UnsupportedArchitecture(String),
    #[error("model: {0}")]
    Model(String),
    #[error("tensor {tensor:?}: {problem}")]
    Tensor { tensor: String, problem: String },
    #[error("tensor {tensor:?} has type {ggml_type}, which has no CPU kernels")]
    UnsupportedType { tensor: String, ggml_type: GgmlType },
    #[error("prompt of {prompt} tokens plus {generate} to generate does not fit the context of {ctx} tokens (raise --ctx, up to the model's {ctx_train})")]
    ContextOverflow {
        prompt: usize,
        generate: usize,
        ctx: usize,
        ctx_train: usize,
    },
    #[error("the context of {ctx} tokens is full")]
    ContextFull { ctx: usize },
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("out of memory: cannot allocate {bytes} bytes for {what}")]
    OutOfMemory { what: String, bytes: usize },
    #[error("cancelled")]
    Cancelled,
    /// A model file that could not be opened as a model, with the path in front of the reason.
    #[error("cannot load {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
