//! Hop-by-hop headers (RFC 9110 §7.6.1): removed before forwarding, in both directions, along
//! with every header the `Connection` header names. Upgrade handshakes keep `Connection: upgrade`
//! and `Upgrade`, which Pingora needs to switch protocols.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};

const HOP_BY_HOP: [HeaderName; 6] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
];

/// Headers that describe one connection or the message framing, or route the request: the proxy
/// manages them, so no configured header edit (transforms, consumer headers, headers copied
/// between requests) may set, remove or copy them.
const PROXY_MANAGED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
];

/// Whether a header name (any case) is one of those the proxy manages.
pub fn is_proxy_managed(name: &str) -> bool {
    PROXY_MANAGED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// A message whose headers can be edited (Pingora keeps header-name case beside the map).
pub trait HeaderEdit {
    fn headers(&self) -> &HeaderMap;
    fn remove(&mut self, name: &str);
    fn remove_name(&mut self, name: &HeaderName);
}

/// Pingora's request and response headers: removal keeps their header-case map in step.
macro_rules! pingora_header_edit {
    ($($ty:ty),*) => {$(
        impl HeaderEdit for $ty {
            fn headers(&self) -> &HeaderMap {
                &self.headers
            }
            fn remove(&mut self, name: &str) {
                self.remove_header(name);
            }
            fn remove_name(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
        }
    )*};
}

pingora_header_edit!(RequestHeader, ResponseHeader);

impl HeaderEdit for HeaderMap {
    fn headers(&self) -> &HeaderMap {
        self
    }
    fn remove(&mut self, name: &str) {
        HeaderMap::remove(self, name);
    }
    fn remove_name(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
}

/// Names listed in `Connection` (lower-case), other than `close`, `keep-alive` and `upgrade`.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive" && t != "upgrade")
        .collect()
}

/// Whether the message asks for a protocol upgrade (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        && headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Removes the hop-by-hop headers of a message. Allocates only for `Connection`-listed names.
pub fn strip<H: HeaderEdit + ?Sized>(msg: &mut H) {
    // One pass over the (usually few) headers; most messages carry none of these.
    let any = msg
        .headers()
        .keys()
        .any(|k| k == CONNECTION || k == UPGRADE || HOP_BY_HOP.contains(k));
    if !any {
        return;
    }
    let upgrade = is_upgrade(msg.headers());
    if msg.headers().contains_key(CONNECTION) {
        for name in connection_tokens(msg.headers()) {
            msg.remove(&name);
        }
        if !upgrade {
            msg.remove_name(&CONNECTION);
        }
    }
    for name in &HOP_BY_HOP {
        if msg.headers().contains_key(name) {
            msg.remove_name(name);
        }
    }
    if !upgrade && msg.headers().contains_key(UPGRADE) {
        msg.remove_name(&UPGRADE);
    }
}

/// Removes the headers a request's `Connection` names (and those names from `Connection`,
/// keeping `close`, `keep-alive` and `upgrade`). Runs before the access checks, so a client
/// cannot name a header Conduit adds later (`X-Consumer-ID`, headers copied from `forwardAuth`)
/// and have it dropped on the way upstream.
pub fn strip_listed(req: &mut RequestHeader) {
    if !req.headers.contains_key(CONNECTION) {
        return;
    }
    let named = connection_tokens(&req.headers);
    if named.is_empty() {
        return;
    }
    for name in &named {
        req.remove_header(name.as_str());
    }
    let kept: Vec<String> = req
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| t == "close" || t == "keep-alive" || t == "upgrade")
        .collect();
    req.remove_header(&CONNECTION);
    if !kept.is_empty() {
        let _ = req.insert_header(CONNECTION, kept.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn listed_names_go_before_conduit_adds_its_own() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("connection", "Upgrade, X-Consumer-ID, close")
            .unwrap();
        r.insert_header("upgrade", "websocket").unwrap();
        r.insert_header("x-consumer-id", "forged").unwrap();
        strip_listed(&mut r);
        assert!(r.headers.get("x-consumer-id").is_none());
        assert_eq!(r.headers.get("connection").unwrap(), "upgrade, close");
        // Conduit's own header, added afterwards, survives the strip before forwarding.
        r.insert_header("x-consumer-id", "acme").unwrap();
        strip(&mut r);
        assert_eq!(r.headers.get("x-consumer-id").unwrap(), "acme");
        assert!(r.headers.get("upgrade").is_some());
    }

    #[test]
    fn strips_listed_and_standard() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["x-keep"]);
    }

    #[test]
    fn upgrade_is_kept() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 2);
    }
}
