//! The pool registry: pools keyed by route id and spec, shared by every snapshot that uses them,
//! so that a reload which leaves a route unchanged keeps its pool (and its state).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::pool::{Pool, PoolError, PoolSpec};

/// Long-lived pools, looked up at compile time (never on the request path).
#[derive(Default)]
pub struct PoolRegistry {
    pools: Mutex<HashMap<String, Weak<Pool>>>,
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
        let pool = Arc::new(Pool::build(spec)?);
        pools.insert(key, Arc::downgrade(&pool));
        Ok(pool)
    }
}
