//! Hop-by-hop headers (RFC 9110 §7.6.1): removed before forwarding, in both directions, along
//! with every header the `Connection` header names. Upgrade handshakes keep `Connection: upgrade`
//! and `Upgrade`, which Pingora needs to switch protocols.

use http::HeaderMap;

const HOP_BY_HOP: [&str; 6] = [
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
];

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

/// Removes hop-by-hop headers through `remove`, which is given each name in turn.
pub fn strip(headers: &HeaderMap, mut remove: impl FnMut(&str)) {
    let upgrade = is_upgrade(headers);
    for name in connection_tokens(headers) {
        if upgrade && name == "upgrade" {
            continue;
        }
        remove(&name);
    }
    for name in HOP_BY_HOP {
        if headers.contains_key(name) {
            remove(name);
        }
    }
    if !upgrade && headers.contains_key(http::header::CONNECTION) {
        remove("connection");
    }
    if !upgrade && headers.contains_key(http::header::UPGRADE) {
        remove("upgrade");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_standard() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        let mut removed = Vec::new();
        strip(&h, |n| removed.push(n.to_string()));
        removed.sort();
        assert_eq!(removed, ["connection", "keep-alive", "x-secret"]);
    }

    #[test]
    fn upgrade_is_kept() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        let mut removed = Vec::new();
        strip(&h, |n| removed.push(n.to_string()));
        assert!(removed.is_empty(), "{removed:?}");
    }
}
