//! Incremental detokenization for streaming output.
//!
//! A token's bytes need not be whole UTF-8 characters (byte-fallback tokens, byte-level BPE pieces of an
//! emoji), so [`StreamDecoder`] buffers bytes and hands out only complete characters. Bytes that can never
//! become valid UTF-8 are replaced with U+FFFD as soon as that is certain; an incomplete tail is held back
//! until more tokens complete it, or flushed as U+FFFD by [`StreamDecoder::finish`]. The concatenation of
//! everything returned equals `String::from_utf8_lossy` of all the token bytes, i.e. [`Tokenizer::decode`].
//! This is the same contract as llama.cpp's examples, which print pieces and let the terminal reassemble them,
//! but without ever emitting a broken sequence.

use super::Tokenizer;

/// Pushes token ids, returns text made only of complete UTF-8 characters.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    render_special: bool,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer, render_special: bool) -> Self {
        StreamDecoder {
            tokenizer,
            render_special,
            pending: Vec::new(),
        }
    }

    /// Add one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.tokenizer
            .append_token_bytes(id, self.render_special, &mut self.pending);
        self.drain_complete()
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }

    /// Flush whatever is left; an incomplete trailing sequence becomes U+FFFD.
    pub fn finish(mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }

    fn drain_complete(&mut self) -> String {
        let mut out = String::new();
        let mut consumed = 0;
        loop {
            let rest = &self.pending[consumed..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    consumed = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: from_utf8 just validated this prefix.
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Invalid bytes: they will never complete, replace them now.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            consumed += valid + bad;
                        }
                        // Incomplete sequence at the end: keep it for the next token.
                        None => {
                            consumed += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        out
    }
}
