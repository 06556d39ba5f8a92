//! Per-request context: the snapshot loaded for this request and what the phases learn.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::snapshot::{RouteRef, Site, Snapshot};

/// Counts one unit while alive (in-flight requests of a site or of the process).
#[derive(Debug)]
pub struct InflightGuard(Arc<dyn CounterRef>);

/// Something that owns an in-flight counter.
pub trait CounterRef: Send + Sync + std::fmt::Debug {
    fn counter(&self) -> &AtomicUsize;
}

impl CounterRef for AtomicUsize {
    fn counter(&self) -> &AtomicUsize {
        self
    }
}

impl CounterRef for crate::snapshot::SiteState {
    fn counter(&self) -> &AtomicUsize {
        &self.inflight
    }
}

impl InflightGuard {
    /// Counts one more; returns the guard and the count including this one.
    pub fn enter(owner: Arc<dyn CounterRef>) -> (InflightGuard, usize) {
        let n = owner.counter().fetch_add(1, Ordering::AcqRel) + 1;
        (InflightGuard(owner), n)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.counter().fetch_sub(1, Ordering::AcqRel);
    }
}

/// State of one request across Pingora's phases.
pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    pub request_id: super::request_id::RequestId,
    pub site: Option<Arc<Site>>,
    /// Index into `site.rules` (then `site.prefixes`) of the chosen route.
    pub route: Option<RouteRef>,
    pub peer_ip: Option<IpAddr>,
    pub client_ip: Option<IpAddr>,
    pub trusted_peer: bool,
    pub host: Option<String>,
    /// Normalised path (without query) when it differs from the request's.
    pub upstream_path: Option<String>,
    pub upstream: Option<SocketAddr>,
    pub upstream_start: Option<Instant>,
    pub upstream_ms: Option<u64>,
    pub body_bytes: u64,
    /// Original request target for the access log.
    pub target: String,
    pub _process: InflightGuard,
    pub site_inflight: Option<InflightGuard>,
}

impl RequestCtx {
    /// The chosen route, if routing has run.
    pub fn route(&self) -> Option<&crate::compile::route::Route> {
        self.site.as_ref()?.route_at(self.route?)
    }
}
