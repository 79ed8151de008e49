//! The key/value cache of a sequence: per layer, one K row and one V row per position.
//!
//! Rows are `n_head_kv × head_dim` wide and stored as f32 or f16 (the default, as llama.cpp); latent
//! attention (DeepSeek's MLA) keeps one row of `kv_lora_rank + rope` per position and no V rows, since its
//! values are read from the latent part of the K row. The cache is
//! sized once for the context (`--ctx`) and allocated fallibly, so an oversized context is an error, not an
//! abort. Sliding-window layers keep every position too (llama.cpp's "full SWA cache", which its greedy
//! output depends on); the window is applied as a mask by the attention.

use half::f16;

use crate::error::{Error, Result};

/// Element type of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    F32,
    #[default]
    F16,
}

impl KvType {
    pub fn bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

impl std::str::FromStr for KvType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            other => Err(Error::InvalidArgument(format!(
                "KV cache type {other:?} (expected f32 or f16)"
            ))),
        }
    }
}

/// Storage of one K or V plane.
#[derive(Debug)]
pub enum KvRows {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvRows {
    fn new(kv_type: KvType, len: usize) -> Result<Self> {
        let oom = |_| Error::OutOfMemory {
            what: "the KV cache".into(),
            bytes: len * kv_type.bytes(),
        };
        Ok(match kv_type {
            KvType::F32 => {
                let mut v = Vec::new();
                v.try_reserve_exact(len).map_err(oom)?;
                v.resize(len, 0.0);
                KvRows::F32(v)
            }
            KvType::F16 => {
                let mut v = Vec::new();
                v.try_reserve_exact(len).map_err(oom)?;
                v.resize(len, f16::ZERO);
                KvRows::F16(v)
            }
        })
    }

    /// Writes `src` at element offset `at`.
    pub fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvRows::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            KvRows::F16(v) => v[at..at + src.len()]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &s)| *d = f16::from_f32(s)),
        }
    }
}

/// The cache of one layer.
#[derive(Debug)]
pub struct LayerKv {
    pub k: KvRows,
    pub v: KvRows,
}

/// KV cache of one sequence.
#[derive(Debug)]
pub struct KvCache {
    pub kv_type: KvType,
    pub n_ctx: usize,
    /// Width of one K row.
    pub k_row_len: usize,
    /// Width of one V row (0 when values are read from the K row).
    pub v_row_len: usize,
    pub layers: Vec<LayerKv>,
    /// Positions filled.
    len: usize,
}

impl KvCache {
    pub fn new(
        kv_type: KvType,
        n_layer: usize,
        n_ctx: usize,
        (k_row_len, v_row_len): (usize, usize),
    ) -> Result<Self> {
        let plane = |row_len: usize| {
            n_ctx
                .checked_mul(row_len)
                .ok_or_else(|| Error::OutOfMemory {
                    what: "the KV cache".into(),
                    bytes: usize::MAX,
                })
        };
        let (k_plane, v_plane) = (plane(k_row_len)?, plane(v_row_len)?);
        let layers = (0..n_layer)
            .map(|_| {
                Ok(LayerKv {
                    k: KvRows::new(kv_type, k_plane)?,
                    v: KvRows::new(kv_type, v_plane)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            kv_type,
            n_ctx,
            k_row_len,
            v_row_len,
            layers,
            len: 0,
        })
    }

    /// Bytes per token over all layers (K and V).
    pub fn bytes_per_token(&self) -> usize {
        self.layers.len() * (self.k_row_len + self.v_row_len) * self.kv_type.bytes()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Marks `n` more positions as filled (after every layer has written them).
    pub fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.n_ctx);
        self.len += n;
    }

    /// Forgets positions from `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }
}
