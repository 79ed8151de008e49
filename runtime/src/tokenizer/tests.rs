//! Unit tests for the tokenizer on small synthetic GGUF vocabularies (see `tests/tokenizer_real.rs` for
//! real models and llama.cpp fixtures).

use super::special::{Fragment, SpecialMatcher};
use super::*;
use crate::gguf::writer::GgufWriter;
use crate::gguf::Value;

fn bl_str(s: &str) -> String {
    s.bytes().map(byte_level_char).collect()
}

const IM_START: u32 = 256;
const IM_END: u32 = 257;
const TOOL: u32 = 258;
const ENDOFTEXT: u32 = 259;

/// A byte-level BPE vocabulary: the 256 byte characters, three control tokens, one user-defined token, then
/// merged tokens for "hello world".
fn bpe_gguf(model: &str, pre: Option<&str>, extra: impl FnOnce(&mut GgufWriter)) -> GgufFile {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| byte_level_char(b).to_string())
        .collect();
    let mut types = vec![1i32; 256];
    for (t, ty) in [
        ("<|im_start|>", 3),
        ("<|im_end|>", 3),
        ("<tool>", 4),
        ("<|endoftext|>", 3),
    ] {
        tokens.push(t.into());
        types.push(ty);
    }
    let merges = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("hell", "o"),
        ("Ġ", "w"),
        ("o", "r"),
        ("Ġw", "or"),
        ("l", "d"),
        ("Ġwor", "ld"),
    ];
    let mut merge_lines = Vec::new();
    for (a, b) in merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
        merge_lines.push(format!("{a} {b}"));
    }
    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", model);
    if let Some(p) = pre {
        w.add_str("tokenizer.ggml.pre", p);
    }
    w.add_array("tokenizer.ggml.tokens", Array::String(tokens));
    w.add_array("tokenizer.ggml.token_type", Array::I32(types));
    w.add_array("tokenizer.ggml.merges", Array::String(merge_lines));
    w.add_u32("tokenizer.ggml.eos_token_id", ENDOFTEXT);
    w.add_u32("tokenizer.ggml.bos_token_id", ENDOFTEXT);
    extra(&mut w);
    GgufFile::from_bytes(&w.to_bytes()).unwrap()
}

fn bpe() -> Tokenizer {
    Tokenizer::from_gguf(&bpe_gguf("gpt2", Some("qwen2"), |_| {})).unwrap()
}

fn id_of(t: &Tokenizer, s: &str) -> u32 {
    (0..t.n_vocab() as u32)
        .find(|&i| t.token_str(i) == Some(s))
        .unwrap_or_else(|| panic!("no token {s:?}"))
}

#[test]
fn bpe_merges_and_pretokenizes() {
    let t = bpe();
    assert_eq!(t.vocab_kind(), VocabKind::Bpe);
    let ids = t.encode("hello world", true, false).unwrap();
    assert_eq!(ids, [id_of(&t, "hello"), id_of(&t, "Ġworld")]);
    assert_eq!(t.decode(&ids, false), "hello world");
    // Digits are split one by one by the qwen2 regex; each is a byte token here.
    let ids = t.encode("123", false, false).unwrap();
    assert_eq!(ids, [b'1' as u32, b'2' as u32, b'3' as u32]);
    assert_eq!(t.encode("", true, false).unwrap(), Vec::<u32>::new());
}

#[test]
fn bpe_special_tokens_only_when_parsing_specials() {
    let t = bpe();
    let plain = t.encode("<|im_start|>hello", false, false).unwrap();
    assert!(!plain.contains(&IM_START));
    assert_eq!(t.decode(&plain, false), "<|im_start|>hello");
    let special = t.encode("<|im_start|>hello", false, true).unwrap();
    assert_eq!(special, [IM_START, id_of(&t, "hello")]);
    // User-defined tokens are split out either way.
    let ids = t.encode("hello<tool>", false, false).unwrap();
    assert_eq!(ids, [id_of(&t, "hello"), TOOL]);
    assert_eq!(t.decode(&ids, false), "hello<tool>");
}

#[test]
fn bpe_bos_when_the_model_asks_for_it() {
    let f = bpe_gguf("gpt2", Some("llama-bpe"), |w| {
        w.add("tokenizer.ggml.add_bos_token", Value::Bool(true));
    });
    let t = Tokenizer::from_gguf(&f).unwrap();
    assert!(t.add_bos());
    assert_eq!(t.encode("", true, false).unwrap(), [ENDOFTEXT]);
    assert_eq!(t.encode("hello", true, false).unwrap()[0], ENDOFTEXT);
    assert_eq!(
        t.encode("hello", false, false).unwrap(),
        [id_of(&t, "hello")]
    );
}

#[test]
fn eog_set_follows_llama_cpp() {
    let t = bpe();
    assert!(t.is_eog(ENDOFTEXT), "eos");
    assert!(t.is_eog(IM_END), "<|im_end|> by text");
    assert!(!t.is_eog(IM_START));
    assert!(!t.is_eog(id_of(&t, "hello")));
    assert_eq!(t.eog_ids(), [IM_END, ENDOFTEXT]);
}

#[test]
fn control_tokens_render_only_on_request() {
    let t = bpe();
    assert_eq!(t.token_bytes(IM_END, false), b"");
    assert_eq!(t.token_bytes(IM_END, true), b"<|im_end|>");
    assert_eq!(t.token_bytes(TOOL, false), b"<tool>");
    assert_eq!(t.token_bytes(id_of(&t, "Ġworld"), false), b" world");
    assert_eq!(t.token_bytes(u32::MAX, true), b"");
}

#[test]
fn unknown_model_and_pre_are_errors_naming_them() {
    let e = Tokenizer::from_gguf(&bpe_gguf("wordpiece-x", None, |_| {})).unwrap_err();
    assert!(e.to_string().contains("\"wordpiece-x\""), "{e}");
    let e = Tokenizer::from_gguf(&bpe_gguf("gpt2", Some("no-such-pre"), |_| {})).unwrap_err();
    assert!(e.to_string().contains("\"no-such-pre\""), "{e}");
    // A missing pre means "default", like llama.cpp.
    let t = Tokenizer::from_gguf(&bpe_gguf("gpt2", None, |_| {})).unwrap();
    assert_eq!(t.pre(), "default");
    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "x");
    let e = Tokenizer::from_gguf(&GgufFile::from_bytes(&w.to_bytes()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");
}

#[test]
fn every_known_pre_tokenizer_compiles_and_splits() {
    for name in pretok::KNOWN {
        let f = bpe_gguf("gpt2", Some(name), |_| {});
        let t = Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = "Hello world, it's 2024!\n\n  你好 😀";
        let ids = t.encode(text, false, false).unwrap();
        assert_eq!(t.decode(&ids, false), text, "{name}");
    }
}

const SPM_BOS: u32 = 1;
const SPM_EOS: u32 = 2;
const START_OF_TURN: u32 = 3;
const END_OF_TURN: u32 = 4;
const NEWLINE: u32 = 5;

/// An SPM vocabulary: <unk> <s> </s>, two control tokens, a user-defined "\n", 256 byte tokens, then pieces
/// with scores.
fn spm_gguf(pieces: &[(&str, f32)], extra: impl FnOnce(&mut GgufWriter)) -> GgufFile {
    let mut tokens: Vec<String> = [
        "<unk>",
        "<s>",
        "</s>",
        "<start_of_turn>",
        "<end_of_turn>",
        "\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut types = vec![2, 3, 3, 3, 3, 4];
    let mut scores = vec![0.0f32; 6];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_array("tokenizer.ggml.tokens", Array::String(tokens));
    w.add_array("tokenizer.ggml.token_type", Array::I32(types));
    w.add_array("tokenizer.ggml.scores", Array::F32(scores));
    w.add_u32("tokenizer.ggml.bos_token_id", SPM_BOS);
    w.add_u32("tokenizer.ggml.eos_token_id", SPM_EOS);
    extra(&mut w);
    GgufFile::from_bytes(&w.to_bytes()).unwrap()
}

const HELLO_PIECES: &[(&str, f32)] = &[
    ("▁", -1.0),
    ("h", -2.0),
    ("e", -2.0),
    ("l", -2.0),
    ("o", -2.0),
    ("w", -2.0),
    ("r", -2.0),
    ("d", -2.0),
    ("he", -3.0),
    ("ll", -3.0),
    ("hell", -4.0),
    ("hello", -5.0),
    ("▁hello", -6.0),
    ("▁w", -3.0),
    ("or", -3.0),
    ("▁wor", -4.0),
    ("ld", -3.0),
    ("▁world", -5.0),
];

#[test]
fn spm_space_prefix_and_bos() {
    let t = Tokenizer::from_gguf(&spm_gguf(HELLO_PIECES, |_| {})).unwrap();
    assert_eq!(t.vocab_kind(), VocabKind::Spm);
    assert!(t.add_bos() && t.add_space_prefix());
    let ids = t.encode("hello world", true, false).unwrap();
    assert_eq!(ids, [SPM_BOS, id_of(&t, "▁hello"), id_of(&t, "▁world")]);
    assert_eq!(t.decode(&ids, false), " hello world");
    assert_eq!(t.detokenize(&ids[1..], false, false), "hello world");
    assert_eq!(t.encode("", true, false).unwrap(), [SPM_BOS]);
    assert!(t.is_eog(SPM_EOS) && t.is_eog(END_OF_TURN) && !t.is_eog(START_OF_TURN));
}

#[test]
fn spm_without_space_prefix_like_gemma() {
    let f = spm_gguf(HELLO_PIECES, |w| {
        w.add("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    });
    let t = Tokenizer::from_gguf(&f).unwrap();
    let ids = t.encode("hello world", false, false).unwrap();
    assert_eq!(ids, [id_of(&t, "hello"), id_of(&t, "▁world")]);
    // The user-defined "\n" is split out without special parsing; the control token is not.
    let ids = t.encode("hello\n<start_of_turn>", false, false).unwrap();
    assert_eq!(&ids[..2], [id_of(&t, "hello"), NEWLINE]);
    assert!(!ids.contains(&START_OF_TURN));
    let ids = t.encode("<start_of_turn>hello", false, true).unwrap();
    assert_eq!(ids, [START_OF_TURN, id_of(&t, "hello")]);
}

#[test]
fn spm_merges_the_highest_scoring_pair_first() {
    let pieces = |ab: f32, bc: f32| {
        vec![
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", ab),
            ("bc", bc),
        ]
    };
    let no_prefix = |w: &mut GgufWriter| {
        w.add("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    };
    let t = Tokenizer::from_gguf(&spm_gguf(&pieces(-2.0, -3.0), no_prefix)).unwrap();
    assert_eq!(
        t.encode("abc", false, false).unwrap(),
        [id_of(&t, "ab"), id_of(&t, "c")]
    );
    let t = Tokenizer::from_gguf(&spm_gguf(&pieces(-3.0, -2.0), no_prefix)).unwrap();
    assert_eq!(
        t.encode("abc", false, false).unwrap(),
        [id_of(&t, "a"), id_of(&t, "bc")]
    );
    // Equal scores: the leftmost pair wins.
    let t = Tokenizer::from_gguf(&spm_gguf(&pieces(-2.0, -2.0), no_prefix)).unwrap();
    assert_eq!(
        t.encode("abc", false, false).unwrap(),
        [id_of(&t, "ab"), id_of(&t, "c")]
    );
}

#[test]
fn spm_byte_fallback_and_stream_decoder() {
    let f = spm_gguf(HELLO_PIECES, |w| {
        w.add("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    });
    let t = Tokenizer::from_gguf(&f).unwrap();
    let ids = t.encode("😀", false, false).unwrap();
    let bytes: Vec<u32> = "😀"
        .bytes()
        .map(|b| id_of(&t, &format!("<0x{b:02X}>")))
        .collect();
    assert_eq!(ids, bytes);
    let mut dec = StreamDecoder::new(&t, false);
    assert_eq!(dec.push(ids[0]), "");
    assert_eq!(dec.push(ids[1]), "");
    assert_eq!(dec.push(ids[2]), "");
    assert_eq!(dec.pending_bytes().len(), 3);
    assert_eq!(dec.push(ids[3]), "😀");
    assert_eq!(dec.push(id_of(&t, "hello")), "hello");
    assert_eq!(dec.finish(), "");
    assert_eq!(t.decode(&ids, false), "😀");
}

#[test]
fn stream_decoder_replaces_broken_sequences() {
    let t = Tokenizer::from_gguf(&spm_gguf(HELLO_PIECES, |_| {})).unwrap();
    let byte = |b: u8| id_of(&t, &format!("<0x{b:02X}>"));
    let mut dec = StreamDecoder::new(&t, false);
    // A lone continuation byte can never become valid: replaced at once.
    assert_eq!(dec.push(byte(0x80)), "\u{FFFD}");
    // An incomplete sequence interrupted by ASCII: one U+FFFD, then the ASCII.
    assert_eq!(dec.push(byte(0xE4)), "");
    assert_eq!(dec.push(byte(b'A')), "\u{FFFD}A");
    // An incomplete tail is flushed by finish().
    assert_eq!(dec.push(byte(0xF0)), "");
    assert_eq!(dec.push(byte(0x9F)), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
    // Control tokens: nothing unless rendering specials.
    let mut dec = StreamDecoder::new(&t, true);
    assert_eq!(dec.push(END_OF_TURN), "<end_of_turn>");
    let mut dec = StreamDecoder::new(&t, false);
    assert_eq!(dec.push(END_OF_TURN), "");
}

#[test]
fn special_partition_is_longest_first_like_llama_cpp() {
    let m = SpecialMatcher::new(vec![(1, "ab", false), (2, "bcd", false), (3, "<x>", true)]);
    // "bcd" is longer, so it claims its occurrence before "ab" is considered.
    assert_eq!(
        m.partition("abcd", false),
        [Fragment::Text("a"), Fragment::Token(2)]
    );
    assert_eq!(
        m.partition("ab<x>ab", false),
        [
            Fragment::Token(1),
            Fragment::Text("<x>"),
            Fragment::Token(1)
        ]
    );
    assert_eq!(
        m.partition("ab<x>ab", true),
        [Fragment::Token(1), Fragment::Token(3), Fragment::Token(1)]
    );
    assert_eq!(m.partition("", true), []);
    assert_eq!(m.partition("zzz", true), [Fragment::Text("zzz")]);
}

#[test]
fn chat_template_renders_with_hf_conventions() {
    let template = "{{ bos_token }}{% for m in messages %}\n\
        {% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m.role) }}{% endif %}\n\
        <{{ m.role }}>{{ m.content.strip() }}</{{ m.role | upper }}>\n\
        {% endfor %}\n\
        {% if add_generation_prompt %}<assistant>{% endif %}";
    let f = spm_gguf(HELLO_PIECES, |w| {
        w.add_str("tokenizer.chat_template", template);
    });
    let t = Tokenizer::from_gguf(&f).unwrap();
    assert_eq!(t.chat_template(), Some(template));
    let msgs = [
        ChatMessage::new("user", "  hi  "),
        ChatMessage::new("assistant", "yo"),
    ];
    let out = t.apply_chat_template(&msgs, true).unwrap();
    assert_eq!(
        out,
        "<s><user>hi</USER>\n<assistant>yo</ASSISTANT>\n<assistant>"
    );
    let e = t
        .apply_chat_template(&[ChatMessage::new("tool", "x")], false)
        .unwrap_err();
    assert!(e.to_string().contains("bad role tool"), "{e}");
    let no_template = Tokenizer::from_gguf(&spm_gguf(HELLO_PIECES, |_| {})).unwrap();
    assert!(matches!(
        no_template.apply_chat_template(&msgs, true),
        Err(TokenizerError::NoChatTemplate)
    ));
    // The ChatML fallback, as the format is specified: `<|im_start|>{role}\n{content}<|im_end|>\n` per
    // message, then `<|im_start|>assistant\n` to prompt an answer.
    let chatml = no_template
        .render_chat(
            CHATML_TEMPLATE,
            &[
                ChatMessage::new("system", "be brief"),
                ChatMessage::new("user", "hi"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        chatml,
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn byte_level_table_is_a_bijection() {
    let mut seen = [false; 256];
    for c in (0u32..400).filter_map(char::from_u32) {
        if let Some(b) = byte_level_char_to_byte(c) {
            assert!(!seen[b as usize], "byte {b} twice");
            seen[b as usize] = true;
        }
    }
    assert!(seen.iter().all(|&s| s));
    for b in 0..=255u8 {
        assert_eq!(
            byte_level_char_to_byte(byte_level_char(b)),
            Some(b),
            "byte {b}"
        );
    }
    assert_eq!(bl_str(" "), "Ġ");
    assert_eq!(bl_str("\n"), "Ċ");
}
