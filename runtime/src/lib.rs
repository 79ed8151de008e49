//! deepedge — an LLM inference runtime for the edge.
//!
//! The library memory-maps GGUF weights, runs transformer models on a pluggable backend (the CPU backend is
//! the reference) and exposes sessions that tokenize, generate and stream text. The CLI, the bindings and
//! the service are thin shells around it. See ARCHITECTURE.md for the map.

pub mod gguf;
pub mod quant;
pub mod tokenizer;
