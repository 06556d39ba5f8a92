//! The generic cell rate algorithm (GCRA): a token bucket kept as one number per key.
//!
//! A bucket holds `capacity = limit + burst` requests and refills at `limit` per window, one
//! request every `interval = window / limit`. Instead of a token count, GCRA stores the
//! *theoretical arrival time* (TAT): the moment the bucket will be full again. A request at `now`
//! is allowed when, after adding its `interval`, the TAT is at most `capacity × interval` ahead
//! of `now`. A TAT in the past is the same as no entry at all, so idle keys can be forgotten
//! without changing any decision. Both stores (in memory and the Redis script) apply exactly
//! these rules; times are in store-specific ticks (nanoseconds in memory, microseconds in Redis).

use std::time::Duration;

/// The parameters of one limit, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Ticks between two requests at the steady rate.
    interval: u64,
    /// Requests the full bucket holds (`limit + burst`, at least 1).
    capacity: u64,
    /// Ticks per second.
    per_sec: u64,
}

/// What one decision says, independent of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// Until a refused request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

/// Nanoseconds per second: the tick of the in-memory store.
pub const NANOS: u64 = 1_000_000_000;
/// Microseconds per second: the tick of the Redis store.
pub const MICROS: u64 = 1_000_000;

impl Gcra {
    /// `limit` requests per `window_secs` with `burst` more at once; `per_sec` ticks per second.
    /// `limit` 0 is treated as 1.
    pub fn new(limit: u64, window_secs: u64, burst: u64, per_sec: u64) -> Gcra {
        let limit = limit.max(1);
        let window = u128::from(window_secs.max(1)) * u128::from(per_sec);
        let interval = u64::try_from(window / u128::from(limit))
            .unwrap_or(u64::MAX)
            .max(1);
        Gcra {
            interval,
            capacity: limit.saturating_add(burst),
            per_sec: per_sec.max(1),
        }
    }

    /// Ticks between two requests at the steady rate.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Requests the full bucket holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// How far ahead of `now` the TAT may be after an allowed request.
    pub fn span(&self) -> u64 {
        self.interval.saturating_mul(self.capacity)
    }

    /// Decides a request at `now` against the stored TAT (`None`: no entry). Returns the
    /// decision and, when allowed, the TAT to store.
    pub fn check(&self, stored: Option<u64>, now: u64) -> (Decision, Option<u64>) {
        let tat = stored.map_or(now, |t| t.max(now));
        let new_tat = tat.saturating_add(self.interval);
        let ahead = new_tat - now;
        if ahead > self.span() {
            (self.refused(tat - now, ahead - self.span()), None)
        } else {
            (self.allowed(ahead), Some(new_tat))
        }
    }

    /// The decision for an allowed request that left the TAT `ahead` ticks after now.
    pub fn allowed(&self, ahead: u64) -> Decision {
        Decision {
            allowed: true,
            remaining: self.span().saturating_sub(ahead) / self.interval,
            reset: self.duration(ahead),
            retry_after: Duration::ZERO,
        }
    }

    /// The decision for a refused request: the bucket is full in `until_full` ticks, and a
    /// request is allowed again in `wait` ticks.
    pub fn refused(&self, until_full: u64, wait: u64) -> Decision {
        Decision {
            allowed: false,
            remaining: 0,
            reset: self.duration(until_full),
            retry_after: self.duration(wait),
        }
    }

    fn duration(&self, ticks: u64) -> Duration {
        match self.per_sec {
            NANOS => return Duration::from_nanos(ticks),
            MICROS => return Duration::from_micros(ticks),
            _ => {}
        }
        let secs = ticks / self.per_sec;
        let rest = ticks % self.per_sec;
        let nanos = u128::from(rest) * u128::from(NANOS) / u128::from(self.per_sec);
        Duration::new(secs, u32::try_from(nanos).unwrap_or(0))
    }
}

/// Whole seconds, rounded up (what `Retry-After` and `RateLimit-Reset` carry).
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS;

    #[test]
    fn a_full_bucket_allows_capacity_then_refuses() {
        let g = Gcra::new(5, 60, 0, S);
        let mut tat = None;
        for expected in (0..5).rev() {
            let (d, t) = g.check(tat, 0);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected);
            tat = t;
        }
        let (d, t) = g.check(tat, 0);
        assert!(!d.allowed);
        assert_eq!(t, None);
        assert_eq!(d.remaining, 0);
        // One request every 12 s comes back; the bucket is full after 60 s.
        assert_eq!(d.retry_after, Duration::from_secs(12));
        assert_eq!(d.reset, Duration::from_secs(60));
        // 12 s later exactly one more is allowed.
        let (d, t) = g.check(tat, 12 * S);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = g.check(t, 12 * S);
        assert!(!d.allowed);
    }

    #[test]
    fn burst_adds_to_the_bucket_not_to_the_rate() {
        let g = Gcra::new(1, 1, 3, S);
        let mut tat = None;
        for _ in 0..4 {
            let (d, t) = g.check(tat, 0);
            assert!(d.allowed);
            tat = t;
        }
        assert!(!g.check(tat, 0).0.allowed);
        // After one second, one more (not four).
        let (d, t) = g.check(tat, S);
        assert!(d.allowed);
        assert!(!g.check(t, S).0.allowed);
    }

    #[test]
    fn an_old_tat_is_a_full_bucket() {
        let g = Gcra::new(2, 10, 0, S);
        let (d, _) = g.check(Some(3 * S), 100 * S);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.reset, Duration::from_secs(5));
    }

    #[test]
    fn ticks_of_either_store_give_the_same_decisions() {
        let ns = Gcra::new(7, 60, 2, NANOS);
        let us = Gcra::new(7, 60, 2, MICROS);
        let (mut a, mut b) = (None, None);
        for i in 0..12u64 {
            let (da, ta) = ns.check(a, i * 700 * 1_000_000);
            let (db, tb) = us.check(b, i * 700 * 1_000);
            assert_eq!(da.allowed, db.allowed, "request {i}");
            assert_eq!(da.remaining, db.remaining, "request {i}");
            assert_eq!(ceil_secs(da.reset), ceil_secs(db.reset), "request {i}");
            a = ta.or(a);
            b = tb.or(b);
        }
    }

    #[test]
    fn extreme_parameters_do_not_overflow() {
        let g = Gcra::new(1, 86_400, 1_000_000, S);
        let (d, t) = g.check(None, u64::MAX - 5);
        assert!(d.allowed);
        assert!(t.is_some());
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }
}
