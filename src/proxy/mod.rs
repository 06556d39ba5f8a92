//! The gateway: Conduit's implementation of Pingora's `ProxyHttp`, one method per phase.
//!
//! `request_filter` resolves the site and route and answers at the edge (health, refusals);
//! `upstream_peer` picks the target; the header filters rewrite what crosses; `fail_to_proxy` is
//! the one place an error becomes a response; `logging` writes the access log.

pub mod admission;
pub mod checks;
pub mod client;
pub mod ctx;
pub mod failure;
pub mod forwarded;
pub mod hedge;
pub mod hop;
pub mod mirror;
pub mod normalize;
pub mod request_id;
pub mod response_headers;
pub mod retry;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::compile::host::normalize_host;
use crate::compile::route::RequestView;
use crate::observe::access_log::LogEntry;
use crate::snapshot::SnapshotHandle;
use crate::upstream;
use crate::upstream::pool::{NoTarget, SelectRequest};
use checks::Refusal;
use ctx::{InflightGuard, RequestCtx};
use request_id::RequestId;

/// Conduit's proxy logic; one instance serves every listener.
pub struct Gateway {
    handle: Arc<SnapshotHandle>,
    inflight: Arc<AtomicUsize>,
}

impl Gateway {
    /// A gateway reading `handle`; `inflight` counts requests in progress (for draining).
    pub fn new(handle: Arc<SnapshotHandle>, inflight: Arc<AtomicUsize>) -> Self {
        Self { handle, inflight }
    }
}

/// What `request_filter` decided.
enum Decision {
    Proxy,
    Health,
    /// `tls.httpRedirectPort`: 301 to this `https://` URL.
    Redirect(String),
}

/// Replaces any client-sent `X-Client-Cert-*` headers with the facts of the connection's
/// verified client certificate (mTLS ports only), so routing, auth and the upstream can use them.
fn client_cert_headers(session: &mut Session, snapshot: &crate::snapshot::Snapshot) {
    use crate::tls::client_cert::{self, FINGERPRINT, SAN, SUBJECT};
    let req = session.req_header_mut();
    for name in [SUBJECT, SAN, FINGERPRINT] {
        if req.headers.contains_key(name) {
            let _ = req.remove_header(name);
        }
    }
    let (Some(client), Some(local)) = (
        session.client_addr().and_then(|a| a.as_inet()).copied(),
        session.server_addr().and_then(|a| a.as_inet()).copied(),
    ) else {
        return;
    };
    let mtls = snapshot
        .ports
        .get(&local.port())
        .and_then(|p| p.tls.as_ref())
        .is_some_and(|t| t.policy.client_auth.is_some());
    if !mtls {
        return;
    }
    if let Some(cert) = client_cert::lookup(client, local) {
        let req = session.req_header_mut();
        for (name, value) in [
            (SUBJECT, &cert.subject),
            (SAN, &cert.san),
            (FINGERPRINT, &cert.fingerprint),
        ] {
            if !value.is_empty() {
                let _ = req.insert_header(name, value.as_str());
            }
        }
    }
}

/// The `https://` URL of a request received on a redirect port: same host, path and query.
fn https_url(host: &str, port: u16, req: &RequestHeader) -> String {
    // `host` is normalised: IPv6 literals keep their brackets.
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("https://{host}{port}{target}")
}

fn refusal(status: u16, reason: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        challenge: None,
    }
}

/// Turns the client's request head into the one sent upstream: URI rewrite, hop-by-hop headers
/// removed, forwarding headers, request id, and `Connection: close` when the route keeps no
/// upstream connections alive. Runs in `upstream_request_filter` and for hedged attempts; an
/// error (a rewritten path that is no valid URI) is answered with 400.
pub(crate) fn prepare_upstream_request(
    session: &Session,
    ctx: &RequestCtx,
    upstream: &mut RequestHeader,
) -> Result<()> {
    if let Some(path) = &ctx.upstream_path {
        let uri = match upstream.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let uri = uri.parse::<http::Uri>().map_err(|e| {
            Error::because(
                ErrorType::HTTPStatus(400),
                "rewritten path is not a valid URI",
                e,
            )
        })?;
        upstream.set_uri(uri);
    }
    hop::strip(upstream);
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    forwarded::apply(upstream, ctx.peer_ip, ctx.client_ip, ctx.trusted_peer, tls);
    upstream.insert_header(request_id::HEADER, ctx.request_id.header_value())?;
    if ctx.route().is_some_and(|r| !r.pool.keepalive()) && !hop::is_upgrade(&upstream.headers) {
        upstream.insert_header(http::header::CONNECTION, "close")?;
    }
    if let Some(t) = ctx.site.as_ref().and_then(|s| s.request_transform.as_ref()) {
        t.apply_request(upstream, &ctx.identity, ctx.request_id.as_str());
    }
    Ok(())
}

/// Answers a request the access filters turned away.
async fn deny(session: &mut Session, denial: crate::filter::Denial, request_id: &str) {
    match denial {
        crate::filter::Denial::Refused(r) => {
            let challenge = r.challenge.as_deref().map(|c| ("www-authenticate", c));
            failure::respond(
                session,
                r.status,
                r.reason,
                request_id,
                false,
                challenge.as_slice(),
            )
            .await;
        }
        crate::filter::Denial::Answer(a) => {
            let Ok(mut resp) = ResponseHeader::build_no_case(a.status, Some(a.headers.len() + 2))
            else {
                return;
            };
            for (name, value) in a.headers {
                let _ = resp.append_header(name, value);
            }
            let _ = resp.insert_header(http::header::CONTENT_LENGTH, a.body.len());
            let _ = resp.insert_header(request_id::HEADER, request_id);
            let head = session.req_header().method == http::Method::HEAD;
            let empty = head || a.body.is_empty();
            if session
                .write_response_header(Box::new(resp), empty)
                .await
                .is_ok()
                && !empty
            {
                let _ = session.write_response_body(Some(a.body), true).await;
            }
        }
    }
}

impl Gateway {
    /// Site, checks, normalisation and route for one request; no I/O.
    fn decide(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<Decision, Refusal> {
        let req = session.req_header();
        ctx.peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());

        // Host (400 when missing, repeated or malformed).
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        let host_value = match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => return Err(refusal(400, "repeated Host header")),
            (Some(h), None) => h.as_bytes(),
            (None, _) => match req.uri.authority() {
                Some(a) if session.is_http2() => a.as_str().as_bytes(),
                _ => return Err(refusal(400, "missing Host header")),
            },
        };
        let host = normalize_host(host_value).ok_or(refusal(400, "invalid Host header"))?;

        // Site by local port and host.
        let port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port())
            .unwrap_or_default();
        if let Some(https) = ctx.snapshot.ports.get(&port).and_then(|p| p.redirect_https) {
            return Ok(Decision::Redirect(https_url(&host, https, req)));
        }
        let site = ctx
            .snapshot
            .ports
            .get(&port)
            .and_then(|p| p.find(&host))
            .cloned()
            .ok_or(refusal(404, "no site for this host"))?;
        ctx.trusted_peer = forwarded::is_trusted(ctx.peer_ip, &site.trusted_proxies);
        ctx.client_ip = forwarded::client_ip(req, ctx.peer_ip, &site.trusted_proxies);
        // What only the access log needs is copied only when there is one.
        if site.access_log.is_some() {
            ctx.host = Some(host.into_owned());
            ctx.target = req
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
        }
        ctx.site = Some(site.clone());

        if let (Some(max), Some(ip)) = (site.limits.max_conns_per_ip, ctx.peer_ip) {
            if crate::server::connections::CONNECTIONS.count(ip) > max {
                return Err(refusal(429, "too many connections from this address"));
            }
        }
        checks::framing(req)?;
        checks::header_limits(req, &site.limits)?;
        checks::declared_body(req, &site.limits)?;

        let raw_path = req.uri.path();
        let path =
            normalize::normalize_path(raw_path, site.merge_slashes).map_err(|e| match e {
                normalize::PathError::NotOriginForm => {
                    refusal(400, "request target must be a path")
                }
                normalize::PathError::Backslash => refusal(400, "backslash in path"),
                normalize::PathError::Nul => refusal(400, "NUL in path"),
                normalize::PathError::InvalidChar => refusal(400, "invalid character in path"),
                normalize::PathError::BadEscape => refusal(400, "invalid percent-encoding in path"),
            })?;

        if site.health_path.as_deref() == Some(&*path)
            && matches!(req.method.as_str(), "GET" | "HEAD")
        {
            return Ok(Decision::Health);
        }

        let view = RequestView {
            method: req.method.as_str(),
            path: &path,
            query: req.uri.query(),
            headers: &req.headers,
        };
        let Some(route) = site.find_route(&view) else {
            return Err(refusal(404, "no route for this path"));
        };
        ctx.route = Some(route);
        let chosen = site.route_at(route);
        let limited = site
            .rate_limits
            .apply_with(chosen.and_then(|r| r.rate_limit.as_ref()));
        let access = chosen.map(|r| &r.access).filter(|a| !a.is_empty());
        if limited || access.is_some() {
            // One copy of the normalised path serves the access checks and the limits.
            ctx.access_path = Some(path.to_string());
        }
        if limited {
            ctx.rate_limit = crate::filter::rate_limit::RequestState::Pending;
        }
        if let Some(access) = access {
            if access.reads_query_key() {
                // A key sent as `?api_key=` never reaches the access log.
                if let Some(t) = crate::filter::api_key::redact_target(&ctx.target) {
                    ctx.target = t;
                }
            }
        }
        if hop::is_upgrade(&req.headers) && !chosen.is_some_and(|r| r.websocket) {
            return Err(refusal(
                403,
                "WebSocket upgrades are not enabled on this route (set `websocket: true`)",
            ));
        }
        ctx.upstream_path = match chosen.and_then(|r| r.upstream_path(&path)) {
            Some(p) => Some(p),
            None if path != raw_path => Some(path.into_owned()),
            None => None,
        };
        Ok(Decision::Proxy)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let (guard, _) = InflightGuard::enter(self.inflight.clone());
        RequestCtx {
            snapshot: self.handle.load(),
            start: Instant::now(),
            request_id: RequestId::default(),
            site: None,
            route: None,
            peer_ip: None,
            client_ip: None,
            trusted_peer: false,
            host: None,
            upstream_path: None,
            upstream: None,
            upstream_start: None,
            upstream_ms: None,
            body_bytes: 0,
            target: String::new(),
            _process: guard,
            site_inflight: None,
            attempts: 0,
            tried: ctx::Tried::default(),
            attempt: None,
            attempt_body: 0,
            retry_5xx: false,
            circuit_open: false,
            set_cookie: None,
            access_path: None,
            identity: crate::filter::Identity::default(),
            rate_limit: Default::default(),
            mirror: mirror::MirrorFeed::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // A pending ACME HTTP-01 challenge is answered before any site or redirect.
        if crate::ext::acme_hooks::answer_http01(session).await? {
            return Ok(true);
        }
        // Headers the client names in `Connection` go now, before Conduit adds its own.
        hop::strip_listed(session.req_header_mut());
        client_cert_headers(session, &ctx.snapshot);
        ctx.request_id = session
            .req_header()
            .headers
            .get(&request_id::NAME)
            .and_then(RequestId::from_client)
            .unwrap_or_else(RequestId::generate);
        let decided = match self.decide(session, ctx) {
            Ok(Decision::Proxy) => match (&ctx.site, ctx.route()) {
                (Some(site), Some(route)) => {
                    let site = site.clone();
                    let priority = route.priority;
                    let access = route.access.clone();
                    let route_limit = route.rate_limit.clone();
                    // A limit keyed by a header sees the header as the client sent it, even
                    // when an access check removes it (an API key) before forwarding.
                    let keyed_headers = if access.is_empty() {
                        None
                    } else {
                        site.rate_limits
                            .keyed_headers(route_limit.as_ref(), &session.req_header().headers)
                    };
                    let filter_path = ctx.access_path.take();
                    if let Some(path) = filter_path.as_deref().filter(|_| !access.is_empty()) {
                        let peer = crate::filter::Peer {
                            peer: ctx.peer_ip,
                            client: ctx.client_ip,
                            trusted: ctx.trusted_peer,
                            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
                        };
                        match access.check(session.req_header_mut(), path, peer).await {
                            Ok(identity) => ctx.identity = identity,
                            Err(denial) => {
                                deny(session, denial, ctx.request_id.as_str()).await;
                                return Ok(true);
                            }
                        }
                    }
                    if let Err(refused) = crate::filter::rate_limit::enforce(
                        &site.rate_limits,
                        route_limit.as_deref(),
                        filter_path.as_deref().unwrap_or("/"),
                        keyed_headers
                            .as_ref()
                            .unwrap_or(&session.req_header().headers),
                        ctx.client_ip,
                        ctx.identity.consumer.as_deref(),
                        &mut ctx.rate_limit,
                    )
                    .await
                    {
                        crate::filter::rate_limit::refuse(
                            session,
                            &refused,
                            ctx.request_id.as_str(),
                        )
                        .await;
                        return Ok(true);
                    }
                    admission::admit(&site.state, &site.limits, priority)
                        .await
                        .map(|guard| {
                            ctx.site_inflight = guard;
                            Decision::Proxy
                        })
                }
                _ => Ok(Decision::Proxy),
            },
            other => other,
        };
        match decided {
            Ok(Decision::Proxy) if hedge::applies(session, ctx) => hedge::proxy(session, ctx).await,
            Ok(Decision::Proxy) => Ok(false),
            Ok(Decision::Redirect(location)) => {
                let mut resp = ResponseHeader::build_no_case(301, Some(4))?;
                resp.insert_header(http::header::LOCATION, location)?;
                resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
                resp.insert_header(request_id::HEADER, ctx.request_id.header_value())?;
                session.write_response_header(Box::new(resp), true).await?;
                Ok(true)
            }
            Ok(Decision::Health) => {
                let head = session.req_header().method == http::Method::HEAD;
                let body = Bytes::from_static(b"{\"status\":\"ok\"}\n");
                let mut resp = ResponseHeader::build_no_case(200, Some(4))?;
                resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
                resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
                resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
                resp.insert_header(request_id::HEADER, ctx.request_id.header_value())?;
                session.write_response_header(Box::new(resp), head).await?;
                if !head {
                    session.write_response_body(Some(body), true).await?;
                }
                Ok(true)
            }
            Err(r) => {
                // A malformed request may have left the connection in an unknown state.
                failure::respond(
                    session,
                    r.status,
                    r.reason,
                    ctx.request_id.as_str(),
                    matches!(r.status, 400 | 413 | 429 | 431),
                    &[],
                )
                .await;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = body {
            // A retry replays the buffered start of the body: count only bytes not seen before.
            ctx.attempt_body += b.len() as u64;
            if ctx.attempt_body > ctx.body_bytes {
                ctx.body_bytes = ctx.attempt_body;
                let max = ctx.site.as_ref().and_then(|s| s.limits.max_body_bytes);
                if max.is_some_and(|m| ctx.body_bytes > m) {
                    return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
                }
            }
        }
        ctx.mirror
            .feed(body.as_ref(), end_of_stream, ctx.attempt_body);
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(site), Some(index)) = (ctx.site.clone(), ctx.route) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let Some(route) = site.route_at(index) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let pool = &route.pool;
        if ctx.attempts > 0 {
            if let Some(delay) = pool.retry().and_then(|r| retry::backoff(r, ctx.attempts)) {
                tokio::time::sleep(delay).await;
            }
        }
        // The previous attempt (if any) is over.
        ctx.attempt = None;
        let req = session.req_header();
        let select = SelectRequest {
            client_ip: ctx.client_ip,
            target: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            headers: &req.headers,
            tried: ctx.tried.as_slice(),
        };
        let chosen = match pool.select(&select) {
            Ok(c) => c,
            Err(NoTarget::CircuitOpen) => {
                ctx.circuit_open = true;
                return Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    "circuit open: every upstream is failing or at its connection limit",
                );
            }
            Err(NoTarget::StickyDown) => {
                return Error::e_explain(ErrorType::HTTPStatus(503), "the pinned upstream is down")
            }
            Err(NoTarget::AllDown) => {
                return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy upstream")
            }
        };
        if let Some(sticky) = pool.sticky() {
            let pinned = upstream::sticky::cookie(&req.headers, &sticky.cookie)
                .and_then(|v| sticky.verify(v));
            ctx.set_cookie =
                (pinned != Some(chosen.endpoint.id)).then(|| sticky.set_cookie(chosen.endpoint.id));
        }
        let endpoint = chosen.endpoint;
        if ctx.attempts == 0 {
            pool.count_request();
        }
        ctx.tried.push(endpoint.id);
        ctx.attempts += 1;
        ctx.attempt_body = 0;
        ctx.attempt = Some(ctx::Attempt {
            guard: endpoint.state.begin(),
            place: chosen.place,
            start: Instant::now(),
            recorded: false,
        });
        ctx.upstream = Some(endpoint.addr);
        if site.access_log.is_some() {
            ctx.upstream_start = Some(Instant::now());
        }
        Ok(Box::new(endpoint.peer.clone()))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        retry::record_failure(ctx);
        if retry::may_retry(session, ctx, retry::Condition::ConnectError) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if std::mem::take(&mut ctx.retry_5xx) {
            // Decided in upstream_response_filter.
            e.set_retry(true);
            return e;
        }
        retry::record_failure(ctx);
        let condition = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => retry::Condition::Timeout,
            _ => retry::Condition::ConnectError,
        };
        if session.response_written().is_some() {
            e.set_retry(false);
        } else if ctx.route().is_some_and(|r| r.pool.retry().is_some()) {
            let again = retry::may_retry(session, ctx, condition);
            e.set_retry(again);
        } else if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            // A stale pooled connection may be retried once on a fresh one.
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        prepare_upstream_request(session, ctx, upstream)?;
        mirror::start(session, upstream, ctx);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_ms = ctx.upstream_start.map(|t| t.elapsed().as_millis() as u64);
        let status = upstream_response.status.as_u16();
        retry::record_response(ctx, status);
        if status >= 500 && retry::may_retry(session, ctx, retry::Condition::Status5xx) {
            ctx.retry_5xx = true;
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                "upstream answered 5xx; retrying on another target",
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response_headers::finish(resp, ctx);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = failure::status_of(e);
        if code > 0 && session.response_written().is_none() {
            if ctx.request_id.is_empty() {
                ctx.request_id = RequestId::generate();
            }
            let message = match (code, e.etype(), &e.context) {
                // Our own refusals explain themselves.
                (503, ErrorType::HTTPStatus(_), Some(why)) => why.as_str(),
                (502, ..) => "upstream unavailable",
                (504, ..) => "upstream timed out",
                _ => failure::reason(code),
            };
            let extra: &[(&'static str, &str)] = if ctx.circuit_open {
                &[("x-conduit-circuit-open", "true")]
            } else {
                &[]
            };
            failure::respond(session, code, message, ctx.request_id.as_str(), true, extra).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let Some(site) = &ctx.site else { return };
        let Some(log) = &site.access_log else { return };
        let req = session.req_header();
        let header =
            |name: http::header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
        let protocol = match req.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        };
        let entry = LogEntry {
            // When the request arrived, as access logs report it.
            time: SystemTime::now()
                .checked_sub(ctx.start.elapsed())
                .unwrap_or_else(SystemTime::now),
            client: ctx.client_ip,
            method: req.method.as_str(),
            target: &ctx.target,
            protocol,
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            bytes: session.body_bytes_sent(),
            duration: ctx.start.elapsed(),
            upstream: ctx.upstream,
            upstream_ms: ctx.upstream_ms,
            route: ctx.route().map(|r| &*r.id),
            request_id: ctx.request_id.as_str(),
            host: ctx.host.as_deref(),
            referer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
        };
        log.record(&entry);
    }
}
