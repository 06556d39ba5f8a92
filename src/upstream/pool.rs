//! A pool: the targets of one route (primary groups, backup, canary), the strategy that picks one,
//! and the route's resilience policies (health, ejection, breaker, connection cap, retries,
//! sticky sessions).
//!
//! Peers are built once per target (TLS, SNI, CA and ALPN included: see
//! [`build_peer`](super::target::build_peer)) so that every request to a target carries the same
//! peer fields, which is what lets Pingora reuse upstream connections. Per-target state comes
//! from the registry, keyed by route id and URL, so it outlives the pool across reloads.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::budget::RetryBudget;
use super::endpoint::{
    now_ms, stable_hash, Availability, BreakerPolicy, Endpoint, EndpointState, Outcome,
    OutlierPolicy,
};
use super::health::StatusSet;
use super::sticky::{self, Sticky, StickySpec};
use super::strategy::{HashKey, PickInput, Strategy};
use super::target::{build_peer, is_https, TlsSpec};

/// One target as configured: resolved address, URL as written, weight.
pub type TargetSpec = (SocketAddr, String, u32);

/// A named list of targets with its strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TierSpec {
    pub name: String,
    pub strategy: String,
    pub targets: Vec<TargetSpec>,
}

/// How a group is chosen among several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GroupStrategy {
    /// The first group with a usable target.
    #[default]
    Failover,
    /// Groups in turn.
    RoundRobin,
}

/// Active health checks of a route's targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub statuses: StatusSet,
}

/// Retry policy of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetrySpec {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub on_connect_error: bool,
    pub on_5xx: bool,
    pub on_timeout: bool,
    pub backoff: Duration,
    pub jitter: bool,
    pub budget_percent: u32,
}

/// Canary split.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanarySpec {
    pub targets: Vec<TargetSpec>,
    pub weight: u32,
    /// Header or cookie and the values that put a request in the cohort.
    pub cohort: Option<(CohortKey, Vec<String>)>,
    pub rollback_threshold_percent: u32,
    pub min_requests: u32,
}

/// Where the cohort marker is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CohortKey {
    Header(http::HeaderName),
    Cookie(String),
}

/// Everything that defines a pool; two equal specs share one pool across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Primary targets: one tier, or one per group.
    pub tiers: Vec<TierSpec>,
    pub group_strategy: GroupStrategy,
    pub backup: Option<TierSpec>,
    pub canary: Option<CanarySpec>,
    pub hash_key: Option<HashKey>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Upstream keep-alive on (`pool.maxIdle` > 0).
    pub keepalive: bool,
    pub health: Option<HealthSpec>,
    pub slow_start: Option<Duration>,
    pub max_conns: Option<usize>,
    pub outlier: Option<OutlierPolicy>,
    pub breaker: Option<BreakerPolicy>,
    pub retry: Option<RetrySpec>,
    pub sticky: Option<StickySpec>,
    /// How `https://` targets are reached (`upstreamTls`); ignored by `http://` targets.
    pub tls: TlsSpec,
    /// HTTP/2 to the targets (`http2`): ALPN `h2` over TLS, prior-knowledge h2c otherwise.
    pub http2: bool,
}

impl PoolSpec {
    /// A pool of plain targets with round robin and default policies (tests, simple routes).
    pub fn simple(targets: Vec<TargetSpec>, strategy: &str) -> PoolSpec {
        PoolSpec {
            tiers: vec![TierSpec {
                name: String::new(),
                strategy: strategy.to_string(),
                targets,
            }],
            group_strategy: GroupStrategy::Failover,
            backup: None,
            canary: None,
            hash_key: None,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            keepalive: true,
            health: None,
            slow_start: None,
            max_conns: None,
            outlier: None,
            breaker: None,
            retry: None,
            sticky: None,
            tls: TlsSpec::default(),
            http2: false,
        }
    }

    /// The registry key of this spec under a route id.
    pub fn key(&self, route_id: &str) -> String {
        format!("{route_id}|{self:?}")
    }

    /// Every target URL of the spec (primary, backup, canary).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.tiers
            .iter()
            .chain(self.backup.iter())
            .flat_map(|t| t.targets.iter())
            .chain(self.canary.iter().flat_map(|c| c.targets.iter()))
            .map(|(_, url, _)| url.as_str())
    }
}

/// A list of targets and the strategy picking among them.
#[derive(Debug)]
pub struct Tier {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    strategy: Strategy,
}

/// Canary state: the split and the error counts that can roll it back.
#[derive(Debug)]
struct Canary {
    tier: Tier,
    spec: CanarySpec,
    rolled_back: AtomicBool,
    window: Mutex<CanaryWindow>,
}

#[derive(Debug, Default)]
struct CanaryWindow {
    start: u64,
    /// [stable, canary] × [requests, errors].
    counts: [[u32; 2]; 2],
}

const CANARY_WINDOW_MS: u64 = 60_000;
/// The latency a failed attempt counts as for `least-response-time`.
const FAILURE_LATENCY: Duration = Duration::from_secs(1);

/// Why no target could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTarget {
    /// Every target is down (health checks or ejection).
    AllDown,
    /// Every usable target has its breaker open or is at its connection cap.
    CircuitOpen,
    /// The sticky target is down and `strict` is set.
    StickyDown,
}

/// Where a chosen target sits in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Primary(usize),
    Backup,
    Canary,
}

/// A chosen target.
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'a> {
    pub endpoint: &'a Endpoint,
    pub place: Place,
    /// Chosen by the once-a-second probe while every target is down.
    pub fail_open: bool,
}

/// What selection needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct SelectRequest<'a> {
    pub client_ip: Option<IpAddr>,
    /// Path and query as received.
    pub target: &'a str,
    pub headers: &'a http::HeaderMap,
    /// Ids of targets already tried by this request (retries go elsewhere when possible).
    pub tried: &'a [u64],
}

/// The targets of one route and their selection.
pub struct Pool {
    tiers: Vec<Tier>,
    group_strategy: GroupStrategy,
    group_next: AtomicUsize,
    backup: Option<Tier>,
    canary: Option<Canary>,
    sticky: Option<Sticky>,
    states: Vec<Arc<EndpointState>>,
    spec: PoolSpec,
    budget: Option<RetryBudget>,
    /// When the last fail-open probe went out (ms).
    last_probe: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("tiers", &self.tiers).finish()
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no targets")]
    Empty,
    /// A target URL that cannot become a peer.
    #[error("{0}")]
    Target(String),
}

/// The per-target state for a URL, from the registry (or fresh in tests).
pub type StateSource<'a> = &'a dyn Fn(&str) -> Arc<EndpointState>;

impl Pool {
    /// Builds the pool of `spec`, taking each target's state from `state` (keyed by URL).
    pub fn build(spec: &PoolSpec, route_id: &str, state: StateSource) -> Result<Pool, PoolError> {
        if spec.tiers.iter().all(|t| t.targets.is_empty()) {
            return Err(PoolError::Empty);
        }
        let mut states = Vec::new();
        let mut unverified = Vec::new();
        let mut tier = |t: &TierSpec| -> Result<Tier, PoolError> {
            let endpoints = t
                .targets
                .iter()
                .map(|(addr, url, weight)| {
                    let mut peer =
                        build_peer(*addr, url, &spec.tls, spec.http2).map_err(PoolError::Target)?;
                    if is_https(url) && !spec.tls.verify {
                        unverified.push(url.clone());
                    }
                    peer.options.connection_timeout = Some(spec.connect_timeout);
                    peer.options.read_timeout = Some(spec.read_timeout);
                    peer.options.idle_timeout = Some(if spec.keepalive {
                        spec.idle_timeout
                    } else {
                        Duration::ZERO
                    });
                    let st = state(url);
                    states.push(st.clone());
                    Ok(Endpoint {
                        addr: *addr,
                        id: stable_hash(&[url.as_bytes()]),
                        url: Arc::from(url.as_str()),
                        weight: (*weight).max(1),
                        peer,
                        state: st,
                    })
                })
                .collect::<Result<Vec<Endpoint>, PoolError>>()?;
            let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
            Ok(Tier {
                name: t.name.clone(),
                strategy: Strategy::new(&t.strategy, &weights, spec.hash_key.clone()),
                endpoints,
            })
        };
        let tiers = spec
            .tiers
            .iter()
            .map(&mut tier)
            .collect::<Result<Vec<Tier>, PoolError>>()?;
        let backup = spec.backup.as_ref().map(&mut tier).transpose()?;
        let canary = spec
            .canary
            .as_ref()
            .map(|c| {
                let strategy = spec
                    .tiers
                    .first()
                    .map_or("round-robin", |t| t.strategy.as_str());
                Ok::<_, PoolError>(Canary {
                    tier: tier(&TierSpec {
                        name: "canary".into(),
                        strategy: strategy.to_string(),
                        targets: c.targets.clone(),
                    })?,
                    spec: c.clone(),
                    rolled_back: AtomicBool::new(false),
                    window: Mutex::default(),
                })
            })
            .transpose()?;
        for url in &unverified {
            tracing::warn!(
                route = route_id,
                target = %url,
                "upstreamTls.verify is false: the certificate of this https target is not verified"
            );
        }
        Ok(Pool {
            tiers,
            group_strategy: spec.group_strategy,
            group_next: AtomicUsize::new(0),
            backup,
            canary,
            sticky: spec.sticky.as_ref().map(|s| Sticky::new(s, route_id)),
            states,
            budget: spec
                .retry
                .as_ref()
                .map(|r| RetryBudget::new(r.budget_percent)),
            spec: spec.clone(),
            last_probe: AtomicU64::new(0),
        })
    }

    /// Whether upstream connections are kept alive (`pool.maxIdle` > 0). When not, requests
    /// carry `Connection: close`, so each upstream connection serves one request.
    pub fn keepalive(&self) -> bool {
        self.spec.keepalive
    }

    /// The spec this pool was built from.
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    /// Every target of the pool: primary tiers, then backup, then canary.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.tiers
            .iter()
            .chain(self.backup.iter())
            .chain(self.canary.iter().map(|c| &c.tier))
            .flat_map(|t| t.endpoints.iter())
    }

    /// The sticky policy, if any.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
    }

    /// The retry policy, if any.
    pub fn retry(&self) -> Option<&RetrySpec> {
        self.spec.retry.as_ref()
    }

    /// Counts a request against which the retry budget is measured (its first attempt).
    pub fn count_request(&self) {
        if let Some(b) = &self.budget {
            b.request();
        }
    }

    /// Takes one retry from the route's budget.
    pub fn try_retry(&self) -> bool {
        self.budget.as_ref().is_some_and(RetryBudget::try_retry)
    }

    /// Whether the canary has been rolled back.
    pub fn canary_rolled_back(&self) -> bool {
        self.canary
            .as_ref()
            .is_some_and(|c| c.rolled_back.load(Ordering::Relaxed))
    }

    fn hash(&self, key: &HashKey, req: &SelectRequest) -> u64 {
        let ip = || match req.client_ip {
            Some(IpAddr::V4(a)) => stable_hash(&[&a.octets()]),
            Some(IpAddr::V6(a)) => stable_hash(&[&a.octets()]),
            None => 0,
        };
        match key {
            HashKey::Ip => ip(),
            HashKey::Url => stable_hash(&[req.target.as_bytes()]),
            HashKey::Header(name) => req
                .headers
                .get(name)
                .map_or_else(ip, |v| stable_hash(&[v.as_bytes()])),
            HashKey::Cookie(name) => {
                sticky::cookie(req.headers, name).map_or_else(ip, |v| stable_hash(&[v.as_bytes()]))
            }
        }
    }

    /// Picks in one tier: usable targets not in `tried` (all targets when `ignore_tried`).
    fn pick_in<'a>(
        &self,
        tier: &'a Tier,
        req: &SelectRequest,
        now: u64,
        ignore_tried: bool,
    ) -> Option<&'a Endpoint> {
        let hash = tier.strategy.hash_key().map_or(0, |k| self.hash(k, req));
        let input = PickInput {
            hash,
            now,
            retry: !req.tried.is_empty(),
        };
        let mut refused = [usize::MAX; 4];
        for round in 0..refused.len() {
            let usable = |i: usize| -> Option<u64> {
                let e = &tier.endpoints[i];
                if refused[..round].contains(&i) || (!ignore_tried && req.tried.contains(&e.id)) {
                    return None;
                }
                if e.state.availability(now) == Availability::Down {
                    return None;
                }
                if self.spec.max_conns.is_some_and(|m| e.state.inflight() >= m) {
                    return None;
                }
                Some(u64::from(e.weight) * e.state.ramp(now, self.spec.slow_start))
            };
            let i = tier.strategy.pick(&tier.endpoints, input, &usable)?;
            let e = &tier.endpoints[i];
            if e.state.availability(now) != Availability::Trial || e.state.claim_trial(now) {
                return Some(e);
            }
            refused[round] = i;
        }
        None
    }

    /// Chooses the target of one attempt. Runs in `upstream_peer`.
    pub fn select(&self, req: &SelectRequest) -> Result<Chosen<'_>, NoTarget> {
        let now = now_ms();
        let chosen = |endpoint, place| Chosen {
            endpoint,
            place,
            fail_open: false,
        };
        // Canary: the cohort always, a share of the rest, unless rolled back.
        if let Some(c) = &self.canary {
            if !c.rolled_back.load(Ordering::Relaxed) && self.in_canary(c, req) {
                if let Some(e) = self.pick_in(&c.tier, req, now, false) {
                    return Ok(chosen(e, Place::Canary));
                }
            }
        }
        // Sticky: a valid cookie naming a usable target pins the request to it.
        if let Some(s) = &self.sticky {
            if let Some(id) = sticky::cookie(req.headers, &s.cookie).and_then(|v| s.verify(v)) {
                let pinned = self
                    .tiers
                    .iter()
                    .enumerate()
                    .map(|(g, t)| (Place::Primary(g), t))
                    .chain(self.backup.iter().map(|t| (Place::Backup, t)))
                    .find_map(|(place, t)| {
                        t.endpoints.iter().find(|e| e.id == id).map(|e| (place, e))
                    });
                if let Some((place, e)) = pinned {
                    let avail = e.state.availability(now);
                    let full = self.spec.max_conns.is_some_and(|m| e.state.inflight() >= m);
                    let ok = !full
                        && !req.tried.contains(&e.id)
                        && match avail {
                            Availability::Up => true,
                            Availability::Trial => e.state.claim_trial(now),
                            Availability::Down => false,
                        };
                    if ok {
                        return Ok(chosen(e, place));
                    }
                    if s.strict && req.tried.is_empty() {
                        return Err(NoTarget::StickyDown);
                    }
                }
            }
        }
        for ignore_tried in [false, true] {
            if ignore_tried && req.tried.is_empty() {
                break;
            }
            let n = self.tiers.len();
            let start = match self.group_strategy {
                GroupStrategy::RoundRobin if n > 1 => {
                    self.group_next.fetch_add(1, Ordering::Relaxed) % n
                }
                _ => 0,
            };
            for k in 0..n {
                let g = (start + k) % n;
                if let Some(e) = self.pick_in(&self.tiers[g], req, now, ignore_tried) {
                    return Ok(chosen(e, Place::Primary(g)));
                }
            }
            if let Some(b) = &self.backup {
                if let Some(e) = self.pick_in(b, req, now, ignore_tried) {
                    return Ok(chosen(e, Place::Backup));
                }
            }
        }
        // Nothing usable. When every target is down (rather than full), let one request a
        // second through to a primary target so recovery is noticed without a health check.
        let primaries = || self.tiers.iter().flat_map(|t| t.endpoints.iter());
        let breaker = primaries()
            .chain(self.backup.iter().flat_map(|t| t.endpoints.iter()))
            .any(|e| {
                e.state.breaker_open(now)
                    || self.spec.max_conns.is_some_and(|m| e.state.inflight() >= m)
            });
        if breaker {
            return Err(NoTarget::CircuitOpen);
        }
        let last = self.last_probe.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .last_probe
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let count = primaries().count();
            if count > 0 {
                let pick = fastrand::usize(0..count);
                let mut g = 0;
                let mut left = pick;
                for (ti, t) in self.tiers.iter().enumerate() {
                    if left < t.endpoints.len() {
                        g = ti;
                        break;
                    }
                    left -= t.endpoints.len();
                }
                if let Some(e) = self.tiers.get(g).and_then(|t| t.endpoints.get(left)) {
                    return Ok(Chosen {
                        endpoint: e,
                        place: Place::Primary(g),
                        fail_open: true,
                    });
                }
            }
        }
        Err(NoTarget::AllDown)
    }

    fn in_canary(&self, c: &Canary, req: &SelectRequest) -> bool {
        if let Some((key, values)) = &c.spec.cohort {
            let v = match key {
                CohortKey::Header(h) => req.headers.get(h).and_then(|v| v.to_str().ok()),
                CohortKey::Cookie(name) => sticky::cookie(req.headers, name),
            };
            if v.is_some_and(|v| values.iter().any(|x| x == v)) {
                return true;
            }
        }
        c.spec.weight > 0 && fastrand::u32(0..100) < c.spec.weight
    }

    /// Records the outcome of an attempt on `chosen`: latency, passive ejection, breaker,
    /// canary comparison and the retry budget. Returns true when the target was ejected or its
    /// breaker opened.
    pub fn record(
        &self,
        state: &EndpointState,
        place: Place,
        outcome: Outcome,
        latency: Option<Duration>,
    ) -> bool {
        let now = now_ms();
        if outcome == Outcome::Success && state.is_out(now) {
            // A fail-open probe got through: the target is back.
            state.restore(now);
        }
        if let Some(l) = latency {
            // A failure counts as slow, so that latency-based selection steers away from a target
            // that fails fast (a refused connection must not look like the quickest answer).
            let l = match outcome {
                Outcome::Success => l,
                Outcome::Failure => l.max(FAILURE_LATENCY),
            };
            state.observe_latency(l, now);
        }
        if let Some(c) = &self.canary {
            self.record_canary(c, place == Place::Canary, outcome, now);
        }
        state.record(
            outcome,
            now,
            self.spec.outlier.as_ref(),
            self.spec.breaker.as_ref(),
            &self.states,
        )
    }

    fn record_canary(&self, c: &Canary, canary: bool, outcome: Outcome, now: u64) {
        if c.rolled_back.load(Ordering::Relaxed) {
            return;
        }
        let mut w = c.window.lock().unwrap_or_else(|e| e.into_inner());
        if now >= w.start + CANARY_WINDOW_MS {
            *w = CanaryWindow {
                start: now,
                ..CanaryWindow::default()
            };
        }
        let side = usize::from(canary);
        w.counts[side][0] += 1;
        if outcome == Outcome::Failure {
            w.counts[side][1] += 1;
        }
        let [stable, can] = w.counts;
        let min = c.spec.min_requests;
        if stable[0] >= min && can[0] >= min {
            let rate = |x: [u32; 2]| f64::from(x[1]) * 100.0 / f64::from(x[0]);
            if rate(can) - rate(stable) > f64::from(c.spec.rollback_threshold_percent) {
                c.rolled_back.store(true, Ordering::Release);
                tracing::error!(
                    canary_error_percent = rate(can),
                    stable_error_percent = rate(stable),
                    "canary rolled back: all traffic goes to the stable targets until the route's config changes"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(targets: &[(&str, u32)], strategy: &str) -> PoolSpec {
        PoolSpec::simple(
            targets
                .iter()
                .map(|(a, w)| (a.parse().unwrap(), format!("http://{a}"), *w))
                .collect(),
            strategy,
        )
    }

    fn fresh(_: &str) -> Arc<EndpointState> {
        Arc::default()
    }

    fn req<'a>(headers: &'a http::HeaderMap, tried: &'a [u64]) -> SelectRequest<'a> {
        SelectRequest {
            client_ip: None,
            target: "/",
            headers,
            tried,
        }
    }

    #[test]
    fn weighted_round_robin_shares() {
        let pool = Pool::build(
            &spec(&[("127.0.0.1:1", 3), ("127.0.0.1:2", 1)], "round-robin"),
            "r",
            &fresh,
        )
        .unwrap();
        let h = http::HeaderMap::new();
        let mut counts = [0usize; 2];
        for _ in 0..400 {
            let c = pool.select(&req(&h, &[])).unwrap();
            counts[usize::from(c.endpoint.addr.port() == 2)] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn retries_avoid_tried_targets_and_backup_waits() {
        let mut s = spec(&[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)], "round-robin");
        s.backup = Some(TierSpec {
            name: "backup".into(),
            strategy: "round-robin".into(),
            targets: vec![(
                "127.0.0.1:3".parse().unwrap(),
                "http://127.0.0.1:3".into(),
                1,
            )],
        });
        s.outlier = Some(OutlierPolicy {
            consecutive_failures: 1,
            base_ejection: Duration::from_secs(60),
            max_ejection: Duration::from_secs(60),
            max_ejection_percent: 100,
        });
        let pool = Pool::build(&s, "r", &fresh).unwrap();
        let h = http::HeaderMap::new();
        let first = pool.select(&req(&h, &[])).unwrap();
        let tried = [first.endpoint.id];
        let second = pool.select(&req(&h, &tried)).unwrap();
        assert_ne!(first.endpoint.id, second.endpoint.id);
        assert_eq!(second.place, Place::Primary(0));
        // Both primaries fail once: ejected, so the backup takes over.
        pool.record(&first.endpoint.state, first.place, Outcome::Failure, None);
        pool.record(&second.endpoint.state, second.place, Outcome::Failure, None);
        let third = pool.select(&req(&h, &[])).unwrap();
        assert_eq!(third.place, Place::Backup);
    }

    #[test]
    fn sticky_cookie_pins_and_forgery_is_ignored() {
        let mut s = spec(&[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)], "round-robin");
        s.sticky = Some(StickySpec {
            cookie: "pin".into(),
            secret: "0123456789abcdef".into(),
            strict: false,
            max_age: None,
        });
        let pool = Pool::build(&s, "r", &fresh).unwrap();
        let target = pool.endpoints().nth(1).unwrap().id;
        let value = pool.sticky().unwrap().value(target);
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("pin={value}").parse().unwrap(),
        );
        for _ in 0..10 {
            assert_eq!(pool.select(&req(&h, &[])).unwrap().endpoint.id, target);
        }
        let forged = format!("pin={:016x}.{}", target, "0".repeat(32));
        h.insert(http::header::COOKIE, forged.parse().unwrap());
        let ids: std::collections::HashSet<_> = (0..10)
            .map(|_| pool.select(&req(&h, &[])).unwrap().endpoint.id)
            .collect();
        assert_eq!(ids.len(), 2, "a forged cookie falls back to round robin");
    }

    #[test]
    fn all_down_lets_one_probe_a_second_through() {
        let mut s = spec(&[("127.0.0.1:1", 1)], "round-robin");
        s.outlier = Some(OutlierPolicy {
            consecutive_failures: 1,
            base_ejection: Duration::from_secs(60),
            max_ejection: Duration::from_secs(60),
            max_ejection_percent: 100,
        });
        let pool = Pool::build(&s, "r", &fresh).unwrap();
        let h = http::HeaderMap::new();
        let c = pool.select(&req(&h, &[])).unwrap();
        pool.record(&c.endpoint.state, c.place, Outcome::Failure, None);
        let probe = pool.select(&req(&h, &[])).unwrap();
        assert!(probe.fail_open);
        assert_eq!(pool.select(&req(&h, &[])).unwrap_err(), NoTarget::AllDown);
        // The probe succeeds: the target is back at once.
        pool.record(&probe.endpoint.state, probe.place, Outcome::Success, None);
        assert!(!pool.select(&req(&h, &[])).unwrap().fail_open);
    }
}
