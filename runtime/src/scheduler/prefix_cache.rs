//! The prefix cache: KV caches of finished sequences kept for reuse, bounded by a memory budget with
//! least-recently-used eviction.
//!
//! An entry is a backend sequence (its KV cache) together with the tokens it holds. A new request
//! looks up the entry sharing the longest prefix with its prompt and copies that many positions instead of
//! computing them (a system prompt, the earlier turns of a chat). Entries that are a prefix of a newer one
//! are dropped, since the newer one serves every lookup they would. The cache only bookkeeps; the scheduler
//! moves the KV rows.

/// One cached sequence.
#[derive(Debug)]
struct Entry {
    seq: usize,
    tokens: Vec<u32>,
    last_used: u64,
}

/// Cached sequences by the tokens they hold.
#[derive(Debug)]
pub struct PrefixCache {
    entries: Vec<Entry>,
    budget_bytes: usize,
    bytes_per_token: usize,
    /// Shortest prefix worth caching or reusing.
    min_tokens: usize,
    clock: u64,
}

/// The best entry for a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixMatch {
    /// The backend sequence holding it.
    pub seq: usize,
    /// Leading tokens it shares with the prompt.
    pub len: usize,
}

impl PrefixCache {
    pub fn new(budget_bytes: usize, bytes_per_token: usize, min_tokens: usize) -> Self {
        Self {
            entries: Vec::new(),
            budget_bytes,
            bytes_per_token: bytes_per_token.max(1),
            min_tokens: min_tokens.max(1),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// KV bytes the entries hold.
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.tokens.len() * self.bytes_per_token)
            .sum()
    }

    /// The entry sharing the longest prefix with `prompt`, if it shares at least the minimum; marks it used.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<PrefixMatch> {
        let (index, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))?;
        if len < self.min_tokens {
            return None;
        }
        self.clock += 1;
        let entry = &mut self.entries[index];
        entry.last_used = self.clock;
        Some(PrefixMatch {
            seq: entry.seq,
            len,
        })
    }

    /// Offers a finished sequence holding `tokens`. Returns the sequences the caller must release: the
    /// offered one when it is not worth keeping (too short, over the budget alone, or already covered by an
    /// entry), and entries it makes redundant or that are evicted to stay within the budget.
    pub fn insert(&mut self, seq: usize, tokens: Vec<u32>) -> Vec<usize> {
        let too_big = tokens.len() * self.bytes_per_token > self.budget_bytes;
        let covered = self
            .entries
            .iter()
            .any(|e| e.tokens.len() >= tokens.len() && e.tokens.starts_with(&tokens));
        if tokens.len() < self.min_tokens || too_big || covered {
            return vec![seq];
        }
        let mut released = Vec::new();
        self.entries.retain(|e| {
            let redundant = tokens.starts_with(&e.tokens);
            if redundant {
                released.push(e.seq);
            }
            !redundant
        });
        self.clock += 1;
        self.entries.push(Entry {
            seq,
            tokens,
            last_used: self.clock,
        });
        while self.bytes() > self.budget_bytes {
            released.extend(self.evict_lru());
        }
        released
    }

    /// Drops the least recently used entry, returning its sequence.
    pub fn evict_lru(&mut self) -> Option<usize> {
        let index = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(i, _)| i)?;
        Some(self.entries.swap_remove(index).seq)
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_shared_prefix() {
        let mut cache = PrefixCache::new(1 << 20, 1, 2);
        assert!(cache.insert(5, vec![1, 2, 3, 4]).is_empty());
        assert!(cache.insert(6, vec![1, 2, 9, 9, 9]).is_empty());
        assert_eq!(
            cache.lookup(&[1, 2, 3, 7]),
            Some(PrefixMatch { seq: 5, len: 3 })
        );
        assert_eq!(
            cache.lookup(&[1, 2, 9, 9, 9, 9]),
            Some(PrefixMatch { seq: 6, len: 5 })
        );
        assert_eq!(
            cache.lookup(&[1, 7]),
            None,
            "one shared token is below the minimum"
        );
        assert_eq!(cache.lookup(&[8]), None);
    }

    #[test]
    fn drops_what_is_covered_or_too_short() {
        let mut cache = PrefixCache::new(1 << 20, 1, 3);
        assert_eq!(cache.insert(1, vec![1, 2]), vec![1], "too short");
        assert!(cache.insert(2, vec![1, 2, 3]).is_empty());
        assert_eq!(
            cache.insert(3, vec![1, 2, 3, 4]),
            vec![2],
            "extends entry 2"
        );
        assert_eq!(
            cache.insert(4, vec![1, 2, 3]),
            vec![4],
            "covered by entry 3"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn evicts_least_recently_used_beyond_the_budget() {
        // 10 bytes a token, 100 bytes: room for 10 tokens.
        let mut cache = PrefixCache::new(100, 10, 1);
        assert!(cache.insert(1, vec![1; 4]).is_empty());
        assert!(cache.insert(2, vec![2; 4]).is_empty());
        cache.lookup(&[1, 1]); // entry 1 is now the most recent
        assert_eq!(cache.insert(3, vec![3; 4]), vec![2]);
        assert_eq!(cache.bytes(), 80);
        assert_eq!(
            cache.insert(4, vec![4; 11]),
            vec![4],
            "larger than the budget alone"
        );
        assert_eq!(cache.evict_lru(), Some(1));
        assert_eq!(cache.evict_lru(), Some(3));
        assert_eq!(cache.evict_lru(), None);
    }
}
