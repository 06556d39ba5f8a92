//! Verified tokens remembered, so a client that sends the same token on every request pays the
//! signature verification once. Entries are keyed by the token's SHA-256 digest (a lookup reveals
//! nothing about cached tokens), hold the verified claims with their time bounds, and are checked
//! against the clock on every hit: an expired or not-yet-valid token is verified again (and then
//! refused with its reason). An entry also records which key set verified it, so a JWKS refresh
//! that changes the keys makes earlier verifications count for nothing. Only successes are
//! stored; the cache is bounded (sharded, each shard evicting when full).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::filter::secret::{sha256, Digest};
use crate::filter::Claims;

/// Shards (a power of two): requests on different workers rarely wait for each other.
const SHARDS: usize = 16;
/// Tokens remembered per shard.
const PER_SHARD: usize = 1024;

/// What a hit needs to be trusted again.
struct Entry {
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
    shards: Vec<Mutex<HashMap<Digest, Entry>>>,
    leeway: f64,
}

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
            leeway: leeway as f64,
        }
    }

    fn shard(&self, d: &Digest) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        let i = usize::from(d[0]) & (SHARDS - 1);
        // A poisoned shard still only holds verified tokens.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The digest a token is remembered under.
    pub fn digest(token: &str) -> Digest {
        sha256(token.as_bytes())
    }

    /// The claims of a token verified before with the key set `keys`, while its time bounds
    /// still hold.
    pub fn get(&self, digest: &Digest, keys: usize) -> Option<Claims> {
        let shard = self.shard(digest);
        let e = shard.get(digest)?;
        let now = now();
        let fresh = e.keys == keys
            && now <= e.exp + self.leeway
            && e.nbf.is_none_or(|nbf| nbf <= now + self.leeway);
        fresh.then(|| e.claims.clone())
    }

    /// Remembers a token just verified with the key set `keys`.
    pub fn insert(&self, digest: Digest, claims: &Claims, keys: usize) {
        let Some(exp) = claims.get("exp").and_then(Value::as_f64) else {
            return;
        };
        let nbf = claims.get("nbf").and_then(Value::as_f64);
        let mut shard = self.shard(&digest);
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
            digest,
            Entry {
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
        let d = TokenCache::digest("a.b.c");
        c.insert(d, &claims(t + 100.0, None), 7);
        assert_eq!(c.get(&d, 7).unwrap()["sub"], "u");
        assert!(c.get(&d, 8).is_none(), "another key set must verify again");
        assert!(c.get(&TokenCache::digest("a.b.d"), 7).is_none());

        let expired = TokenCache::digest("expired");
        c.insert(expired, &claims(t - 1.0, None), 0);
        assert!(c.get(&expired, 0).is_none());
        let early = TokenCache::digest("early");
        c.insert(early, &claims(t + 100.0, Some(t + 50.0)), 0);
        assert!(c.get(&early, 0).is_none());
        // Leeway lets a just-expired token through, like verification does.
        let lenient = TokenCache::new(60);
        lenient.insert(expired, &claims(t - 1.0, None), 0);
        assert!(lenient.get(&expired, 0).is_some());
    }

    #[test]
    fn bounded() {
        let c = TokenCache::new(0);
        let t = now() + 1000.0;
        for i in 0..(SHARDS * PER_SHARD * 2) {
            c.insert(TokenCache::digest(&i.to_string()), &claims(t, None), 0);
        }
        assert!(c.len() <= SHARDS * PER_SHARD, "{}", c.len());
    }
}
