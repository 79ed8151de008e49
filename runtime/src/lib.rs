//! deepedge — an LLM inference runtime for the edge.
//!
//! The library memory-maps GGUF weights, runs transformer models on a pluggable backend (the CPU backend is
//! the reference) and exposes sessions that tokenize, generate and stream text. The CLI, the bindings and
//! the service are thin shells around it. See ARCHITECTURE.md for the map.

pub mod backend;
pub mod conversation;
pub mod embed;
pub mod error;
pub mod eval;
pub mod gguf;
pub mod kv;
pub mod model;
pub mod quant;
pub mod sample;
pub mod scheduler;
pub mod session;
pub mod tokenizer;

pub use conversation::Conversation;
pub use embed::{ErrorKind, HandleTable, LoadedModel};
pub use error::{Error, Result};
pub use model::Model;
pub use session::{FinishReason, GenerateParams, Generation, Prompt, Session, SessionOptions};
