//! Long-lived registries that snapshots point into: pools, per-site state and access-log sinks
//! survive reloads here, keyed by stable ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::observe::access_log::LogSink;
use crate::snapshot::SiteState;
use crate::upstream::PoolRegistry;

/// Long-lived state that compiled snapshots point into; it survives reloads.
#[derive(Default)]
pub struct Registries {
    pub pools: PoolRegistry,
    /// Rate-limit buckets, counters and Redis connections.
    pub rate_limits: crate::filter::rate_limit::Registry,
    sites: Mutex<HashMap<String, Weak<SiteState>>>,
    sinks: Mutex<HashMap<String, Arc<LogSink>>>,
}

impl Registries {
    pub(crate) fn site_state(&self, id: &str) -> Arc<SiteState> {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = sites.get(id).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(SiteState::default());
        sites.insert(id.to_string(), Arc::downgrade(&s));
        s
    }

    pub(crate) fn sink(&self, target: &str) -> std::io::Result<Arc<LogSink>> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        // A sink no snapshot holds any more is dropped: its writer flushes and ends.
        sinks.retain(|_, s| Arc::strong_count(s) > 1);
        if let Some(s) = sinks.get(target) {
            return Ok(s.clone());
        }
        let sink = Arc::new(if target == "-" {
            LogSink::stdout()?
        } else {
            LogSink::file(target)?
        });
        sinks.insert(target.to_string(), sink.clone());
        Ok(sink)
    }

    /// Flushes every access-log sink (at shutdown).
    pub fn flush_logs(&self, timeout: Duration) {
        let sinks: Vec<_> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in sinks {
            s.flush(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_are_shared_while_held_and_dropped_after() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log").display().to_string();
        let b = dir.path().join("b.log").display().to_string();
        let reg = Registries::default();
        let first = reg.sink(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &reg.sink(&a).unwrap()));
        drop(first);
        let _other = reg.sink(&b).unwrap();
        let sinks = reg.sinks.lock().unwrap();
        assert!(!sinks.contains_key(&a));
        assert!(sinks.contains_key(&b));
    }
}
