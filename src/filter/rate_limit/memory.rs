//! The in-memory store: one GCRA time (TAT) per key, in 64 independently locked shards.
//!
//! A key is a 64-bit hash (see `key.rs`), which also picks the shard, so a decision locks one
//! small map for a few nanoseconds and allocates nothing once the key exists. Memory is bounded:
//! a shard holds at most `max_keys / 64` keys. Entries whose TAT has passed are the same as
//! absent ones (a full bucket), so they are swept lazily, at most every few seconds per shard and
//! whenever a shard is full; if a full shard has nothing expired, the new key replaces an
//! arbitrary one (that client gets a fresh bucket: the price of the bound).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::gcra::{Decision, Gcra, NANOS};

/// Shards per store (a power of two).
const SHARDS: usize = 64;
/// Keys tracked per limit by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// How often a shard drops its expired entries (when it is used).
const SWEEP_EVERY: u64 = 10 * NANOS;

/// Nanoseconds on a monotonic clock that starts near zero when the process first asks.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The key hashes are already uniformly distributed: the map uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Shard {
    tats: HashMap<u64, u64, BuildHasherDefault<Identity>>,
    next_sweep: u64,
}

impl Shard {
    fn sweep(&mut self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
    }
}

/// A sharded map from key hash to TAT.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    max_per_shard: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_per_shard", &self.max_per_shard)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_MAX_KEYS)
    }
}

impl MemoryStore {
    /// A store that tracks at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Decides one request for `key` at `now` (see [`now_ns`]); an allowed request is recorded.
    pub fn decide(&self, gcra: &Gcra, key: u64, now: u64) -> Decision {
        // Middle bits pick the shard: the map itself uses the low bits (bucket) and the top
        // seven (tag), which must stay varied within a shard.
        let index = (key >> 32) as usize % SHARDS;
        let Some(shard) = self.shards.get(index) else {
            return gcra.check(None, now).0;
        };
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if now >= shard.next_sweep {
            shard.sweep(now);
        }
        let (decision, new_tat) = gcra.check(shard.tats.get(&key).copied(), now);
        if let Some(tat) = new_tat {
            if shard.tats.len() >= self.max_per_shard && !shard.tats.contains_key(&key) {
                shard.sweep(now);
                if shard.tats.len() >= self.max_per_shard {
                    if let Some(victim) = shard.tats.keys().next().copied() {
                        shard.tats.remove(&victim);
                    }
                }
            }
            shard.tats.insert(key, tat);
        }
        decision
    }

    /// Keys currently tracked (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).tats.len())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> u64 {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(i)
    }

    #[test]
    fn keys_are_independent() {
        let store = MemoryStore::default();
        let g = Gcra::new(2, 60, 0, NANOS);
        let (a, b) = (key(1), key(2));
        assert!(store.decide(&g, a, 0).allowed);
        assert!(store.decide(&g, a, 0).allowed);
        assert!(!store.decide(&g, a, 0).allowed);
        assert!(store.decide(&g, b, 0).allowed);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn memory_stays_bounded_and_expired_keys_go_first() {
        let store = MemoryStore::new(SHARDS * 4);
        let g = Gcra::new(1, 1, 0, NANOS);
        for i in 0..10_000 {
            store.decide(&g, key(i), 0);
        }
        assert!(store.len() <= SHARDS * 4, "{} keys", store.len());
        // Two seconds later every bucket is full again: a sweep drops them all.
        for i in 0..SHARDS as u64 * 8 {
            store.decide(&g, key(100_000 + i), 2 * NANOS + SWEEP_EVERY);
        }
        assert!(store.len() <= SHARDS * 4);
    }

    #[test]
    fn a_refused_request_is_not_recorded() {
        let store = MemoryStore::default();
        let g = Gcra::new(1, 10, 0, NANOS);
        let k = key(7);
        assert!(store.decide(&g, k, 0).allowed);
        for _ in 0..5 {
            assert!(!store.decide(&g, k, NANOS).allowed);
        }
        // Refusals did not push the TAT: allowed again after 10 s.
        assert!(store.decide(&g, k, 10 * NANOS).allowed);
        assert!(now_ns() < now_ns() + 1);
    }
}
