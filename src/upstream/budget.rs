//! The retry budget of a route: retries may be at most a share of the route's recent requests,
//! so that retries add at most that share of load to upstreams that are already failing (the
//! model of Linkerd's retry budget). Counting requests rather than successes keeps a route whose
//! primary target is dead able to retry onto its healthy or backup targets.
//!
//! Counts live in two ten-second buckets (the current and the previous one); a few retries are
//! always allowed per window so that a quiet route can still retry.

use std::sync::atomic::{AtomicU64, Ordering};

use super::endpoint::now_ms;

const BUCKET_MS: u64 = 10_000;
/// Retries always allowed per window, whatever the volume.
const MIN_RETRIES: u64 = 3;

/// Sliding counts of successes and retries.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    /// Bucket number of `current`.
    epoch: AtomicU64,
    current: [AtomicU64; 2],
    previous: [AtomicU64; 2],
}

const REQUEST: usize = 0;
const RETRY: usize = 1;

impl RetryBudget {
    /// A budget allowing retries of `percent` of requests.
    pub fn new(percent: u32) -> RetryBudget {
        RetryBudget {
            percent: u64::from(percent),
            epoch: AtomicU64::new(now_ms() / BUCKET_MS),
            current: Default::default(),
            previous: Default::default(),
        }
    }

    fn rotate(&self, now: u64) {
        let bucket = now / BUCKET_MS;
        let seen = self.epoch.load(Ordering::Acquire);
        if bucket == seen {
            return;
        }
        if self
            .epoch
            .compare_exchange(seen, bucket, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            for k in [REQUEST, RETRY] {
                let v = if bucket == seen + 1 {
                    self.current[k].swap(0, Ordering::AcqRel)
                } else {
                    self.current[k].store(0, Ordering::Release);
                    0
                };
                self.previous[k].store(v, Ordering::Release);
            }
        }
    }

    fn total(&self, k: usize) -> u64 {
        self.current[k].load(Ordering::Relaxed) + self.previous[k].load(Ordering::Relaxed)
    }

    /// Counts one request (its first attempt).
    pub fn request(&self) {
        self.rotate(now_ms());
        self.current[REQUEST].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when the budget is spent.
    pub fn try_retry(&self) -> bool {
        self.rotate(now_ms());
        let allowed = (self.total(REQUEST) * self.percent / 100).max(MIN_RETRIES);
        if self.total(RETRY) >= allowed {
            return false;
        }
        self.current[RETRY].fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_share_of_requests() {
        let b = RetryBudget::new(20);
        for _ in 0..3 {
            assert!(b.try_retry(), "the floor allows a few retries");
        }
        assert!(!b.try_retry());
        for _ in 0..50 {
            b.request();
        }
        // 20% of 50 = 10 retries in all (3 taken).
        let granted = (0..20).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 7);
    }
}
