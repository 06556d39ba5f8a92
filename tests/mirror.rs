//! `mirror`: a copy of every request, body included, reaches a shadow upstream; its answer is
//! discarded, and a slow, failing or absent mirror never slows or breaks the primary request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A shadow upstream that records every complete request it receives (method, target, headers,
/// full body), waits `delay` before answering, and answers `status` with a recognisable body.
/// Requests whose body stops early (the connection closes mid-body) are counted in `partial`
/// and never recorded.
struct Shadow {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    partial: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Shadow {
    fn start(status: u16, delay: Duration) -> Shadow {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shadow = Shadow {
            addr,
            seen: Arc::default(),
            partial: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, partial, stop) = (
            shadow.seen.clone(),
            shadow.partial.clone(),
            shadow.stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (seen, partial) = (seen.clone(), partial.clone());
                thread::spawn(move || shadow_conn(stream, status, delay, &seen, &partial));
            }
        });
        shadow
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` complete requests were recorded; returns them.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn shadow_conn(
    stream: TcpStream,
    status: u16,
    delay: Duration,
    seen: &Mutex<Vec<Seen>>,
    partial: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                partial.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        let complete =
            if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                read_chunked(&mut reader, &mut body)
            } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
                body = vec![0; len];
                reader.read_exact(&mut body).is_ok()
            } else {
                true
            };
        if !complete {
            partial.fetch_add(1, Ordering::SeqCst);
            return;
        }
        seen.lock().unwrap().push(Seen {
            method,
            target,
            headers,
            body,
        });
        thread::sleep(delay);
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: 11\r\nX-Mirror: yes\r\nSet-Cookie: mirror=1\r\n\r\nmirror-body"
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads a chunked body into `body`; false when the stream ends before the last chunk.
fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> bool {
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return false;
        }
        let Ok(n) = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16) else {
            return false;
        };
        let mut chunk = vec![0; n + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return false;
        }
        if n == 0 {
            return true;
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// Conduit with one route to `primary`, mirrored to `mirror`.
fn mirrored(primary: &Upstream, mirror: &str) -> Conduit {
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 2}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n        targets: [{}]\n        mirror: {mirror}\n",
        primary.url()
    );
    Conduit::start(&yaml)
}

/// A body that is not a repeating short pattern (so a lost, doubled or reordered chunk shows).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Reads one HTTP/1.1 response with a Content-Length body: (status, headers, body).
fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = raw_status(&line);
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("response without Content-Length");
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (status, headers, body)
}

#[test]
fn get_is_mirrored_with_path_query_and_headers() {
    let primary = Upstream::start("primary");
    let shadow = Shadow::start(200, Duration::ZERO);
    let c = mirrored(&primary, &shadow.url());
    let r = client()
        .get(c.url("/a/b?x=1&y=two"))
        .header("x-test", "hello")
        .header("x-request-id", "mirror-get-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "primary");

    let seen = shadow.wait_for(1, Duration::from_secs(5));
    assert_eq!(seen.len(), 1, "the mirror got no copy");
    let copy = &seen[0];
    assert_eq!(copy.method, "GET");
    assert_eq!(copy.target, "/a/b?x=1&y=two");
    assert_eq!(copy.header("x-test"), Some("hello"));
    assert_eq!(copy.header("x-request-id"), Some("mirror-get-1"));
    // The copy carries the same forwarding headers as the primary request.
    let original = primary.last();
    assert_eq!(original.target, "/a/b?x=1&y=two");
    assert_eq!(copy.header("host"), original.header("host"));
    assert_eq!(
        copy.header("x-forwarded-for"),
        original.header("x-forwarded-for")
    );
    assert!(copy.body.is_empty());
    // Exactly one copy per request.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(shadow.seen().len(), 1);
}

#[test]
fn small_post_body_is_mirrored_byte_identical() {
    let primary = Upstream::start("primary");
    let shadow = Shadow::start(200, Duration::ZERO);
    let c = mirrored(&primary, &shadow.url());
    let body = b"{\"hello\":\"mirror\",\"n\":42}\r\n\x00\xff binary tail".to_vec();
    let r = client()
        .post(c.url("/echo?k=v"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "primary");
    assert_eq!(r.bytes().unwrap().as_ref(), &body[..]);

    let seen = shadow.wait_for(1, Duration::from_secs(5));
    assert_eq!(seen.len(), 1, "the mirror got no copy");
    let copy = &seen[0];
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.target, "/echo?k=v");
    assert_eq!(copy.header("content-type"), Some("application/json"));
    assert_eq!(copy.body, body);
    assert_eq!(primary.last().body, body);
}

#[test]
fn large_streamed_chunked_body_is_mirrored_byte_identical() {
    let primary = Upstream::start("primary");
    let shadow = Shadow::start(200, Duration::ZERO);
    let c = mirrored(&primary, &shadow.url());
    let body = pattern(1 << 20);

    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: mirror.test\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n",
    )
    .unwrap();
    // Uneven chunk sizes, sent as a stream with short pauses.
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let n = (7_919 + i * 4_099 % 50_000).min(body.len() - at);
        s.write_all(format!("{n:x}\r\n").as_bytes()).unwrap();
        s.write_all(&body[at..at + n]).unwrap();
        s.write_all(b"\r\n").unwrap();
        at += n;
        i += 1;
        if i % 8 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let (status, headers, echoed) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(headers.contains(&("x-upstream".into(), "primary".into())));
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the primary's echo differs from the body");

    let seen = shadow.wait_for(1, Duration::from_secs(5));
    assert_eq!(seen.len(), 1, "the mirror got no complete copy");
    let copy = &seen[0];
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.target, "/echo");
    assert_eq!(copy.header("host"), Some("mirror.test"));
    assert_eq!(copy.body.len(), body.len());
    assert!(copy.body == body, "the mirror's copy of the body differs");
}

#[test]
fn a_body_cut_short_is_never_sent_as_complete() {
    let primary = Upstream::start("primary");
    let shadow = Shadow::start(200, Duration::ZERO);
    let c = mirrored(&primary, &shadow.url());

    // A chunked body that the client abandons before its last chunk.
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.write_all(
        b"POST /cut HTTP/1.1\r\nHost: mirror.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    s.write_all(b"6\r\n world\r\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    drop(s);

    // Then a complete request on the same route, which must be mirrored.
    let r = client().post(c.url("/whole")).body("whole").send().unwrap();
    assert_eq!(r.status(), 200);
    let seen = shadow.wait_for(1, Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500));
    let seen_now = shadow.seen();
    assert!(
        seen.iter()
            .any(|s| s.target == "/whole" && s.body == b"whole"),
        "the complete request was not mirrored: {seen:?}"
    );
    assert!(
        seen_now.iter().all(|s| s.target != "/cut"),
        "a truncated body reached the mirror as a complete request: {seen_now:?}"
    );
    // The primary did not get it as complete either.
    assert!(primary
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.target != "/cut"));
}

#[test]
fn a_slow_mirror_does_not_delay_the_primary() {
    let primary = Upstream::start("primary");
    let shadow = Shadow::start(200, Duration::from_secs(2));
    let c = mirrored(&primary, &shadow.url());
    let http = client();
    // Warm up the client connection and the proxy (this copy is slow too).
    assert_eq!(http.get(c.url("/warm")).send().unwrap().status(), 200);
    let start = Instant::now();
    for i in 0..4 {
        let t = Instant::now();
        let r = http.get(c.url(&format!("/get/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), "primary");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "GET {i} took {:?} behind a slow mirror",
            t.elapsed()
        );
        let t = Instant::now();
        let r = http
            .post(c.url(&format!("/echo?i={i}")))
            .body(format!("body {i}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), format!("body {i}"));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "POST {i} took {:?} behind a slow mirror",
            t.elapsed()
        );
    }
    // A mirror that held each request for its 2 s would make these 8 take 16 s.
    assert!(start.elapsed() < Duration::from_secs(4));
    // The mirror did get the copies (it is slow, not absent).
    let seen = shadow.wait_for(9, Duration::from_secs(8));
    assert_eq!(seen.len(), 9, "copies seen: {seen:?}");
    assert!(seen
        .iter()
        .any(|s| s.target == "/echo?i=3" && s.body == b"body 3"));
}

#[test]
fn a_dead_mirror_does_not_affect_the_primary() {
    let primary = Upstream::start("primary");
    let c = mirrored(&primary, &format!("http://127.0.0.1:{}", dead_port()));
    let http = client();
    for i in 0..10 {
        let r = http.get(c.url(&format!("/g/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), "primary");
        let r = http
            .post(c.url("/echo"))
            .body(vec![b'x'; 10_000 + i])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().unwrap().len(), 10_000 + i);
    }
    assert_eq!(primary.count(), 20);
}

#[test]
fn the_mirror_answer_never_reaches_the_client() {
    let primary = Upstream::start("primary");
    let shadow = Shadow::start(500, Duration::ZERO);
    let c = mirrored(&primary, &shadow.url());
    let http = client();
    for _ in 0..3 {
        let r = http.get(c.url("/x")).send().unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-mirror").is_none());
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(r.headers()["x-upstream"], "primary");
        assert_eq!(r.text().unwrap(), "primary");
        let r = http.post(c.url("/echo")).body("payload").send().unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-mirror").is_none());
        assert_eq!(r.text().unwrap(), "payload");
    }
    // The mirror was reached and did answer 500 each time.
    let seen = shadow.wait_for(6, Duration::from_secs(5));
    assert_eq!(seen.len(), 6, "copies seen: {seen:?}");
    assert_eq!(primary.count(), 6);
}

#[test]
fn a_retried_post_is_mirrored_once_with_its_body() {
    // The first target reads the whole body and answers 503; the retry replays the buffered
    // body to the second target. The mirror gets one copy per request, with the body once.
    let bad = Shadow::start(503, Duration::ZERO);
    let good = Upstream::start("good");
    let shadow = Shadow::start(200, Duration::ZERO);
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 2}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n        targets: [{}, {}]\n        retry: {{attempts: 2, conditions: [5xx], budgetPercent: 100}}\n        mirror: {}\n",
        bad.url(),
        good.url(),
        shadow.url()
    );
    let c = Conduit::start(&yaml);
    let http = client();
    let mut retried = 0;
    for i in 0..3 {
        let id = format!("retried-{i}");
        let body = pattern(300 + i);
        let r = http
            .post(c.url("/echo"))
            .header("x-request-id", &id)
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().unwrap().as_ref(), &body[..]);
        if bad
            .seen()
            .iter()
            .any(|s| s.header("x-request-id") == Some(&id))
        {
            retried += 1;
        }
    }
    assert!(retried >= 1, "no POST was retried after a 503");
    let seen = shadow.wait_for(3, Duration::from_secs(5));
    thread::sleep(Duration::from_millis(200));
    for i in 0..3 {
        let id = format!("retried-{i}");
        let copies: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.header("x-request-id") == Some(&id))
            .collect();
        assert_eq!(copies.len(), 1, "{id}: copies {copies:?}");
        assert!(copies[0].body == pattern(300 + i), "{id}: body differs");
    }
    assert_eq!(shadow.seen().len(), 3);
}
