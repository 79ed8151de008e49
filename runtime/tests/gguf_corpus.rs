//! The GGUF reader against the committed corpus of malformed files in `tests/corpus/gguf/`.
//!
//! Every file listed in `expected.tsv` is opened with [`GgufFile::open`] inside `catch_unwind`: a panic is a
//! failure naming the file, and so is success or an error whose `Display` lacks the expected substrings.
//! Files marked `loader` are valid GGUF that the reader must accept and a model loader must reject. The
//! corpus cannot rot silently: every `.gguf` in the directory must be in the manifest, and the committed
//! bytes must equal what the generator (`runtime/examples/make_gguf_corpus.rs`, included here as a
//! module) produces now. A last test mutates a valid file at random (byte flips, truncations, splices)
//! and checks the reader never panics on the result.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use deepedge::gguf::{Array, GgufFile, Value};

#[path = "../examples/make_gguf_corpus.rs"]
#[allow(dead_code)]
mod generator;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/gguf")
}

struct Row {
    file: String,
    expect: Vec<String>,
    loader: bool,
}

fn manifest() -> Vec<Row> {
    let text =
        std::fs::read_to_string(corpus_dir().join("expected.tsv")).expect("read expected.tsv");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(
                (2..=3).contains(&cols.len()),
                "expected.tsv: bad line {line:?}"
            );
            let stage = cols.get(2).copied().unwrap_or("reader");
            assert!(
                matches!(stage, "reader" | "loader"),
                "expected.tsv: unknown stage {stage:?} in {line:?}"
            );
            Row {
                file: cols[0].to_string(),
                expect: cols[1].split(" && ").map(str::to_string).collect(),
                loader: stage == "loader",
            }
        })
        .collect()
}

/// Reads everything a consumer of an accepted file might read: every metadata value (recursively) and
/// every tensor's shape accessors and bytes. Returns a checksum so nothing is optimized away.
fn touch_everything(f: &GgufFile) -> u64 {
    fn touch_array(a: &Array) -> u64 {
        let mut sum = a.len() as u64 + a.element_type() as u64;
        if let Array::Array(inner) = a {
            sum += inner.iter().map(touch_array).sum::<u64>();
        }
        if let Array::String(v) = a {
            sum += v.iter().map(|s| s.len() as u64).sum::<u64>();
        }
        sum + a.to_i64_vec().map_or(0, |v| v.len() as u64)
    }
    let mut sum = 0u64;
    for (key, value) in f.metadata() {
        sum = sum.wrapping_add(key.len() as u64 + value.to_string().len() as u64);
        sum =
            sum.wrapping_add(value.as_u64().unwrap_or(0) ^ value.as_f64().map_or(0, f64::to_bits));
        if let Value::Array(a) = value {
            sum = sum.wrapping_add(touch_array(a));
        }
        assert!(f.get(key).is_some());
    }
    let _ = (
        f.architecture(),
        f.version(),
        f.alignment(),
        f.data_offset(),
    );
    for t in f.tensors() {
        sum = sum.wrapping_add(t.n_elements() ^ t.row_len() as u64 ^ t.n_rows() as u64);
        sum = sum.wrapping_add(t.shape_string().len() as u64);
        let range = f.tensor_range(t);
        let data = f.tensor_data(t);
        assert_eq!(data.len(), range.len());
        assert_eq!(data.len() as u64, t.size);
        assert!(range.end <= f.file_size());
        sum = sum.wrapping_add(data.iter().map(|&b| u64::from(b)).sum::<u64>());
        assert!(std::ptr::eq(f.require_tensor(&t.name).unwrap(), t));
    }
    sum
}

/// Checks one manifest row; returns a description of the failure, if any.
fn check(row: &Row) -> Result<(), String> {
    let path = corpus_dir().join(&row.file);
    let expect_in = |msg: &str| -> Result<(), String> {
        let missing: Vec<&String> = row
            .expect
            .iter()
            .filter(|e| !msg.contains(e.as_str()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("error {msg:?} lacks {missing:?}"))
        }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| match GgufFile::open(&path) {
        Err(e) if row.loader => Err(format!("reader rejected a loader case: {e}")),
        Err(e) => expect_in(&e.to_string()),
        Ok(_) if !row.loader => Err("reader accepted the file".to_string()),
        Ok(f) => {
            touch_everything(&f);
            let first_error = f
                .architecture()
                .err()
                .or_else(|| f.require_tensor("token_embd.weight").err());
            match first_error {
                Some(e) => expect_in(&e.to_string()),
                None => Err("loader checks passed".to_string()),
            }
        }
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("PANIC: {msg}"))
        }
    }
}

#[test]
fn every_corpus_file_fails_with_the_expected_error() {
    let rows = manifest();
    assert!(rows.len() >= 40, "corpus has only {} rows", rows.len());
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| check(row).err().map(|e| format!("{}: {e}", row.file)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn every_gguf_file_is_in_the_manifest_and_vice_versa() {
    let listed: BTreeSet<String> = manifest().into_iter().map(|r| r.file).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .expect("read corpus dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let absent: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        unlisted.is_empty() && absent.is_empty(),
        "not in expected.tsv: {unlisted:?}; listed but missing: {absent:?}"
    );
}

#[test]
fn committed_corpus_matches_the_generator() {
    let dir = corpus_dir();
    let cases = generator::cases();
    let mut stale = Vec::new();
    for c in &cases {
        let name = format!("{}.gguf", c.name);
        if std::fs::read(dir.join(&name)).ok().as_deref() != Some(&c.bytes[..]) {
            stale.push(name);
        }
    }
    for (name, text) in [
        ("expected.tsv", generator::manifest(&cases)),
        ("README.md", generator::readme(&cases)),
    ] {
        if std::fs::read_to_string(dir.join(name)).ok() != Some(text) {
            stale.push(name.to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "corpus files differ from the generator's output: {stale:?}; run \
         `cargo run -p deepedge --example make_gguf_corpus -- tests/corpus/gguf fuzz/seeds`"
    );
    for (name, bytes) in generator::seeds() {
        let f = GgufFile::from_bytes(&bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        touch_everything(&f);
    }
}

/// xorshift64*: a tiny deterministic generator, so failures reproduce from the printed iteration.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values likely to hit edge cases when written over a count, length, type id or offset.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    4,
    13,
    31,
    32,
    255,
    1 << 31,
    i64::MAX as u64,
    u64::MAX,
];

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        match rng.below(6) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => {
                let len = rng.below(b.len() + 1);
                b.truncate(len);
            }
            3 => {
                // An interesting value over an aligned 4- or 8-byte field.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                if b.len() >= width {
                    let i = rng.below(b.len() - width + 1);
                    b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
                }
            }
            4 => {
                // Duplicate a slice somewhere else (splices entries into each other).
                let from = rng.below(b.len());
                let len = rng.below((b.len() - from).min(64) + 1);
                let chunk = b[from..from + len].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            _ => {
                let from = rng.below(b.len());
                let len = rng.below((b.len() - from).min(64) + 1);
                b.drain(from..from + len);
            }
        }
    }
    b
}

#[test]
fn random_mutations_of_valid_files_never_panic() {
    let seeds = generator::seeds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = std::time::Instant::now();
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..6000 {
        let (name, base) = &seeds[i % seeds.len()];
        let bytes = mutate(base, &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| match GgufFile::from_bytes(&bytes) {
            Ok(f) => {
                touch_everything(&f);
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        }));
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!(
                "iteration {i}: mutation of {name} panicked; input ({} bytes): {bytes:02x?}",
                bytes.len()
            ),
        }
    }
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "mutation test too slow: {:?}",
        start.elapsed()
    );
}
