//! Text ⇄ token ids for GGUF models, matching llama.cpp's tokenizer.
//!
//! [`Tokenizer::from_gguf`] reads the `tokenizer.ggml.*` metadata and builds one of two tokenizers:
//!
//! * `tokenizer.ggml.model = "gpt2"`: byte-level BPE with the merges from the file, built with the Hugging Face
//!   `tokenizers` crate's pre-tokenizers (one `Split`, isolated, per llama.cpp regex for `tokenizer.ggml.pre`,
//!   see [`pretok`], then `ByteLevel`) and a port of llama.cpp's merge loop (see [`bpe`]).
//! * `tokenizer.ggml.model = "llama"`: SentencePiece-style score-driven merging with `<0xNN>` byte fallback,
//!   a direct port of llama.cpp's algorithm (see [`spm`]) — Gemma's GGUF has no merges, only scores.
//!
//! Around both, the llama.cpp behaviour that decides exact ids: special-token splitting before tokenization
//! (`llama_tokenize(…, parse_special)`; user-defined tokens are always split, control tokens only on request,
//! see [`special`]), BOS/EOS from `add_bos_token`/`add_eos_token`, the SPM space prefix, the end-of-generation
//! set (eos/eot/eom, FIM pad/repo/sep and tokens such as `<|im_end|>`, `<end_of_turn>` or `</s>` found by
//! text, which llama.cpp also forces to control — so e.g. Qwen's normal `</s>` is matched only with
//! `parse_special` and never rendered as text), and `llama_token_to_piece` for output bytes. The reference is llama.cpp's `llama-vocab.cpp`; fixtures produced
//! by llama.cpp check it in `runtime/tests/tokenizer_real.rs`.
//!
//! Not supported: the `bert` (WPM), `t5` (UGM), `rwkv` and `plamo2` tokenizer models; llama.cpp's
//! per-model `lstrip`/`rstrip` special-token attributes; `clean_spaces` detokenization. A missing
//! `tokenizer.ggml.pre` means `default` (as in llama.cpp); an unknown one is an error naming it.

pub(crate) mod bpe;
mod chat;
pub(crate) mod index;
pub(crate) mod pretok;
pub(crate) mod special;
pub(crate) mod spm;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

pub use chat::ChatMessage;
pub use stream::StreamDecoder;

use crate::gguf::{Array, GgufError, GgufFile};
use index::TokenIndex;
use special::{Fragment, SpecialMatcher};

/// Everything that can go wrong building or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("GGUF metadata key {0} is missing; the file has no usable tokenizer")]
    MissingKey(&'static str),
    #[error("unknown tokenizer model {0:?} in tokenizer.ggml.model (supported: \"gpt2\" = byte-level BPE, \"llama\" = SentencePiece-style)")]
    UnknownModel(String),
    #[error("unknown pre-tokenizer type {0:?} in tokenizer.ggml.pre (supported: {known})", known = pretok::KNOWN.join(", "))]
    UnknownPre(String),
    #[error("GGUF metadata key {key}: {problem}")]
    BadMetadata { key: &'static str, problem: String },
    #[error("building the BPE tokenizer: {0}")]
    Build(String),
    #[error("tokenizing text: {0}")]
    Encode(String),
    #[error("the model has no chat template (tokenizer.chat_template is absent)")]
    NoChatTemplate,
    #[error("chat template: {0}")]
    Template(String),
}

type Result<T> = std::result::Result<T, TokenizerError>;

/// The tokenizer algorithm a GGUF asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `gpt2`: byte-level BPE with merges.
    Bpe,
    /// `llama`: SentencePiece-style, score-driven, byte fallback.
    Spm,
}

/// A token's type from `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_type(t: i64) -> Self {
        match t {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }
}

enum Model {
    Bpe(Box<bpe::BpeModel>),
    Spm {
        byte_tokens: Box<[Option<u32>; 256]>,
    },
}

/// The ChatML template, which llama.cpp uses for models whose GGUF carries no `tokenizer.chat_template`.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n\
{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A GGUF model's tokenizer. Cheap to share (`&Tokenizer` is `Sync`).
pub struct Tokenizer {
    model: Model,
    pre: String,
    tokens: Vec<String>,
    index: TokenIndex,
    /// Types as stored in the file.
    kinds: Vec<TokenKind>,
    /// llama.cpp's effective attribute bits after its fix-ups; these drive splitting and rendering.
    attrs: Vec<u8>,
    scores: Vec<f32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: HashSet<u32>,
    special: SpecialMatcher,
    chat_template: Option<String>,
}

// llama.cpp's token attribute bits (`llama_token_attr`); a token can carry several (e.g. a user-defined
// `</s>` forced to control by the end-of-generation list).
const ATTR_UNDEFINED: u8 = 0;
const ATTR_UNKNOWN: u8 = 1 << 0;
const ATTR_UNUSED: u8 = 1 << 1;
const ATTR_NORMAL: u8 = 1 << 2;
const ATTR_CONTROL: u8 = 1 << 3;
const ATTR_USER_DEFINED: u8 = 1 << 4;
const ATTR_BYTE: u8 = 1 << 5;

/// Token texts llama.cpp takes as the end-of-turn token when no `eot_token_id` is given.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Token texts llama.cpp puts in the end-of-generation set (and forces to control).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
];

/// Tokens llama.cpp always renders (gpt-oss), whatever their type.
const ALWAYS_RENDERED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

fn attr_of(kind: TokenKind) -> u8 {
    match kind {
        TokenKind::Undefined => ATTR_UNDEFINED,
        TokenKind::Normal => ATTR_NORMAL,
        TokenKind::Unknown => ATTR_UNKNOWN,
        TokenKind::Control => ATTR_CONTROL,
        TokenKind::UserDefined => ATTR_USER_DEFINED,
        TokenKind::Unused => ATTR_UNUSED,
        TokenKind::Byte => ATTR_BYTE,
    }
}

/// An optional token id key; negative or out-of-range values count as absent (llama.cpp warns and ignores).
fn opt_id(f: &GgufFile, key: &str, n_vocab: usize) -> Result<Option<u32>> {
    let Some(v) = f.get(key) else {
        return Ok(None);
    };
    let Some(id) = v.as_i64() else {
        return Err(TokenizerError::BadMetadata {
            key: leak_key(key),
            problem: format!("expected an integer token id, found {v}"),
        });
    };
    if id < 0 || id as u64 >= n_vocab as u64 {
        tracing::warn!("{key} = {id} is not a token id (vocabulary has {n_vocab}); ignoring it");
        return Ok(None);
    }
    Ok(Some(id as u32))
}

/// Map a dynamic key to one of the static names used in errors.
fn leak_key(key: &str) -> &'static str {
    const KEYS: &[&str] = &[
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.fim_pad_token_id",
        "tokenizer.ggml.fim_rep_token_id",
        "tokenizer.ggml.fim_sep_token_id",
    ];
    KEYS.iter()
        .copied()
        .find(|k| *k == key)
        .unwrap_or("tokenizer.ggml.*_token_id")
}

/// The character byte-level BPE vocabularies use for `byte` (GPT-2's `bytes_to_unicode`): printable
/// Latin-1 stands for itself, the other 68 bytes map to U+0100.. in order.
pub fn byte_level_char(byte: u8) -> char {
    let b = u32::from(byte);
    let c = match b {
        33..=126 | 161..=172 | 174..=255 => b,
        0..=32 => 256 + b,
        127..=160 => 256 + 33 + (b - 127),
        _ => 256 + 67, // 173, the soft hyphen
    };
    char::from_u32(c).expect("U+0100..U+0143 are chars")
}

/// The byte a byte-level BPE character stands for (GPT-2's `bytes_to_unicode`, inverted).
fn byte_level_char_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    match c {
        33..=126 | 161..=172 | 174..=255 => Some(c as u8),
        256..=323 => {
            let n = c - 256;
            Some(if n < 33 {
                n as u8
            } else if n < 67 {
                (n - 33 + 127) as u8
            } else {
                173
            })
        }
        _ => None,
    }
}

/// The byte of an SPM byte token `<0xNN>`.
fn spm_byte_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Build the tokenizer described by a GGUF's `tokenizer.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let model_name = f
            .opt_str("tokenizer.ggml.model")?
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        let vocab_kind = match model_name {
            "gpt2" => VocabKind::Bpe,
            "llama" => VocabKind::Spm,
            other => return Err(TokenizerError::UnknownModel(other.to_owned())),
        };

        let tokens: Vec<String> = match f.opt_array("tokenizer.ggml.tokens")? {
            Some(Array::String(v)) => v.clone(),
            Some(other) => {
                return Err(TokenizerError::BadMetadata {
                    key: "tokenizer.ggml.tokens",
                    problem: format!(
                        "expected an array of strings, found {:?}",
                        other.element_type()
                    ),
                })
            }
            None => return Err(TokenizerError::MissingKey("tokenizer.ggml.tokens")),
        };
        let n = tokens.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(TokenizerError::BadMetadata {
                key: "tokenizer.ggml.tokens",
                problem: format!("{n} tokens"),
            });
        }

        let kinds: Vec<TokenKind> = match f.opt_array("tokenizer.ggml.token_type")? {
            None => vec![TokenKind::Normal; n],
            Some(a) => {
                let v = a.to_i64_vec().ok_or_else(|| TokenizerError::BadMetadata {
                    key: "tokenizer.ggml.token_type",
                    problem: format!("expected an integer array, found {:?}", a.element_type()),
                })?;
                if v.len() != n {
                    return Err(TokenizerError::BadMetadata {
                        key: "tokenizer.ggml.token_type",
                        problem: format!("{} entries for {n} tokens", v.len()),
                    });
                }
                v.into_iter().map(TokenKind::from_type).collect()
            }
        };

        let scores: Vec<f32> = match f.opt_array("tokenizer.ggml.scores")? {
            None => vec![0.0; n],
            Some(Array::F32(v)) if v.len() == n => v.clone(),
            Some(Array::F64(v)) if v.len() == n => v.iter().map(|&x| x as f32).collect(),
            Some(other) => {
                return Err(TokenizerError::BadMetadata {
                    key: "tokenizer.ggml.scores",
                    problem: format!(
                        "expected {n} floats, found {} of {:?}",
                        other.len(),
                        other.element_type()
                    ),
                })
            }
        };

        let pre = match f.opt_str("tokenizer.ggml.pre")? {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => "default".to_owned(),
        };

        // Special ids: llama.cpp's per-model defaults, overridden by the keys.
        let (mut bos, mut eos, mut unk) = match vocab_kind {
            VocabKind::Spm => (Some(1), Some(2), Some(0)),
            VocabKind::Bpe => (Some(11), Some(11), None),
        };
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        bos = opt_id(f, "tokenizer.ggml.bos_token_id", n)?.or(in_range(bos));
        eos = opt_id(f, "tokenizer.ggml.eos_token_id", n)?.or(in_range(eos));
        unk = opt_id(f, "tokenizer.ggml.unknown_token_id", n)?.or(in_range(unk));
        let pad = opt_id(f, "tokenizer.ggml.padding_token_id", n)?;
        let eot = opt_id(f, "tokenizer.ggml.eot_token_id", n)?;
        let eom = opt_id(f, "tokenizer.ggml.eom_token_id", n)?;
        let fim_keys = [
            ("tokenizer.ggml.fim_pre_token_id", FIM_PRE_TEXTS),
            ("tokenizer.ggml.fim_suf_token_id", FIM_SUF_TEXTS),
            ("tokenizer.ggml.fim_mid_token_id", FIM_MID_TEXTS),
            ("tokenizer.ggml.fim_pad_token_id", FIM_PAD_TEXTS),
            ("tokenizer.ggml.fim_rep_token_id", FIM_REP_TEXTS),
            ("tokenizer.ggml.fim_sep_token_id", FIM_SEP_TEXTS),
        ];

        // llama.cpp's fix-ups by token text (`llama_vocab::impl::load`): missing eot/eom/FIM ids are found
        // by text (first in vocabulary order here), and every token so found, or on the end-of-generation
        // list, gains the control attribute.
        let mut attrs: Vec<u8> = kinds.iter().map(|&k| attr_of(k)).collect();
        let mut detected = [eot, eom, None, None, None, None, None, None];
        for (slot, (key, _)) in detected[2..].iter_mut().zip(fim_keys.iter()) {
            *slot = opt_id(f, key, n)?;
        }
        let lists: [&[&str]; 8] = [
            EOT_TEXTS,
            EOM_TEXTS,
            fim_keys[0].1,
            fim_keys[1].1,
            fim_keys[2].1,
            fim_keys[3].1,
            fim_keys[4].1,
            fim_keys[5].1,
        ];
        let mut eog_by_text = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let t = t.as_str();
            if !t.starts_with(['<', '[', '_']) {
                continue;
            }
            for (slot, list) in detected.iter_mut().zip(lists) {
                if slot.is_none() && list.contains(&t) {
                    *slot = Some(i as u32);
                    attrs[i] |= ATTR_CONTROL;
                }
            }
            if EOG_TEXTS.contains(&t) {
                eog_by_text.push(i as u32);
                attrs[i] |= ATTR_CONTROL;
            }
        }
        let [eot, eom, _fim_pre, _fim_suf, _fim_mid, fim_pad, fim_rep, fim_sep] = detected;
        for (i, t) in tokens.iter().enumerate() {
            if attrs[i] & ATTR_CONTROL != 0 && t.contains("unused") {
                attrs[i] |= ATTR_UNUSED;
            }
            if ALWAYS_RENDERED.contains(&t.as_str()) {
                attrs[i] = ATTR_USER_DEFINED;
            }
        }
        let mut eog: HashSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        eog.extend(eog_by_text);
        eog.extend([eos, eot, eom].into_iter().flatten());
        let text_in_eog = |eog: &HashSet<u32>, text: &str| {
            eog.iter().copied().find(|&id| tokens[id as usize] == text)
        };
        // o200k_harmony / solar-open: "<|end|>" is not end-of-generation when "<|return|>"/"<|call|>"
        // (or "<|calls|>"/"<|flush|>") are present.
        if let Some(end) = text_in_eog(&eog, "<|end|>") {
            let has = |t: &str| text_in_eog(&eog, t).is_some();
            if (has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")) {
                eog.remove(&end);
                attrs[end as usize] = ATTR_USER_DEFINED;
            }
        }
        // gemma4: "</s>" is text there, recognisable by "<|tool_response>" in the set.
        if let (Some(s_id), Some(_)) = (
            text_in_eog(&eog, "</s>"),
            text_in_eog(&eog, "<|tool_response>"),
        ) {
            eog.remove(&s_id);
            attrs[s_id as usize] = ATTR_NORMAL;
        }

        let spm_defaults = vocab_kind == VocabKind::Spm;
        let index = TokenIndex::new(&tokens);
        let (model, default_add_bos) = match vocab_kind {
            VocabKind::Bpe => {
                let spec =
                    pretok::lookup(&pre).ok_or_else(|| TokenizerError::UnknownPre(pre.clone()))?;
                let merges = match f.opt_array("tokenizer.ggml.merges")? {
                    Some(Array::String(v)) => v,
                    Some(other) => {
                        return Err(TokenizerError::BadMetadata {
                            key: "tokenizer.ggml.merges",
                            problem: format!(
                                "expected an array of strings, found {:?}",
                                other.element_type()
                            ),
                        })
                    }
                    None => return Err(TokenizerError::MissingKey("tokenizer.ggml.merges")),
                };
                let model = bpe::BpeModel::new(spec, &tokens, &index, merges)?;
                (Model::Bpe(Box::new(model)), spec.add_bos)
            }
            VocabKind::Spm => {
                if pre != "default" {
                    tracing::debug!(
                        "tokenizer.ggml.pre = {pre:?} is ignored for SentencePiece vocabularies"
                    );
                }
                let mut byte_tokens = Box::new([None; 256]);
                for (i, t) in tokens.iter().enumerate() {
                    if attrs[i] & ATTR_BYTE != 0 {
                        if let Some(b) = spm_byte_value(t) {
                            byte_tokens[b as usize].get_or_insert(i as u32);
                        }
                    }
                }
                // llama.cpp falls back to the single-byte token text when there is no <0xNN> token.
                for (b, slot) in byte_tokens.iter_mut().enumerate() {
                    if slot.is_none() && b < 0x80 {
                        *slot = index.get(&tokens, &(b as u8 as char).to_string());
                    }
                }
                (Model::Spm { byte_tokens }, true)
            }
        };

        let add_bos = f
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(default_add_bos);
        let add_eos = f.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let add_space_prefix = f
            .opt_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(spm_defaults);

        let special = SpecialMatcher::new(
            tokens
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let a = attrs[i];
                    (a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0).then_some((
                        i as u32,
                        t.as_str(),
                        a & (ATTR_CONTROL | ATTR_UNKNOWN) != 0,
                    ))
                })
                .collect(),
        );

        let chat_template = f.opt_str("tokenizer.chat_template")?.map(str::to_owned);

        Ok(Tokenizer {
            model,
            pre,
            tokens,
            index,
            kinds,
            attrs,
            scores,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
            special,
            chat_template,
        })
    }

    /// Tokenize like llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS (and EOS) when the model's `add_bos_token`/`add_eos_token` say so;
    /// `parse_special` lets control tokens written in the text (`<|im_start|>`) become their ids —
    /// without it they are tokenized as ordinary text. User-defined tokens are always recognized.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        let fragments = self.special.partition(text, parse_special);
        match &self.model {
            Model::Bpe(model) => {
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(t) => {
                            model.tokenize(&self.tokens, &self.index, t, &mut out)?
                        }
                    }
                }
            }
            Model::Spm { byte_tokens } => {
                let vocab = spm::SpmVocab {
                    tokens: &self.tokens,
                    index: &self.index,
                    scores: &self.scores,
                    byte_tokens,
                    unk: self.unk,
                };
                // llama.cpp: the space prefix goes before the first text and after each special token.
                let mut prev_special = true;
                let mut buf = String::new();
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(t) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in t.chars() {
                                if c == ' ' {
                                    buf.push('▁');
                                } else {
                                    buf.push(c);
                                }
                            }
                            spm::tokenize(&vocab, &buf, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            if let Some(e) = self.eos {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Tokenizes a plain-text prompt the way `llama-cli -p` (and `deepedge run -p`) do: BOS iff the model
    /// adds one, and control tokens typed in the text (`<|im_start|>`) stay ordinary text.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text, true, false)
    }

    /// The chat template to render conversations with: the model's own, or ChatML when the GGUF has none
    /// (llama.cpp's fallback). The flag says whether the fallback is in use.
    pub fn chat_template_or_chatml(&self) -> (&str, bool) {
        match self.chat_template() {
            Some(t) => (t, false),
            None => (CHATML_TEMPLATE, true),
        }
    }

    /// Renders `messages` with the model's chat template (ChatML when it has none) and the assistant's
    /// generation prompt: the text a chat turn continues.
    pub fn render_chat_prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        let (template, _) = self.chat_template_or_chatml();
        self.render_chat(template, messages, true)
    }

    /// Tokenizes a rendered chat prompt: control tokens the template wrote are parsed as such, and no BOS
    /// is added (templates write their own). Chat turns of every surface (`deepedge chat`, the bindings'
    /// sessions, `serve`'s chat completions) go through here.
    pub fn encode_chat_prompt(&self, rendered: &str) -> Result<Vec<u32>> {
        self.encode(rendered, false, true)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn vocab_kind(&self) -> VocabKind {
        match self.model {
            Model::Bpe(_) => VocabKind::Bpe,
            Model::Spm { .. } => VocabKind::Spm,
        }
    }

    /// The pre-tokenizer name in effect (`tokenizer.ggml.pre`, or `default`).
    pub fn pre(&self) -> &str {
        &self.pre
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (from the key, or found by text like `<|im_end|>`, `<end_of_turn>`).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether `encode(…, add_special = true, …)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }

    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// End-of-generation: eos, eot, eom, FIM pad/repo/sep, and llama.cpp's list of end tokens by text.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The whole end-of-generation set, sorted.
    pub fn eog_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.eog.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// The token's type as stored in `tokenizer.ggml.token_type`.
    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    /// Whether llama.cpp treats the token as control/unknown after its fix-ups by token text: such a token
    /// is recognized in text only with `parse_special` and rendered only with `render_special`.
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|&a| a & (ATTR_CONTROL | ATTR_UNKNOWN) != 0)
    }

    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The raw vocabulary string (byte-level or `▁`-escaped as stored in the GGUF).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The bytes a token contributes to output text, as llama.cpp's `llama_token_to_piece`:
    /// byte tokens give their byte, normal tokens their decoded text, user-defined tokens their text,
    /// control/unknown tokens their text only when `render_special`, unused tokens nothing.
    pub fn token_bytes(&self, id: u32, render_special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_token_bytes(id, render_special, &mut out);
        out
    }

    pub(crate) fn append_token_bytes(&self, id: u32, render_special: bool, out: &mut Vec<u8>) {
        let (Some(text), Some(&attr)) = (self.tokens.get(id as usize), self.attrs.get(id as usize))
        else {
            return;
        };
        // `llama_token_to_piece`: control/unknown only when rendering specials; then control, unknown
        // and user-defined tokens are their raw text, normal tokens decoded, byte tokens their byte.
        if attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 && !render_special {
            return;
        }
        if attr & (ATTR_CONTROL | ATTR_UNKNOWN | ATTR_USER_DEFINED) != 0 {
            out.extend_from_slice(text.as_bytes());
        } else if attr & ATTR_NORMAL != 0 {
            match self.model {
                Model::Bpe(_) => {
                    for c in text.chars() {
                        match byte_level_char_to_byte(c) {
                            Some(b) => out.push(b),
                            None => {
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                        }
                    }
                }
                Model::Spm { .. } => {
                    for (k, part) in text.split('▁').enumerate() {
                        if k > 0 {
                            out.push(b' ');
                        }
                        out.extend_from_slice(part.as_bytes());
                    }
                }
            }
        } else if attr & ATTR_BYTE != 0 {
            if let (Model::Spm { .. }, Some(b)) = (&self.model, spm_byte_value(text)) {
                out.push(b);
            }
        }
    }

    /// Concatenate the tokens' bytes (see [`Self::token_bytes`]) and convert to text once, at the end
    /// (invalid UTF-8 becomes U+FFFD). Like printing each `llama_token_to_piece`: no space stripping.
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.append_token_bytes(id, render_special, &mut bytes);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Like llama.cpp's `llama_detokenize(ids, remove_special, unparse_special)`: with `remove_special`, a
    /// leading BOS and trailing EOS are dropped (when the model adds them); with an SPM space prefix, the
    /// first token's leading space is removed unless a BOS was dropped.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && ids.first().is_some_and(|&t| Some(t) == self.bos) {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && self.add_eos && ids.last().is_some_and(|&t| Some(t) == self.eos) {
            ids = &ids[..ids.len() - 1];
        }
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let start = bytes.len();
            self.append_token_bytes(id, unparse_special, &mut bytes);
            if i == 0 && remove_space && bytes.get(start) == Some(&b' ') {
                bytes.remove(start);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The Jinja chat template from `tokenizer.chat_template`.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Render the model's chat template (Hugging Face semantics) for `messages`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        self.render_chat(template, messages, add_generation_prompt)
    }

    /// Renders `messages` with the given Jinja chat template (e.g. [`CHATML_TEMPLATE`] for a model without
    /// one, as llama.cpp falls back to), with this model's BOS and EOS texts.
    pub fn render_chat(
        &self,
        template: &str,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let text_of = |id: Option<u32>| id.and_then(|i| self.token_str(i)).unwrap_or("");
        chat::render(
            template,
            messages,
            add_generation_prompt,
            text_of(self.bos),
            text_of(self.eos),
        )
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.vocab_kind())
            .field("pre", &self.pre)
            .field("n_vocab", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}
