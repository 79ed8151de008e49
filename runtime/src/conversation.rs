//! A chat conversation over a [`Session`]: the turns so far, rendered with the model's chat template
//! (ChatML when the GGUF has none, as llama.cpp falls back to) and sent whole each turn, so the session's
//! prefix reuse computes only the new turn.
//!
//! It follows `llama-cli`'s conversation mode: the rendered text is tokenized with special tokens parsed and
//! no BOS added by the tokenizer (templates write their own), and the assistant's answer is kept trimmed of
//! surrounding whitespace. It is not a prompt-engineering layer: no tool calls, no images, no history
//! truncation — a conversation that outgrows the context is an error the caller sees and can `reset`.
//! `deepedge chat` and the bindings' sessions are thin shells over it.

use std::sync::atomic::AtomicBool;

use crate::error::Result;
use crate::session::{GenerateParams, Generation, Session};
use crate::tokenizer::ChatMessage;

/// A conversation: a session plus the messages it has seen.
pub struct Conversation {
    session: Session,
    messages: Vec<ChatMessage>,
    /// 1 when the first message is a system prompt that `reset` keeps.
    kept_on_reset: usize,
}

impl Conversation {
    /// Starts a conversation on `session` (which is reset), with an optional system prompt.
    pub fn new(mut session: Session, system: Option<&str>) -> Self {
        session.reset();
        let messages: Vec<ChatMessage> = system
            .map(|s| ChatMessage::new("system", s))
            .into_iter()
            .collect();
        Self {
            kept_on_reset: messages.len(),
            session,
            messages,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The turns so far, the system prompt first when there is one.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Whether the model has no chat template of its own and ChatML is used.
    pub fn uses_chatml_fallback(&self) -> bool {
        self.session.model().tokenizer.chat_template_or_chatml().1
    }

    /// Forgets every turn except the system prompt, and the KV cache with them.
    pub fn reset(&mut self) {
        self.messages.truncate(self.kept_on_reset);
        self.session.reset();
    }

    /// Sends a user message and generates the assistant's answer, streaming its text to `on_text` (return
    /// `false` to stop). The answer, also when stopped early, becomes part of the conversation; when the
    /// turn fails (e.g. it does not fit the context) the user message is dropped again and the conversation
    /// is as it was.
    pub fn send(
        &mut self,
        user_message: &str,
        params: &GenerateParams,
        cancel: Option<&AtomicBool>,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.messages.push(ChatMessage::new("user", user_message));
        match self.answer(params, cancel, on_text) {
            Ok(generation) => {
                self.messages
                    .push(ChatMessage::new("assistant", generation.text.trim()));
                Ok(generation)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }

    fn answer(
        &mut self,
        params: &GenerateParams,
        cancel: Option<&AtomicBool>,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let model = std::sync::Arc::clone(self.session.model());
        let tokenizer = &model.tokenizer;
        let rendered = tokenizer.render_chat_prompt(&self.messages)?;
        let ids = tokenizer.encode_chat_prompt(&rendered)?;
        self.session.check_fits(ids.len(), 1)?;
        self.session.generate(&ids, params, cancel, on_text)
    }
}
