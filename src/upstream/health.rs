//! Active health checks: which statuses pass ([`StatusSet`]), and the background service
//! ([`HealthChecker`]) that probes every target of the routes that configure `healthCheck`.
//!
//! The checker walks the live pools of the [`PoolRegistry`](crate::upstream::PoolRegistry) a few
//! times a second, so pools built by a reload are picked up without a restart. Each target's
//! check is claimed through its shared [`EndpointState`], so pools that share a target (an old
//! and a new snapshot during a reload) check it once. A check is an HTTP/1.1 `GET <path>` made
//! with Pingora's [`HttpHealthCheck`]; its result goes to [`EndpointState::record_check`], which
//! selection reads.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::{Backend, Extensions};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use super::endpoint::{now_ms, EndpointState};
use super::pool::HealthSpec;
use crate::compile::Registries;

/// How often the checker looks for due checks.
const TICK: Duration = Duration::from_millis(200);
/// `next_check` while a check of the target is in flight: never due.
const IN_FLIGHT: u64 = u64::MAX;

/// The background service that runs the active health checks of every live pool.
///
/// Registered once at server start; it runs until shutdown.
pub struct HealthChecker {
    registries: Arc<Registries>,
    /// One prepared check per target address, URL and health spec in some live pool.
    probes: Mutex<HashMap<ProbeKey, Arc<Probe>>>,
}

type ProbeKey = (
    SocketAddr,
    Arc<str>,
    HealthSpec,
    crate::upstream::target::TlsSpec,
);

/// A prepared check of one target.
struct Probe {
    url: Arc<str>,
    spec: HealthSpec,
    backend: Backend,
    /// The check, or why it cannot be built (then every check fails with that reason).
    check: Result<HttpHealthCheck, String>,
}

impl HealthChecker {
    /// A checker over the pools of `registries`.
    pub fn new(registries: Arc<Registries>) -> HealthChecker {
        HealthChecker {
            registries,
            probes: Mutex::default(),
        }
    }

    /// One pass over the live pools at `now`: starts the checks that are due (on the current
    /// tokio runtime) and returns how many it started.
    pub fn tick(&self, now: u64) -> usize {
        let pools = self.registries.pools.live();
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let mut used = HashSet::new();
        let mut checked: HashSet<*const EndpointState> = HashSet::new();
        let mut due = Vec::new();
        for pool in &pools {
            let Some(spec) = &pool.spec().health else {
                continue;
            };
            for e in pool.endpoints() {
                checked.insert(Arc::as_ptr(&e.state));
                let key: ProbeKey = (e.addr, e.url.clone(), spec.clone(), pool.spec().tls.clone());
                let probe = probes
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(Probe::new(e.addr, e.url.clone(), spec.clone(), &e.peer))
                    })
                    .clone();
                used.insert(key);
                if let Some(claim) = Claim::take(&e.state, spec.interval, now) {
                    due.push((probe, claim));
                }
            }
        }
        probes.retain(|k, _| used.contains(k));
        drop(probes);
        // A target no longer checked by any live pool (its route dropped `healthCheck`) must not
        // stay down for ever.
        for pool in pools.iter().filter(|p| p.spec().health.is_none()) {
            for e in pool.endpoints() {
                if !checked.contains(&Arc::as_ptr(&e.state)) && !e.state.healthy() {
                    e.state.record_check(true, 1, u32::MAX, now);
                    tracing::info!(
                        target_url = %e.url,
                        "upstream back in service: health checks are no longer configured for it"
                    );
                }
            }
        }
        let started = due.len();
        for (probe, claim) in due {
            tokio::spawn(async move {
                let result = probe.run().await;
                let state = claim.state();
                let change = state.record_check(
                    result.is_ok(),
                    probe.spec.healthy_threshold,
                    probe.spec.unhealthy_threshold,
                    now_ms(),
                );
                log_change(&probe, change, result.err());
                drop(claim);
            });
        }
        started
    }
}

/// Logs a health transition once, when `record_check` reported one.
fn log_change(probe: &Probe, change: Option<bool>, reason: Option<String>) {
    match change {
        Some(false) => tracing::warn!(
            target_url = %probe.url,
            path = %probe.spec.path,
            reason = reason.as_deref().unwrap_or("check failed"),
            failed_checks = probe.spec.unhealthy_threshold,
            "upstream marked unhealthy by active health checks"
        ),
        Some(true) => tracing::info!(
            target_url = %probe.url,
            path = %probe.spec.path,
            passed_checks = probe.spec.healthy_threshold,
            "upstream healthy again: active health checks pass"
        ),
        None => {}
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = ticks.tick() => {
                    self.tick(now_ms());
                }
            }
        }
    }
}

/// The right to check one target now. While held, the target's `next_check` says "in flight",
/// so no other pool starts a second check; dropping it schedules the next check one interval
/// after this one ended (also when the check task is cancelled).
struct Claim {
    state: Arc<EndpointState>,
    interval: Duration,
}

impl Claim {
    /// Claims the check of `state` if it is due at `now` (the first check is due at once).
    fn take(state: &Arc<EndpointState>, interval: Duration, now: u64) -> Option<Claim> {
        let due = state.next_check.load(Ordering::Acquire);
        if due > now {
            return None;
        }
        state
            .next_check
            .compare_exchange(due, IN_FLIGHT, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(Claim {
            state: state.clone(),
            interval,
        })
    }

    fn state(&self) -> &EndpointState {
        &self.state
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let next = now_ms().saturating_add(self.interval.as_millis() as u64);
        self.state.next_check.store(next, Ordering::Release);
    }
}

impl Probe {
    fn new(addr: SocketAddr, url: Arc<str>, spec: HealthSpec, peer: &HttpPeer) -> Probe {
        let check = build_check(&spec, authority(&url), peer);
        Probe {
            backend: Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
                weight: 1,
                ext: Extensions::new(),
            },
            url,
            spec,
            check,
        }
    }

    /// Runs one check, bounded by the spec's timeout; `Err` carries why it failed.
    async fn run(&self) -> Result<(), String> {
        let check = self.check.as_ref().map_err(Clone::clone)?;
        match tokio::time::timeout(self.spec.timeout, check.check(&self.backend)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.spec.timeout.as_millis()
            )),
        }
    }
}

/// A short reason for a failed check: the explanation when there is one, else the error.
fn describe(e: &Error) -> String {
    match &e.context {
        Some(c) => c.as_str().to_string(),
        None => e.to_string().trim().to_string(),
    }
}

/// Builds the Pingora check of one target: `GET <path>` with `Host: <host>`, a fresh connection
/// each time, passing when the status is in the spec's set.
fn build_check(spec: &HealthSpec, host: &str, peer: &HttpPeer) -> Result<HttpHealthCheck, String> {
    // `new` only sets a request we replace, with a host that cannot fail to parse.
    let mut check = HttpHealthCheck::new("localhost", false);
    check.req = request(&spec.path, host)?;
    check.reuse_connection = false;
    // The target's own peer: TLS, SNI, verification and CA as requests use them; the check
    // itself speaks HTTP/1.1.
    check.peer_template = peer.clone();
    check.peer_template.options.alpn = pingora::protocols::ALPN::H1;
    check.peer_template.options.connection_timeout = Some(spec.timeout);
    check.peer_template.options.read_timeout = Some(spec.timeout);
    check.peer_template.options.write_timeout = Some(spec.timeout);
    let statuses = spec.statuses.clone();
    check.validator = Some(Box::new(move |resp: &ResponseHeader| {
        let code = resp.status.as_u16();
        if statuses.contains(code) {
            Ok(())
        } else {
            Error::e_explain(
                ErrorType::CustomCode("unexpected health check status", code),
                format!("status {code} is not an expected status"),
            )
        }
    }));
    Ok(check)
}

/// The check request: `GET <path>` over HTTP/1.1 with `Host`, `User-Agent: conduit-health` and
/// `Connection: close`.
fn request(path: &str, host: &str) -> Result<RequestHeader, String> {
    let bad = |e: Box<Error>| format!("cannot build the health check request: {e}");
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(bad)?;
    req.insert_header("Host", host).map_err(bad)?;
    req.insert_header("User-Agent", "conduit-health")
        .map_err(bad)?;
    req.insert_header("Connection", "close").map_err(bad)?;
    Ok(req)
}

/// The authority (`host[:port]`) of a target URL such as `http://host:port/`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    auth.rsplit_once('@').map_or(auth, |(_, h)| h)
}

/// The response statuses that count as healthy: `200`, `200-399`, `200,204,301-302`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusSet(Vec<(u16, u16)>);

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl StatusSet {
    /// Parses a comma-separated list of statuses and inclusive ranges.
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let bad = || format!("`{text}` is not a status list such as `200`, `200-399` or `200,204`");
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(bad());
            }
            ranges.push((lo, hi));
        }
        Ok(StatusSet(ranges))
    }

    /// Whether `status` passes.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets() {
        let s = StatusSet::parse("200, 204, 300-302").unwrap();
        assert!(s.contains(200) && s.contains(204) && s.contains(301));
        assert!(!s.contains(201) && !s.contains(500));
        assert!(StatusSet::default().contains(399));
        assert!(StatusSet::parse("abc").is_err());
        assert!(StatusSet::parse("500-400").is_err());
        assert!(StatusSet::parse("99").is_err());
    }

    #[test]
    fn authority_of_target_urls() {
        assert_eq!(authority("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(authority("http://api.internal/"), "api.internal");
        assert_eq!(authority("http://[::1]:81/x?y"), "[::1]:81");
        assert_eq!(authority("http://user@host:1"), "host:1");
        assert_eq!(authority("host:2"), "host:2");
    }

    #[test]
    fn check_request_headers() {
        let req = request("/healthz?deep=1", "api:8080").unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.uri, "/healthz?deep=1");
        assert_eq!(req.headers["host"], "api:8080");
        assert_eq!(req.headers["user-agent"], "conduit-health");
        assert_eq!(req.headers["connection"], "close");
        assert!(request("/", "bad\nhost").is_err());
    }

    #[test]
    fn a_claim_is_exclusive_and_schedules_the_next_check() {
        let state = Arc::new(EndpointState::default());
        let interval = Duration::from_secs(5);
        let now = now_ms();
        let claim = Claim::take(&state, interval, now).expect("the first check is due at once");
        assert!(Claim::take(&state, interval, now).is_none(), "in flight");
        assert!(Claim::take(&state, interval, u64::MAX - 1).is_none());
        drop(claim);
        let next = state.next_check.load(Ordering::Relaxed);
        assert!(next >= now + 5000 && next < now_ms() + 5001, "{next}");
        assert!(Claim::take(&state, interval, next - 1).is_none());
        assert!(Claim::take(&state, interval, next).is_some());
    }

    /// A loopback HTTP server answering every request with `status` and recording request heads.
    struct Target {
        addr: SocketAddr,
        status: Arc<std::sync::atomic::AtomicU16>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    async fn target(status: u16) -> Target {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = Target {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(status.into()),
            heads: Arc::default(),
        };
        let (code, heads) = (t.status.clone(), t.heads.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (code, heads) = (code.clone(), heads.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    heads
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let code = code.load(Ordering::SeqCst);
                    let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok");
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        t
    }

    fn health(statuses: &str, unhealthy_after: u32) -> HealthSpec {
        HealthSpec {
            path: "/hc".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: unhealthy_after,
            statuses: StatusSet::parse(statuses).unwrap(),
        }
    }

    fn spec(t: &Target, health: Option<HealthSpec>) -> crate::upstream::PoolSpec {
        let mut s = crate::upstream::PoolSpec::simple(
            vec![(t.addr, format!("http://{}", t.addr), 1)],
            "round-robin",
        );
        s.health = health;
        s
    }

    /// Ticks until `done` holds (at most ~3 s).
    async fn tick_until(checker: &HealthChecker, done: impl Fn() -> bool) -> bool {
        for _ in 0..150 {
            checker.tick(now_ms());
            tokio::time::sleep(Duration::from_millis(20)).await;
            if done() {
                return true;
            }
        }
        false
    }

    #[tokio::test]
    async fn checks_mark_targets_down_and_up() {
        let bad = target(500).await;
        let only_204 = target(200).await;
        let unchecked = target(500).await;
        let reg = Arc::new(Registries::default());
        let p1 = reg
            .pools
            .get_or_build("a", &spec(&bad, Some(health("200-399", 2))))
            .unwrap();
        let p2 = reg
            .pools
            .get_or_build("b", &spec(&only_204, Some(health("204", 1))))
            .unwrap();
        let p3 = reg
            .pools
            .get_or_build("c", &spec(&unchecked, None))
            .unwrap();
        let state = |p: &crate::upstream::Pool| p.endpoints().next().unwrap().state.clone();
        let (s1, s2) = (state(&p1), state(&p2));
        let checker = HealthChecker::new(reg.clone());
        assert!(tick_until(&checker, || !s1.healthy() && !s2.healthy()).await);
        assert!(
            bad.heads.lock().unwrap().len() >= 2,
            "two failures were needed"
        );
        let head = bad.heads.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.starts_with("get /hc http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {}\r\n", bad.addr)), "{head}");
        assert!(head.contains("user-agent: conduit-health\r\n"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
        // Recovery: one pass brings a target back.
        bad.status.store(200, Ordering::SeqCst);
        only_204.status.store(204, Ordering::SeqCst);
        assert!(tick_until(&checker, || s1.healthy() && s2.healthy()).await);
        assert!(
            unchecked.heads.lock().unwrap().is_empty(),
            "no healthCheck, no checks"
        );
        drop(p3);
    }

    #[tokio::test]
    async fn a_slow_answer_fails_and_a_target_without_checks_is_released() {
        // Accepts but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let t = Target {
            addr,
            status: Arc::default(),
            heads: Arc::default(),
        };
        let mut h = health("200", 1);
        h.timeout = Duration::from_millis(100);
        let reg = Arc::new(Registries::default());
        let checked = reg.pools.get_or_build("r", &spec(&t, Some(h))).unwrap();
        let s = checked.endpoints().next().unwrap().state.clone();
        let checker = HealthChecker::new(reg.clone());
        let started = std::time::Instant::now();
        assert!(tick_until(&checker, || !s.healthy()).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        // The route drops `healthCheck`: once no live pool checks the target, it is back.
        let plain = reg.pools.get_or_build("r", &spec(&t, None)).unwrap();
        assert!(Arc::ptr_eq(&plain.endpoints().next().unwrap().state, &s));
        checker.tick(now_ms());
        assert!(!s.healthy(), "still checked by the old pool");
        drop(checked);
        // Let a check still in flight (bounded by the 100 ms timeout) land first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        checker.tick(now_ms());
        assert!(s.healthy());
    }
}
