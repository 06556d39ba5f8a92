//! What Conduit adds to (and strips from) every proxied response head: hop-by-hop headers out;
//! the request id, the `RateLimit-*` headers, the sticky cookie, the site's security headers and
//! its response transform in.
//!
//! The edits run on the response's plain `http::HeaderMap`, not through Pingora's
//! `ResponseHeader` methods. Those keep a second map of the upstream's header-name spelling, and
//! each insert parses and copies the name and updates both maps (a few hundred nanoseconds a
//! header, most of the cost of a rate limit's three headers). Dropping that map means HTTP/1
//! clients get header names in one canonical form, as HTTP/2 clients always do: a dozen common
//! names title-cased by Pingora (`Content-Type`), all others lower case (`x-request-id`,
//! `ratelimit-limit`). The upstream's reason phrase is kept.

use http::response::Parts;
use http::HeaderMap;
use pingora::http::ResponseHeader;

use super::ctx::RequestCtx;
use super::{hop, request_id};

/// Adds Conduit's headers to a response about to be sent. Never fails: an error here would drop
/// the pooled upstream connection.
pub(crate) fn finish(resp: &mut ResponseHeader, ctx: &mut RequestCtx) {
    let strip = resp.status != http::StatusCode::SWITCHING_PROTOCOLS;
    edit(resp, |headers| {
        if strip {
            hop::strip(headers);
        }
        let site = ctx.site.as_deref();
        // Room for what will be added, reserved once: Pingora sizes the map for the upstream's
        // headers, so adding one by one could grow it several times (and reserving more than
        // will be used could grow it needlessly).
        let extra = 1
            + crate::filter::rate_limit::header_count(&ctx.rate_limit)
            + usize::from(ctx.set_cookie.is_some())
            + site.map_or(0, |s| s.security_headers.len());
        let _ = headers.try_reserve(extra);
        let _ = headers.try_insert(request_id::NAME, ctx.request_id.header_value());
        crate::filter::rate_limit::add_headers(headers, &ctx.rate_limit);
        if let Some(cookie) = ctx.set_cookie.take() {
            if let Ok(v) = http::HeaderValue::try_from(cookie) {
                let _ = headers.try_append(http::header::SET_COOKIE, v);
            }
        }
        if let Some(site) = site {
            for (name, value) in &site.security_headers {
                if !headers.contains_key(name) {
                    let _ = headers.try_insert(name.clone(), value.clone());
                }
            }
            if let Some(t) = &site.response_transform {
                t.apply_response(headers, &ctx.identity, ctx.request_id.as_str());
            }
        }
    });
}

/// Runs `f` on the response's header map, leaving `resp` without Pingora's header-case map.
fn edit(resp: &mut ResponseHeader, f: impl FnOnce(&mut HeaderMap)) {
    // Only a phrase other than the status's own is stored (and copied here).
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let placeholder = ResponseHeader::from(empty_parts());
    let mut parts = Parts::from(std::mem::replace(resp, placeholder));
    f(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        let _ = resp.set_reason_phrase(reason.as_deref());
    }
}

/// Response parts with no headers (allocates nothing).
fn empty_parts() -> Parts {
    http::Response::new(()).into_parts().0
}
