//! A GGUF writer: metadata, tensor table and aligned tensor data, in the layout [`super::GgufFile`] reads.
//!
//! Used to build synthetic models and malformed files in tests and benchmarks. Tensor data is held in
//! memory until [`GgufWriter::to_bytes`] builds the image or [`GgufWriter::write_to`] streams it to a file.

use super::{Array, Value, DEFAULT_ALIGNMENT, MAGIC};
use crate::quant::GgmlType;

/// Byte offsets of the sections of a written file, for tests that cut or corrupt files at boundaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Start of the first metadata key-value pair (after magic, version and the two counts).
    pub metadata_start: usize,
    /// Start of each metadata entry.
    pub metadata_entries: Vec<usize>,
    /// Start of the tensor table.
    pub tensor_table_start: usize,
    /// Start of each tensor info.
    pub tensor_entries: Vec<usize>,
    /// Start of the tensor data section.
    pub data_start: usize,
    /// Total size.
    pub end: usize,
}

struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF image in memory.
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// A version-3 writer with no metadata or tensors.
    pub fn new() -> Self {
        Self {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version number written in the header (the layout is the same for 2 and 3).
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    pub fn add(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn add_str(&mut self, key: &str, value: &str) -> &mut Self {
        self.add(key, Value::String(value.to_string()))
    }

    pub fn add_u32(&mut self, key: &str, value: u32) -> &mut Self {
        self.add(key, Value::U32(value))
    }

    pub fn add_f32(&mut self, key: &str, value: f32) -> &mut Self {
        self.add(key, Value::F32(value))
    }

    pub fn add_array(&mut self, key: &str, value: Array) -> &mut Self {
        self.add(key, Value::Array(value))
    }

    /// Adds a tensor. `dims` are in ggml order (row length first); `data` must hold exactly the bytes the
    /// type and dims imply — a mismatch panics, as it is a bug in the caller, not bad input.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ggml_type: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> &mut Self {
        let expected = ggml_type.bytes_for(dims.iter().product());
        assert_eq!(
            expected,
            Some(data.len() as u64),
            "tensor {name}: data size does not match {ggml_type} {dims:?}"
        );
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ggml_type,
            dims: dims.to_vec(),
            data,
        });
        self
    }

    /// Adds an f32 tensor from values.
    pub fn add_f32_tensor(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, GgmlType::F32, dims, data)
    }

    fn alignment(&self) -> usize {
        self.metadata
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("general.alignment", Value::U32(a)) if *a > 0 && a.is_power_of_two() => {
                    Some(*a as usize)
                }
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The file image.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with_layout().0
    }

    /// The file image and where its sections start.
    pub fn to_bytes_with_layout(&self) -> (Vec<u8>, Layout) {
        let (mut out, offsets, layout) = self.header();
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize(layout.data_start + off as usize, 0);
            out.extend_from_slice(&t.data);
        }
        out.resize(layout.end, 0);
        (out, layout)
    }

    /// Header, metadata and tensor table up to the (aligned) start of the data section, each tensor's
    /// offset in the data section, and the layout of the whole file.
    fn header(&self) -> (Vec<u8>, Vec<u64>, Layout) {
        let alignment = self.alignment();
        let mut out = Vec::new();
        let mut layout = Layout::default();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        layout.metadata_start = out.len();
        for (key, value) in &self.metadata {
            layout.metadata_entries.push(out.len());
            write_string(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            write_value(&mut out, value);
        }
        layout.tensor_table_start = out.len();
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            layout.tensor_entries.push(out.len());
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&(t.ggml_type as u32).to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(alignment as u64);
        }
        out.resize(out.len().next_multiple_of(alignment), 0);
        layout.data_start = out.len();
        // The data section ends aligned (after the last tensor's padding) when there are tensors.
        layout.end = layout.data_start + offset as usize;
        (out, offsets, layout)
    }

    /// Writes the file, streaming tensor data instead of building the whole image in memory.
    pub fn write_to(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        use std::io::Write;
        let (header, offsets, layout) = self.header();
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        file.write_all(&header)?;
        let mut written = header.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            let start = layout.data_start + off as usize;
            file.write_all(&vec![0; start - written])?;
            file.write_all(&t.data)?;
            written = start + t.data.len();
        }
        file.write_all(&vec![0; layout.end - written])?;
        file.flush()
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.push(*v as u8),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => write_array(out, a),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn write_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&(a.element_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| write_string(out, s)),
        Array::Array(v) => v.iter().for_each(|inner| write_array(out, inner)),
    }
}
