//! Per-request context: the snapshot loaded for this request and what the phases learn.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::snapshot::{RouteRef, Site, Snapshot};
use crate::upstream::endpoint::AttemptGuard;
use crate::upstream::pool::Place;

/// Counts one unit while alive (in-flight requests of a site or of the process).
#[derive(Debug)]
pub struct InflightGuard(Option<Arc<dyn CounterRef>>);

/// Something that owns an in-flight counter.
pub trait CounterRef: Send + Sync + std::fmt::Debug {
    fn counter(&self) -> &AtomicUsize;
    /// Called after the count went down.
    fn released(&self) {}
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

    fn released(&self) {
        if self.queued.load(Ordering::Relaxed) > 0 {
            self.released.notify_one();
        }
    }
}

impl InflightGuard {
    /// Counts one more; returns the guard and the count including this one.
    pub fn enter(owner: Arc<dyn CounterRef>) -> (InflightGuard, usize) {
        let n = owner.counter().fetch_add(1, Ordering::AcqRel) + 1;
        (InflightGuard(Some(owner)), n)
    }
}

impl InflightGuard {
    /// Takes back a count that was never used, without waking waiters (nothing was freed).
    pub fn abandon(mut self) {
        if let Some(owner) = self.0.take() {
            owner.counter().fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(owner) = self.0.take() {
            owner.counter().fetch_sub(1, Ordering::AcqRel);
            owner.released();
        }
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
    /// Attempts made so far (retries included).
    pub attempts: u32,
    /// Targets tried so far (ids); retries go elsewhere when they can.
    pub tried: Tried,
    /// The attempt in progress.
    pub attempt: Option<Attempt>,
    /// Body bytes seen by this attempt (a retry replays the buffered start of the body).
    pub attempt_body: u64,
    /// The error of this attempt is a 5xx answer we decided to retry.
    pub retry_5xx: bool,
    /// No target could take the request because breakers are open or targets are full.
    pub circuit_open: bool,
    /// `Set-Cookie` value pinning the client to the chosen target.
    pub set_cookie: Option<String>,
    /// The normalised path, kept only when the site has access filters.
    pub access_path: Option<String>,
    /// Who the access filters established the request comes from.
    pub identity: crate::filter::Identity,
    /// The rate limits of this request: pending (with the path) until checked, then the
    /// `RateLimit-*` values for the response.
    pub rate_limit: crate::filter::rate_limit::RequestState,
    /// The request side of this request's `mirror` copy.
    pub mirror: super::mirror::MirrorFeed,
}

/// One attempt: the target, where it sits, and whether its outcome was recorded yet.
#[derive(Debug)]
pub struct Attempt {
    pub guard: AttemptGuard,
    pub place: Place,
    pub start: Instant,
    pub recorded: bool,
}

/// Ids of the targets a request tried, without allocating.
#[derive(Debug, Default)]
pub struct Tried {
    ids: [u64; 16],
    len: usize,
}

impl Tried {
    /// Adds a target id (ignored beyond capacity).
    pub fn push(&mut self, id: u64) {
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = id;
            self.len += 1;
        }
    }

    /// The ids so far.
    pub fn as_slice(&self) -> &[u64] {
        self.ids.get(..self.len).unwrap_or_default()
    }
}

impl RequestCtx {
    /// The chosen route, if routing has run.
    pub fn route(&self) -> Option<&crate::compile::route::Route> {
        self.site.as_ref()?.route_at(self.route?)
    }
}
