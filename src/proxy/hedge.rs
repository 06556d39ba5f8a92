//! Hedged requests (`hedge {delayMs, maxExtra}`): a GET or HEAD without a body goes to one
//! target; when no response head has come back after `delayMs`, another attempt goes to a
//! different target, up to `maxExtra` more, each a further `delayMs` later (at once when every
//! attempt sent so far has failed). The first response head wins and is streamed to the client;
//! the other attempts are dropped, which closes their upstream connections.
//!
//! Pingora's proxy loop drives one upstream at a time, so a hedged request is answered from
//! `request_filter` with Pingora's client connector (one shared instance with its own connection
//! pool). The route's `retry` does not apply to hedged requests: the extra attempts take its
//! place. When every attempt fails, the last error goes to `fail_to_proxy` (502, or 504 after a
//! timeout), like any upstream failure.

use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use super::hop;
use crate::upstream;
use crate::upstream::endpoint::{AttemptGuard, Endpoint, Outcome};
use crate::upstream::pool::{NoTarget, Place, Pool, SelectRequest};

/// Whether this request is hedged: its route sets `hedge`, it is a GET or HEAD without a body,
/// and it is not a protocol upgrade. Runs in `request_filter` once the request was admitted.
pub fn applies(session: &mut Session, ctx: &RequestCtx) -> bool {
    if ctx.route().and_then(|r| r.hedge).is_none() {
        return false;
    }
    let req = session.req_header();
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && !hop::is_upgrade(&req.headers)
        && session.is_body_empty()
}

/// One attempt sent: its target, where the target sits, when it went out, and the in-flight
/// count it holds until it ends.
struct Sent<'a> {
    endpoint: &'a Endpoint,
    place: Place,
    start: Instant,
    guard: Option<AttemptGuard>,
}

/// Proxies a hedged request and answers it. Returns `Ok(true)` once the response was written;
/// an error goes to `fail_to_proxy` (no target, every attempt failed, or the stream broke).
pub async fn proxy(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let (Some(site), Some(index)) = (ctx.site.clone(), ctx.route) else {
        return Ok(false);
    };
    let Some(route) = site.route_at(index) else {
        return Ok(false);
    };
    let Some((delay, max_extra)) = route.hedge else {
        return Ok(false);
    };
    let pool = &route.pool;
    let req = upstream_request(session, ctx)?;
    let started = Instant::now();
    if site.access_log.is_some() {
        ctx.upstream_start = Some(started);
    }

    let mut sent: Vec<Sent<'_>> = Vec::with_capacity(1 + max_extra as usize);
    let mut pending = FuturesUnordered::new();
    match choose(pool, session, ctx) {
        Ok(Some((endpoint, place))) => {
            pending.push(attempt(sent.len(), &endpoint.peer, &req));
            sent.push(begin(ctx, endpoint, place));
        }
        Ok(None) => return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy upstream"),
        Err(e) => return Err(no_target(ctx, e)),
    }

    let mut extra_left = max_extra;
    let mut next = tokio::time::Instant::now() + delay;
    let mut last_error: Option<Box<Error>> = None;
    let won = loop {
        let may_hedge = extra_left > 0;
        if pending.is_empty() && !may_hedge {
            break None;
        }
        tokio::select! {
            done = pending.next(), if !pending.is_empty() => {
                let Some((i, result)) = done else { continue };
                match result {
                    Ok(up) => break Some((i, up)),
                    Err(e) => {
                        if let Some(s) = sent.get_mut(i) {
                            record(pool, route.id.as_ref(), s, Outcome::Failure);
                            s.guard = None;
                        }
                        tracing::debug!(route = &*route.id, error = %e, "hedged attempt failed");
                        last_error = Some(e);
                        if pending.is_empty() {
                            // Nothing left to wait for: the next attempt goes now.
                            next = tokio::time::Instant::now();
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(next), if may_hedge => {
                extra_left -= 1;
                next = tokio::time::Instant::now() + delay;
                match choose(pool, session, ctx) {
                    Ok(Some((endpoint, place))) => {
                        tracing::debug!(
                            route = &*route.id,
                            upstream = %endpoint.addr,
                            "no response head yet: hedging to another target"
                        );
                        pending.push(attempt(sent.len(), &endpoint.peer, &req));
                        sent.push(begin(ctx, endpoint, place));
                    }
                    // No other target can take it: wait for the attempts in flight.
                    Ok(None) | Err(_) => extra_left = 0,
                }
            }
            else => break None,
        }
    };
    // Dropping the losers cancels them and closes their connections; they record nothing.
    drop(pending);
    let Some((i, mut up)) = won else {
        return Err(last_error.unwrap_or_else(|| {
            Error::explain(
                ErrorType::HTTPStatus(502),
                "no hedged attempt could be sent",
            )
        }));
    };
    let now = upstream::endpoint::now_ms();
    for (j, s) in sent.iter_mut().enumerate() {
        if j != i && s.guard.take().is_some() {
            // A cancelled loser took at least this long: its latency must not look unknown.
            s.endpoint.state.observe_latency(s.start.elapsed(), now);
        }
    }
    let Some(winner) = sent.get_mut(i) else {
        return Error::e_explain(ErrorType::InternalError, "hedged attempt lost");
    };
    let Some(head) = up.response_header().cloned() else {
        return Error::e_explain(ErrorType::InternalError, "hedged attempt without a head");
    };
    let status = head.status.as_u16();
    let outcome = if status >= 500 {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    record(pool, route.id.as_ref(), winner, outcome);
    let endpoint = winner.endpoint;
    ctx.upstream = Some(endpoint.addr);
    ctx.upstream_ms = ctx.upstream_start.map(|t| t.elapsed().as_millis() as u64);
    if let Some(sticky) = pool.sticky() {
        let pinned = upstream::sticky::cookie(&session.req_header().headers, &sticky.cookie)
            .and_then(|v| sticky.verify(v));
        ctx.set_cookie = (pinned != Some(endpoint.id)).then(|| sticky.set_cookie(endpoint.id));
    }

    // The head, as `response_filter` treats it.
    let head_only = session.req_header().method == http::Method::HEAD;
    let no_body = head_only || matches!(status, 204 | 304);
    let end = no_body || up.response_done();
    let mut resp = Box::new(head);
    if !end
        && !resp.headers.contains_key(http::header::TRANSFER_ENCODING)
        && !resp.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        // A close-delimited body is re-framed so the client connection can be kept.
        resp.set_version(http::Version::HTTP_11);
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    super::response_headers::finish(&mut resp, ctx);
    session
        .write_response_header(resp, end)
        .await
        .map_err(|e| e.into_down())?;
    if end && !head_only {
        session
            .write_response_body(None, true)
            .await
            .map_err(|e| e.into_down())?;
    }
    if !end {
        loop {
            let chunk = up.read_response_body().await.map_err(|e| e.into_up())?;
            let done = chunk.is_none() || up.response_done();
            session
                .write_response_body(chunk, done)
                .await
                .map_err(|e| e.into_down())?;
            if done {
                break;
            }
        }
    }
    let peer = &endpoint.peer;
    if let Some(c) = super::client::connector().await {
        c.release_http_session(up, peer, peer.options.idle_timeout)
            .await;
    }
    Ok(true)
}

/// The request head every attempt sends: HTTP/1.1 with `Host`, prepared like any proxied
/// request.
fn upstream_request(session: &Session, ctx: &RequestCtx) -> Result<RequestHeader> {
    let mut req = session.req_header().clone();
    req.set_version(http::Version::HTTP_11);
    if !req.headers.contains_key(http::header::HOST) {
        // HTTP/2 carries the host in `:authority`; HTTP/1.1 upstreams expect `Host`.
        if let Some(authority) = req.uri.authority().map(|a| a.as_str().to_string()) {
            req.insert_header(http::header::HOST, authority)?;
        }
    }
    req.remove_header("http2-settings");
    super::prepare_upstream_request(session, ctx, &mut req)?;
    Ok(req)
}

/// Selects the target of the next attempt, one this request has not tried yet (`None` when
/// there is none).
fn choose<'a>(
    pool: &'a Pool,
    session: &Session,
    ctx: &RequestCtx,
) -> std::result::Result<Option<(&'a Endpoint, Place)>, NoTarget> {
    let req = session.req_header();
    let select = SelectRequest {
        client_ip: ctx.client_ip,
        target: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        headers: &req.headers,
        tried: ctx.tried.as_slice(),
    };
    let chosen = pool.select(&select)?;
    if ctx.tried.as_slice().contains(&chosen.endpoint.id) {
        return Ok(None);
    }
    Ok(Some((chosen.endpoint, chosen.place)))
}

/// Counts an attempt to `endpoint` as sent.
fn begin<'a>(ctx: &mut RequestCtx, endpoint: &'a Endpoint, place: Place) -> Sent<'a> {
    ctx.tried.push(endpoint.id);
    ctx.attempts += 1;
    Sent {
        endpoint,
        place,
        start: Instant::now(),
        guard: Some(endpoint.state.begin()),
    }
}

/// Records an attempt's outcome with its latency.
fn record(pool: &Pool, route: &str, sent: &Sent<'_>, outcome: Outcome) {
    let state = &sent.endpoint.state;
    if pool.record(state, sent.place, outcome, Some(sent.start.elapsed())) {
        tracing::warn!(
            route,
            upstream = %sent.endpoint.addr,
            "upstream ejected or its circuit opened after failures"
        );
    }
}

/// The refusal for a pool with no target to offer, as `upstream_peer` words it.
fn no_target(ctx: &mut RequestCtx, e: NoTarget) -> Box<Error> {
    let why = match e {
        NoTarget::CircuitOpen => {
            ctx.circuit_open = true;
            "circuit open: every upstream is failing or at its connection limit"
        }
        NoTarget::StickyDown => "the pinned upstream is down",
        NoTarget::AllDown => "no healthy upstream",
    };
    Error::explain(ErrorType::HTTPStatus(503), why)
}

/// One attempt: sends the request to `peer` and waits for its (final) response head. Returns
/// the session holding that head, its body still to read. A failure on a pooled connection is
/// tried once more, as the upstream may have closed it while idle.
async fn attempt<'a>(
    i: usize,
    peer: &'a HttpPeer,
    req: &'a RequestHeader,
) -> (usize, Result<HttpSession>) {
    let mut again = true;
    let result = loop {
        let Some(connector) = super::client::connector().await else {
            break Error::e_explain(ErrorType::InternalError, "no upstream client connector");
        };
        let (mut up, reused) = match connector.get_http_session(peer).await {
            Ok(s) => s,
            Err(e) => break Err(e.into_up()),
        };
        up.set_read_timeout(peer.options.read_timeout);
        up.set_write_timeout(peer.options.write_timeout);
        match exchange(&mut up, req).await {
            Ok(()) => break Ok(up),
            Err(e) if reused && again && !timed_out(&e) => again = false,
            Err(e) => break Err(e.into_up()),
        }
    };
    (i, result)
}

fn timed_out(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    )
}

/// Writes the request head and reads response heads until a final one (1xx are skipped).
async fn exchange(up: &mut HttpSession, req: &RequestHeader) -> Result<()> {
    up.write_request_header(Box::new(req.clone())).await?;
    up.finish_request_body().await?;
    loop {
        up.read_response_header().await?;
        match up.response_header() {
            Some(h) if h.status.is_informational() => continue,
            Some(_) => return Ok(()),
            None => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response head");
            }
        }
    }
}
