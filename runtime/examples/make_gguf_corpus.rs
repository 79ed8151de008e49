//! Generates the committed corpus of malformed GGUF files under `tests/corpus/gguf/`.
//!
//! Every case starts from a small, valid image built with [`GgufWriter`] and is then cut or patched at
//! offsets taken from [`Layout`], so the corpus tracks the writer instead of hard-coding byte positions.
//! Besides the `.gguf` files the generator writes `expected.tsv` (the manifest read by
//! `runtime/tests/gguf_corpus.rs`) and `README.md` (one row per file: what is wrong, what error to expect).
//! With a second directory argument it also writes valid seed files for the fuzzer.
//!
//! ```text
//! cargo run -p deepedge --example make_gguf_corpus -- tests/corpus/gguf fuzz/seeds
//! ```
//!
//! The integration test includes this file as a module and checks that the committed corpus is exactly
//! what [`cases`] produces, so edit the cases here and re-run the generator rather than editing files.

use std::path::Path;

use deepedge::gguf::writer::{GgufWriter, Layout};
use deepedge::gguf::{Array, Value};
use deepedge::quant::GgmlType;

/// Who is expected to reject a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `GgufFile::open` must fail with the expected message.
    Reader,
    /// The reader must accept the file; the model loader's first checks (`architecture()`, then
    /// `require_tensor("token_embd.weight")`) must fail with the expected message.
    Loader,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Reader => "reader",
            Stage::Loader => "loader",
        }
    }
}

/// One corpus file.
pub struct Case {
    /// File name without the `.gguf` extension.
    pub name: &'static str,
    /// What is wrong with the file, for the README.
    pub what: &'static str,
    /// Substrings the error message must contain, joined by ` && `.
    pub expect: &'static str,
    pub stage: Stage,
    pub bytes: Vec<u8>,
}

/// Size of a string as the writer encodes it: u64 length, then the bytes.
fn str_len(s: &str) -> usize {
    8 + s.len()
}

/// Offset of the value of metadata entry `i` whose key is `key`.
fn value_at(layout: &Layout, i: usize, key: &str) -> usize {
    layout.metadata_entries[i] + str_len(key) + 4
}

/// Offset of the `n_dims` field of tensor entry `i` named `name`.
fn n_dims_at(layout: &Layout, i: usize, name: &str) -> usize {
    layout.tensor_entries[i] + str_len(name)
}

/// Offset of the type field of tensor entry `i` with `n_dims` dimensions.
fn type_at(layout: &Layout, i: usize, name: &str, n_dims: usize) -> usize {
    n_dims_at(layout, i, name) + 4 + 8 * n_dims
}

/// Offset of the data-offset field of tensor entry `i` with `n_dims` dimensions.
fn offset_at(layout: &Layout, i: usize, name: &str, n_dims: usize) -> usize {
    type_at(layout, i, name, n_dims) + 4
}

fn put(bytes: &mut [u8], at: usize, patch: &[u8]) {
    bytes[at..at + patch.len()].copy_from_slice(patch);
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    put(bytes, at, &v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    put(bytes, at, &v.to_le_bytes());
}

fn header(version: [u8; 4], n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version);
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

const TOKENS: [&str; 3] = ["<s>", "</s>", "hi"];
const T0: &str = "token_embd.weight";
const T1: &str = "blk.0.attn_q.weight";
const T2: &str = "output_norm.weight";

/// The valid file most cases are cut from: every section present, a string array, three tensors of
/// two types. Metadata entries: 0 architecture, 1 name, 2 tokens, 3 flag (bool).
pub fn base() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "llama")
        .add_str("general.name", "hostile")
        .add_array(
            "tokenizer.ggml.tokens",
            Array::String(TOKENS.iter().map(|s| s.to_string()).collect()),
        )
        .add("flag", Value::Bool(true))
        .add_f32_tensor(T0, &[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.])
        .add_tensor(T1, GgmlType::Q8_0, &[32, 1], vec![1u8; 34])
        .add_f32_tensor(T2, &[4], &[0.5; 4]);
    w
}

/// A file with every metadata value type, including nested arrays, and a few tensors.
pub fn every_type() -> GgufWriter {
    let mut w = base();
    w.add("u8", Value::U8(200))
        .add("i8", Value::I8(-5))
        .add("u16", Value::U16(65000))
        .add("i16", Value::I16(-30000))
        .add("u32", Value::U32(4_000_000_000))
        .add("i32", Value::I32(-2_000_000_000))
        .add("f32", Value::F32(1.5))
        .add("u64", Value::U64(u64::MAX))
        .add("i64", Value::I64(i64::MIN))
        .add("f64", Value::F64(-2.25))
        .add_array("arr.u8", Array::U8(vec![1, 2, 3]))
        .add_array("arr.bool", Array::Bool(vec![true, false]))
        .add_array("arr.i16", Array::I16(vec![-1, 2]))
        .add_array(
            "arr.nested",
            Array::Array(vec![
                Array::U32(vec![1, 2, 3]),
                Array::String(vec!["x".into()]),
                Array::I64(vec![]),
            ]),
        );
    w
}

/// A file with a single metadata entry and no tensors.
fn one_kv(key: &str, value: Value) -> (Vec<u8>, Layout) {
    let mut w = GgufWriter::new();
    w.add(key, value);
    w.to_bytes_with_layout()
}

/// A file with a single f32 tensor `t` of shape `[8]` (plus an architecture key).
fn one_tensor() -> (Vec<u8>, Layout) {
    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "llama")
        .add_f32_tensor("t", &[8], &[0.0; 8]);
    w.to_bytes_with_layout()
}

/// The one-tensor file with the dims field replaced: `dims` written in place of `[8]`, with the rest of
/// the entry (type, offset) and the data kept. Returns the image.
fn one_tensor_with_dims(n_dims: u32, dims: &[u64], ggml_type: u32) -> Vec<u8> {
    let (bytes, layout) = one_tensor();
    let at = n_dims_at(&layout, 0, "t");
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&n_dims.to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ggml_type.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    // Keep the data section where the reader will look for it: pad to the alignment, then 32 bytes.
    out.resize(out.len().next_multiple_of(32), 0);
    out.extend_from_slice(&[0u8; 32]);
    out
}

/// A tensor-entry case: name, what, expected error, n_dims field, dims written, type id.
type DimCase = (&'static str, &'static str, &'static str, u32, Vec<u64>, u32);

/// Found by `cargo fuzz run gguf_reader` in its first minute (libFuzzer artifact
/// `crash-2477744289abf0f38c11818f4949c87fddbcac86`): one 4-dim tensor whose first dim is 0 and whose
/// other dims multiply past u64, accepted as a zero-element tensor until `TensorInfo::n_rows` overflowed.
const FUZZ_ZERO_DIM_OVERFLOW: [u8; 153] = [
    0x47, 0x47, 0x55, 0x46, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x47, 0x00, 0x00, 0x00, 0x00, 0x00, 0x47, 0x55, 0x46,
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x67, 0x65, 0x6e, 0x65, 0x72, 0x61, 0x6c, 0x2e, 0x61, 0x6c, 0x69, 0x67, 0x6e, 0x6d,
    0x65, 0x6e, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Every case of the corpus, in README order.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name, what, expect, bytes: Vec<u8>| {
        cases.push(Case {
            name,
            what,
            expect,
            stage: Stage::Reader,
            bytes,
        })
    };

    // --- Header -------------------------------------------------------------------------------------
    add("empty", "zero-byte file", "not a GGUF file", vec![]);
    add(
        "bad_magic",
        "magic is `GGML` (the pre-GGUF format)",
        "not a GGUF file && [71, 71, 77, 76]",
        {
            let mut b = base().to_bytes();
            put(&mut b, 0, b"GGML");
            b
        },
    );
    add(
        "short_magic",
        "two bytes, `GG`",
        "not a GGUF file",
        b"GG".to_vec(),
    );
    for (name, what, expect, version) in [
        (
            "version_0",
            "version 0",
            "GGUF version 0 is not supported",
            0u32,
        ),
        (
            "version_1",
            "version 1 (GGUF v1 used 32-bit counts)",
            "GGUF version 1 is not supported",
            1,
        ),
        (
            "version_4",
            "version 4 (not yet defined)",
            "GGUF version 4 is not supported",
            4,
        ),
    ] {
        let mut b = base().to_bytes();
        put_u32(&mut b, 4, version);
        add(name, what, expect, b);
    }
    add(
        "big_endian",
        "version 3 stored big-endian, as in a big-endian GGUF",
        "big-endian GGUF files are not supported",
        {
            let mut b = base().to_bytes();
            put(&mut b, 4, &3u32.to_be_bytes());
            b
        },
    );

    // --- Truncation at every section boundary ---------------------------------------------------------
    let (full, layout) = base().to_bytes_with_layout();
    let tokens_at = value_at(&layout, 2, "tokenizer.ggml.tokens");
    let t1_dims = n_dims_at(&layout, 1, T1) + 4;
    let table_end = offset_at(&layout, 2, T2, 1) + 8;
    assert_ne!(
        table_end % 32,
        0,
        "the tensor table of the base file must end unaligned so padding can be cut"
    );
    let t2_data = layout.end - 32; // output_norm.weight: 16 bytes of data, padded to 32
    let cuts: Vec<(&'static str, &'static str, &'static str, usize)> = vec![
        (
            "trunc_after_magic",
            "cut after the magic",
            "truncated at byte 4 while reading version",
            4,
        ),
        (
            "trunc_mid_version",
            "cut inside the version",
            "truncated at byte 4 while reading version: need 4 bytes, 2 left",
            6,
        ),
        (
            "trunc_after_version",
            "cut after the version",
            "while reading tensor count",
            8,
        ),
        (
            "trunc_after_tensor_count",
            "cut after the tensor count",
            "while reading metadata count",
            16,
        ),
        (
            "trunc_after_counts",
            "cut after the header (both counts)",
            "metadata count at byte 24: count 4 cannot fit in the 0 bytes left",
            layout.metadata_start,
        ),
        (
            "trunc_mid_key_length",
            "cut inside the length of the first key (caught by the metadata count check: 4 entries \
             need at least 52 bytes)",
            "metadata count at byte 24: count 4 cannot fit in the 3 bytes left",
            layout.metadata_entries[0] + 3,
        ),
        (
            "trunc_mid_string_value",
            "cut inside the string value of `general.name`",
            "length of value of \"general.name\"",
            value_at(&layout, 1, "general.name") + 8 + 3,
        ),
        (
            "trunc_mid_array_header",
            "cut inside the element type/count of the token array",
            "while reading array \"tokenizer.ggml.tokens\"",
            tokens_at + 6,
        ),
        (
            "trunc_mid_array_count_check",
            "cut inside the second element of the token array (caught by the array count check)",
            "array \"tokenizer.ggml.tokens\" at byte 153: count 3 cannot fit in the 21 bytes left",
            tokens_at + 12 + str_len(TOKENS[0]) + 8 + 2,
        ),
        (
            "trunc_mid_array",
            "cut inside the length of the third element of the token array",
            "length of element 2 of array \"tokenizer.ggml.tokens\" && count 2 cannot fit in the 1 bytes left",
            tokens_at + 12 + str_len(TOKENS[0]) + str_len(TOKENS[1]) + 8 + 1,
        ),
        (
            "trunc_before_bool",
            "cut right before the value of the bool `flag`",
            "while reading value of \"flag\": need 1 bytes, 0 left",
            value_at(&layout, 3, "flag"),
        ),
        (
            "trunc_after_metadata",
            "cut at the start of the tensor table",
            "tensor count at byte && count 3 cannot fit in the 0 bytes left",
            layout.tensor_table_start,
        ),
        (
            "trunc_mid_tensor_count_check",
            "cut inside the name of the first tensor (caught by the tensor count check)",
            "tensor count at byte 203: count 3 cannot fit in the 12 bytes left",
            layout.tensor_entries[0] + 8 + 4,
        ),
        (
            "trunc_mid_tensor_name",
            "cut inside the name of the last tensor",
            "length of name of tensor 2 && count 18 cannot fit in the 4 bytes left",
            layout.tensor_entries[2] + 8 + 4,
        ),
        (
            "trunc_mid_tensor_n_dims",
            "cut inside the dimension count of the second tensor",
            "while reading dimension count of tensor \"blk.0.attn_q.weight\"",
            n_dims_at(&layout, 1, T1) + 1,
        ),
        (
            "trunc_mid_tensor_dims",
            "cut inside the second dimension of the second tensor",
            "while reading dimension 1 of tensor \"blk.0.attn_q.weight\"",
            t1_dims + 8 + 4,
        ),
        (
            "trunc_mid_tensor_type",
            "cut inside the type of the second tensor",
            "while reading type of tensor \"blk.0.attn_q.weight\"",
            type_at(&layout, 1, T1, 2) + 1,
        ),
        (
            "trunc_mid_tensor_offset",
            "cut inside the data offset of the last tensor",
            "while reading data offset of tensor \"output_norm.weight\"",
            offset_at(&layout, 2, T2, 1) + 7,
        ),
        (
            "trunc_before_padding",
            "cut right after the tensor table, before the alignment padding",
            "while reading padding before the tensor data section",
            table_end,
        ),
        (
            "trunc_at_data",
            "cut at the start of the data section (no tensor data at all)",
            "tensor \"token_embd.weight\": data [0, +32) lies outside the 0 bytes of the data section",
            layout.data_start,
        ),
        (
            "trunc_mid_data",
            "cut inside the data of the last tensor",
            "tensor \"output_norm.weight\": data [96, +16) lies outside",
            t2_data + 8,
        ),
    ];
    for (name, what, expect, len) in cuts {
        assert!(len < full.len(), "{name}: cut at {len} is past the end");
        add(name, what, expect, full[..len].to_vec());
    }
    // With four entries, any cut inside the first one fails the metadata count check first; a file with
    // one long key reaches the key and value-type reads.
    let (one, one_layout) = one_kv("general.architecture", Value::String("llama".into()));
    add(
        "trunc_mid_key",
        "single-entry file cut inside its 20-byte key",
        "length of key of metadata entry 0 at byte 32: count 20 cannot fit in the 5 bytes left",
        one[..one_layout.metadata_entries[0] + 8 + 5].to_vec(),
    );
    add(
        "trunc_mid_value_type",
        "single-entry file cut inside the value type of `general.architecture`",
        "while reading value type of \"general.architecture\": need 4 bytes, 2 left",
        one[..value_at(&one_layout, 0, "general.architecture") - 2].to_vec(),
    );

    // --- Counts and lengths that cannot fit -----------------------------------------------------------
    add(
        "huge_tensor_count",
        "tensor count 2^64-1",
        "tensor count at byte && count 18446744073709551615 cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, 8, u64::MAX);
            b
        },
    );
    add(
        "huge_kv_count",
        "metadata count 2^64-1",
        "metadata count at byte 24: count 18446744073709551615 cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, 16, u64::MAX);
            b
        },
    );
    add(
        "huge_kv_count_overflow",
        "metadata count 2^62 (count × minimum entry size overflows u64)",
        "metadata count at byte 24: count 4611686018427387904 cannot fit",
        header(3u32.to_le_bytes(), 0, 1 << 62),
    );
    add(
        "huge_key_length",
        "first key claims 2^64-1 bytes",
        "length of key of metadata entry 0 && cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, layout.metadata_entries[0], u64::MAX);
            b
        },
    );
    add(
        "huge_string_value_length",
        "string value of `general.name` claims 2^63 bytes",
        "length of value of \"general.name\" && count 9223372036854775808 cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, value_at(&layout, 1, "general.name"), 1 << 63);
            b
        },
    );
    add(
        "huge_tensor_name_length",
        "first tensor name claims 2^40 bytes",
        "length of name of tensor 0 && cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, layout.tensor_entries[0], 1 << 40);
            b
        },
    );
    add(
        "huge_array_count_u8",
        "u8 array claims 2^64-1 elements",
        "array \"bytes\" at byte && count 18446744073709551615 cannot fit",
        {
            let (mut b, l) = one_kv("bytes", Value::Array(Array::U8(vec![1, 2, 3])));
            put_u64(&mut b, value_at(&l, 0, "bytes") + 4, u64::MAX);
            b
        },
    );
    add(
        "huge_array_count_u64",
        "u64 array claims 2^61 elements (count × 8 overflows usize only after the check)",
        "array \"wide\" at byte && count 2305843009213693952 cannot fit",
        {
            let (mut b, l) = one_kv("wide", Value::Array(Array::U64(vec![1])));
            put_u64(&mut b, value_at(&l, 0, "wide") + 4, 1 << 61);
            b
        },
    );
    add(
        "huge_array_count_string",
        "string array claims 2^60 elements",
        "array \"tokenizer.ggml.tokens\" at byte && count 1152921504606846976 cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, tokens_at + 4, 1 << 60);
            b
        },
    );
    add(
        "huge_array_string_element",
        "second element of a string array claims 2^64-1 bytes",
        "length of element 1 of array \"tokenizer.ggml.tokens\" && cannot fit",
        {
            let mut b = full.clone();
            put_u64(&mut b, tokens_at + 12 + str_len(TOKENS[0]), u64::MAX);
            b
        },
    );
    let nested = Array::Array(vec![Array::U32(vec![1, 2]), Array::U8(vec![3])]);
    add(
        "huge_array_count_nested_outer",
        "array of arrays claims 2^62 inner arrays",
        "array \"nested\" at byte && count 4611686018427387904 cannot fit",
        {
            let (mut b, l) = one_kv("nested", Value::Array(nested.clone()));
            put_u64(&mut b, value_at(&l, 0, "nested") + 4, 1 << 62);
            b
        },
    );
    add(
        "huge_array_count_nested_inner",
        "the first inner array of an array of arrays claims 2^64-1 u32 elements",
        "array \"nested\" at byte && count 18446744073709551615 cannot fit",
        {
            let (mut b, l) = one_kv("nested", Value::Array(nested.clone()));
            put_u64(&mut b, value_at(&l, 0, "nested") + 12 + 4, u64::MAX);
            b
        },
    );

    // --- Bad metadata ---------------------------------------------------------------------------------
    add(
        "unknown_value_type",
        "value type id 13 for `general.name`",
        "metadata key \"general.name\": unknown value type id 13",
        {
            let mut b = full.clone();
            put_u32(&mut b, value_at(&layout, 1, "general.name") - 4, 13);
            b
        },
    );
    add(
        "unknown_value_type_max",
        "value type id 2^32-1 for `general.architecture`",
        "unknown value type id 4294967295",
        {
            let mut b = full.clone();
            put_u32(
                &mut b,
                value_at(&layout, 0, "general.architecture") - 4,
                u32::MAX,
            );
            b
        },
    );
    add(
        "unknown_array_element_type",
        "token array with element type id 13",
        "metadata key \"tokenizer.ggml.tokens\": array has unknown element type id 13",
        {
            let mut b = full.clone();
            put_u32(&mut b, tokens_at, 13);
            b
        },
    );
    add(
        "unknown_nested_element_type",
        "inner array of an array of arrays with element type id 99",
        "metadata key \"nested\": array has unknown element type id 99",
        {
            let (mut b, l) = one_kv("nested", Value::Array(nested.clone()));
            put_u32(&mut b, value_at(&l, 0, "nested") + 12, 99);
            b
        },
    );
    add(
        "nested_too_deep",
        "arrays nested 9 levels deep around a u8 array",
        "metadata key \"deep\": arrays nested deeper than 8 levels",
        {
            let mut a = Array::U8(vec![1]);
            for _ in 0..9 {
                a = Array::Array(vec![a]);
            }
            one_kv("deep", Value::Array(a)).0
        },
    );
    add(
        "nested_too_deep_empty",
        "a chain of 100 nested arrays whose innermost one is empty",
        "arrays nested deeper than 8 levels",
        {
            let mut a = Array::U8(vec![]);
            for _ in 0..100 {
                a = Array::Array(vec![a]);
            }
            one_kv("deep", Value::Array(a)).0
        },
    );
    add(
        "invalid_utf8_key",
        "first key contains the byte 0xff",
        "metadata key \"key of metadata entry 0\": string at byte 32 is not valid UTF-8",
        {
            let mut b = full.clone();
            b[layout.metadata_entries[0] + 8] = 0xff;
            b
        },
    );
    add(
        "invalid_utf8_value",
        "string value of `general.name` contains an unpaired UTF-8 continuation byte",
        "metadata key \"value of \\\"general.name\\\"\" && is not valid UTF-8",
        {
            let mut b = full.clone();
            b[value_at(&layout, 1, "general.name") + 8 + 2] = 0x80;
            b
        },
    );
    add(
        "invalid_utf8_array_element",
        "third token is a truncated UTF-8 sequence",
        "element 2 of array \\\"tokenizer.ggml.tokens\\\" && is not valid UTF-8",
        {
            let mut b = full.clone();
            let at = tokens_at + 12 + str_len(TOKENS[0]) + str_len(TOKENS[1]) + 8;
            b[at] = 0xe4;
            b
        },
    );
    add(
        "invalid_utf8_tensor_name",
        "first tensor name contains a UTF-16 surrogate encoded as UTF-8 (0xed 0xa0 0x80)",
        "name of tensor 0 && is not valid UTF-8",
        {
            let mut b = full.clone();
            put(&mut b, layout.tensor_entries[0] + 8, &[0xed, 0xa0, 0x80]);
            b
        },
    );
    add(
        "bool_byte_2",
        "bool `flag` stored as the byte 2",
        "metadata key \"flag\": bool at byte && has value 2, expected 0 or 1",
        {
            let mut b = full.clone();
            b[value_at(&layout, 3, "flag")] = 2;
            b
        },
    );
    add(
        "bool_array_byte_255",
        "second element of a bool array is 0xff",
        "metadata key \"bools\": bool at byte && has value 255",
        {
            let (mut b, l) = one_kv("bools", Value::Array(Array::Bool(vec![true, false])));
            b[value_at(&l, 0, "bools") + 12 + 1] = 0xff;
            b
        },
    );
    add(
        "duplicate_keys",
        "`general.name` appears twice",
        "metadata key \"general.name\": key appears more than once",
        {
            let mut w = base();
            w.add_str("general.name", "again");
            w.to_bytes()
        },
    );
    for (name, what, expect, value) in [
        (
            "alignment_0",
            "`general.alignment` = 0u32",
            "metadata key \"general.alignment\": alignment must be a non-zero power of two u32, found 0",
            Value::U32(0),
        ),
        (
            "alignment_3",
            "`general.alignment` = 3u32",
            "alignment must be a non-zero power of two u32, found 3",
            Value::U32(3),
        ),
        (
            "alignment_wrong_type",
            "`general.alignment` = 32 stored as u64 (the spec says u32)",
            "metadata key \"general.alignment\": alignment must be a non-zero power of two u32, found 32",
            Value::U64(32),
        ),
        (
            "alignment_string",
            "`general.alignment` = \"32\" (a string)",
            "alignment must be a non-zero power of two u32, found \"32\"",
            Value::String("32".into()),
        ),
    ] {
        let mut w = base();
        w.add("general.alignment", value);
        add(name, what, expect, w.to_bytes());
    }
    add(
        "alignment_2_31",
        "`general.alignment` = 2^31 (valid, but the padding runs past the end of the small file)",
        "while reading padding before the tensor data section",
        {
            // The writer would pad to 2 GiB; write with alignment 32 and patch the key afterwards.
            let mut w = base();
            w.add_u32("general.alignment", 32);
            let (mut b, l) = w.to_bytes_with_layout();
            put_u32(&mut b, value_at(&l, 4, "general.alignment"), 1 << 31);
            b
        },
    );

    // --- Bad tensor entries ---------------------------------------------------------------------------
    add(
        "misaligned_tensor_offset",
        "second tensor's data offset moved by 2 bytes",
        "tensor \"blk.0.attn_q.weight\": data offset 34 is not a multiple of the alignment 32",
        {
            let mut b = full.clone();
            put_u64(&mut b, offset_at(&layout, 1, T1, 2), 34);
            b
        },
    );
    add(
        "tensor_data_out_of_range",
        "second tensor's data offset is 2^40",
        "tensor \"blk.0.attn_q.weight\": data [1099511627776, +34) lies outside",
        {
            let mut b = full.clone();
            put_u64(&mut b, offset_at(&layout, 1, T1, 2), 1 << 40);
            b
        },
    );
    add(
        "tensor_offset_size_overflow",
        "second tensor's data offset is 2^64-32, so offset + size wraps around u64",
        "tensor \"blk.0.attn_q.weight\": data [18446744073709551584, +34) lies outside",
        {
            let mut b = full.clone();
            put_u64(&mut b, offset_at(&layout, 1, T1, 2), u64::MAX - 31);
            b
        },
    );
    add(
        "overlapping_tensors",
        "second tensor's data offset points at the first tensor's data",
        "tensor \"blk.0.attn_q.weight\": data overlaps the data of tensor \"token_embd.weight\"",
        {
            let mut b = full.clone();
            put_u64(&mut b, offset_at(&layout, 1, T1, 2), 0);
            b
        },
    );
    add(
        "duplicate_tensor_names",
        "two tensors named `token_embd.weight`",
        "tensor \"token_embd.weight\": name appears more than once in the tensor table",
        {
            let mut w = base();
            w.add_f32_tensor(T0, &[2], &[1.0, 2.0]);
            w.to_bytes()
        },
    );
    let f32_id = GgmlType::F32 as u32;
    let q8_id = GgmlType::Q8_0 as u32;
    let dim_cases: Vec<DimCase> = vec![
        (
            "tensor_zero_dims",
            "tensor with 0 dimensions",
            "tensor \"t\": has 0 dimensions; 1 to 4 are allowed",
            0,
            vec![],
            f32_id,
        ),
        (
            "tensor_five_dims",
            "tensor with 5 dimensions",
            "tensor \"t\": has 5 dimensions; 1 to 4 are allowed",
            5,
            vec![1, 1, 1, 1, 8],
            f32_id,
        ),
        (
            "tensor_n_dims_max",
            "tensor with 2^32-1 dimensions",
            "has 4294967295 dimensions",
            u32::MAX,
            vec![],
            f32_id,
        ),
        (
            "dims_overflow_u64",
            "dims [2^32, 2^32, 2] (product wraps u64)",
            "tensor \"t\": dimensions [4294967296, 4294967296, 2] overflow",
            3,
            vec![1 << 32, 1 << 32, 2],
            f32_id,
        ),
        (
            "dims_overflow_i64",
            "dims [2^32, 2^31] (product 2^63 exceeds i64::MAX, ggml's ne type)",
            "tensor \"t\": dimensions [4294967296, 2147483648] overflow",
            2,
            vec![1 << 32, 1 << 31],
            f32_id,
        ),
        (
            "dims_overflow_behind_zero",
            "dims [0, 2^40, 2^40]: zero elements, but the row count 2^80 overflows",
            "tensor \"t\": dimensions [0, 1099511627776, 1099511627776] overflow",
            3,
            vec![0, 1 << 40, 1 << 40],
            f32_id,
        ),
        (
            "tensor_size_overflow",
            "f32 tensor of 2^62 elements: fits i64, but 2^64 bytes overflow u64",
            "tensor \"t\": size of 4611686018427387904 f32 elements overflows",
            2,
            vec![1 << 31, 1 << 31],
            f32_id,
        ),
        (
            "row_not_block_multiple",
            "q8_0 tensor with rows of 16 elements (block size 32)",
            "tensor \"t\": row length 16 is not a multiple of the q8_0 block size 32",
            2,
            vec![16, 2],
            q8_id,
        ),
        (
            "tensor_type_4_retired",
            "tensor type id 4 (ggml's retired Q4_2)",
            "tensor \"t\": unknown tensor type id 4",
            1,
            vec![8],
            4,
        ),
        (
            "tensor_type_1000",
            "tensor type id 1000",
            "tensor \"t\": unknown tensor type id 1000",
            1,
            vec![8],
            1000,
        ),
        (
            "tensor_type_max",
            "tensor type id 2^32-1",
            "unknown tensor type id 4294967295",
            1,
            vec![8],
            u32::MAX,
        ),
    ];
    for (name, what, expect, n_dims, dims, ty) in dim_cases {
        add(name, what, expect, one_tensor_with_dims(n_dims, &dims, ty));
    }

    add(
        "fuzz_zero_dim_overflow",
        "fuzzer-found: a zero first dim hides dims whose product overflows (panicked in `n_rows`)",
        "dimensions [0, && overflow",
        FUZZ_ZERO_DIM_OVERFLOW.to_vec(),
    );

    // --- Valid files that a model loader must reject ----------------------------------------------------
    let mut loader = |name, what, expect, w: GgufWriter| {
        cases.push(Case {
            name,
            what,
            expect,
            stage: Stage::Loader,
            bytes: w.to_bytes(),
        })
    };
    loader(
        "loader_no_architecture",
        "valid file without `general.architecture`",
        "missing metadata key \"general.architecture\"",
        {
            let mut w = GgufWriter::new();
            w.add_str("general.name", "anonymous")
                .add_f32_tensor(T0, &[4], &[0.0; 4]);
            w
        },
    );
    loader(
        "loader_architecture_not_string",
        "valid file whose `general.architecture` is a u32",
        "metadata key \"general.architecture\" has type u32 (7), expected string",
        {
            let mut w = GgufWriter::new();
            w.add_u32("general.architecture", 7)
                .add_f32_tensor(T0, &[4], &[0.0; 4]);
            w
        },
    );
    loader(
        "loader_llama_no_token_embd",
        "valid llama file without `token_embd.weight`",
        "missing tensor \"token_embd.weight\"",
        {
            let mut w = GgufWriter::new();
            w.add_str("general.architecture", "llama")
                .add_f32_tensor(T2, &[4], &[1.0; 4]);
            w
        },
    );
    loader(
        "loader_no_tensors",
        "valid llama file with metadata only and an empty tensor table",
        "missing tensor \"token_embd.weight\"",
        {
            let mut w = GgufWriter::new();
            w.add_str("general.architecture", "llama");
            w
        },
    );
    cases
}

/// Valid files for the fuzzer's seed corpus.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut no_tensors = GgufWriter::new();
    no_tensors.add_str("general.architecture", "llama");
    let mut aligned = GgufWriter::new();
    aligned
        .add_u32("general.alignment", 64)
        .add_tensor("q4", GgmlType::Q4_K, &[256], vec![3u8; 144])
        .add_f32_tensor("e", &[0, 3], &[]);
    vec![
        ("valid_base.gguf", base().to_bytes()),
        ("valid_every_type.gguf", every_type().to_bytes()),
        ("valid_v2.gguf", base().with_version(2).to_bytes()),
        ("valid_no_tensors.gguf", no_tensors.to_bytes()),
        ("valid_aligned_64.gguf", aligned.to_bytes()),
    ]
}

/// The manifest read by the integration test: `file TAB expected TAB stage`, one case a line.
pub fn manifest(cases: &[Case]) -> String {
    let mut out = String::from(
        "# file\texpected error substrings (all must appear; separated by ' && ')\tstage\n",
    );
    for c in cases {
        out.push_str(&format!(
            "{}.gguf\t{}\t{}\n",
            c.name,
            c.expect,
            c.stage.as_str()
        ));
    }
    out
}

/// The corpus README: how it is made and one table row per file.
pub fn readme(cases: &[Case]) -> String {
    let mut out = String::from(
        "# Malformed GGUF corpus\n\n\
         Hostile and broken GGUF files for `runtime/tests/gguf_corpus.rs`. Generated — do not edit by \
         hand; change `runtime/examples/make_gguf_corpus.rs` and run\n\n\
         ```\ncargo run -p deepedge --example make_gguf_corpus -- tests/corpus/gguf fuzz/seeds\n```\n\n\
         `expected.tsv` is the manifest: file, expected error substrings (separated by ` && `, all must \
         appear in the error's `Display`), and the stage that must reject the file. `reader` files must \
         make `GgufFile::open` fail; `loader` files are valid GGUF that the reader accepts and that a model \
         loader must reject: the test checks `architecture()` and then \
         `require_tensor(\"token_embd.weight\")`. The test also fails if a `.gguf` file here is missing \
         from the manifest, or if the generator would now produce different bytes.\n\n\
         | file | stage | what is wrong | expected error contains |\n\
         | --- | --- | --- | --- |\n",
    );
    for c in cases {
        out.push_str(&format!(
            "| `{}.gguf` | {} | {} | `{}` |\n",
            c.name,
            c.stage.as_str(),
            c.what,
            c.expect.replace('|', "\\|")
        ));
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(corpus) = args.first() else {
        eprintln!("usage: make_gguf_corpus CORPUS_DIR [SEEDS_DIR]");
        std::process::exit(2);
    };
    let corpus = Path::new(corpus);
    std::fs::create_dir_all(corpus)?;
    let cases = cases();
    for c in &cases {
        write(corpus, &format!("{}.gguf", c.name), &c.bytes)?;
    }
    write(corpus, "expected.tsv", manifest(&cases).as_bytes())?;
    write(corpus, "README.md", readme(&cases).as_bytes())?;
    println!("wrote {} cases to {}", cases.len(), corpus.display());
    if let Some(seeds_dir) = args.get(1) {
        let seeds_dir = Path::new(seeds_dir);
        std::fs::create_dir_all(seeds_dir)?;
        let seeds = seeds();
        for (name, bytes) in &seeds {
            write(seeds_dir, name, bytes)?;
        }
        println!("wrote {} seeds to {}", seeds.len(), seeds_dir.display());
    }
    Ok(())
}
