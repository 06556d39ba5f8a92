//! `rateLimit`: requests per window per key, at site, route and consumer level.
//!
//! Each limit is a token bucket run as GCRA (`gcra.rs`): `limit + burst` requests at once, then
//! `limit` per `windowSecs`. The bucket of a key lives in this process's sharded memory
//! (`memory.rs`) or, with `store: redis` (feature `redis`), in Redis (`redis.rs`) so that several
//! instances share it; when Redis cannot answer in time the local memory decides. Limits run after
//! the access filters (a consumer is known then) and before admission: the consumer's limit,
//! then the route's, then the site's; the first that refuses answers 429, and an allowed response
//! reports the limit with the fewest requests remaining in `RateLimit-*` headers.
//!
//! State that must outlive reloads (buckets and counters) lives in the [`Registry`], keyed by
//! where the limit is written (site id, route id, consumer name) and its parameters.

pub mod config;
pub mod gcra;
pub mod key;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod registry;
pub mod stats;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderValue;
use pingora::proxy::Session;

pub use config::{validate, validate_redis, Compiler, Context, Level};
use gcra::{ceil_secs, Decision, Gcra};
use key::{Key, KeyBy};
use memory::{now_ns, MemoryStore};
pub use registry::Registry;
pub use stats::{report, Report};

use crate::compile::glob::Glob;
use crate::filter::Consumer;

/// The reason in the body of a 429.
pub const REFUSED: &str = "rate limit exceeded";
/// At most one "would refuse" line per dry-run limit per this many nanoseconds.
const DRY_RUN_LOG_EVERY_NS: u64 = 10_000_000_000;

/// Where a limit is written; its ids are the stable ones of sites, routes and consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A site's `rateLimit` (`HOST:PORT`).
    Site { site: Arc<str> },
    /// A route's `rateLimit` (the route id: `HOST:PORT|PREFIX` or `HOST:PORT|routes[ID]`).
    Route { site: Arc<str>, route: Arc<str> },
    /// A consumer's `rateLimit`.
    Consumer { site: Arc<str>, consumer: Arc<str> },
}

impl Scope {
    /// Identifies the limit within this process.
    pub fn id(&self) -> String {
        match self {
            Scope::Site { site } => site.to_string(),
            Scope::Route { route, .. } => route.to_string(),
            Scope::Consumer { site, consumer } => format!("{site}|consumer:{consumer}"),
        }
    }

    /// Identifies the limit across instances: as [`Scope::id`] with the site's port left out.
    pub fn shared_id(&self) -> String {
        let id = self.id();
        let site = match self {
            Scope::Site { site } | Scope::Route { site, .. } | Scope::Consumer { site, .. } => site,
        };
        let host = site.rsplit_once(':').map_or(&**site, |(host, _)| host);
        format!("{host}{}", id.get(site.len()..).unwrap_or_default())
    }
}

/// State of a limit that outlives reloads while the limit is unchanged.
#[derive(Debug, Default)]
pub struct LimiterState {
    /// The buckets of the in-memory store (the fallback of a Redis store).
    memory: MemoryStore,
    counters: stats::Counters,
    /// When the last dry-run line was logged (`now_ns`; 0: never).
    dry_logged: AtomicU64,
}

/// The Redis side of a limit.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct RedisStore {
    backend: Arc<redis::RedisBackend>,
    /// `conduit:rl:<digest of the limit>:`; the request's key follows.
    prefix: Vec<u8>,
    /// The limit in microseconds (the script's tick).
    gcra: Gcra,
    timeout: std::time::Duration,
}

/// One compiled `rateLimit`.
#[derive(Debug)]
pub struct Limiter {
    pub scope: Scope,
    pub limit: u64,
    pub window_secs: u64,
    pub burst: u64,
    pub key_by: KeyBy,
    pub dry_run: bool,
    /// `RateLimit-*` on allowed responses (`headers`).
    pub headers: bool,
    skip: Vec<Glob>,
    /// The limit in nanoseconds (the memory store's tick).
    gcra: Gcra,
    state: Arc<LimiterState>,
    #[cfg(feature = "redis")]
    redis: Option<RedisStore>,
}

impl Limiter {
    /// Decides one request for `key`: in Redis when the limit uses it and it answers in time,
    /// else in this process's memory.
    pub async fn decide(&self, key: Key<'_>) -> Decision {
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            let mut full = r.prefix.clone();
            full.extend_from_slice(&key.redis_part());
            if let Some(d) = r.backend.decide(&r.gcra, full, r.timeout).await {
                return d;
            }
            self.state.counters.fallback();
        }
        self.state.memory.decide(&self.gcra, key.hash(), now_ns())
    }

    /// Whether `path` is one of the limit's `skipPaths`.
    pub fn skips(&self, path: &str) -> bool {
        self.skip.iter().any(|g| g.matches(path))
    }

    /// `memory`, or the Redis URL (without its password).
    pub fn store_name(&self) -> String {
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return r.backend.url().to_string();
        }
        "memory".into()
    }

    /// The Redis server of this limit, for the read-out.
    pub(crate) fn redis_report(&self) -> Option<stats::RedisReport> {
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            return Some(stats::RedisReport {
                url: r.backend.url().to_string(),
                healthy: r.backend.healthy(),
                fallbacks: r.backend.fallbacks(),
            });
        }
        None
    }

    /// Logs a request a dry-run limit would have refused (at most one line per 10 s).
    fn log_dry_run(&self, client: Option<IpAddr>) {
        let count = self.state.counters.dry_run_rejected();
        let now = now_ns().max(1);
        let last = self.state.dry_logged.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= DRY_RUN_LOG_EVERY_NS)
            && self
                .state
                .dry_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                limit = %self.scope.id(),
                client = %client.map_or_else(|| "unknown".into(), |ip| ip.to_string()),
                would_refuse_total = count,
                "rateLimit dryRun: this request would have been refused with 429"
            );
        }
    }
}

/// The limits of a site: its own, and its consumers' by consumer name.
#[derive(Debug, Default)]
pub struct SiteRateLimits {
    pub site: Option<Arc<Limiter>>,
    pub consumers: HashMap<Arc<str>, Arc<Limiter>>,
}

impl SiteRateLimits {
    /// Whether any limit may apply to a request on `route`.
    pub fn apply_with(&self, route: Option<&Arc<Limiter>>) -> bool {
        self.site.is_some() || route.is_some() || !self.consumers.is_empty()
    }

    /// The request headers the site's and `route`'s limits count by, copied as the client sent
    /// them (the access checks may remove one, an API key, before the limits run); `None` when
    /// no limit counts by a header. Consumer limits always count by the consumer (validation).
    pub fn keyed_headers(
        &self,
        route: Option<&Arc<Limiter>>,
        headers: &http::HeaderMap,
    ) -> Option<http::HeaderMap> {
        let mut keyed: Option<http::HeaderMap> = None;
        for limiter in [self.site.as_ref(), route].into_iter().flatten() {
            if let KeyBy::Header(name) = &limiter.key_by {
                let copy = keyed.get_or_insert_with(http::HeaderMap::new);
                if let Some(value) = headers.get(name) {
                    copy.insert(name.clone(), value.clone());
                }
            }
        }
        keyed
    }
}

/// The `RateLimit-*` values of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// `RateLimit-Limit`: the bucket size (`limit + burst`).
    pub limit: u64,
    /// `RateLimit-Remaining`.
    pub remaining: u64,
    /// `RateLimit-Reset`: seconds until the bucket is full again.
    pub reset: u64,
    /// `Retry-After` of a 429: seconds until a request is allowed again (at least 1).
    pub retry_after: u64,
}

impl Shown {
    fn of(limiter: &Limiter, d: &Decision) -> Shown {
        Shown {
            limit: limiter.gcra.capacity(),
            remaining: d.remaining,
            reset: ceil_secs(d.reset),
            retry_after: ceil_secs(d.retry_after).max(1),
        }
    }
}

/// Where a request stands with the rate limits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum RequestState {
    /// No limit applies (or none shows headers).
    #[default]
    Off,
    /// Limits apply (not yet run).
    Pending,
    /// Allowed: the headers for the response.
    Decided(Shown),
}

/// Runs the limits that apply to a request (its consumer's, its route's, its site's, in this
/// order). `Err` carries the headers of the limit that refused it. A limit that allows the
/// request counts it even when a later one refuses.
pub async fn enforce(
    site: &SiteRateLimits,
    route: Option<&Limiter>,
    path: &str,
    headers: &http::HeaderMap,
    client: Option<IpAddr>,
    consumer: Option<&Consumer>,
    state: &mut RequestState,
) -> Result<(), Shown> {
    let RequestState::Pending = std::mem::take(state) else {
        return Ok(());
    };
    let consumer = consumer.map(|c| &*c.name);
    let own = consumer.and_then(|name| site.consumers.get(name));
    let mut shown: Option<Shown> = None;
    for limiter in [own.map(|l| &**l), route, site.site.as_deref()]
        .into_iter()
        .flatten()
    {
        if limiter.skips(path) {
            continue;
        }
        let decision = limiter
            .decide(limiter.key_by.key(headers, client, consumer))
            .await;
        if decision.allowed {
            limiter.state.counters.passed();
        } else if limiter.dry_run {
            limiter.log_dry_run(client);
        } else {
            limiter.state.counters.rejected();
            return Err(Shown::of(limiter, &decision));
        }
        if !limiter.dry_run && limiter.headers {
            let this = Shown::of(limiter, &decision);
            if shown.is_none_or(|s| this.remaining < s.remaining) {
                shown = Some(this);
            }
        }
    }
    if let Some(s) = shown {
        *state = RequestState::Decided(s);
    }
    Ok(())
}

/// Answers 429 with `Retry-After` and the `RateLimit-*` headers (a JSON error body).
pub async fn refuse(session: &mut Session, shown: &Shown, request_id: &str) {
    let (retry, limit, remaining, reset) = (
        shown.retry_after.to_string(),
        shown.limit.to_string(),
        shown.remaining.to_string(),
        shown.reset.to_string(),
    );
    crate::proxy::failure::respond(
        session,
        429,
        REFUSED,
        request_id,
        false,
        &[
            ("Retry-After", &retry),
            ("RateLimit-Limit", &limit),
            ("RateLimit-Remaining", &remaining),
            ("RateLimit-Reset", &reset),
        ],
    )
    .await;
}

/// The `RateLimit-*` header names, parsed once.
const NAMES: [http::HeaderName; 3] = [
    http::HeaderName::from_static("ratelimit-limit"),
    http::HeaderName::from_static("ratelimit-remaining"),
    http::HeaderName::from_static("ratelimit-reset"),
];

/// How many headers [`add_headers`] will add for `state`.
pub fn header_count(state: &RequestState) -> usize {
    match state {
        RequestState::Decided(_) => NAMES.len(),
        _ => 0,
    }
}

/// Adds the `RateLimit-*` headers of an allowed request to its response (replacing any the
/// upstream sent).
pub fn add_headers(headers: &mut http::HeaderMap, state: &RequestState) {
    if let RequestState::Decided(s) = state {
        for (name, value) in NAMES.into_iter().zip([s.limit, s.remaining, s.reset]) {
            let _ = headers.try_insert(name, HeaderValue::from(value));
        }
    }
}

/// The error for a Redis store in a binary built without the `redis` feature.
pub(crate) fn needs_redis_feature() -> String {
    super::feature_missing("redis")
}

/// The first 16 bytes of the SHA-256 of `data`, in hex.
pub(crate) fn hex_digest(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest
        .as_ref()
        .iter()
        .take(16)
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ids_leave_the_port_out() {
        let route = Scope::Route {
            site: "api.example.com:8443".into(),
            route: "api.example.com:8443|/v1".into(),
        };
        assert_eq!(route.id(), "api.example.com:8443|/v1");
        assert_eq!(route.shared_id(), "api.example.com|/v1");
        let site = Scope::Site {
            site: "[::1]:80".into(),
        };
        assert_eq!(site.shared_id(), "[::1]");
        let consumer = Scope::Consumer {
            site: "*:8080".into(),
            consumer: "acme".into(),
        };
        assert_eq!(consumer.id(), "*:8080|consumer:acme");
        assert_eq!(consumer.shared_id(), "*|consumer:acme");
        assert_eq!(hex_digest(b"x").len(), 32);
    }

    fn limiter(yaml: &str, route: &str) -> Arc<Limiter> {
        let reg = Box::leak(Box::new(Registry::default()));
        let raw: crate::config::raw::RateLimit = serde_yaml_ng::from_str(yaml).unwrap();
        Compiler::new(reg, None, false, "*:1")
            .route(&raw, route, "p")
            .unwrap()
    }

    fn run(
        site: &SiteRateLimits,
        route: Option<&Limiter>,
        path: &str,
    ) -> Result<RequestState, Shown> {
        let mut state = RequestState::Pending;
        let headers = http::HeaderMap::new();
        let client = Some("10.0.0.1".parse().unwrap());
        futures::executor::block_on(enforce(
            site, route, path, &headers, client, None, &mut state,
        ))?;
        Ok(state)
    }

    #[test]
    fn the_tightest_limit_shows_and_the_first_refusal_answers() {
        let site = SiteRateLimits {
            site: Some(limiter("{limit: 10}", "*:1|site")),
            consumers: HashMap::new(),
        };
        let route = limiter("{limit: 2, skipPaths: ['/free/**']}", "*:1|/r");
        let shown = |r: Result<RequestState, Shown>| match r {
            Ok(RequestState::Decided(s)) => s,
            other => panic!("{other:?}"),
        };
        let s = shown(run(&site, Some(&route), "/r"));
        assert_eq!((s.limit, s.remaining), (2, 1));
        let s = shown(run(&site, Some(&route), "/r"));
        assert_eq!((s.limit, s.remaining), (2, 0));
        let refused = run(&site, Some(&route), "/r").unwrap_err();
        assert_eq!((refused.limit, refused.remaining), (2, 0));
        assert_eq!(refused.retry_after, 30);
        // A skipped path is limited by the site only.
        let s = shown(run(&site, Some(&route), "/free/x"));
        assert_eq!((s.limit, s.remaining), (10, 7));
        // Not pending: nothing to do.
        let mut off = RequestState::Off;
        let headers = http::HeaderMap::new();
        let fut = enforce(&site, None, "/", &headers, None, None, &mut off);
        assert!(futures::executor::block_on(fut).is_ok());
        assert_eq!(off, RequestState::Off);
    }

    #[test]
    fn a_dry_run_limit_never_refuses_and_shows_nothing() {
        let site = SiteRateLimits {
            site: Some(limiter("{limit: 1, dryRun: true}", "*:1|dry")),
            consumers: HashMap::new(),
        };
        for _ in 0..3 {
            assert_eq!(run(&site, None, "/").unwrap(), RequestState::Off);
        }
        let l = site.site.as_ref().unwrap();
        assert_eq!(l.state.counters.dry_run_rejected(), 3);
    }
}
