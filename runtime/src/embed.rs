//! What every embedding (the C ABI, the uniffi Kotlin/Swift bindings, JNI) needs from a model handle:
//! the weights, the session options its sessions get, and a one-shot session that completes a prompt
//! from an empty cache each time, exactly as `deepedge run` does. Also the coarse error kinds that the
//! bindings turn into their own codes or exception classes, and [`HandleTable`], the table of live
//! objects behind the opaque handles of the C ABI and JNI.
//!
//! It is not a binding itself (no FFI types here) and holds no policy of its own: loading is
//! [`Model::load`], completion is [`Session::complete`], conversations are [`Conversation`]. A
//! [`LoadedModel`] is `Send + Sync`; one-shot calls on the same handle are serialized by a mutex, and
//! sessions made from it run in parallel with it and with each other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::session::{GenerateParams, Generation, Prompt, Session, SessionOptions};

/// A model opened for embedding: weights (memory-mapped, shared) plus a one-shot session.
pub struct LoadedModel {
    model: Arc<Model>,
    options: SessionOptions,
    n_ctx: usize,
    oneshot: Mutex<Session>,
}

impl LoadedModel {
    /// Opens a GGUF file and allocates the one-shot session, so a context that does not fit in memory
    /// fails here rather than at the first call. Errors name the path.
    pub fn load(path: impl AsRef<Path>, options: SessionOptions) -> Result<Self> {
        let path = path.as_ref();
        let model = Model::load(path).map_err(|e| Error::Load {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        let model = Arc::new(model);
        let oneshot = Session::new_cpu(Arc::clone(&model), &options)?;
        Ok(Self {
            n_ctx: oneshot.n_ctx(),
            model,
            options,
            oneshot: Mutex::new(oneshot),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The context (tokens) of the one-shot session and of every session made from this model.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// A new session with its own KV cache over the same weights.
    pub fn new_session(&self) -> Result<Session> {
        Session::new_cpu(Arc::clone(&self.model), &self.options)
    }

    /// A new chat conversation (see [`Conversation`]) with its own KV cache.
    pub fn new_conversation(&self, system_prompt: Option<&str>) -> Result<Conversation> {
        Ok(Conversation::new(self.new_session()?, system_prompt))
    }

    /// Completes `prompt` from an empty cache, as `deepedge run` does, so the same arguments give the
    /// same text. Calls on the same `LoadedModel` wait for each other.
    pub fn complete(
        &self,
        prompt: Prompt<'_>,
        params: &GenerateParams,
        cancel: Option<&AtomicBool>,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        // A panic while the lock was held leaves a session that `reset` below makes consistent again.
        let mut session = self.oneshot.lock().unwrap_or_else(|poisoned| {
            self.oneshot.clear_poison();
            poisoned.into_inner()
        });
        session.reset();
        session.complete(prompt, params, cancel, on_text)
    }
}

/// The coarse kind of an [`Error`], for bindings that report a code or an exception class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument: parameter out of range, empty prompt, unknown token id, bad stop string.
    InvalidArgument,
    /// The model file is missing, unreadable, malformed or unsupported.
    Load,
    /// The prompt (plus the tokens to generate) does not fit the context.
    Context,
    /// An allocation failed.
    OutOfMemory,
    /// Anything else while tokenizing or running the model.
    Runtime,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Gguf(_)
            | Error::UnsupportedArchitecture(_)
            | Error::Model(_)
            | Error::Tensor { .. }
            | Error::UnsupportedType { .. }
            | Error::Load { .. } => ErrorKind::Load,
            Error::ContextOverflow { .. } | Error::ContextFull { .. } => ErrorKind::Context,
            Error::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            Error::InvalidArgument(_) | Error::TokenOutOfRange { .. } => ErrorKind::InvalidArgument,
            Error::Tokenizer(_) | Error::Cancelled => ErrorKind::Runtime,
        }
    }
}

/// Handle numbers: shared by every table so a handle of one kind is never valid as another, never
/// reused, never 0, and spaced like aligned pointers so they look plausible to debuggers.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(0x10);

/// Live objects of one kind behind opaque handles (C pointers, Java `long`s). A handle is a number
/// drawn from a counter, never an address, so NULL, a freed handle, a double free, a made-up value or a
/// handle of another kind is simply not found; and since lookups hand out an `Arc`, an object freed on
/// one thread while another uses it lives until that use ends.
pub struct HandleTable<T> {
    live: LazyLock<Mutex<HashMap<u64, Arc<T>>>>,
    kind: &'static str,
}

impl<T> HandleTable<T> {
    /// An empty table; `kind` names the handles in error messages (e.g. `"DeepedgeModel handle"`).
    pub const fn new(kind: &'static str) -> Self {
        Self {
            live: LazyLock::new(|| Mutex::new(HashMap::new())),
            kind,
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<u64, Arc<T>>> {
        // Only inserts and removes happen under the lock: a panic cannot leave the map half-changed.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value` and returns its new handle.
    pub fn insert(&self, value: T) -> u64 {
        let handle = NEXT_HANDLE.fetch_add(0x10, Ordering::Relaxed);
        self.map().insert(handle, Arc::new(value));
        handle
    }

    /// The object behind `handle`, or an error naming the handle and its kind.
    pub fn get(&self, handle: u64) -> Result<Arc<T>> {
        if handle == 0 {
            return Err(Error::InvalidArgument(format!("the {} is NULL", self.kind)));
        }
        self.map().get(&handle).cloned().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{handle:#x} is not a live {} (already freed, or another kind of handle)",
                self.kind
            ))
        })
    }

    /// Removes `handle`; `None` when it was not live (a double free, or a made-up value).
    pub fn remove(&self, handle: u64) -> Option<Arc<T>> {
        self.map().remove(&handle)
    }

    /// Live objects in the table.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::HandleTable;

    #[test]
    fn handles_are_never_reused_and_kinds_do_not_mix() {
        static A: HandleTable<u32> = HandleTable::new("A handle");
        static B: HandleTable<u32> = HandleTable::new("B handle");
        let a = A.insert(1);
        let b = B.insert(2);
        assert_ne!(a, b);
        assert_eq!(*A.get(a).unwrap(), 1);
        assert!(A
            .get(b)
            .unwrap_err()
            .to_string()
            .contains("not a live A handle"));
        assert!(A.get(0).unwrap_err().to_string().contains("NULL"));
        let held = A.get(a).unwrap();
        assert!(A.remove(a).is_some());
        assert!(A.remove(a).is_none(), "a double free is not found");
        assert_eq!(*held, 1, "a handle in use outlives its removal");
        assert_ne!(A.insert(3), a);
    }
}
