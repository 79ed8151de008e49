//! Allocation-free lookup tables used at load time and while tokenizing.
//!
//! [`TokenIndex`] maps token text → id with open addressing over ids (the texts stay in the tokenizer's own
//! `Vec<String>`), and [`PairRanks`] maps a BPE merge (left id, right id) → rank. Both use a small
//! multiply-rotate hash instead of SipHash: keys come from the model file, not from untrusted network input
//! racing for collisions, and building them for a 262k-token vocabulary must cost milliseconds, not a
//! hundred. Not a general-purpose map.

const EMPTY: u32 = u32::MAX;
const K: u64 = 0x517c_c1b7_2722_0a95;

#[inline]
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = 0u64;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(b) << (8 * i);
    }
    h = (h.rotate_left(5) ^ tail).wrapping_mul(K);
    h ^ (h >> 29)
}

/// Token text → id over an external token list. Later duplicates win (like llama.cpp's `token_to_id`).
pub(crate) struct TokenIndex {
    slots: Vec<u32>,
    mask: usize,
}

impl TokenIndex {
    pub(crate) fn new(tokens: &[String]) -> Self {
        let cap = (tokens.len() * 2).next_power_of_two().max(16);
        let mut idx = TokenIndex {
            slots: vec![EMPTY; cap],
            mask: cap - 1,
        };
        for (id, t) in tokens.iter().enumerate() {
            let mut i = hash_bytes(t.as_bytes()) as usize & idx.mask;
            loop {
                let s = idx.slots[i];
                if s == EMPTY || tokens[s as usize] == *t {
                    idx.slots[i] = id as u32;
                    break;
                }
                i = (i + 1) & idx.mask;
            }
        }
        idx
    }

    #[inline]
    pub(crate) fn get(&self, tokens: &[String], text: &str) -> Option<u32> {
        let mut i = hash_bytes(text.as_bytes()) as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if tokens[s as usize] == text {
                return Some(s);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// (left id, right id) → merge rank. The first rank of a repeated pair wins (like llama.cpp's `bpe_ranks`).
pub(crate) struct PairRanks {
    keys: Vec<u64>,
    ranks: Vec<u32>,
    mask: usize,
}

const NO_PAIR: u64 = u64::MAX;

impl PairRanks {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let cap = (n * 2).next_power_of_two().max(16);
        PairRanks {
            keys: vec![NO_PAIR; cap],
            ranks: vec![0; cap],
            mask: cap - 1,
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        let h = key.wrapping_mul(K);
        (h ^ (h >> 32)) as usize & self.mask
    }

    /// Insert unless present; returns false for a duplicate pair.
    pub(crate) fn insert(&mut self, left: u32, right: u32, rank: u32) -> bool {
        let key = (u64::from(left) << 32) | u64::from(right);
        let mut i = self.slot(key);
        loop {
            if self.keys[i] == NO_PAIR {
                self.keys[i] = key;
                self.ranks[i] = rank;
                return true;
            }
            if self.keys[i] == key {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub(crate) fn get(&self, left: u32, right: u32) -> Option<u32> {
        let key = (u64::from(left) << 32) | u64::from(right);
        let mut i = self.slot(key);
        loop {
            let k = self.keys[i];
            if k == key {
                return Some(self.ranks[i]);
            }
            if k == NO_PAIR {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }
}
