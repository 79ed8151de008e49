//! Pre-tokenizer regex tables for byte-level BPE vocabularies, keyed by `tokenizer.ggml.pre`.
//!
//! llama.cpp splits text for BPE with a list of regexes chosen by the GGUF's pre-tokenizer name
//! (`llm_tokenizer_bpe` in `llama-vocab.cpp`): each regex splits every piece left by the previous one and
//! keeps both the matches and the text between them. The regex strings below are that data, in the forms
//! llama.cpp actually runs (its "adapted" spellings, e.g. `(?:'[sS]|…)` instead of `(?i:'s|…)`, and the
//! `(?=\p{L})[^a-z]` trick for cased letters), so that our fancy-regex engine splits exactly where llama.cpp's
//! does. This file is only data and the name → spec lookup; the splitting itself is the `tokenizers` crate's
//! `Split` pre-tokenizer (see `super::bpe`).
//!
//! Not covered: pre types whose llama.cpp splitting is a hand-written function rather than a regex
//! (`kimi-k2`, `afmoe`); they are reported as unsupported.

/// How one pre-tokenizer type splits text and the vocabulary defaults that go with it in llama.cpp.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreSpec {
    /// Regexes applied in order, each one splitting the pieces left by the previous ones (isolated).
    pub regexes: &'static [&'static str],
    /// Look the whole pre-token up in the vocabulary before running merges (llama3, tekken).
    pub ignore_merges: bool,
    /// Default for `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

// Six code points of this class are written as `\x{…}` escapes: they have singleton canonical
// decompositions (e.g. U+212A KELVIN SIGN → K), and a Unicode-normalizing editor would silently turn the
// ranges they bound into wrong or reversed ones.
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}+",
];

const DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}",
];

const DEEPSEEK_V3: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"];

const STARCODER: &[&str] = &[r"\p{N}", GPT2];

const PORO: &[&str] = &[r" ?[^(\s|.,!?…。，、।۔،)]+"];

const VIKING: &[&str] = &[r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"];

const TEKKEN: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

const CHAMELEON: &[&str] = &[
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    r"([\t\n]|    |  )",
    r"\p{N}",
    r"[\p{P}!-/:-@\[-`{-~]",
    GPT2,
];

const GPT4O: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

const SUPERBPE: &[&str] = &[r"\p{N}+", r"(?=(\d{3})+(?!\d))"];

const BAILINGMOE: &[&str] = &[
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
];

const SEED_CODER: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
];

const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];

const fn spec(regexes: &'static [&'static str]) -> PreSpec {
    PreSpec {
        regexes,
        ignore_merges: false,
        add_bos: false,
    }
}

/// Every `tokenizer.ggml.pre` value this module accepts (for error messages and tests).
pub(crate) const KNOWN: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "hunyuan-dense",
    "falcon",
    "gpt2",
    "gpt-2",
    "mpt",
    "olmo",
    "jais",
    "trillion",
    "phi-2",
    "jina-es",
    "jina-de",
    "jina-v1-en",
    "jina-v2-es",
    "jina-v2-de",
    "jina-v2-code",
    "roberta-bpe",
    "gigachat",
    "a.x-4.0",
    "mellum",
    "granite-docling",
    "starcoder",
    "refact",
    "command-r",
    "smollm",
    "codeshell",
    "exaone",
    "minerva-7b",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "stablelm2",
    "hunyuan",
    "grok-2",
    "poro-chat",
    "bloom",
    "gpt3-finnish",
    "chatglm-bpe",
    "glm4",
    "viking",
    "tekken",
    "chameleon",
    "gpt-4o",
    "llama4",
    "minimax-m2",
    "superbpe",
    "bailingmoe",
    "llada-moe",
    "seed-coder",
];

/// The split rules llama.cpp uses for the pre-tokenizer named `name`, or `None` when it is not supported.
pub(crate) fn lookup(name: &str) -> Option<PreSpec> {
    Some(match name {
        "default" => spec(DEFAULT),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => PreSpec {
            regexes: &[LLAMA3],
            ignore_merges: true,
            add_bos: true,
        },
        "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => spec(&[LLAMA3]),
        "deepseek-llm" => spec(DEEPSEEK_LLM),
        "deepseek-coder" => spec(DEEPSEEK_CODER),
        "deepseek-v3" | "hunyuan-dense" => spec(DEEPSEEK_V3),
        "falcon" => spec(FALCON),
        "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" | "trillion" | "phi-2" | "jina-es"
        | "jina-de" | "jina-v1-en" | "jina-v2-es" | "jina-v2-de" | "jina-v2-code"
        | "roberta-bpe" | "gigachat" | "a.x-4.0" | "mellum" | "granite-docling" => spec(&[GPT2]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            spec(STARCODER)
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" | "grok-2" => {
            spec(&[QWEN2])
        }
        "poro-chat" | "bloom" | "gpt3-finnish" => spec(PORO),
        "viking" => spec(VIKING),
        "tekken" => PreSpec {
            regexes: TEKKEN,
            ignore_merges: true,
            add_bos: true,
        },
        "chameleon" => PreSpec {
            regexes: CHAMELEON,
            ignore_merges: false,
            add_bos: true,
        },
        "gpt-4o" | "llama4" | "minimax-m2" => spec(GPT4O),
        "superbpe" => spec(SUPERBPE),
        "bailingmoe" | "llada-moe" => spec(BAILINGMOE),
        "seed-coder" => spec(SEED_CODER),
        _ => return None,
    })
}
