//! Headers that cross the proxy: forwarding headers, Via, request ids, hop-by-hop stripping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_overwritten() {
    let up = Upstream::start("one");
    let c = Conduit::start(&simple(&up));
    let r = client()
        .get(c.url("/x"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("via", "1.0 edge")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("forwarded"), None);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(format!("127.0.0.1:{}", c.port).as_str())
    );
    assert_eq!(seen.header("via"), Some("1.0 edge, 1.1 conduit"));
    // The client's Host is preserved.
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", c.port).as_str())
    );
}

#[test]
fn forwarding_headers_from_a_trusted_proxy_are_extended() {
    let up = Upstream::start("one");
    let yaml = simple(&up) + "    trustedProxies: [127.0.0.0/8]\n";
    let c = Conduit::start(&yaml);
    client()
        .get(c.url("/x"))
        .header("x-forwarded-for", "203.0.113.7, 10.1.1.1")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.7")
        .send()
        .unwrap();
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 10.1.1.1, 127.0.0.1")
    );
    // The client is the right-most address that is not a trusted proxy.
    assert_eq!(seen.header("x-real-ip"), Some("10.1.1.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("forwarded"), Some("for=203.0.113.7"));
}

#[test]
fn request_id_is_kept_when_valid_generated_otherwise_and_echoed() {
    let up = Upstream::start("one");
    let c = Conduit::start(&simple(&up));
    let http = client();

    let r = http
        .get(c.url("/"))
        .header("x-request-id", "abc-123")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert_eq!(up.last().header("x-request-id"), Some("abc-123"));

    let r = http.get(c.url("/")).send().unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));

    let r = http
        .get(c.url("/"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(up.last().header_all("x-request-id"), [id.as_str()]);
}

#[test]
fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = Upstream::start("one");
    let c = Conduit::start(&simple(&up));
    let answer = raw(
        c.port,
        b"GET /hop HTTP/1.1\r\nHost: a\r\nConnection: X-Client-Secret, close\r\nX-Client-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\nX-Keep: 1\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(raw_status(&answer), 200);
    let seen = up.last();
    for gone in ["x-client-secret", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.header("x-keep"), Some("1"));
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("x-hop-secret"), "{answer}");
    assert!(!lower.contains("keep-alive: timeout"), "{answer}");
    assert!(lower.contains("x-end-to-end: yes"), "{answer}");
}

#[test]
fn security_headers_are_added_without_hsts_on_plain_sites() {
    let up = Upstream::start("one");
    let c = Conduit::start(&(simple(&up) + "    securityHeaders: {frameOptions: DENY, contentSecurityPolicy: \"default-src 'self'\"}\n"));
    let r = client().get(c.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    assert_eq!(h["content-security-policy"], "default-src 'self'");
    assert!(h.get("strict-transport-security").is_none());
    // Without `securityHeaders` nothing is added.
    let c2 = Conduit::start(&simple(&up));
    let r = client().get(c2.url("/")).send().unwrap();
    assert!(r.headers().get("x-content-type-options").is_none());
}

#[test]
fn response_heads_carry_canonical_names_and_the_upstream_reason_phrase() {
    // Conduit edits the response's plain header map (no second map of the upstream's spelling):
    // HTTP/1 clients see a dozen framing and common names title-cased (`Content-Length`) and
    // the others in lower case, as over HTTP/2. The upstream's own reason phrase ("X") and its
    // headers get through.
    let up = Upstream::start("one");
    let c = Conduit::start(
        &(simple(&up) + "    rateLimit: {limit: 1, windowSecs: 60}\n    securityHeaders: true\n"),
    );
    let answer = raw(
        c.port,
        b"GET /hop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 X\r\n"), "{answer}");
    assert_eq!(body, "one");
    let lines: Vec<&str> = head.lines().skip(1).collect();
    for expected in [
        "Content-Length: 3",
        "x-upstream: one",
        "x-end-to-end: yes",
        "ratelimit-limit: 1",
        "ratelimit-remaining: 0",
        "x-content-type-options: nosniff",
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in {answer}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("x-request-id: ")),
        "{answer}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("x-hop-secret"),
        "{answer}"
    );

    // Conduit's own answers use the same spelling: the next request is over the limit.
    let refused = raw(
        c.port,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(raw_status(&refused), 429, "{refused}");
    let head = refused.split_once("\r\n\r\n").map_or("", |(h, _)| h);
    let lines: Vec<&str> = head.lines().skip(1).collect();
    for expected in [
        "Content-Type: application/json",
        "ratelimit-limit: 1",
        "ratelimit-remaining: 0",
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in {refused}");
    }
    for prefix in ["retry-after: ", "x-request-id: "] {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no {prefix} in {refused}"
        );
    }
}
