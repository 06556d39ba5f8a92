//! One upstream target and its live state: requests in flight, observed latency (peak EWMA),
//! active health, passive ejection and the circuit breaker.
//!
//! The state is shared by every pool that names the same route and URL, so it survives a reload.
//! Availability is read with atomics only; the ejection and breaker bookkeeping takes a lock only
//! when the route configures them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pingora::upstreams::peer::HttpPeer;

/// Milliseconds since the process's first call; the clock of every ejection and breaker timer.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Start at 1 so that 0 can mean "not set".
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Passive outlier detection (`outlierDetection`), shared by the routes of a site.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutlierPolicy {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: u32,
}

/// Error-rate circuit breaker (`circuitBreaker`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BreakerPolicy {
    pub error_threshold_percent: u32,
    pub min_requests: u32,
    pub open: Duration,
}

/// The window over which the breaker counts requests and errors.
const BREAKER_WINDOW_MS: u64 = 10_000;
/// A trial request that never reported back frees its slot after this long.
const TRIAL_TIMEOUT_MS: u64 = 30_000;
/// Time constant of the latency EWMA.
const EWMA_DECAY_MS: f64 = 10_000.0;

/// One upstream of a pool: where it is, its share, the prebuilt peer and its shared state.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub url: Arc<str>,
    pub weight: u32,
    pub peer: HttpPeer,
    pub state: Arc<EndpointState>,
    /// Stable hash of the URL: the identity used by hashing strategies and sticky cookies.
    pub id: u64,
}

/// Whether a target may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Up,
    /// Its ejection or open breaker has expired: one trial request may go.
    Trial,
    Down,
}

/// Live state of one target.
#[derive(Debug, Default)]
pub struct EndpointState {
    inflight: AtomicUsize,
    /// Peak-EWMA latency in microseconds (f64 bits) and when it was last updated (ms).
    ewma_us: AtomicU64,
    ewma_at: AtomicU64,
    /// Active health: false after `unhealthyThreshold` failed checks.
    unhealthy: AtomicBool,
    /// When the target last came back (active health or ejection end), for slow start (ms).
    up_since: AtomicU64,
    health_passes: AtomicU32,
    health_failures: AtomicU32,
    /// When the next active check is due (ms); claimed by compare-and-swap.
    pub(crate) next_check: AtomicU64,
    /// Ejected (passive) or breaker open until this time (ms); 0 when neither.
    ejected_until: AtomicU64,
    open_until: AtomicU64,
    /// When the trial request of a half-open target went out (ms); 0 when none is out.
    trial: AtomicU64,
    consecutive_failures: AtomicU32,
    passive: Mutex<Passive>,
    breaker: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Passive {
    ejections: u32,
    last_ejected_end: u64,
}

#[derive(Debug, Default)]
struct Window {
    start: u64,
    requests: u32,
    errors: u32,
}

/// The result of one attempt as passive detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A 5xx answer, a connection failure or a timeout.
    Failure,
}

impl EndpointState {
    /// Requests in flight to this target.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request to this target until the guard drops.
    pub fn begin(self: &Arc<Self>) -> AttemptGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        AttemptGuard(self.clone())
    }

    /// Whether the target may take a request at `now` (active health, ejection, breaker).
    pub fn availability(&self, now: u64) -> Availability {
        if self.unhealthy.load(Ordering::Relaxed) {
            return Availability::Down;
        }
        let until = self
            .ejected_until
            .load(Ordering::Relaxed)
            .max(self.open_until.load(Ordering::Relaxed));
        if until == 0 {
            Availability::Up
        } else if now < until || self.trial_out(now) {
            Availability::Down
        } else {
            Availability::Trial
        }
    }

    /// Claims the single trial request of a half-open target; false when another has it.
    pub fn claim_trial(&self, now: u64) -> bool {
        let seen = self.trial.load(Ordering::Acquire);
        if seen != 0 && now.saturating_sub(seen) < TRIAL_TIMEOUT_MS {
            return false;
        }
        self.trial
            .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn trial_out(&self, now: u64) -> bool {
        let at = self.trial.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) < TRIAL_TIMEOUT_MS
    }

    /// Share of its weight the target gets now, in thousandths: ramps from 100 to 1000 over
    /// `slow_start` after the target came back.
    pub fn ramp(&self, now: u64, slow_start: Option<Duration>) -> u64 {
        let Some(ss) = slow_start else { return 1000 };
        let since = self.up_since.load(Ordering::Relaxed);
        let span = ss.as_millis() as u64;
        if since == 0 || span == 0 || now >= since + span {
            return 1000;
        }
        (100 + 900 * (now - since) / span).min(1000)
    }

    /// Latency cost for `least-response-time`: the decayed peak EWMA in microseconds.
    pub fn latency_us(&self, now: u64) -> f64 {
        let v = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let at = self.ewma_at.load(Ordering::Relaxed);
        if at == 0 {
            return 0.0;
        }
        let age = now.saturating_sub(at) as f64;
        v * (-age / EWMA_DECAY_MS).exp()
    }

    /// Folds one observed latency into the peak EWMA.
    pub fn observe_latency(&self, latency: Duration, now: u64) {
        let sample = latency.as_micros() as f64;
        let current = self.latency_us(now);
        let next = if sample > current || self.ewma_at.load(Ordering::Relaxed) == 0 {
            sample
        } else {
            let at = self.ewma_at.load(Ordering::Relaxed);
            let w = (-(now.saturating_sub(at) as f64) / EWMA_DECAY_MS).exp();
            // Never less than one sample's worth of weight, so fresh samples always count.
            let w = w.min(0.9);
            current * w + sample * (1.0 - w)
        };
        self.ewma_us.store(next.to_bits(), Ordering::Relaxed);
        self.ewma_at.store(now, Ordering::Relaxed);
    }

    /// Records one attempt's outcome. `passive` and `breaker` are the policies in force; `peers`
    /// are the states of the pool's targets (for `maxEjectionPercent`). Returns true when this
    /// outcome ejected the target or opened its breaker.
    pub fn record(
        &self,
        outcome: Outcome,
        now: u64,
        passive: Option<&OutlierPolicy>,
        breaker: Option<&BreakerPolicy>,
        peers: &[Arc<EndpointState>],
    ) -> bool {
        let was_trial = self.trial.load(Ordering::Relaxed) != 0;
        let mut tripped = false;
        match outcome {
            Outcome::Success => {
                if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                }
                if was_trial {
                    // The half-open probe succeeded: back in service, ramping up.
                    let ejected = self.ejected_until.swap(0, Ordering::AcqRel) != 0;
                    let opened = self.open_until.swap(0, Ordering::AcqRel) != 0;
                    if ejected {
                        lock(&self.passive).last_ejected_end = now;
                    }
                    if opened {
                        *lock(&self.breaker) = Window::default();
                    }
                    self.up_since.store(now, Ordering::Relaxed);
                    self.trial.store(0, Ordering::Release);
                }
            }
            Outcome::Failure => {
                let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                if let Some(p) = passive {
                    let expired = {
                        let until = self.ejected_until.load(Ordering::Relaxed);
                        until != 0 && now >= until
                    };
                    if (n >= p.consecutive_failures
                        && self.ejected_until.load(Ordering::Relaxed) == 0)
                        || (was_trial && expired)
                    {
                        tripped |= self.eject(now, p, peers, was_trial && expired);
                    }
                }
                if was_trial && self.open_until.load(Ordering::Relaxed) != 0 {
                    if let Some(b) = breaker {
                        self.open_until.store(now + ms(b.open), Ordering::Release);
                        tripped = true;
                    }
                }
                if was_trial {
                    self.trial.store(0, Ordering::Release);
                }
            }
        }
        if let Some(b) = breaker {
            if self.open_until.load(Ordering::Relaxed) == 0 {
                let mut w = lock(&self.breaker);
                if now >= w.start + BREAKER_WINDOW_MS {
                    *w = Window {
                        start: now,
                        ..Window::default()
                    };
                }
                w.requests += 1;
                if outcome == Outcome::Failure {
                    w.errors += 1;
                }
                if w.requests >= b.min_requests
                    && u64::from(w.errors) * 100
                        >= u64::from(b.error_threshold_percent) * u64::from(w.requests)
                {
                    self.open_until.store(now + ms(b.open), Ordering::Release);
                    *w = Window::default();
                    tripped = true;
                }
            }
        }
        tripped
    }

    /// Ejects the target unless too many of the pool are ejected already.
    fn eject(
        &self,
        now: u64,
        p: &OutlierPolicy,
        peers: &[Arc<EndpointState>],
        again: bool,
    ) -> bool {
        if !again {
            let ejected = peers
                .iter()
                .filter(|s| {
                    let until = s.ejected_until.load(Ordering::Relaxed);
                    until != 0
                })
                .count();
            let allowed = if p.max_ejection_percent == 0 {
                0
            } else {
                (peers.len() * p.max_ejection_percent as usize / 100).max(1)
            };
            if ejected >= allowed {
                return false;
            }
        }
        let mut st = lock(&self.passive);
        // A target that stayed in service for the longest ejection time starts over.
        if st.last_ejected_end != 0 && now.saturating_sub(st.last_ejected_end) > ms(p.max_ejection)
        {
            st.ejections = 0;
        }
        let factor = 1u64 << st.ejections.min(20);
        let time = (ms(p.base_ejection).saturating_mul(factor)).min(ms(p.max_ejection));
        st.ejections = st.ejections.saturating_add(1);
        self.ejected_until
            .store(now + time.max(1), Ordering::Release);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }

    /// Applies one active check result; returns the new health when it changed.
    pub fn record_check(
        &self,
        passed: bool,
        healthy_after: u32,
        unhealthy_after: u32,
        now: u64,
    ) -> Option<bool> {
        if passed {
            self.health_failures.store(0, Ordering::Relaxed);
            let n = self.health_passes.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= healthy_after && self.unhealthy.swap(false, Ordering::AcqRel) {
                self.up_since.store(now, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.health_passes.store(0, Ordering::Relaxed);
            let n = self.health_failures.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= unhealthy_after && !self.unhealthy.swap(true, Ordering::AcqRel) {
                return Some(false);
            }
        }
        None
    }

    /// Whether active health checks consider the target healthy.
    pub fn healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    /// Whether passive detection has the target ejected at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    /// Whether the target is ejected or its breaker open at `now` (not counting a trial).
    pub fn is_out(&self, now: u64) -> bool {
        self.ejected(now) || self.breaker_open(now)
    }

    /// Puts an ejected or open target back in service after a request to it succeeded anyway
    /// (the fail-open probe while every target was out).
    pub fn restore(&self, now: u64) {
        if self.ejected_until.swap(0, Ordering::AcqRel) != 0 {
            lock(&self.passive).last_ejected_end = now;
        }
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            *lock(&self.breaker) = Window::default();
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.up_since.store(now, Ordering::Relaxed);
    }

    /// Whether the breaker is open at `now`.
    pub fn breaker_open(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one request in flight to a target while alive.
#[derive(Debug)]
pub struct AttemptGuard(Arc<EndpointState>);

impl AttemptGuard {
    /// The state of the target this attempt went to.
    pub fn state(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stable 64-bit hash (FNV-1a, then a final mix) for target ids and hash keys.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: spreads the bits of `x`.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(100),
            max_ejection: Duration::from_millis(1000),
            max_ejection_percent: 100,
        }
    }

    #[test]
    fn ejection_doubles_and_trial_restores() {
        let s = EndpointState::default();
        let p = outlier();
        let mut now = 10;
        for _ in 0..2 {
            assert!(!s.record(Outcome::Failure, now, Some(&p), None, &[]));
        }
        assert!(s.record(Outcome::Failure, now, Some(&p), None, &[]));
        assert_eq!(s.availability(now + 50), Availability::Down);
        now += 100;
        assert_eq!(s.availability(now), Availability::Trial);
        assert!(s.claim_trial(now));
        assert!(!s.claim_trial(now));
        assert_eq!(s.availability(now), Availability::Down);
        // The trial fails: ejected again for twice as long.
        assert!(s.record(Outcome::Failure, now, Some(&p), None, &[]));
        assert_eq!(s.availability(now + 199), Availability::Down);
        now += 200;
        assert_eq!(s.availability(now), Availability::Trial);
        assert!(s.claim_trial(now));
        s.record(Outcome::Success, now, Some(&p), None, &[]);
        assert_eq!(s.availability(now), Availability::Up);
        assert!(s.ramp(now, Some(Duration::from_secs(10))) < 200);
    }

    #[test]
    fn max_ejection_percent_caps_ejections() {
        let a = Arc::new(EndpointState::default());
        let b = Arc::new(EndpointState::default());
        let peers = [a.clone(), b.clone()];
        let p = OutlierPolicy {
            max_ejection_percent: 10,
            ..outlier()
        };
        for _ in 0..3 {
            a.record(Outcome::Failure, 1, Some(&p), None, &peers);
        }
        assert!(a.ejected(2));
        for _ in 0..3 {
            b.record(Outcome::Failure, 1, Some(&p), None, &peers);
        }
        assert!(!b.ejected(2), "10% of two targets allows one ejection");
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let s = EndpointState::default();
        let b = BreakerPolicy {
            error_threshold_percent: 50,
            min_requests: 4,
            open: Duration::from_millis(100),
        };
        s.record(Outcome::Success, 1, None, Some(&b), &[]);
        s.record(Outcome::Failure, 1, None, Some(&b), &[]);
        s.record(Outcome::Success, 1, None, Some(&b), &[]);
        assert!(s.record(Outcome::Failure, 1, None, Some(&b), &[]));
        assert!(s.breaker_open(50));
        assert_eq!(s.availability(101), Availability::Trial);
        assert!(s.claim_trial(101));
        assert!(s.record(Outcome::Failure, 101, None, Some(&b), &[]));
        assert!(s.breaker_open(150));
        assert!(s.claim_trial(202));
        s.record(Outcome::Success, 202, None, Some(&b), &[]);
        assert_eq!(s.availability(202), Availability::Up);
    }

    #[test]
    fn health_thresholds() {
        let s = EndpointState::default();
        assert_eq!(s.record_check(false, 2, 2, 1), None);
        assert_eq!(s.record_check(false, 2, 2, 1), Some(false));
        assert_eq!(s.availability(1), Availability::Down);
        assert_eq!(s.record_check(true, 2, 2, 5), None);
        assert_eq!(s.record_check(true, 2, 2, 6), Some(true));
        assert_eq!(s.ramp(6, Some(Duration::from_secs(1))), 100);
        assert_eq!(s.ramp(506, Some(Duration::from_secs(1))), 550);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays() {
        let s = EndpointState::default();
        s.observe_latency(Duration::from_millis(1), 1);
        s.observe_latency(Duration::from_millis(100), 2);
        assert!(s.latency_us(2) > 99_000.0);
        s.observe_latency(Duration::from_millis(1), 3);
        assert!(s.latency_us(3) < 99_000.0);
        assert!(s.latency_us(60_000) < 1_000.0);
    }
}
