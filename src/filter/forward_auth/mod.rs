//! `forwardAuth`: an external service decides about each request.
//!
//! For every request whose path is not in `skipPaths`, Conduit sends the auth service a request
//! with the original method and no body, the client's headers named in `requestHeaders`
//! (default `Authorization` and `Cookie`) and `X-Forwarded-Method`, `-Uri`, `-For`, `-Proto` and
//! `-Host`. A 2xx answer lets the request through, with the answer's headers named in
//! `responseHeaders` replacing the client's headers of those names. Any other answer goes to the
//! client as the service gave it (status, body up to [`exchange::MAX_BODY_BYTES`], and its
//! `Content-Type`, `WWW-Authenticate`, `Location` and `Set-Cookie`). When the service cannot be
//! asked (unreachable, broken answer, `timeoutMs` passed) the request is refused with 503; it is
//! never let through. Header values (credentials) are never logged.

mod exchange;
mod url;

use std::time::Duration;

use http::header;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

use super::{Answer, Denial, Peer};
use crate::compile::glob::Glob;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;
use crate::upstream::target::{build_peer, check_server_name, CaBundle, TlsSpec};
use url::AuthUrl;

pub use exchange::MAX_BODY_BYTES;

/// `timeoutMs` when not set.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// The largest accepted `timeoutMs`.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Client headers sent to the auth service when `requestHeaders` is not set.
pub const DEFAULT_REQUEST_HEADERS: [&str; 2] = ["authorization", "cookie"];
/// Headers of a denying answer that reach the client.
pub const PASSED_BACK: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::WWW_AUTHENTICATE,
    header::LOCATION,
    header::SET_COOKIE,
];
/// How long an idle pooled connection to the auth service is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Never copied either way, besides the headers the proxy manages (`hop::is_proxy_managed`).
const NOT_COPIED: [&str; 2] = ["expect", "proxy-authenticate"];

/// Whether a header describes one hop's connection or the message framing.
fn not_copied(h: &HeaderName) -> bool {
    crate::proxy::hop::is_proxy_managed(h.as_str()) || NOT_COPIED.contains(&h.as_str())
}

/// A compiled `forwardAuth`.
pub struct ForwardAuth {
    url: AuthUrl,
    peer: HttpPeer,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
    timeout: Duration,
    skip: Vec<Glob>,
}

impl std::fmt::Debug for ForwardAuth {
    // The URL's path and query are left out: a query may carry a token of the service.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("service", &self.url.base)
            .field("request_headers", &self.request_headers)
            .field("response_headers", &self.response_headers)
            .field("timeout", &self.timeout)
            .field(
                "skip",
                &self.skip.iter().map(Glob::as_str).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Checks a `forwardAuth`; every error carries its field path.
pub fn validate(raw: &raw::ForwardAuth, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let url = AuthUrl::parse(&raw.url);
    if let Err(e) = &url {
        errors.push(ConfigError::new(join(path, "url"), e.clone()));
    }
    if let Some(names) = &raw.request_headers {
        check_names(names, &join(path, "requestHeaders"), true, &mut errors);
    }
    if let Some(names) = &raw.response_headers {
        check_names(names, &join(path, "responseHeaders"), false, &mut errors);
    }
    if raw.timeout_ms.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS) {
        errors.push(ConfigError::new(
            join(path, "timeoutMs"),
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    for (i, pattern) in raw.skip_paths.iter().flatten().enumerate() {
        if let Err(e) = Glob::parse(pattern) {
            errors.push(ConfigError::new(join(path, &format!("skipPaths[{i}]")), e));
        }
    }
    if let Some(tls) = &raw.tls {
        let tp = join(path, "tls");
        if url.as_ref().is_ok_and(|u| !u.target.is_tls()) {
            errors.push(ConfigError::new(
                &tp,
                "only applies to an https:// url; remove it or use https://",
            ));
        }
        if let Some(name) = &tls.server_name {
            if let Err(e) = check_server_name(name) {
                errors.push(ConfigError::new(join(&tp, "serverName"), e));
            }
        }
        if let Some(ca) = &tls.ca {
            if let Err(e) = CaBundle::load(ca) {
                errors.push(ConfigError::new(join(&tp, "ca"), e));
            }
        }
    }
    errors
}

/// Checks a header name list: valid names, listed once, none that describes a connection or
/// framing, and (`request`) none of the `X-Forwarded-*` headers Conduit sets itself.
fn check_names(names: &[String], path: &str, request: bool, errors: &mut Vec<ConfigError>) {
    let mut seen: Vec<HeaderName> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(ConfigError::new(
                p,
                format!("`{name}` is not a valid header name"),
            ));
            continue;
        };
        if not_copied(&h) {
            errors.push(ConfigError::new(
                p,
                format!(
                    "`{name}` describes one connection or the message framing and cannot be copied"
                ),
            ));
        } else if request && own_headers().contains(&h) {
            errors.push(ConfigError::new(
                p,
                format!("`{name}` is always set by forwardAuth itself; remove it"),
            ));
        } else if seen.contains(&h) {
            errors.push(ConfigError::new(p, format!("`{name}` is listed twice")));
        }
        seen.push(h);
    }
}

/// The headers every auth request carries, set by Conduit.
fn own_headers() -> [HeaderName; 5] {
    [
        X_FORWARDED_METHOD,
        X_FORWARDED_URI,
        X_FORWARDED_FOR,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
    ]
}

/// Compiles a `forwardAuth`: parses the URL, resolves its host (DNS, no connection) and builds
/// the peer; a configured CA file is read here. Invalid header names and globs that slipped past
/// [`validate`] are dropped.
pub fn compile(raw: &raw::ForwardAuth) -> Result<ForwardAuth, ConfigError> {
    let url_err = |e: String| ConfigError::new("forwardAuth.url", e);
    let url = AuthUrl::parse(&raw.url).map_err(url_err)?;
    let addr = url.target.resolve().map_err(url_err)?;
    let tls = match &raw.tls {
        None => TlsSpec::default(),
        Some(t) => TlsSpec {
            verify: t.verify.unwrap_or(true),
            server_name: t.server_name.clone(),
            ca: t
                .ca
                .as_deref()
                .map(CaBundle::load)
                .transpose()
                .map_err(|e| ConfigError::new("forwardAuth.tls.ca", e))?,
        },
    };
    if url.target.is_tls() && !tls.verify {
        tracing::warn!(
            service = %url.base,
            "forwardAuth tls.verify is false: the auth service's certificate is not verified"
        );
    }
    let timeout = Duration::from_millis(raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
    let mut peer = build_peer(addr, &url.base, &tls, false).map_err(url_err)?;
    peer.options.connection_timeout = Some(timeout);
    peer.options.idle_timeout = Some(IDLE_TIMEOUT);
    let names = |list: Option<&Vec<String>>, default: &[&'static str]| -> Vec<HeaderName> {
        let mut out: Vec<HeaderName> = Vec::new();
        let parsed = match list {
            Some(l) => l
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect::<Vec<_>>(),
            None => default.iter().map(|n| HeaderName::from_static(n)).collect(),
        };
        for h in parsed {
            if !not_copied(&h) && !out.contains(&h) {
                out.push(h);
            }
        }
        out
    };
    let mut request_headers = names(raw.request_headers.as_ref(), &DEFAULT_REQUEST_HEADERS);
    request_headers.retain(|h| !own_headers().contains(h));
    Ok(ForwardAuth {
        url,
        peer,
        request_headers,
        response_headers: names(raw.response_headers.as_ref(), &[]),
        timeout,
        skip: raw
            .skip_paths
            .iter()
            .flatten()
            .filter_map(|p| Glob::parse(p).ok())
            .collect(),
    })
}

/// The refusal when the auth service gave no usable answer.
fn unavailable() -> Denial {
    Denial::Refused(Refusal {
        status: 503,
        reason: "authentication service unavailable",
        challenge: None,
    })
}

/// The refusal when a denying answer's body is over [`MAX_BODY_BYTES`].
fn too_large() -> Denial {
    Denial::Refused(Refusal {
        status: 502,
        reason: "authentication service answer too large",
        challenge: None,
    })
}

/// Whether a request with `method` usually has a body (the auth request then says it has none).
fn expects_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

impl ForwardAuth {
    /// Asks the auth service; on a 2xx copies `responseHeaders` onto `req`. `path` is the
    /// normalised request path (for `skipPaths`).
    pub async fn check(
        &self,
        req: &mut RequestHeader,
        path: &str,
        peer: Peer,
    ) -> Result<(), Denial> {
        if self.skip.iter().any(|g| g.matches(path)) {
            // Not asked, so nothing vouches for these: a client's copies never pass.
            for name in &self.response_headers {
                req.remove_header(name);
            }
            return Ok(());
        }
        let Ok(question) = self.auth_request(req, path, peer) else {
            tracing::warn!(service = %self.url.base, "forwardAuth: the auth request could not be built");
            return Err(unavailable());
        };
        let reply = match tokio::time::timeout(self.timeout, exchange::ask(&self.peer, &question))
            .await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::warn!(service = %self.url.base, "forwardAuth: authentication service unavailable: {e}");
                return Err(unavailable());
            }
            Err(_) => {
                tracing::warn!(
                    service = %self.url.base,
                    "forwardAuth: authentication service did not answer within {} ms",
                    self.timeout.as_millis()
                );
                return Err(unavailable());
            }
        };
        if (200..300).contains(&reply.status) {
            return self.copy_back(req, &reply.headers).map_err(|_| {
                tracing::warn!(service = %self.url.base, "forwardAuth: the answer's headers could not be copied");
                unavailable()
            });
        }
        let Some(body) = reply.body else {
            tracing::warn!(
                service = %self.url.base,
                status = reply.status,
                "forwardAuth: the auth service's denial has a body over {MAX_BODY_BYTES} bytes"
            );
            return Err(too_large());
        };
        Err(Denial::Answer(Box::new(Answer {
            status: reply.status,
            headers: passed_back(&reply.headers),
            body,
        })))
    }

    /// The request sent to the auth service for `req`; `path` is the normalised path Conduit
    /// routes and forwards, so the service judges what the upstream will be asked for.
    fn auth_request(
        &self,
        req: &RequestHeader,
        path: &str,
        peer: Peer,
    ) -> pingora::Result<RequestHeader> {
        let mut q = RequestHeader::build(
            req.method.clone(),
            self.url.path.as_str().as_bytes(),
            Some(self.request_headers.len() + 8),
        )?;
        q.insert_header(header::HOST, self.url.host.clone())?;
        for name in &self.request_headers {
            if *name == header::COOKIE {
                // One Cookie header for HTTP/1.1, even when an HTTP/2 client split it.
                let parts: Vec<&[u8]> = req
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                if !parts.is_empty() {
                    let joined = HeaderValue::from_bytes(&parts.join(&b"; "[..])).map_err(|e| {
                        pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "cookie", e)
                    })?;
                    q.insert_header(name.clone(), joined)?;
                }
                continue;
            }
            for v in req.headers.get_all(name) {
                q.append_header(name.clone(), v.clone())?;
            }
        }
        q.insert_header(X_FORWARDED_METHOD, req.method.as_str())?;
        let uri = match req.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_string(),
        };
        q.insert_header(X_FORWARDED_URI, uri)?;
        if let Some(ip) = peer.client {
            q.insert_header(X_FORWARDED_FOR, ip.to_string())?;
        }
        q.insert_header(X_FORWARDED_PROTO, if peer.tls { "https" } else { "http" })?;
        let host = req.headers.get(header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = host {
            q.insert_header(X_FORWARDED_HOST, host)?;
        }
        if expects_body(&req.method) {
            q.insert_header(header::CONTENT_LENGTH, "0")?;
        }
        Ok(q)
    }

    /// Replaces the client's `responseHeaders` on `req` with the auth answer's (removed when
    /// the answer lacks them), so a client cannot send its own copies.
    fn copy_back(&self, req: &mut RequestHeader, answer: &HeaderMap) -> pingora::Result<()> {
        for name in &self.response_headers {
            req.remove_header(name);
            for v in answer.get_all(name) {
                req.append_header(name.clone(), v.clone())?;
            }
        }
        Ok(())
    }
}

/// The headers of a denying answer that go to the client.
fn passed_back(answer: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    PASSED_BACK
        .iter()
        .flat_map(|name| {
            answer
                .get_all(name)
                .iter()
                .map(move |v| (name.clone(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
