//! The key/value cache of a sequence: per layer, one K row and one V row per position.
//!
//! Rows are `n_head_kv × head_dim` wide and stored as f32 or f16 (the default, as llama.cpp); latent
//! attention (DeepSeek's MLA) keeps one row of `kv_lora_rank + rope` per position and no V rows, since its
//! values are read from the latent part of the K row. A cache holds at most `n_ctx` positions (`--ctx`) and
//! is allocated fallibly, so an oversized context is an error, not an abort: either all at once
//! ([`KvCache::new`], a single session) or as it fills, in steps of [`GROW_STEP`] positions
//! ([`KvCache::new_growing`], the sequences of a batch, whose memory is then what they use). Sliding-window layers keep every position too (llama.cpp's "full SWA cache", which its greedy
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

/// Positions a growing cache adds at a time.
pub const GROW_STEP: usize = 256;

impl KvRows {
    fn new(kv_type: KvType, len: usize) -> Result<Self> {
        let mut rows = match kv_type {
            KvType::F32 => KvRows::F32(Vec::new()),
            KvType::F16 => KvRows::F16(Vec::new()),
        };
        rows.grow_to(len)?;
        Ok(rows)
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        match self {
            KvRows::F32(v) => v.len(),
            KvRows::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for at least `len` elements (zeroed), failing with an error when memory runs out.
    fn grow_to(&mut self, len: usize) -> Result<()> {
        fn grow<T: Clone>(v: &mut Vec<T>, len: usize, zero: T, elem: usize) -> Result<()> {
            if v.len() >= len {
                return Ok(());
            }
            v.try_reserve_exact(len - v.len())
                .map_err(|_| Error::OutOfMemory {
                    what: "the KV cache".into(),
                    bytes: len.saturating_mul(elem),
                })?;
            v.resize(len, zero);
            Ok(())
        }
        match self {
            KvRows::F32(v) => grow(v, len, 0.0, 4),
            KvRows::F16(v) => grow(v, len, f16::ZERO, 2),
        }
    }

    /// Drops every element and returns the memory.
    fn release(&mut self) {
        match self {
            KvRows::F32(v) => *v = Vec::new(),
            KvRows::F16(v) => *v = Vec::new(),
        }
    }

    /// Copies the first `len` elements of `src` (same element type) over this plane's first `len`.
    fn copy_prefix_from(&mut self, src: &KvRows, len: usize) {
        match (self, src) {
            (KvRows::F32(d), KvRows::F32(s)) => d[..len].copy_from_slice(&s[..len]),
            (KvRows::F16(d), KvRows::F16(s)) => d[..len].copy_from_slice(&s[..len]),
            _ => unreachable!("KV planes of one backend share their element type"),
        }
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
    /// A cache with room for all `n_ctx` positions, allocated now.
    pub fn new(
        kv_type: KvType,
        n_layer: usize,
        n_ctx: usize,
        row_lens: (usize, usize),
    ) -> Result<Self> {
        let mut cache = Self::new_growing(kv_type, n_layer, n_ctx, row_lens)?;
        cache.reserve(n_ctx)?;
        Ok(cache)
    }

    /// A cache of up to `n_ctx` positions that allocates as it fills.
    pub fn new_growing(
        kv_type: KvType,
        n_layer: usize,
        n_ctx: usize,
        (k_row_len, v_row_len): (usize, usize),
    ) -> Result<Self> {
        for row_len in [k_row_len, v_row_len] {
            if n_ctx.checked_mul(row_len).is_none() {
                return Err(Error::OutOfMemory {
                    what: "the KV cache".into(),
                    bytes: usize::MAX,
                });
            }
        }
        let layers = (0..n_layer)
            .map(|_| {
                Ok(LayerKv {
                    k: KvRows::new(kv_type, 0)?,
                    v: KvRows::new(kv_type, 0)?,
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

    /// Positions allocated now.
    pub fn capacity(&self) -> usize {
        match self.layers.first() {
            Some(l) if self.k_row_len > 0 => l.k.len() / self.k_row_len,
            _ => self.n_ctx,
        }
    }

    /// Makes room for `positions` positions (at most `n_ctx`), growing by [`GROW_STEP`] at a time.
    pub fn reserve(&mut self, positions: usize) -> Result<()> {
        if positions > self.n_ctx {
            return Err(Error::ContextFull { ctx: self.n_ctx });
        }
        if positions <= self.capacity() {
            return Ok(());
        }
        let target = positions
            .div_ceil(GROW_STEP)
            .saturating_mul(GROW_STEP)
            .min(self.n_ctx);
        for layer in &mut self.layers {
            layer.k.grow_to(target * self.k_row_len)?;
            layer.v.grow_to(target * self.v_row_len)?;
        }
        Ok(())
    }

    /// Empties the cache and returns its memory (a growing cache starts over small).
    pub fn release(&mut self) {
        self.len = 0;
        for layer in &mut self.layers {
            layer.k.release();
            layer.v.release();
        }
    }

    /// Makes this cache hold the first `n` positions of `src` (same model and element type), e.g. a
    /// shared prompt prefix computed by another sequence.
    pub fn copy_prefix_from(&mut self, src: &KvCache, n: usize) -> Result<()> {
        if n > src.len
            || src.kv_type != self.kv_type
            || (src.k_row_len, src.v_row_len) != (self.k_row_len, self.v_row_len)
        {
            return Err(Error::InvalidArgument(format!(
                "cannot copy {n} positions from a KV cache holding {}",
                src.len
            )));
        }
        self.reserve(n)?;
        for (dst, src) in self.layers.iter_mut().zip(&src.layers) {
            dst.k.copy_prefix_from(&src.k, n * self.k_row_len);
            dst.v.copy_prefix_from(&src.v, n * self.v_row_len);
        }
        self.len = n;
        Ok(())
    }

    /// Bytes allocated now.
    pub fn allocated_bytes(&self) -> usize {
        self.capacity() * self.bytes_per_token()
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
