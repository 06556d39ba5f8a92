//! The forwarding headers (`X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, `Forwarded`, `Via`):
//! built from the socket peer, trusting client-sent values only from configured proxies.

use std::net::IpAddr;

use ipnet::IpNet;
use pingora::http::RequestHeader;

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
    for v in req.headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { continue };
        chain.extend(v.split(',').filter_map(|s| s.trim().parse::<IpAddr>().ok()));
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(ip)))
        .or(peer)
}

/// Rewrites the forwarding headers of the upstream request.
pub fn apply(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    client: Option<IpAddr>,
    trusted: bool,
    tls: bool,
    host: Option<&str>,
) {
    let peer_s = peer.map(|p| p.to_string());
    // X-Forwarded-For: append the peer behind a trusted proxy, else replace.
    let xff = match (&peer_s, trusted) {
        (Some(p), true) => {
            let existing: Vec<&str> = req
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if existing.is_empty() {
                Some(p.clone())
            } else {
                Some(format!("{}, {p}", existing.join(", ")))
            }
        }
        (Some(p), false) => Some(p.clone()),
        (None, _) => None,
    };
    let _ = req.remove_header("x-forwarded-for");
    if let Some(xff) = xff {
        let _ = req.insert_header("x-forwarded-for", xff);
    }
    let _ = req.remove_header("x-real-ip");
    if let Some(c) = client {
        let _ = req.insert_header("x-real-ip", c.to_string());
    }
    if !trusted {
        let _ = req.remove_header("forwarded");
        let _ = req.remove_header("x-forwarded-proto");
        let _ = req.remove_header("x-forwarded-host");
        let _ = req.remove_header("x-forwarded-port");
    }
    if !req.headers.contains_key("x-forwarded-proto") {
        let _ = req.insert_header("x-forwarded-proto", if tls { "https" } else { "http" });
    }
    if !req.headers.contains_key("x-forwarded-host") {
        if let Some(h) = host {
            let _ = req.insert_header("x-forwarded-host", h);
        }
    }
    let via = match req.headers.get("via").and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, 1.1 conduit"),
        None => "1.1 conduit".to_string(),
    };
    let _ = req.insert_header("via", via);
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
        apply(&mut r, peer, peer, false, false, Some("h"));
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
        apply(&mut r, peer, None, true, false, None);
        assert_eq!(
            r.headers.get("x-forwarded-for").unwrap(),
            "1.1.1.1, 2.2.2.2, 10.0.0.5, 10.0.0.9"
        );
        assert!(r.headers.get("forwarded").is_some());
    }
}
