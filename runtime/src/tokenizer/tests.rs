//! Unit tests for the tokenizer on small synthetic GGUF vocabularies (see `tests/tokenizer_real.rs` for
//! real models and llama.cpp fixtures).
