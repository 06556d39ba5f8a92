//! The pool registry: pools keyed by route id and spec, and per-target state keyed by route id
//! and URL, shared by every snapshot that uses them. A reload that leaves a route unchanged keeps
//! its pool; one that changes the route but keeps a target keeps that target's state (health,
//! ejection, breaker, latency, connections).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::endpoint::EndpointState;
use super::pool::{Pool, PoolError, PoolSpec};

/// Long-lived pools, looked up at compile time (never on the request path).
#[derive(Default)]
pub struct PoolRegistry {
    pools: Mutex<HashMap<String, Weak<Pool>>>,
    states: Mutex<HashMap<String, Weak<EndpointState>>>,
}

impl PoolRegistry {
    /// The live pool for `spec` under `route_id`, built when no snapshot holds one.
    pub fn get_or_build(&self, route_id: &str, spec: &PoolSpec) -> Result<Arc<Pool>, PoolError> {
        let key = spec.key(route_id);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|_, weak| weak.strong_count() > 0);
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return Ok(pool);
        }
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.retain(|_, weak| weak.strong_count() > 0);
        let state = |url: &str| -> Arc<EndpointState> {
            let k = format!("{route_id}|{url}");
            // Called while building only; the map is locked by this function.
            let existing = states.get(&k).and_then(Weak::upgrade);
            existing.unwrap_or_default()
        };
        let pool = Arc::new(Pool::build(spec, route_id, &state)?);
        for e in pool.endpoints() {
            states.insert(format!("{route_id}|{}", e.url), Arc::downgrade(&e.state));
        }
        pools.insert(key, Arc::downgrade(&pool));
        Ok(pool)
    }

    /// Every pool some snapshot still holds (for the health checker).
    pub fn live(&self) -> Vec<Arc<Pool>> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::endpoint::Outcome;

    #[test]
    fn target_state_survives_a_changed_pool() {
        let reg = PoolRegistry::default();
        let a = (
            "127.0.0.1:1".parse().unwrap(),
            "http://127.0.0.1:1".to_string(),
            1,
        );
        let b = (
            "127.0.0.1:2".parse().unwrap(),
            "http://127.0.0.1:2".to_string(),
            1,
        );
        let first = reg
            .get_or_build("r", &PoolSpec::simple(vec![a.clone()], "round-robin"))
            .unwrap();
        let _guard = first.endpoints().next().unwrap().state.begin();
        let second = reg
            .get_or_build("r", &PoolSpec::simple(vec![a, b], "least-conn"))
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        let kept = second.endpoints().next().unwrap();
        assert_eq!(kept.state.inflight(), 1);
        let h = http::HeaderMap::new();
        let c = second
            .select(&crate::upstream::pool::SelectRequest {
                client_ip: None,
                target: "/",
                headers: &h,
                tried: &[],
            })
            .unwrap();
        assert_eq!(
            c.endpoint.addr.port(),
            2,
            "least-conn sees the kept in-flight count"
        );
        second.record(&c.endpoint.state, c.place, Outcome::Success, None);
        assert_eq!(reg.live().len(), 2);
    }
}
