//! Unit tests of the reader against files built by the writer, and of targeted corruptions.

use super::writer::GgufWriter;
use super::*;

fn every_value_type() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("u8", Value::U8(200))
        .add("i8", Value::I8(-5))
        .add("u16", Value::U16(65000))
        .add("i16", Value::I16(-30000))
        .add("u32", Value::U32(4_000_000_000))
        .add("i32", Value::I32(-2_000_000_000))
        .add("f32", Value::F32(1.5))
        .add("bool", Value::Bool(true))
        .add("string", Value::String("héllo 世界".into()))
        .add("u64", Value::U64(u64::MAX))
        .add("i64", Value::I64(i64::MIN))
        .add("f64", Value::F64(-2.25))
        .add_array(
            "arr.str",
            Array::String(vec!["a".into(), "".into(), "ü".into()]),
        )
        .add_array("arr.f32", Array::F32(vec![0.5, -1.0]))
        .add_array("arr.bool", Array::Bool(vec![true, false]))
        .add_array("arr.i8", Array::I8(vec![-1, 2]))
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

#[test]
fn round_trips_every_value_type_in_versions_2_and_3() {
    for version in [2, 3] {
        let w = every_value_type().with_version(version);
        let f = GgufFile::from_bytes(&w.to_bytes()).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.metadata().len(), 17);
        assert_eq!(f.get("u8"), Some(&Value::U8(200)));
        assert_eq!(f.get("i8"), Some(&Value::I8(-5)));
        assert_eq!(f.opt_u64("u16").unwrap(), Some(65000));
        assert_eq!(f.get("i16"), Some(&Value::I16(-30000)));
        assert_eq!(f.opt_u64("u32").unwrap(), Some(4_000_000_000));
        assert_eq!(f.get("i32"), Some(&Value::I32(-2_000_000_000)));
        assert_eq!(f.opt_f64("f32").unwrap(), Some(1.5));
        assert_eq!(f.opt_bool("bool").unwrap(), Some(true));
        assert_eq!(f.opt_str("string").unwrap(), Some("héllo 世界"));
        assert_eq!(f.opt_u64("u64").unwrap(), Some(u64::MAX));
        assert_eq!(f.get("i64"), Some(&Value::I64(i64::MIN)));
        assert_eq!(f.opt_f64("f64").unwrap(), Some(-2.25));
        assert_eq!(
            f.opt_array("arr.str").unwrap(),
            Some(&Array::String(vec!["a".into(), "".into(), "ü".into()]))
        );
        assert_eq!(
            f.get("arr.bool"),
            Some(&Value::Array(Array::Bool(vec![true, false])))
        );
        match f.get("arr.nested") {
            Some(Value::Array(Array::Array(inner))) => {
                assert_eq!(inner[0], Array::U32(vec![1, 2, 3]));
                assert_eq!(inner[1], Array::String(vec!["x".into()]));
                assert_eq!(inner[2], Array::I64(vec![]));
            }
            other => panic!("nested array read back as {other:?}"),
        }
    }
}

#[test]
fn typed_accessors_report_wrong_types_and_missing_keys() {
    let f = GgufFile::from_bytes(&every_value_type().to_bytes()).unwrap();
    let err = f.opt_u64("string").unwrap_err().to_string();
    assert!(
        err.contains("\"string\"") && err.contains("expected unsigned integer"),
        "{err}"
    );
    assert!(
        f.opt_u64("i64").is_err(),
        "negative value is not an unsigned integer"
    );
    let err = f.require_u64("nope").unwrap_err().to_string();
    assert_eq!(err, "missing metadata key \"nope\"");
}

fn with_tensors(alignment: Option<u32>) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "test");
    if let Some(a) = alignment {
        w.add_u32("general.alignment", a);
    }
    w.add_f32_tensor("a", &[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    w.add_tensor("q", GgmlType::Q8_0, &[32, 3], vec![7u8; 34 * 3]);
    w.add_f32_tensor("b", &[3], &[-1., -2., -3.]);
    w
}

#[test]
fn tensor_views_are_aligned_and_exact() {
    for alignment in [None, Some(64), Some(4096)] {
        let bytes = with_tensors(alignment).to_bytes();
        let f = GgufFile::from_bytes(&bytes).unwrap();
        let a = alignment.unwrap_or(32) as usize;
        assert_eq!(f.alignment(), a);
        assert_eq!(f.data_offset() % a, 0);
        let t = f.tensor("a").unwrap();
        assert_eq!((t.row_len(), t.n_rows(), t.size), (4, 2, 32));
        let data: &[f32] = bytemuck::cast_slice(f.tensor_data(t));
        assert_eq!(data, &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let q = f.tensor("q").unwrap();
        assert_eq!(q.ggml_type, GgmlType::Q8_0);
        assert_eq!(f.tensor_data(q), &[7u8; 102][..]);
        assert_eq!(f.tensor_range(q).start % a, 0);
        let b: &[f32] = bytemuck::cast_slice(f.tensor_data(f.tensor("b").unwrap()));
        assert_eq!(b, &[-1., -2., -3.]);
        assert!(f.tensor("missing").is_none());
        assert_eq!(
            f.require_tensor("missing").unwrap_err().to_string(),
            "missing tensor \"missing\""
        );
    }
}

#[test]
fn streamed_file_is_the_image_and_reads_back() {
    for alignment in [None, Some(4096)] {
        let w = with_tensors(alignment);
        let path = std::env::temp_dir().join(format!(
            "deepedge-writer-{}-{}.gguf",
            std::process::id(),
            alignment.unwrap_or(0)
        ));
        w.write_to(&path).unwrap();
        let written = std::fs::read(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written, w.to_bytes());
        let b: &[f32] = bytemuck::cast_slice(f.tensor_data(f.tensor("b").unwrap()));
        assert_eq!(b, &[-1., -2., -3.]);
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = with_tensors(None).to_bytes();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    let last_tensor_end = f
        .tensors()
        .iter()
        .map(|t| f.tensor_range(t).end)
        .max()
        .unwrap();
    for len in 0..last_tensor_end {
        assert!(
            GgufFile::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len} bytes parsed"
        );
    }
}

#[test]
fn header_errors_are_specific() {
    let err = |b: &[u8]| GgufFile::from_bytes(b).unwrap_err().to_string();
    assert!(err(b"GGML\x03\0\0\0").starts_with("not a GGUF file"));
    assert!(err(b"").starts_with("not a GGUF file"));
    let mut v1 = b"GGUF".to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    assert!(err(&v1).contains("version 1 is not supported"));
    let mut be = b"GGUF".to_vec();
    be.extend_from_slice(&3u32.to_be_bytes());
    assert_eq!(err(&be), "big-endian GGUF files are not supported");
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = GgufFile::from_bytes(&b).unwrap_err().to_string();
    assert!(
        e.contains("metadata count") && e.contains("cannot fit"),
        "{e}"
    );

    // A string array claiming 2^60 elements.
    let mut w = GgufWriter::new();
    w.add_array("tokens", Array::String(vec!["a".into()]));
    let (mut bytes, layout) = w.to_bytes_with_layout();
    let count_at = layout.metadata_entries[0] + 8 + "tokens".len() + 4 + 4;
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = GgufFile::from_bytes(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("array \"tokens\"") && e.contains("cannot fit"),
        "{e}"
    );
}

#[test]
fn bad_tensor_entries_name_the_tensor() {
    let (bytes, layout) = with_tensors(None).to_bytes_with_layout();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    let q = f.tensor("q").unwrap().clone();
    let entry = layout.tensor_entries[1];
    let type_at = entry + 8 + 1 + 4 + 16;
    let offset_at = type_at + 4;

    let mut unknown_type = bytes.clone();
    unknown_type[type_at..type_at + 4].copy_from_slice(&77u32.to_le_bytes());
    let e = GgufFile::from_bytes(&unknown_type).unwrap_err().to_string();
    assert_eq!(e, "tensor \"q\": unknown tensor type id 77");

    let mut misaligned = bytes.clone();
    misaligned[offset_at..offset_at + 8].copy_from_slice(&(q.offset + 2).to_le_bytes());
    let e = GgufFile::from_bytes(&misaligned).unwrap_err().to_string();
    assert!(
        e.contains("\"q\"") && e.contains("not a multiple of the alignment"),
        "{e}"
    );

    let mut out_of_range = bytes.clone();
    out_of_range[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = GgufFile::from_bytes(&out_of_range).unwrap_err().to_string();
    assert!(e.contains("\"q\"") && e.contains("outside"), "{e}");

    let mut overlapping = bytes.clone();
    overlapping[offset_at..offset_at + 8].copy_from_slice(&0u64.to_le_bytes());
    let e = GgufFile::from_bytes(&overlapping).unwrap_err().to_string();
    assert!(e.contains("overlaps"), "{e}");
}

#[test]
fn duplicate_names_are_rejected() {
    let mut w = GgufWriter::new();
    w.add_f32_tensor("x", &[1], &[1.0])
        .add_f32_tensor("x", &[1], &[2.0]);
    let e = GgufFile::from_bytes(&w.to_bytes()).unwrap_err().to_string();
    assert!(e.contains("\"x\"") && e.contains("more than once"), "{e}");

    let mut w = GgufWriter::new();
    w.add_u32("k", 1).add_u32("k", 2);
    let e = GgufFile::from_bytes(&w.to_bytes()).unwrap_err().to_string();
    assert!(e.contains("\"k\"") && e.contains("more than once"), "{e}");
}

#[test]
fn invalid_alignment_and_utf8_are_rejected() {
    let mut w = GgufWriter::new();
    w.add_u32("general.alignment", 48);
    let e = GgufFile::from_bytes(&w.to_bytes()).unwrap_err().to_string();
    assert!(e.contains("power of two"), "{e}");

    let mut w = GgufWriter::new();
    w.add_str("name", "ab");
    let (mut bytes, layout) = w.to_bytes_with_layout();
    let value_at = layout.metadata_entries[0] + 8 + 4 + 4 + 8;
    bytes[value_at] = 0xff;
    let e = GgufFile::from_bytes(&bytes).unwrap_err().to_string();
    assert!(e.contains("not valid UTF-8"), "{e}");
}

#[test]
fn deep_nesting_is_rejected() {
    let mut a = Array::U8(vec![1]);
    for _ in 0..MAX_ARRAY_NESTING + 1 {
        a = Array::Array(vec![a]);
    }
    let mut w = GgufWriter::new();
    w.add_array("deep", a);
    let e = GgufFile::from_bytes(&w.to_bytes()).unwrap_err().to_string();
    assert!(e.contains("nested deeper"), "{e}");
}

#[test]
fn opens_files_from_disk_and_reports_missing_ones() {
    let dir = std::env::temp_dir().join(format!("deepedge-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.gguf");
    with_tensors(None).write_to(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture().unwrap(), "test");
    let e = GgufFile::open(dir.join("absent.gguf"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cannot read") && e.contains("absent.gguf"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
