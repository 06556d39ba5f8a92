//! A pool: the targets of one route, their prebuilt peers and the load balancer that picks one.
//!
//! Peers are built once per target so that every request to a target carries the same
//! [`HttpPeer`] fields, which is what lets Pingora reuse upstream connections.

use std::net::SocketAddr;
use std::time::Duration;

use pingora::lb::selection::RoundRobin;
use pingora::lb::{discovery, Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::upstreams::peer::HttpPeer;

/// Everything that defines a pool; two equal specs share one pool across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Resolved address, URL as written, weight.
    pub targets: Vec<(SocketAddr, String, u32)>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Upstream keep-alive on (`pool.maxIdle` > 0).
    pub keepalive: bool,
}

impl PoolSpec {
    /// The registry key of this spec under a route id.
    pub fn key(&self, route_id: &str) -> String {
        format!("{route_id}|{self:?}")
    }
}

/// One prebuilt upstream.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub url: String,
    pub peer: HttpPeer,
}

/// The targets of one route and their selection.
pub struct Pool {
    upstreams: Vec<Upstream>,
    lb: LoadBalancer<RoundRobin>,
    keepalive: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no targets")]
    Empty,
    #[error("load balancer: {0}")]
    Balancer(String),
}

impl Pool {
    /// Builds the pool of `spec`: one peer per target, weighted round robin over them.
    pub fn build(spec: &PoolSpec) -> Result<Pool, PoolError> {
        if spec.targets.is_empty() {
            return Err(PoolError::Empty);
        }
        let mut backends = std::collections::BTreeSet::new();
        let mut upstreams = Vec::with_capacity(spec.targets.len());
        for (addr, url, weight) in &spec.targets {
            let mut backend = Backend::new_with_weight(&addr.to_string(), *weight as usize)
                .map_err(|e| PoolError::Balancer(e.to_string()))?;
            backend.weight = *weight as usize;
            backends.insert(backend);
            let mut peer = HttpPeer::new(*addr, false, String::new());
            peer.options.connection_timeout = Some(spec.connect_timeout);
            peer.options.read_timeout = Some(spec.read_timeout);
            peer.options.idle_timeout = Some(if spec.keepalive {
                spec.idle_timeout
            } else {
                Duration::ZERO
            });
            upstreams.push(Upstream {
                addr: *addr,
                url: url.clone(),
                peer,
            });
        }
        let lb = LoadBalancer::<RoundRobin>::from_backends(Backends::new(discovery::Static::new(
            backends,
        )));
        futures::FutureExt::now_or_never(lb.update())
            .ok_or_else(|| PoolError::Balancer("static discovery blocked".into()))?
            .map_err(|e| PoolError::Balancer(e.to_string()))?;
        Ok(Pool {
            upstreams,
            lb,
            keepalive: spec.keepalive,
        })
    }

    /// Picks the upstream for one request. Runs in `upstream_peer`.
    pub fn select(&self, key: &[u8]) -> Option<&Upstream> {
        let backend = self.lb.select(key, 256)?;
        let PingoraAddr::Inet(addr) = backend.addr else {
            return None;
        };
        self.upstreams.iter().find(|u| u.addr == addr)
    }

    /// Whether upstream connections are kept alive (`pool.maxIdle` > 0). When not, requests
    /// carry `Connection: close`, so each upstream connection serves one request.
    pub fn keepalive(&self) -> bool {
        self.keepalive
    }

    /// The pool's upstreams.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(targets: &[(&str, u32)]) -> PoolSpec {
        PoolSpec {
            targets: targets
                .iter()
                .map(|(a, w)| (a.parse().unwrap(), format!("http://{a}"), *w))
                .collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            keepalive: true,
        }
    }

    #[test]
    fn weighted_round_robin_shares() {
        let pool = Pool::build(&spec(&[("127.0.0.1:1", 3), ("127.0.0.1:2", 1)])).unwrap();
        let mut counts = [0usize; 2];
        for _ in 0..400 {
            let u = pool.select(b"").unwrap();
            counts[usize::from(u.addr.port() == 2)] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }
}
