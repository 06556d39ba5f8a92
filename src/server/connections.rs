//! Open client connections per address, for `limits.maxConnectionsPerIp`.
//!
//! Counted only on ports where some site sets the limit; the count is checked per request (the
//! site is known only once the Host header is read), so a connection beyond the limit gets 429
//! and is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};

const SHARDS: usize = 16;

/// Connections per client address, sharded to keep lock contention low.
pub struct ConnectionCounts {
    shards: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
}

/// The process's connection counts.
pub static CONNECTIONS: LazyLock<ConnectionCounts> = LazyLock::new(|| ConnectionCounts {
    shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
});

fn shard(ip: &IpAddr) -> usize {
    let h = match ip {
        IpAddr::V4(a) => u64::from(u32::from(*a)),
        IpAddr::V6(a) => (u128::from(*a) as u64) ^ ((u128::from(*a) >> 64) as u64),
    };
    (crate::upstream::endpoint::mix(h) % SHARDS as u64) as usize
}

impl ConnectionCounts {
    /// Counts one open connection from `ip` until the guard drops.
    pub fn open(&'static self, ip: IpAddr) -> ConnectionGuard {
        let mut map = self.shards[shard(&ip)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(ip).or_insert(0) += 1;
        ConnectionGuard { counts: self, ip }
    }

    /// Open connections from `ip` (0 when not counted).
    pub fn count(&self, ip: IpAddr) -> usize {
        self.shards[shard(&ip)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

/// One counted connection.
pub struct ConnectionGuard {
    counts: &'static ConnectionCounts,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut map = self.counts.shards[shard(&self.ip)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_guards() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = CONNECTIONS.open(ip);
        let b = CONNECTIONS.open(ip);
        assert_eq!(CONNECTIONS.count(ip), 2);
        drop(a);
        assert_eq!(CONNECTIONS.count(ip), 1);
        drop(b);
        assert_eq!(CONNECTIONS.count(ip), 0);
    }
}
