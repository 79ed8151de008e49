//! GGUF reader over a memory map.
//!
//! [`GgufFile::open`] maps a file, parses the header, the metadata and the tensor table, and checks every
//! count, length and offset against the size of the file before using it: a truncated or hostile file gives
//! a [`GgufError`] naming what is wrong and where, never a panic, an out-of-bounds read, or an allocation
//! sized by the file beyond a small multiple of the file's own size. Tensor data is not copied: a
//! [`TensorInfo`] is a validated byte range and [`GgufFile::tensor_data`] hands out a slice of the map.
//!
//! The format follows ggml's `docs/gguf.md`: versions 2 and 3 (little-endian), thirteen metadata value
//! types including nested arrays, up to four dimensions per tensor, and the `general.alignment` key.
//! [`writer::GgufWriter`] writes the same format, for tests, fixtures and re-quantization.

mod value;
pub mod writer;

use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;

pub use value::{Array, Value, ValueType};

use crate::quant::GgmlType;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's limit on tensor dimensions.
pub const MAX_DIMS: usize = 4;
/// Nesting depth allowed for arrays of arrays (real files use one level at most).
pub const MAX_ARRAY_NESTING: usize = 8;

/// Everything that can be wrong with a GGUF file or a request against one.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic bytes are {found:?}, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("GGUF version {0} is not supported (this reader handles versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error(
        "file truncated at byte {offset} while reading {what}: need {need} bytes, {available} left"
    )]
    Truncated {
        what: String,
        offset: usize,
        need: usize,
        available: usize,
    },
    #[error("{what} at byte {offset}: count {count} cannot fit in the {available} bytes left in the file")]
    CountTooLarge {
        what: String,
        offset: usize,
        count: u64,
        available: usize,
    },
    #[error("metadata key {key:?}: {problem}")]
    BadMetadata { key: String, problem: String },
    #[error("tensor {name:?}: {problem}")]
    BadTensor { name: String, problem: String },
    #[error("missing metadata key {0:?}")]
    MissingKey(String),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("missing tensor {0:?}")]
    MissingTensor(String),
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// One entry of the tensor table, validated against the file: its data lies inside the file, is aligned,
/// and has exactly the size its type and dimensions imply.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one, the row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (`dims[0]`).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows (product of all dims but the first).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }

    /// Shape rendered innermost first, as ggml prints it: `[896, 151936]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(u64::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

/// The bytes behind a [`GgufFile`]: a read-only memory map, or (for tests and fuzzing) an anonymous map
/// holding a copy, so data keeps the page alignment a file map has.
enum Storage {
    Mapped(memmap2::Mmap),
    Anonymous(memmap2::MmapMut),
    Empty,
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Anonymous(m) => m,
            Storage::Empty => &[],
        }
    }
}

/// A parsed GGUF file. Cheap to share behind an `Arc`; tensor data stays in the map.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("bytes", &self.storage.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let storage = if len == 0 {
            Storage::Empty
        } else {
            // SAFETY: the map is read-only. Like every mmap-based loader we rely on the file not being
            // truncated by another process while mapped; that is documented for users of `open`.
            Storage::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::parse(storage)
    }

    /// Parses a GGUF image held in memory (copied into a page-aligned anonymous map).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let storage = if bytes.is_empty() {
            Storage::Empty
        } else {
            let mut map =
                memmap2::MmapMut::map_anon(bytes.len()).map_err(|source| GgufError::Io {
                    path: "<memory>".into(),
                    source,
                })?;
            map.copy_from_slice(bytes);
            Storage::Anonymous(map)
        };
        Self::parse(storage)
    }

    fn parse(storage: Storage) -> Result<Self> {
        let parsed = Parser::new(&storage).parse()?;
        let mut metadata_index = HashMap::with_capacity(parsed.metadata.len());
        for (i, (key, _)) in parsed.metadata.iter().enumerate() {
            if metadata_index.insert(key.clone(), i).is_some() {
                return Err(GgufError::BadMetadata {
                    key: key.clone(),
                    problem: "key appears more than once".into(),
                });
            }
        }
        let mut tensor_index = HashMap::with_capacity(parsed.tensors.len());
        for (i, t) in parsed.tensors.iter().enumerate() {
            if tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(GgufError::BadTensor {
                    name: t.name.clone(),
                    problem: "name appears more than once in the tensor table".into(),
                });
            }
        }
        Ok(Self {
            storage,
            version: parsed.version,
            metadata: parsed.metadata,
            metadata_index,
            tensors: parsed.tensors,
            tensor_index,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Offset of the tensor data section from the start of the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> usize {
        self.storage.len()
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A required non-negative integer key.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    /// An optional non-negative integer key (any integer width); present with another type is an error.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "unsigned integer", Value::as_u64)
    }

    /// An optional float key (f32, f64, or an integer).
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "number", Value::as_f64)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "bool", Value::as_bool)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "string", Value::as_str)
    }

    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&Array>> {
        self.typed(key, "array", Value::as_array)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).ok_or_else(|| GgufError::WrongType {
                key: key.into(),
                expected,
                found: format!("{} ({v})", v.value_type().name()),
            }),
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.require_str("general.architecture")
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name)
            .ok_or_else(|| GgufError::MissingTensor(name.into()))
    }

    /// The bytes of a tensor, borrowed from the map. `info` must come from this file's table (it was
    /// validated against this file's size when parsed).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_offset + info.offset as usize;
        &self.storage[start..start + info.size as usize]
    }

    /// Absolute byte range of a tensor in the file.
    pub fn tensor_range(&self, info: &TensorInfo) -> std::ops::Range<usize> {
        let start = self.data_offset + info.offset as usize;
        start..start + info.size as usize
    }

    /// The whole file image.
    pub fn bytes(&self) -> &[u8] {
        &self.storage
    }
}

/// What the parser hands back before the indexes are built.
struct Parsed {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: usize,
    data_offset: usize,
}

/// A bounds-checked little-endian cursor over the file image.
struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.available() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos,
                need: n,
                available: self.available(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_size` bytes each can still be in the file, so a
    /// vector of that many elements may be allocated.
    fn check_count(&self, count: u64, min_size: usize, what: &dyn Fn() -> String) -> Result<usize> {
        let fits = count
            .checked_mul(min_size as u64)
            .is_some_and(|bytes| bytes <= self.available() as u64);
        if !fits {
            return Err(GgufError::CountTooLarge {
                what: what(),
                offset: self.pos,
                count,
                available: self.available(),
            });
        }
        Ok(count as usize)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let len = self.check_count(len, 1, &|| format!("length of {}", what()))?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| GgufError::BadMetadata {
            key: what(),
            problem: format!("string at byte {start} is not valid UTF-8 ({e})"),
        })
    }

    fn parse(mut self) -> Result<Parsed> {
        let magic = self
            .take(4, &|| "magic".into())
            .map_err(|_| GgufError::BadMagic {
                found: self.buf[..self.buf.len().min(4)].to_vec(),
            })?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = self.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            // A big-endian file has its version byte-swapped: 3 reads as 0x0300_0000.
            if matches!(version.swap_bytes(), 2 | 3) {
                return Err(GgufError::BigEndian);
            }
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = self.u64(&|| "tensor count".into())?;
        let n_kv = self.u64(&|| "metadata count".into())?;
        // A key-value pair takes at least 8 (key length) + 4 (type) + 1 (value) bytes.
        let n_kv = self.check_count(n_kv, 13, &|| "metadata count".into())?;

        let mut metadata = Vec::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = self.string(&|| format!("key of metadata entry {i}"))?;
            let type_id = self.u32(&|| format!("value type of {key:?}"))?;
            let vtype = ValueType::from_id(type_id).ok_or_else(|| GgufError::BadMetadata {
                key: key.clone(),
                problem: format!("unknown value type id {type_id}"),
            })?;
            let value = self.value(vtype, &key, 0)?;
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((key, Value::U32(a))) if *a > 0 && a.is_power_of_two() => *a as usize,
            Some((key, v)) => {
                return Err(GgufError::BadMetadata {
                    key: key.clone(),
                    problem: format!("alignment must be a non-zero power of two u32, found {v}"),
                })
            }
        };

        // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = self.check_count(n_tensors, 24, &|| "tensor count".into())?;
        let mut tensors = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            tensors.push(self.tensor_info(i)?);
        }

        let data_offset = self.pos.next_multiple_of(alignment);
        if data_offset > self.buf.len() && !tensors.is_empty() {
            return Err(GgufError::Truncated {
                what: "padding before the tensor data section".into(),
                offset: self.pos,
                need: data_offset - self.pos,
                available: self.available(),
            });
        }
        let data_len = self.buf.len().saturating_sub(data_offset) as u64;
        for t in &tensors {
            if t.offset % alignment as u64 != 0 {
                return Err(GgufError::BadTensor {
                    name: t.name.clone(),
                    problem: format!(
                        "data offset {} is not a multiple of the alignment {alignment}",
                        t.offset
                    ),
                });
            }
            if t.offset
                .checked_add(t.size)
                .is_none_or(|end| end > data_len)
            {
                return Err(GgufError::BadTensor {
                    name: t.name.clone(),
                    problem: format!(
                        "data [{}, +{}) lies outside the {} bytes of the data section (file truncated?)",
                        t.offset, t.size, data_len
                    ),
                });
            }
        }
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size > 0).collect();
        by_offset.sort_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            if pair[0].offset + pair[0].size > pair[1].offset {
                return Err(GgufError::BadTensor {
                    name: pair[1].name.clone(),
                    problem: format!("data overlaps the data of tensor {:?}", pair[0].name),
                });
            }
        }
        Ok(Parsed {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    fn tensor_info(&mut self, index: usize) -> Result<TensorInfo> {
        let name = self.string(&|| format!("name of tensor {index}"))?;
        let bad = |problem: String| GgufError::BadTensor {
            name: name.clone(),
            problem,
        };
        let n_dims = self.u32(&|| format!("dimension count of tensor {name:?}"))? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(bad(format!(
                "has {n_dims} dimensions; 1 to {MAX_DIMS} are allowed"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for d in 0..n_dims {
            dims.push(self.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
        }
        let type_id = self.u32(&|| format!("type of tensor {name:?}"))?;
        let offset = self.u64(&|| format!("data offset of tensor {name:?}"))?;
        let ggml_type = GgmlType::from_id(type_id)
            .ok_or_else(|| bad(format!("unknown tensor type id {type_id}")))?;
        // Zero dims count as one here: a zero must not hide an overflow among the others, which
        // `TensorInfo::n_rows` (the product of dims[1..]) would then hit. ggml stores each dim as int64.
        dims.iter()
            .try_fold(1u64, |acc, &d| {
                acc.checked_mul(d.max(1)).filter(|&n| n <= i64::MAX as u64)
            })
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
        let n_elements: u64 = dims.iter().product();
        if dims[0] % ggml_type.block_size() as u64 != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of the {ggml_type} block size {}",
                dims[0],
                ggml_type.block_size()
            )));
        }
        let size = ggml_type.bytes_for(n_elements).ok_or_else(|| {
            bad(format!(
                "size of {n_elements} {ggml_type} elements overflows"
            ))
        })?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size,
        })
    }

    fn value(&mut self, vtype: ValueType, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("value of {key:?}");
        Ok(match vtype {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(self.u32(&what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(self.u64(&what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => Value::Array(self.array_value(key, depth)?),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        let pos = self.pos;
        match self.array::<1>(&|| format!("value of {key:?}"))?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::BadMetadata {
                key: key.into(),
                problem: format!("bool at byte {pos} has value {b}, expected 0 or 1"),
            }),
        }
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        if depth >= MAX_ARRAY_NESTING {
            return Err(GgufError::BadMetadata {
                key: key.into(),
                problem: format!("arrays nested deeper than {MAX_ARRAY_NESTING} levels"),
            });
        }
        let what = || format!("array {key:?}");
        let type_id = self.u32(&what)?;
        let etype = ValueType::from_id(type_id).ok_or_else(|| GgufError::BadMetadata {
            key: key.into(),
            problem: format!("array has unknown element type id {type_id}"),
        })?;
        let count = self.u64(&what)?;
        let n = self.check_count(count, etype.min_encoded_size(), &what)?;

        macro_rules! fixed {
            ($variant:ident, $ty:ty) => {{
                const W: usize = std::mem::size_of::<$ty>();
                let bytes = self.take(n * W, &what)?;
                Array::$variant(
                    bytes
                        .chunks_exact(W)
                        .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk of W bytes")))
                        .collect(),
                )
            }};
        }
        Ok(match etype {
            ValueType::U8 => Array::U8(self.take(n, &what)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(n, &what)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => Array::Bool((0..n).map(|_| self.bool(key)).collect::<Result<_>>()?),
            ValueType::String => Array::String(
                (0..n)
                    .map(|i| self.string(&|| format!("element {i} of array {key:?}")))
                    .collect::<Result<_>>()?,
            ),
            ValueType::Array => Array::Array(
                (0..n)
                    .map(|_| self.array_value(key, depth + 1))
                    .collect::<Result<_>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests;
