//! Retry decisions and outcome recording for the attempts of one request.
//!
//! A failed attempt is retried when the route's `retry` names its condition, attempts remain,
//! the response has not started, the body can be replayed (idempotent method, or a body that fit
//! in the retry buffer within `limits.maxBodyBufferBytes`; a connection that never opened needs
//! no replay) and the route's retry budget allows it.

use std::time::Duration;

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::upstream::endpoint::Outcome;
use crate::upstream::pool::RetrySpec;

/// Why an attempt failed, as `retry.conditions` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The connection could not be opened, or broke before a response.
    ConnectError,
    /// The upstream answered 5xx.
    Status5xx,
    /// The upstream did not answer in time (`readMs` / `perTryMs`).
    Timeout,
}

/// The delay before retry number `attempts` (1 = the first retry): `backoffMs` doubled per
/// further retry, at most 64 times it, and with jitter a random point between half and all of it.
pub fn backoff(r: &RetrySpec, attempts: u32) -> Option<Duration> {
    if r.backoff.is_zero() {
        return None;
    }
    let factor = 1u32 << attempts.saturating_sub(1).min(6);
    let full = r.backoff.saturating_mul(factor);
    Some(if r.jitter {
        full.mul_f64(0.5 + fastrand::f64() * 0.5)
    } else {
        full
    })
}

/// Records the outcome of the attempt in progress from its response status (5xx is a failure).
pub fn record_response(ctx: &mut RequestCtx, status: u16) {
    let outcome = if status >= 500 {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    record(ctx, outcome);
}

/// Records the attempt in progress as failed (connection error or timeout), once.
pub fn record_failure(ctx: &mut RequestCtx) {
    record(ctx, Outcome::Failure);
}

fn record(ctx: &mut RequestCtx, outcome: Outcome) {
    let (Some(site), Some(index)) = (ctx.site.clone(), ctx.route) else {
        return;
    };
    let Some(route) = site.route_at(index) else {
        return;
    };
    let Some(attempt) = ctx.attempt.as_mut() else {
        return;
    };
    if attempt.recorded {
        return;
    }
    attempt.recorded = true;
    let latency = attempt.start.elapsed();
    let tripped = route
        .pool
        .record(attempt.guard.state(), attempt.place, outcome, Some(latency));
    if tripped {
        tracing::warn!(
            route = &*route.id,
            upstream = ?ctx.upstream,
            "upstream ejected or its circuit opened after failures"
        );
    }
}

/// Whether the failed attempt may be retried under the route's policy and budget.
pub fn may_retry(session: &Session, ctx: &RequestCtx, condition: Condition) -> bool {
    let (Some(site), Some(route)) = (ctx.site.as_ref(), ctx.route()) else {
        return false;
    };
    let Some(r) = route.pool.retry() else {
        return false;
    };
    if ctx.attempts >= r.attempts || session.response_written().is_some() {
        return false;
    }
    let wanted = match condition {
        Condition::ConnectError => r.on_connect_error,
        Condition::Status5xx => r.on_5xx,
        Condition::Timeout => r.on_timeout,
    };
    if !wanted {
        return false;
    }
    // Whatever the method, a body is replayed only from the retry buffer.
    let replayable = !session.as_ref().retry_buffer_truncated()
        && (session.req_header().method.is_idempotent()
            || ctx.body_bytes <= site.limits.max_body_buffer);
    let unsent = condition == Condition::ConnectError && ctx.body_bytes == 0;
    if !(replayable || unsent) {
        return false;
    }
    route.pool.try_retry()
}
