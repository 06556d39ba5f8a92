//! `hedge {delayMs, maxExtra}`: a slow GET/HEAD gets another attempt on a different target after
//! `delayMs`; the first response head wins and the loser's connection is dropped. Other methods,
//! and routes without `hedge`, wait for the target they were sent to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// An HTTP/1.1 upstream that waits `delay` before every answer (body and `X-Upstream`: its
/// name). While it waits it watches the connection, and notes how long after the request the
/// client closed it.
struct Delayed {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// Request ids seen.
    ids: Arc<Mutex<Vec<String>>>,
    /// For each request whose connection closed before the answer: how long after it arrived.
    closed_early: Arc<Mutex<Vec<Duration>>>,
}

impl Delayed {
    fn start(name: &str, delay: Duration) -> Delayed {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = Delayed {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            ids: Arc::default(),
            closed_early: Arc::default(),
        };
        let (hits, ids, closed) = (up.hits.clone(), up.ids.clone(), up.closed_early.clone());
        let name = name.to_string();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (hits, ids, closed, name) =
                    (hits.clone(), ids.clone(), closed.clone(), name.clone());
                thread::spawn(move || serve(stream, &name, delay, &hits, &ids, &closed));
            }
        });
        up
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve(
    stream: TcpStream,
    name: &str,
    delay: Duration,
    hits: &AtomicUsize,
    ids: &Mutex<Vec<String>>,
    closed: &Mutex<Vec<Duration>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let head_request = line.starts_with("HEAD ");
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("x-request-id") {
                    ids.lock().unwrap().push(v.trim().to_string());
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        // Wait, watching for the client going away.
        let arrived = Instant::now();
        let inner = reader.get_ref();
        inner
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut probe = [0u8; 1];
        while arrived.elapsed() < delay {
            match inner.peek(&mut probe) {
                Ok(0) => {
                    closed.lock().unwrap().push(arrived.elapsed());
                    return;
                }
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    closed.lock().unwrap().push(arrived.elapsed());
                    return;
                }
                _ => thread::sleep(Duration::from_millis(5)),
            }
        }
        inner.set_read_timeout(None).unwrap();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n",
            name.len()
        )
        .into_bytes();
        if !head_request {
            resp.extend_from_slice(name.as_bytes());
        }
        if out.write_all(&resp).is_err() {
            return;
        }
    }
}

/// A site whose `/` goes to `targets` (in this order) with extra route options.
fn config(targets: &[String], options: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n        targets: [{}]\n{options}",
        targets.join(", ")
    )
}

const SLOW: Duration = Duration::from_millis(1500);

#[test]
fn slow_get_and_head_are_answered_by_the_hedge() {
    let slow = Delayed::start("slow", SLOW);
    let fast = Delayed::start("fast", Duration::ZERO);
    let c = Conduit::start(&config(
        &[slow.url(), fast.url()],
        "        hedge: {delayMs: 100}\n",
    ));
    let http = client();
    let mut hedged = 0;
    for (n, method) in ["GET", "GET", "HEAD", "HEAD"].into_iter().enumerate() {
        let before = slow.hits();
        let id = format!("hedge-{n}");
        let start = Instant::now();
        let r = http
            .request(method.parse().unwrap(), c.url("/item?x=1"))
            .header("x-request-id", &id)
            .send()
            .unwrap();
        let took = start.elapsed();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(r.headers()["x-upstream"], "fast", "{method}");
        assert_eq!(r.headers()["x-request-id"], id.as_str());
        assert!(took < Duration::from_millis(1000), "{method} took {took:?}");
        if method == "GET" {
            assert_eq!(r.text().unwrap(), "fast");
        }
        if slow.hits() > before {
            // The slow target was tried first: the hedge went out only after the delay.
            hedged += 1;
            assert!(
                took >= Duration::from_millis(90),
                "hedged too early: {took:?}"
            );
        }
    }
    // Round robin puts the slow target first at least every other time.
    assert!(hedged >= 2, "only {hedged} of 4 requests were hedged");
    assert!(fast.ids.lock().unwrap().iter().any(|i| i == "hedge-0"));
    // Each loser's connection was dropped as soon as the hedge answered, long before it would
    // have answered itself.
    let deadline = Instant::now() + Duration::from_secs(3);
    while slow.closed_early.lock().unwrap().len() < hedged && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let closed = slow.closed_early.lock().unwrap().clone();
    assert_eq!(closed.len(), hedged, "loser connections closed: {closed:?}");
    assert!(
        closed.iter().all(|d| *d < Duration::from_millis(1000)),
        "{closed:?}"
    );
}

#[test]
fn post_is_not_hedged() {
    let slow = Delayed::start("slow", SLOW);
    let fast = Delayed::start("fast", Duration::ZERO);
    let c = Conduit::start(&config(
        &[slow.url(), fast.url()],
        "        hedge: {delayMs: 100}\n",
    ));
    let http = client();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        // No body: only the method keeps it from being hedged.
        let r = http.post(c.url("/submit")).send().unwrap();
        assert_eq!(r.status(), 200);
        answers.push((r.text().unwrap(), start.elapsed()));
    }
    let (_, took) = answers
        .iter()
        .find(|(who, _)| who == "slow")
        .unwrap_or_else(|| panic!("no POST went to the slow target: {answers:?}"));
    assert!(*took >= Duration::from_millis(1400), "{answers:?}");
    assert_eq!(slow.hits() + fast.hits(), 2, "one attempt per POST");
}

#[test]
fn without_hedge_the_slow_target_is_waited_for() {
    let slow = Delayed::start("slow", SLOW);
    let fast = Delayed::start("fast", Duration::ZERO);
    let c = Conduit::start(&config(&[slow.url(), fast.url()], ""));
    let http = client();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let r = http.get(c.url("/item")).send().unwrap();
        assert_eq!(r.status(), 200);
        answers.push((r.text().unwrap(), start.elapsed()));
    }
    let (_, took) = answers
        .iter()
        .find(|(who, _)| who == "slow")
        .unwrap_or_else(|| panic!("no GET went to the slow target: {answers:?}"));
    assert!(*took >= Duration::from_millis(1400), "{answers:?}");
    assert_eq!(slow.hits() + fast.hits(), 2);
}

#[test]
fn max_extra_bounds_the_attempts() {
    let slow1 = Delayed::start("slow1", SLOW);
    let slow2 = Delayed::start("slow2", SLOW);
    let fast = Delayed::start("fast", Duration::ZERO);
    let targets = [slow1.url(), slow2.url(), fast.url()];
    // One extra attempt: the first two targets in round-robin order are both slow.
    let c = Conduit::start(&config(
        &targets,
        "        hedge: {delayMs: 100, maxExtra: 1}\n",
    ));
    let start = Instant::now();
    let r = client().get(c.url("/a")).send().unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().starts_with("slow"));
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert_eq!((slow1.hits(), slow2.hits(), fast.hits()), (1, 1, 0));
    drop(c);

    // Two extra attempts reach the fast one, each a further delay later.
    let c = Conduit::start(&config(
        &targets,
        "        hedge: {delayMs: 150, maxExtra: 2}\n",
    ));
    let start = Instant::now();
    let r = client().get(c.url("/b")).send().unwrap();
    let took = start.elapsed();
    assert_eq!(r.text().unwrap(), "fast");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1200),
        "{took:?}"
    );
    assert_eq!(fast.hits(), 1);
}

#[test]
fn a_dead_first_target_is_hedged_at_once() {
    let fast = Delayed::start("fast", Duration::ZERO);
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let c = Conduit::start(&config(
        &[dead, fast.url()],
        "        hedge: {delayMs: 3000}\n",
    ));
    let http = client();
    for _ in 0..2 {
        let start = Instant::now();
        let r = http.get(c.url("/x")).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), "fast");
        assert!(
            start.elapsed() < Duration::from_millis(2000),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn all_targets_dead_is_502_json() {
    let targets = [
        format!("http://127.0.0.1:{}", dead_port()),
        format!("http://127.0.0.1:{}", dead_port()),
    ];
    let c = Conduit::start(&config(&targets, "        hedge: {delayMs: 50}\n"));
    let start = Instant::now();
    let r = client()
        .get(c.url("/x"))
        .header("x-request-id", "hedge-dead")
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-request-id"], "hedge-dead");
    assert!(start.elapsed() < Duration::from_secs(5));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 502);
    assert_eq!(v["request_id"], "hedge-dead");
    // Still serving.
    let r = client().get(c.url("/x")).send().unwrap();
    assert_eq!(r.status(), 502);
}

#[test]
fn the_access_log_names_the_winner() {
    let slow = Delayed::start("slow", SLOW);
    let fast = Delayed::start("fast", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    logging: {{format: json, file: '{}'}}\n    proxy:\n      /:\n        targets: [{}, {}]\n        hedge: {{delayMs: 100}}\n",
        file.display(),
        slow.url(),
        fast.url()
    );
    let c = Conduit::start(&yaml);
    // The first pick of a fresh round robin is the first target: the slow one.
    let r = client().get(c.url("/logged")).send().unwrap();
    assert_eq!(r.text().unwrap(), "fast");
    assert_eq!(slow.hits(), 1, "the slow target was tried first");
    let deadline = Instant::now() + Duration::from_secs(3);
    let entry = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("/logged")) {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no access log line: {text}");
        thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(entry["status"], 200, "{entry}");
    assert_eq!(entry["upstream"], fast.addr.to_string(), "{entry}");
    let upstream_ms = entry["upstream_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{entry}"));
    assert!((90..1000).contains(&upstream_ms), "{entry}");
    assert_eq!(entry["bytes"], 4, "{entry}");
}

#[test]
fn hedged_requests_are_forwarded_like_proxied_ones() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Conduit::start(&config(
        &[a.url(), b.url()],
        "        hedge: {delayMs: 1000}\n",
    ));
    let http = client();
    // The request head: hop-by-hop removed, forwarding headers and the request id added.
    let r = http
        .get(c.url("/plain?q=1"))
        .header("x-request-id", "fwd-1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let who = r.text().unwrap();
    let seen = if who == "a" { a.last() } else { b.last() };
    assert_eq!(seen.target, "/plain?q=1");
    assert_eq!(seen.header("x-request-id"), Some("fwd-1"));
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-secret"), None);
    assert!(seen.header("host").is_some());
    // The response head: hop-by-hop removed.
    let r = http.get(c.url("/hop")).send().unwrap();
    assert_eq!(r.headers()["x-end-to-end"], "yes");
    assert!(r.headers().get("x-hop-secret").is_none());
    assert!(r.headers().get("keep-alive").is_none());
    // Bodies stream through: chunked, and one that trickles in over a second.
    let r = http.get(c.url("/chunked")).send().unwrap();
    assert_eq!(r.text().unwrap(), "hello chunked world");
    let start = Instant::now();
    let r = http.get(c.url("/drip/3")).send().unwrap();
    assert_eq!(r.text().unwrap(), "drop0;drop1;drop2;");
    assert!(start.elapsed() >= Duration::from_millis(1100));
    // Upstream connections are reused: five requests, far fewer connections.
    for _ in 0..5 {
        assert_eq!(http.get(c.url("/again")).send().unwrap().status(), 200);
    }
    let conns = a.connections.load(Ordering::SeqCst) + b.connections.load(Ordering::SeqCst);
    assert!(conns <= 4, "{conns} upstream connections for 9 requests");
}
