//! Proxying through the real binary: methods and bodies, prefix and rule routing, path
//! rewriting, load balancing, virtual hosts and several ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;

use common::*;

#[test]
fn get_post_and_streamed_bodies() {
    let up = Upstream::start("one");
    let c = Conduit::start(&simple(&up));
    let http = client();

    let r = http.get(c.url("/hello?x=1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "one");
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/hello?x=1");

    let r = http
        .post(c.url("/echo"))
        .body("payload-123")
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "payload-123");
    assert_eq!(up.last().method, "POST");

    // A chunked upload of unknown length arrives whole.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..50)
        .map(|i| Ok(format!("part{i};").into_bytes()))
        .collect();
    let body = reqwest::blocking::Body::new(ChunkReader::new(chunks));
    let r = http.post(c.url("/echo")).body(body).send().unwrap();
    let expected: String = (0..50).map(|i| format!("part{i};")).collect();
    assert_eq!(r.text().unwrap(), expected);

    // A chunked response streams through.
    let r = http.get(c.url("/chunked")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "hello chunked world");

    // Upstream statuses pass through unchanged.
    let r = http.get(c.url("/status/418")).send().unwrap();
    assert_eq!(r.status(), 418);
}

struct ChunkReader {
    parts: std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>,
    current: Vec<u8>,
}

impl ChunkReader {
    fn new(parts: Vec<Result<Vec<u8>, std::io::Error>>) -> Self {
        Self {
            parts: parts.into_iter(),
            current: Vec::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            match self.parts.next() {
                Some(Ok(p)) => self.current = p,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.drain(..n);
        Ok(n)
    }
}

#[test]
fn longest_prefix_strip_and_rewrite() {
    let api = Upstream::start("api");
    let v2 = Upstream::start("v2");
    let root = Upstream::start("root");
    let yaml = format!(
        r#"global: {{bind: 127.0.0.1, workers: 1}}
sites:
  - port: {{port}}
    proxy:
      /: {root}
      /api: {api}
      /api/v2:
        targets: [{v2}]
        stripPrefix: true
      /old:
        targets: [{root}]
        rewrite:
          - {{from: "^/old/(.*)$", to: "/new/$1"}}
"#,
        root = root.url(),
        api = api.url(),
        v2 = v2.url()
    );
    let c = Conduit::start(&yaml);
    let http = client();
    let get = |p: &str| http.get(c.url(p)).send().unwrap().text().unwrap();

    assert_eq!(get("/api/users"), "api");
    assert_eq!(api.last().target, "/api/users");
    assert_eq!(get("/api"), "api");
    // Segment-aware: /apix is not under /api.
    assert_eq!(get("/apix"), "root");
    assert_eq!(get("/api/v2/items?a=b"), "v2");
    assert_eq!(v2.last().target, "/items?a=b");
    assert_eq!(get("/api/v2"), "v2");
    assert_eq!(v2.last().target, "/");
    assert_eq!(get("/old/thing"), "root");
    assert_eq!(root.last().target, "/new/thing");
}

#[test]
fn routes_match_before_prefixes() {
    let a = Upstream::start("rule-a");
    let b = Upstream::start("rule-b");
    let fallback = Upstream::start("fallback");
    let yaml = format!(
        r#"global: {{bind: 127.0.0.1, workers: 1}}
sites:
  - port: {{port}}
    routes:
      - match: {{path: "/items/*", method: [POST]}}
        proxy: {a}
      - id: beta
        match:
          path: "/**"
          headers: {{x-beta: "yes|true"}}
          query: {{v: "[0-9]+"}}
          cookies: {{group: "b.*"}}
        proxy: [{b}]
    proxy: {fallback}
"#,
        a = a.url(),
        b = b.url(),
        fallback = fallback.url()
    );
    let c = Conduit::start(&yaml);
    let http = client();

    let r = http.post(c.url("/items/1")).body("x").send().unwrap();
    assert_eq!(r.text().unwrap(), "rule-a");
    // Method and glob both matter.
    assert_eq!(
        http.get(c.url("/items/1")).send().unwrap().text().unwrap(),
        "fallback"
    );
    assert_eq!(
        http.post(c.url("/items/1/x"))
            .body("x")
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "fallback"
    );

    let beta = |headers: &[(&str, &str)], q: &str| {
        let mut req = http.get(c.url(&format!("/any/path{q}")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().unwrap().text().unwrap()
    };
    assert_eq!(
        beta(&[("x-beta", "yes"), ("cookie", "a=1; group=beta")], "?v=12"),
        "rule-b"
    );
    // Regexes are anchored: "yess" does not match "yes|true".
    assert_eq!(
        beta(&[("x-beta", "yess"), ("cookie", "group=beta")], "?v=12"),
        "fallback"
    );
    assert_eq!(
        beta(&[("x-beta", "true"), ("cookie", "group=beta")], "?v=1x"),
        "fallback"
    );
    assert_eq!(
        beta(&[("x-beta", "true"), ("cookie", "group=alpha")], "?v=1"),
        "fallback"
    );
    assert_eq!(beta(&[("x-beta", "true")], "?v=1"), "fallback");
}

#[test]
fn round_robin_and_weights() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let yaml = format!(
        r#"global: {{bind: 127.0.0.1, workers: 1}}
sites:
  - port: {{port}}
    proxy:
      /rr: [{a}, {b}]
      /w:
        strategy: weighted-round-robin
        targets:
          - {{url: {a}, weight: 3}}
          - {{url: {b}, weight: 1}}
"#,
        a = a.url(),
        b = b.url()
    );
    let c = Conduit::start(&yaml);
    let http = client();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..20 {
        let body = http.get(c.url("/rr")).send().unwrap().text().unwrap();
        *counts.entry(body).or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");

    let mut counts = std::collections::HashMap::new();
    for _ in 0..40 {
        let body = http.get(c.url("/w")).send().unwrap().text().unwrap();
        *counts.entry(body).or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
}

#[test]
fn virtual_hosts_and_several_ports() {
    let exact = Upstream::start("exact");
    let wild = Upstream::start("wild");
    let any = Upstream::start("any");
    let other = Upstream::start("other-port");
    let port2 = free_port();
    let yaml = format!(
        r#"global: {{bind: 127.0.0.1, workers: 1}}
sites:
  - host: api.example.com
    port: {{port}}
    proxy: {exact}
  - host: "*.example.com"
    port: {{port}}
    proxy: {wild}
  - host: "*"
    port: {{port}}
    proxy: {any}
  - host: only.example.org
    port: {port2}
    proxy: {other}
"#,
        exact = exact.url(),
        wild = wild.url(),
        any = any.url(),
        other = other.url()
    );
    let c = Conduit::start(&yaml);
    let http = client();
    let with_host = |port: u16, host: &str| {
        let r = http
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", host)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(with_host(c.port, "api.example.com").1, "exact");
    assert_eq!(with_host(c.port, "API.Example.com:1234").1, "exact");
    assert_eq!(with_host(c.port, "www.example.com").1, "wild");
    assert_eq!(with_host(c.port, "deep.www.example.com").1, "wild");
    assert_eq!(with_host(c.port, "example.net").1, "any");
    assert_eq!(with_host(port2, "only.example.org").1, "other-port");
    // No site for that host on the second port.
    let (status, body) = with_host(port2, "example.net");
    assert_eq!(status, 404);
    assert!(body.contains("\"status\":404"), "{body}");
}

#[test]
fn no_route_is_404_json_with_request_id() {
    let up = Upstream::start("one");
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /api: {}\n",
        up.url()
    );
    let c = Conduit::start(&yaml);
    let r = client().get(c.url("/elsewhere")).send().unwrap();
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(up.count(), 0);
}

#[test]
fn upstream_connections_are_reused() {
    let up = Upstream::start("one");
    let c = Conduit::start(&simple(&up).replace("workers: 2", "workers: 1"));
    let http = client();
    for _ in 0..30 {
        assert_eq!(http.get(c.url("/")).send().unwrap().status(), 200);
    }
    let conns = up.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns <= 2,
        "30 sequential requests opened {conns} upstream connections"
    );
}
