//! The compiled, immutable configuration that serves requests, and the handle that swaps it.
//!
//! A request loads the current snapshot once (in `new_ctx`) and uses it to the end, so a reload
//! never changes the rules under a request in flight.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::compile::route::{RequestView, Route};
use crate::observe::access_log::AccessLog;

/// One generation of the running configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every successful reload (1 at start).
    pub generation: u64,
    /// Sites by listening port.
    pub ports: BTreeMap<u16, PortSites>,
    /// Settings fixed for the life of the process.
    pub process: ProcessSettings,
    /// Reload when the config file changes (some site set `hotReload`).
    pub watch_config: bool,
    /// Certificate, key and CA files: a change to one reloads the config.
    pub cert_files: Vec<std::path::PathBuf>,
}

/// Settings that only take effect at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSettings {
    pub workers: usize,
    pub work_stealing: bool,
    pub shutdown_timeout: Duration,
    pub bind: IpAddr,
    /// Total idle upstream connections kept.
    pub keepalive_pool_size: usize,
    /// HTTP/2 streams per client connection (`http2.maxConcurrentStreams`).
    pub h2_max_streams: u32,
    /// HTTP/2 initial stream window (`http2.initialWindowSize`); `None`: the protocol default.
    pub h2_window: Option<u32>,
}

/// The sites that share one port, by host.
#[derive(Debug, Default)]
pub struct PortSites {
    pub exact: HashMap<String, Arc<Site>>,
    /// `(".example.com", site)`, longest suffix first.
    pub suffix: Vec<(String, Arc<Site>)>,
    pub any: Option<Arc<Site>>,
    /// Deadline for a client to send a request head on this port (smallest of its sites).
    pub header_timeout: Duration,
    /// Idle keep-alive timeout of client connections on this port (smallest of its sites).
    pub idle_timeout: Duration,
    /// Some site on this port limits connections per client address: count them.
    pub track_connections: bool,
    /// TLS termination on this port (every site on it uses TLS).
    pub tls: Option<Arc<crate::tls::PortTls>>,
    /// This port only redirects to `https://` on the given port (`tls.httpRedirectPort`).
    pub redirect_https: Option<u16>,
    /// Prior-knowledge HTTP/2 on this plaintext port (`http2.h2c`).
    pub h2c: bool,
}

impl PortSites {
    /// The site for a normalised host name: exact, then longest wildcard, then `*`.
    pub fn find(&self, host: &str) -> Option<&Arc<Site>> {
        if let Some(site) = self.exact.get(host) {
            return Some(site);
        }
        self.suffix
            .iter()
            .find(|(suffix, _)| host.ends_with(suffix.as_str()))
            .map(|(_, site)| site)
            .or(self.any.as_ref())
    }
}

/// A compiled site.
#[derive(Debug)]
pub struct Site {
    /// `host:port`, stable across reloads.
    pub id: Arc<str>,
    /// Path of the built-in health endpoint, when enabled.
    pub health_path: Option<String>,
    /// `routes[]`, in order, checked first.
    pub rules: Vec<Route>,
    /// `proxy` prefixes, longest first.
    pub prefixes: Vec<Route>,
    pub access_log: Option<AccessLog>,
    pub limits: SiteLimits,
    /// Peers whose forwarding headers are trusted.
    pub trusted_proxies: Vec<IpNet>,
    pub merge_slashes: bool,
    /// The site's access filters (routes hold their own, which default to these).
    pub access: Arc<crate::filter::Access>,
    /// `securityHeaders`: added to responses that lack them.
    pub security_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `requestTransform`: header edits on the forwarded request.
    pub request_transform: Option<crate::filter::transform::Transform>,
    /// `responseTransform`: header edits on the response.
    pub response_transform: Option<crate::filter::transform::Transform>,
    /// State that outlives reloads.
    pub state: Arc<SiteState>,
    /// `rateLimit` of the site and of its consumers (routes hold their own).
    pub rate_limits: crate::filter::rate_limit::SiteRateLimits,
}

impl Site {
    /// The route for a request: the first matching rule, else the longest matching prefix.
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Route> {
        self.find_route(req).and_then(|r| self.route_at(r))
    }

    /// Where the route for a request sits (kept in the request context instead of a reference).
    pub fn find_route(&self, req: &RequestView<'_>) -> Option<RouteRef> {
        if let Some(i) = self.rules.iter().position(|r| r.matches(req)) {
            return Some(RouteRef::Rule(i));
        }
        self.prefixes
            .iter()
            .position(|r| r.matches(req))
            .map(RouteRef::Prefix)
    }

    /// The route at a position found by [`Site::find_route`].
    pub fn route_at(&self, at: RouteRef) -> Option<&Route> {
        match at {
            RouteRef::Rule(i) => self.rules.get(i),
            RouteRef::Prefix(i) => self.prefixes.get(i),
        }
    }
}

/// Which list of a site a route came from, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRef {
    Rule(usize),
    Prefix(usize),
}

/// Per-site request limits.
#[derive(Debug, Clone)]
pub struct SiteLimits {
    pub max_body_bytes: Option<u64>,
    pub max_header_bytes: usize,
    pub max_request_headers: usize,
    pub max_inflight: Option<usize>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Largest body a retry may replay.
    pub max_body_buffer: u64,
    /// Most open connections per client address (429).
    pub max_conns_per_ip: Option<usize>,
    /// Share of `max_inflight` above which low-priority routes are shed; `None`: no shedding
    /// (neither `priorityThreshold` nor any route `priority` is set).
    pub priority_threshold: Option<f64>,
    /// Waiting room when `max_inflight` is reached: (size, longest wait).
    pub queue: Option<(usize, Duration)>,
}

/// Mutable per-site state kept across reloads.
#[derive(Debug, Default)]
pub struct SiteState {
    pub inflight: AtomicUsize,
    /// Requests waiting in `limits.queue`.
    pub queued: AtomicUsize,
    /// Woken when an in-flight request of the site ends.
    pub released: tokio::sync::Notify,
}

/// Holds the live snapshot; `load` on every request, `store` on reload.
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
}

impl SnapshotHandle {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The current snapshot; one per request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` current. In-flight requests keep the one they loaded.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
