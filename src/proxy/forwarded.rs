//! The forwarding headers (`X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, `Forwarded`, `Via`):
//! built from the socket peer, trusting client-sent values only from configured proxies.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora::http::RequestHeader;

// Header names, built once (a `&str` name would be parsed and hashed on every use).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Parses a `trustedProxies` entry: an address or a CIDR.
pub fn parse_trusted(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)))
}

/// The client address: the socket peer, or, behind a trusted proxy, the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(req: &RequestHeader, peer: Option<IpAddr>, trusted: &[IpNet]) -> Option<IpAddr> {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in req.headers.get_all(&X_FORWARDED_FOR) {
        let Ok(v) = v.to_str() else { continue };
        chain.extend(v.split(',').filter_map(|s| s.trim().parse::<IpAddr>().ok()));
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(ip)))
        .or(peer)
}

/// An address as a header value (one allocation).
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(ip.to_string())).ok()
}

fn remove_if_present(req: &mut RequestHeader, name: &HeaderName) {
    if req.headers.contains_key(name) {
        req.remove_header(name);
    }
}

/// Rewrites the forwarding headers of the upstream request. `X-Forwarded-Host` is the client's
/// `Host` as sent.
pub fn apply(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    client: Option<IpAddr>,
    trusted: bool,
    tls: bool,
) {
    let peer_value = peer.and_then(ip_value);
    // X-Forwarded-For: append the peer behind a trusted proxy, else replace.
    let xff = match (
        &peer_value,
        trusted && req.headers.contains_key(&X_FORWARDED_FOR),
    ) {
        (Some(p), true) => {
            let mut joined = String::new();
            for v in req.headers.get_all(&X_FORWARDED_FOR) {
                if let Ok(v) = v.to_str() {
                    joined.push_str(v);
                    joined.push_str(", ");
                }
            }
            joined.push_str(p.to_str().unwrap_or_default());
            HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
        }
        (p, _) => p.clone(),
    };
    remove_if_present(req, &X_FORWARDED_FOR);
    if let Some(xff) = xff {
        let _ = req.insert_header("x-forwarded-for", xff);
    }
    remove_if_present(req, &X_REAL_IP);
    let real = if client == peer {
        peer_value
    } else {
        client.and_then(ip_value)
    };
    if let Some(real) = real {
        let _ = req.insert_header("x-real-ip", real);
    }
    if !trusted {
        for name in [
            &FORWARDED,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PORT,
        ] {
            remove_if_present(req, name);
        }
    }
    if !req.headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        let _ = req.insert_header("x-forwarded-proto", proto);
    }
    if !req.headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = req.headers.get(http::header::HOST).cloned() {
            let _ = req.insert_header("x-forwarded-host", host);
        }
    }
    let via = match req
        .headers
        .get(http::header::VIA)
        .and_then(|v| v.to_str().ok())
    {
        Some(existing) => {
            HeaderValue::from_maybe_shared(Bytes::from(format!("{existing}, 1.1 conduit"))).ok()
        }
        None => Some(HeaderValue::from_static("1.1 conduit")),
    };
    if let Some(via) = via {
        let _ = req.insert_header("via", via);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xff: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for v in xff {
            r.append_header("x-forwarded-for", *v).unwrap();
        }
        r.append_header("forwarded", "for=1.2.3.4").unwrap();
        r
    }

    #[test]
    fn untrusted_peer_overwrites() {
        let mut r = req(&["6.6.6.6"]);
        let peer = Some("127.0.0.1".parse().unwrap());
        r.insert_header("host", "h").unwrap();
        apply(&mut r, peer, peer, false, false);
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert!(r.headers.get("forwarded").is_none());
        assert_eq!(r.headers.get("x-forwarded-host").unwrap(), "h");
        assert_eq!(r.headers.get("via").unwrap(), "1.1 conduit");
    }

    #[test]
    fn trusted_peer_appends_and_client_is_rightmost_untrusted() {
        let trusted = vec![parse_trusted("10.0.0.0/8").unwrap()];
        let r = req(&["1.1.1.1, 2.2.2.2", "10.0.0.5"]);
        let peer = Some("10.0.0.9".parse().unwrap());
        assert_eq!(
            client_ip(&r, peer, &trusted),
            Some("2.2.2.2".parse().unwrap())
        );
        let mut r = r;
        apply(&mut r, peer, None, true, false);
        assert_eq!(
            r.headers.get("x-forwarded-for").unwrap(),
            "1.1.1.1, 2.2.2.2, 10.0.0.5, 10.0.0.9"
        );
        assert!(r.headers.get("forwarded").is_some());
    }
}
