//! Admission under load: `limits.maxInflightRequests` with priority shedding above
//! `limits.priorityThreshold` and the bounded waiting room `limits.queue`.
//!
//! Shedding is on when the site sets `priorityThreshold` or one of its routes sets `priority`.
//! Above the threshold a request is admitted only when its route's priority (0–100) is at least
//! the share of the remaining headroom already used: at 80% of the limit everything passes, at
//! 90% only priority ≥ 50, at the limit only priority 100. At the limit a request waits in the
//! queue when there is room (only priority 100 when shedding is on), else it gets 503.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::checks::Refusal;
use super::ctx::InflightGuard;
use crate::snapshot::{SiteLimits, SiteState};

/// Default priority of a route.
pub const DEFAULT_PRIORITY: u8 = 50;

/// Whether a request of `priority` is shed with `n` in flight out of `max`.
pub fn shed(n: usize, max: usize, threshold: f64, priority: u8) -> bool {
    let floor = max as f64 * threshold;
    if (n as f64) <= floor || priority >= 100 || max == 0 {
        return false;
    }
    let used = (n as f64 - floor) / (max as f64 - floor).max(1.0);
    f64::from(priority) / 100.0 < used
}

/// Admits one request to the site, waiting in the queue when configured. The guard counts it
/// in flight until dropped.
pub async fn admit(
    state: &Arc<SiteState>,
    limits: &SiteLimits,
    priority: u8,
) -> Result<Option<InflightGuard>, Refusal> {
    let Some(max) = limits.max_inflight else {
        return Ok(None);
    };
    let (guard, n) = InflightGuard::enter(state.clone());
    let shedding = |n: usize| {
        limits
            .priority_threshold
            .is_some_and(|t| shed(n.min(max), max, t, priority))
    };
    if n <= max && !shedding(n) {
        return Ok(Some(guard));
    }
    guard.abandon();
    if shedding(n) {
        // Under shedding only the top priority may wait in the queue.
        return Err(Refusal {
            status: 503,
            reason: "shed under load: this route's priority is too low",
            challenge: None,
        });
    }
    let Some((size, wait)) = limits.queue else {
        return Err(Refusal {
            status: 503,
            reason: "too many requests in flight",
            challenge: None,
        });
    };
    if state.queued.fetch_add(1, Ordering::AcqRel) >= size {
        state.queued.fetch_sub(1, Ordering::AcqRel);
        return Err(Refusal {
            status: 503,
            reason: "too many requests in flight and the queue is full",
            challenge: None,
        });
    }
    let deadline = Instant::now() + wait;
    let result = loop {
        let notified = state.released.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (guard, n) = InflightGuard::enter(state.clone());
        if n <= max {
            break Ok(Some(guard));
        }
        guard.abandon();
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break Err(Refusal {
                status: 503,
                reason: "timed out waiting in the queue",
                challenge: None,
            });
        }
    };
    state.queued.fetch_sub(1, Ordering::AcqRel);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_rises_with_load() {
        assert!(!shed(80, 100, 0.8, 0));
        assert!(shed(81, 100, 0.8, 0));
        assert!(!shed(90, 100, 0.8, 50));
        assert!(shed(91, 100, 0.8, 50));
        assert!(!shed(100, 100, 0.8, 100));
        assert!(shed(100, 100, 0.8, 99));
    }
}
