//! State of the limits that outlives reloads: counters and in-memory buckets keyed by the
//! limit's identity (where it is configured and its parameters), and one Redis backend per URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::LimiterState;

/// Long-lived rate-limit state; part of [`crate::compile::Registries`].
#[derive(Default)]
pub struct Registry {
    states: Mutex<HashMap<String, Weak<LimiterState>>>,
    #[cfg(feature = "redis")]
    backends: Mutex<HashMap<String, Weak<super::redis::RedisBackend>>>,
}

impl Registry {
    /// The state for a limit identity: the existing one while a snapshot still holds it (an
    /// unchanged limit keeps its counters over a reload), else a fresh one.
    pub(super) fn state(&self, identity: &str) -> Arc<LimiterState> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = states.get(identity).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(LimiterState::default());
        states.insert(identity.to_string(), Arc::downgrade(&s));
        s
    }

    /// The one backend of this process for a Redis URL.
    #[cfg(feature = "redis")]
    pub(super) fn backend(&self, url: &str) -> Result<Arc<super::redis::RedisBackend>, String> {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.retain(|_, w| w.strong_count() > 0);
        if let Some(b) = backends.get(url).and_then(Weak::upgrade) {
            return Ok(b);
        }
        let b = Arc::new(super::redis::RedisBackend::open(url)?);
        backends.insert(url.to_string(), Arc::downgrade(&b));
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_shared_while_held_and_fresh_after() {
        let reg = Registry::default();
        let a = reg.state("site|5/60");
        assert!(Arc::ptr_eq(&a, &reg.state("site|5/60")));
        assert!(!Arc::ptr_eq(&a, &reg.state("site|6/60")));
        assert_eq!(a.counters.dry_run_rejected(), 1);
        assert_eq!(reg.state("site|5/60").counters.dry_run_rejected(), 2);
        drop(a);
        let b = reg.state("site|5/60");
        assert_eq!(b.counters.dry_run_rejected(), 1);
    }
}
