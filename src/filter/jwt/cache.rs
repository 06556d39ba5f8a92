//! Verified tokens remembered, so a client that sends the same token on every request pays the
//! signature verification once. Entries are found by a keyed hash of the token (a per-process
//! random key, so clients cannot aim at collisions) and hold the whole token, compared in
//! constant time, so a lookup reveals nothing about cached tokens. They hold the verified claims
//! with their time bounds, and are checked
//! against the clock on every hit: an expired or not-yet-valid token is verified again (and then
//! refused with its reason). An entry also records which key set verified it, so a JWKS refresh
//! that changes the keys makes earlier verifications count for nothing. Only successes are
//! stored; the cache is bounded (sharded, each shard evicting when full).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::filter::secret::ct_eq;
use crate::filter::Claims;

/// Shards (a power of two): requests on different workers rarely wait for each other.
const SHARDS: usize = 16;
/// Tokens remembered per shard.
const PER_SHARD: usize = 1024;

/// What a hit needs to be trusted again.
struct Entry {
    token: Box<[u8]>,
    claims: Claims,
    /// `exp` (required by verification).
    exp: f64,
    /// `nbf`, when the token has one.
    nbf: Option<f64>,
    /// The key set that verified the token (0: a static key).
    keys: usize,
}

/// A bounded map of verified tokens.
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<u64, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    leeway: f64,
}

/// Where a token is looked up: its keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u64);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl TokenCache {
    /// An empty cache; `leeway` is the clock skew allowed for `exp` and `nbf`.
    pub fn new(leeway: u64) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            leeway: leeway as f64,
        }
    }

    fn shard(&self, slot: Slot) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        let i = (slot.0 >> 59) as usize & (SHARDS - 1);
        // A poisoned shard still only holds verified tokens.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where a token is remembered.
    pub fn slot(&self, token: &str) -> Slot {
        Slot(self.hasher.hash_one(token.as_bytes()))
    }

    /// The claims of `token` (at `slot`) verified before with the key set `keys`, while its
    /// time bounds still hold.
    pub fn get(&self, slot: Slot, token: &str, keys: usize) -> Option<Claims> {
        let shard = self.shard(slot);
        let e = shard.get(&slot.0)?;
        let now = now();
        let fresh = ct_eq(&e.token, token.as_bytes())
            && e.keys == keys
            && now <= e.exp + self.leeway
            && e.nbf.is_none_or(|nbf| nbf <= now + self.leeway);
        fresh.then(|| e.claims.clone())
    }

    /// Remembers `token` (at `slot`), just verified with the key set `keys`.
    pub fn insert(&self, slot: Slot, token: &str, claims: &Claims, keys: usize) {
        let Some(exp) = claims.get("exp").and_then(Value::as_f64) else {
            return;
        };
        let nbf = claims.get("nbf").and_then(Value::as_f64);
        let mut shard = self.shard(slot);
        if shard.len() >= PER_SHARD {
            let now = now();
            let leeway = self.leeway;
            shard.retain(|_, e| now <= e.exp + leeway);
            if shard.len() >= PER_SHARD {
                if let Some(k) = shard.keys().next().copied() {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(
            slot.0,
            Entry {
                token: token.as_bytes().into(),
                claims: claims.clone(),
                exp,
                nbf,
                keys,
            },
        );
    }

    /// Tokens remembered (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn claims(exp: f64, nbf: Option<f64>) -> Claims {
        let mut m = serde_json::Map::new();
        m.insert("sub".into(), "u".into());
        m.insert("exp".into(), exp.into());
        if let Some(n) = nbf {
            m.insert("nbf".into(), n.into());
        }
        Arc::new(m)
    }

    #[test]
    fn hits_respect_time_and_key_set() {
        let c = TokenCache::new(0);
        let t = now();
        let d = c.slot("a.b.c");
        c.insert(d, "a.b.c", &claims(t + 100.0, None), 7);
        assert_eq!(c.get(d, "a.b.c", 7).unwrap()["sub"], "u");
        assert!(
            c.get(d, "a.b.c", 8).is_none(),
            "another key set must verify again"
        );
        assert!(c.get(c.slot("a.b.d"), "a.b.d", 7).is_none());
        // Another token that lands on the same slot is not the cached one.
        assert!(c.get(d, "a.b.X", 7).is_none());

        let expired = c.slot("expired");
        c.insert(expired, "expired", &claims(t - 1.0, None), 0);
        assert!(c.get(expired, "expired", 0).is_none());
        let early = c.slot("early");
        c.insert(early, "early", &claims(t + 100.0, Some(t + 50.0)), 0);
        assert!(c.get(early, "early", 0).is_none());
        // Leeway lets a just-expired token through, like verification does.
        let lenient = TokenCache::new(60);
        let slot = lenient.slot("expired");
        lenient.insert(slot, "expired", &claims(t - 1.0, None), 0);
        assert!(lenient.get(slot, "expired", 0).is_some());
    }

    #[test]
    fn bounded() {
        let c = TokenCache::new(0);
        let t = now() + 1000.0;
        for i in 0..(SHARDS * PER_SHARD * 2) {
            let token = i.to_string();
            c.insert(c.slot(&token), &token, &claims(t, None), 0);
        }
        assert!(c.len() <= SHARDS * PER_SHARD, "{}", c.len());
    }
}
