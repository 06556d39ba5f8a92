//! Malformed and abusive requests get the right 4xx and never reach the upstream: the gaps a
//! bare Pingora proxy leaves open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(5);

fn conduit(up: &Upstream, extra: &str) -> Conduit {
    Conduit::start(&(simple(up) + extra))
}

#[test]
fn oversized_and_too_many_headers_are_431() {
    let up = Upstream::start("one");
    let c = conduit(
        &up,
        "    limits: {maxHeaderBytes: 8192, maxRequestHeaders: 20}\n",
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert_eq!(raw_status(&raw(c.port, big.as_bytes(), T)), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw_status(&raw(c.port, many.as_bytes(), T)), 431);
    // Default limit (32 KiB) also applies without configuration.
    let c2 = conduit(&up, "");
    assert_eq!(raw_status(&raw(c2.port, big.as_bytes(), T)), 431);
    assert_eq!(up.count(), 0);
}

#[test]
fn slowloris_gets_408_at_the_head_deadline() {
    let up = Upstream::start("one");
    let c = conduit(&up, "    limits: {headerTimeoutSecs: 1}\n");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let mut answer = Vec::new();
    // One header byte every 300 ms: each read is quick, the head never ends.
    while start.elapsed() < Duration::from_secs(6) {
        if s.write_all(b"X").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let elapsed = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert!(
        elapsed < Duration::from_secs(3),
        "closed only after {elapsed:?}"
    );
    assert_eq!(up.count(), 0);
}

#[test]
fn a_fast_client_is_not_cut_by_the_head_deadline_on_keepalive() {
    let up = Upstream::start("one");
    let c = conduit(&up, "    limits: {headerTimeoutSecs: 1}\n");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
        // Idle between requests longer than the head deadline: keep-alive idling is not a slow head.
        std::thread::sleep(Duration::from_millis(1300));
    }
}

#[test]
fn host_is_required_and_must_be_valid() {
    let up = Upstream::start("one");
    let c = conduit(&up, "");
    assert_eq!(raw_status(&raw(c.port, b"GET / HTTP/1.1\r\n\r\n", T)), 400);
    assert_eq!(raw_status(&raw(c.port, b"GET / HTTP/1.0\r\n\r\n", T)), 400);
    assert_eq!(
        raw_status(&raw(c.port, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", T)),
        400
    );
    assert_eq!(
        raw_status(&raw(c.port, b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", T)),
        400
    );
    assert_eq!(
        raw_status(&raw(c.port, b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", T)),
        400
    );
    assert_eq!(
        raw_status(&raw(
            c.port,
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            T
        )),
        400
    );
    assert_eq!(up.count(), 0);
    assert_eq!(
        raw_status(&raw(
            c.port,
            b"GET / HTTP/1.1\r\nHost: a:80\r\nConnection: close\r\n\r\n",
            T
        )),
        200
    );
}

#[test]
fn request_targets_must_be_origin_form_without_raw_spaces() {
    let up = Upstream::start("one");
    let c = conduit(&up, "");
    for req in [
        &b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let answer = raw(c.port, req, T);
        assert_eq!(raw_status(&answer), 400, "{}", String::from_utf8_lossy(req));
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(raw_status(&raw(c.port, long.as_bytes(), T)), 414);
    assert_eq!(up.count(), 0);
}

#[test]
fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let open = Upstream::start("open");
    let admin = Upstream::start("admin");
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /public: {}\n      /admin: {}\n",
        open.url(),
        admin.url()
    );
    let c = Conduit::start(&yaml);
    let get = |target: &str| {
        let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        raw(c.port, req.as_bytes(), T)
    };
    // Dot segments are resolved before the route is chosen.
    let a = get("/public/../admin/x");
    assert_eq!(raw_status(&a), 200);
    assert!(a.ends_with("admin"), "{a}");
    assert_eq!(admin.last().target, "/admin/x");
    let a = get("/public/%2e%2e/admin/y?q=%2e");
    assert!(a.ends_with("admin"), "{a}");
    assert_eq!(admin.last().target, "/admin/y?q=%2e");
    let a = get("/public//a///b/./c");
    assert!(a.ends_with("open"), "{a}");
    assert_eq!(open.last().target, "/public/a/b/c");
    let a = get("/public/%41%62c%2Fd");
    assert!(a.ends_with("open"), "{a}");
    assert_eq!(open.last().target, "/public/Abc%2Fd");
    let before = open.count() + admin.count();
    assert_eq!(raw_status(&get("/public/..\\admin")), 400);
    assert_eq!(raw_status(&get("/public/a%00b")), 400);
    assert_eq!(raw_status(&get("/public/a%zz")), 400);
    assert_eq!(open.count() + admin.count(), before);
}

#[test]
fn ambiguous_framing_is_400() {
    let up = Upstream::start("one");
    let c = conduit(&up, "");
    let req = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw(c.port, req, T)), 400);
    let req = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw(c.port, req, T)), 400);
    let req =
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    assert_eq!(raw_status(&raw(c.port, req, T)), 400);
    assert_eq!(up.count(), 0);
}

#[test]
fn body_limit_is_413_for_declared_and_chunked_bodies() {
    let up = Upstream::start("one");
    let c = conduit(&up, "    limits: {maxBodyBytes: 1000}\n");
    let http = client();
    let r = http
        .post(c.url("/echo"))
        .body(vec![b'x'; 1001])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 413);
    assert_eq!(up.count(), 0);
    assert_eq!(
        http.post(c.url("/echo"))
            .body(vec![b'x'; 1000])
            .send()
            .unwrap()
            .status(),
        200
    );

    let mut req = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"190\r\n");
        req.extend_from_slice(&[b'y'; 400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw_status(&raw(c.port, &req, T)), 413);
}

#[test]
fn inflight_limit_is_503() {
    let up = Upstream::start("slow");
    let c = conduit(&up, "    limits: {maxInflightRequests: 2}\n");
    let url = c.url("/slow/1500");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || client().get(url).send().unwrap().status().as_u16())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let r = client().get(c.url("/fast")).send().unwrap();
    assert_eq!(r.status(), 503);
    for t in slow {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(client().get(c.url("/fast")).send().unwrap().status(), 200);
}

#[test]
fn connections_per_ip_beyond_the_limit_get_429() {
    let up = Upstream::start("one");
    let c = conduit(&up, "    limits: {maxConnectionsPerIp: 2}\n");
    let open = |expect: u16| {
        let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), expect);
        s
    };
    let a = open(200);
    let b = open(200);
    // The third open connection from this address is refused and closed.
    let mut third = open(429);
    let mut rest = Vec::new();
    let _ = third.read_to_end(&mut rest);
    assert_eq!(up.count(), 2);
    // Closing one frees a slot.
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let _c = open(200);
    drop(b);
}

#[test]
fn idle_keepalive_connections_are_closed_after_the_idle_timeout() {
    let up = Upstream::start("one");
    let c = conduit(&up, "    limits: {idleTimeoutSecs: 1}\n");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
    let start = Instant::now();
    // The server closes the idle connection: the read ends with EOF, not with our timeout.
    let n = s.read(&mut buf).unwrap();
    assert_eq!(n, 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[test]
fn guard_refusals_carry_a_request_id() {
    let up = Upstream::start("one");
    let c = conduit(&up, "");
    let answer = raw(c.port, b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", T);
    assert_eq!(raw_status(&answer), 400);
    let id_line = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-request-id:"))
        .unwrap_or_else(|| panic!("no request id in {answer}"));
    let id = id_line.split(':').nth(1).unwrap().trim();
    assert!(
        answer.contains(&format!("\"request_id\":\"{id}\"")),
        "{answer}"
    );
}

#[test]
fn a_long_streamed_response_is_not_cut_by_the_idle_timeout() {
    let up = Upstream::start("one");
    let c = conduit(&up, "    limits: {idleTimeoutSecs: 1}\n");
    // 8 chunks, 400 ms apart: 3.2 s in all, longer than the idle timeout.
    let r = client().get(c.url("/drip/8")).send().unwrap();
    assert_eq!(r.status(), 200);
    let expected: String = (0..8).map(|i| format!("drop{i};")).collect();
    assert_eq!(r.text().unwrap(), expected);
}

#[test]
fn a_fragmented_head_and_leading_empty_lines_are_accepted() {
    let up = Upstream::start("one");
    let c = conduit(&up, "");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    // Byte by byte, with an empty line first and the blank line split across writes.
    for b in b"\r\nGET /frag HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
    assert_eq!(up.last().target, "/frag");
    assert_eq!(up.last().header("x-a"), Some("1"));
}
