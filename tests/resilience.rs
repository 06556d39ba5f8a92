//! Resilience features end to end, through the real binary: passive outlier detection, the
//! circuit breaker, retries (5xx, connection errors, budget, POST replay), backup targets, sticky
//! cookies, canary split and rollback, target groups, admission under load (queue, priority
//! shedding), fail-open probing, and `conduit validate` rejecting wrong resilience configs.
//!
//! The upstreams here are purpose-built: each answers a status the test can change at run time,
//! records every request (time, path, body, request id) and can be killed (its port then refuses
//! connections). Client requests carry their own `x-request-id`, which Conduit forwards, so a test
//! can tell exactly which targets one client request reached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{client, dead_port, run_cli, Conduit};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// A scripted upstream.

/// One request as a scripted upstream saw it.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: String,
    path: String,
    body: Vec<u8>,
    /// The `x-request-id` Conduit forwarded.
    id: String,
}

/// An HTTP/1.1 upstream answering `status` (changeable) with body `<name>` and header
/// `X-Upstream: <name>`. A path containing `/slow/<ms>` waits first.
struct Up {
    addr: SocketAddr,
    name: String,
    status: Arc<AtomicU16>,
    hits: Arc<Mutex<Vec<Hit>>>,
    dead: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Up {
    fn start(name: &str, status: u16) -> Up {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = Up {
            addr: listener.local_addr().unwrap(),
            name: name.to_string(),
            status: Arc::new(AtomicU16::new(status)),
            hits: Arc::default(),
            dead: Arc::default(),
            conns: Arc::default(),
        };
        let (st, hits, dead, conns, name) = (
            up.status.clone(),
            up.hits.clone(),
            up.dead.clone(),
            up.conns.clone(),
            name.to_string(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if dead.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(c) = stream.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                let (st, hits, dead, name) = (st.clone(), hits.clone(), dead.clone(), name.clone());
                thread::spawn(move || serve(stream, &name, &st, &hits, &dead));
            }
            // The listener drops here: the port now refuses connections.
        });
        up
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// How many requests with this request id reached this upstream.
    fn saw(&self, id: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.id == id)
            .count()
    }

    /// Closes the port and every open connection: the target is dead.
    fn kill(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Wait until the port refuses (the accept loop has dropped the listener).
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(self.addr).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(
    stream: TcpStream,
    name: &str,
    status: &AtomicU16,
    hits: &Mutex<Vec<Hit>>,
    dead: &AtomicBool,
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
        let path = parts.next().unwrap_or("").to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
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
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        if dead.load(Ordering::SeqCst) {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
        hits.lock().unwrap().push(Hit {
            at: Instant::now(),
            method,
            path: path.clone(),
            body,
            id: get("x-request-id").unwrap_or_default(),
        });
        if let Some(ms) = path.split("/slow/").nth(1) {
            let ms = ms.split(['/', '?']).next().unwrap_or("100");
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(100)));
        }
        let code = status.load(Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n{name}",
            name.len()
        );
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conduit and client helpers.

/// Starts conduit on one site given as JSON (YAML accepts JSON); `port` is filled in.
fn conduit(mut site: Value) -> Conduit {
    site["port"] = json!("__PORT__");
    let cfg = json!({
        "global": {"bind": "127.0.0.1", "workers": 2, "shutdownTimeoutSecs": 1},
        "sites": [site],
    });
    let text = serde_json::to_string_pretty(&cfg)
        .unwrap()
        .replace("\"__PORT__\"", "{port}");
    Conduit::start(&text)
}

/// A response, read whole.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    /// The upstream that answered (`X-Upstream`), none when Conduit answered itself.
    fn from(&self) -> Option<&str> {
        self.headers.get("x-upstream").and_then(|v| v.to_str().ok())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn send(rb: reqwest::blocking::RequestBuilder) -> Resp {
    let r = rb.send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// GET `path` with request id `id`.
fn get(c: &Conduit, path: &str, id: &str) -> Resp {
    send(client().get(c.url(path)).header("x-request-id", id))
}

/// Asserts that `r` is Conduit's own JSON error with `status` and request id `id`.
fn assert_conduit_error(r: &Resp, status: u16, id: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.from(),
        None,
        "answered by an upstream, not Conduit: {r:?}"
    );
    let v = r.json();
    assert_eq!(v["status"], status, "{r:?}");
    assert_eq!(v["request_id"], id, "{r:?}");
    assert_eq!(r.header("x-request-id"), Some(id), "{r:?}");
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------------------------
// 1. Passive outlier detection.

#[test]
fn outlier_ejects_after_consecutive_5xx_and_trial_restores() {
    let bad = Up::start("bad", 500);
    let good = Up::start("good", 200);
    let c = conduit(json!({
        "outlierDetection": {"consecutive5xx": 3, "baseEjectionTimeSecs": 1, "maxEjectionPercent": 50},
        "proxy": {"/": {"targets": [bad.url(), good.url()]}},
    }));
    // Round robin alternates: `bad` fails three times in six requests and is ejected.
    for i in 0..6 {
        let r = get(&c, "/x", &format!("p1-{i}"));
        match r.from() {
            Some("bad") => assert_eq!(r.status, 500),
            Some("good") => assert_eq!(r.status, 200),
            other => panic!("unexpected answer {other:?}: {r:?}"),
        }
    }
    assert_eq!(
        bad.count(),
        3,
        "round robin gives the bad target every other request"
    );
    let ejected_at = bad.hits()[2].at;

    // Ejected: all traffic goes to `good` until the ejection time (1 s) has passed; then one
    // trial request goes to `bad`.
    let mut i = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    while bad.count() == 3 && Instant::now() < deadline {
        let r = get(&c, "/x", &format!("p2-{i}"));
        if bad.count() == 3 {
            assert_eq!((r.status, r.from()), (200, Some("good")), "{r:?}");
        }
        i += 1;
        thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(bad.count(), 4, "a trial request reaches the ejected target");
    let trial = bad.hits()[3].at;
    let gap = trial - ejected_at;
    assert!(
        ms(gap) >= 900 && ms(gap) < 2_500,
        "first trial {} ms after the ejection (expected ~1000)",
        ms(gap)
    );
    assert!(
        i >= 4,
        "requests kept flowing to the good target while ejected ({i})"
    );

    // The trial failed (500): ejected again, for twice as long (2 s). The target now recovers.
    bad.set_status(200);
    let deadline = Instant::now() + Duration::from_secs(8);
    while bad.count() == 4 && Instant::now() < deadline {
        let r = get(&c, "/x", &format!("p3-{i}"));
        assert_eq!(r.status, 200, "{r:?}");
        i += 1;
        thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(bad.count(), 5, "a second trial reaches the target");
    let gap2 = bad.hits()[4].at - trial;
    assert!(
        ms(gap2) >= 1_900 && ms(gap2) < 4_000,
        "second trial {} ms after the first (expected ~2000: the ejection doubled)",
        ms(gap2)
    );

    // The second trial succeeded: back in rotation.
    for k in 0..10 {
        let r = get(&c, "/x", &format!("p4-{k}"));
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert!(
        bad.count() >= 5 + 4,
        "the recovered target takes its share again ({} hits)",
        bad.count()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Circuit breaker.

#[test]
fn circuit_breaker_opens_half_opens_and_closes() {
    let up = Up::start("solo", 500);
    let c = conduit(json!({
        "proxy": {"/": {
            "targets": [up.url()],
            "circuitBreaker": {"errorThresholdPercent": 50, "minRequests": 4, "openSecs": 1},
        }},
    }));
    for i in 0..4 {
        let r = get(&c, "/x", &format!("cb-{i}"));
        assert_eq!((r.status, r.from()), (500, Some("solo")), "{r:?}");
    }
    // Four failures out of four: open. The upstream sees nothing while open.
    let r = get(&c, "/x", "cb-open");
    let opened = Instant::now();
    assert_conduit_error(&r, 503, "cb-open");
    assert_eq!(r.header("x-conduit-circuit-open"), Some("true"), "{r:?}");
    assert_eq!(up.count(), 4);

    // Half-open after openSecs: one trial goes through. It fails: open again.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.count() == 4 && Instant::now() < deadline {
        let id = format!("cb-wait-{refused}");
        let r = get(&c, "/x", &id);
        if up.count() == 4 {
            assert_conduit_error(&r, 503, &id);
            assert_eq!(r.header("x-conduit-circuit-open"), Some("true"));
            refused += 1;
        } else {
            assert_eq!(
                (r.status, r.from()),
                (500, Some("solo")),
                "the trial: {r:?}"
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(up.count(), 5, "one trial request after openSecs");
    let waited = up.hits()[4].at - opened;
    assert!(
        ms(waited) >= 800 && ms(waited) < 3_000,
        "trial {} ms after opening (openSecs 1)",
        ms(waited)
    );
    assert!(refused >= 5, "requests were refused while open ({refused})");
    let r = get(&c, "/x", "cb-reopened");
    assert_conduit_error(&r, 503, "cb-reopened");
    assert_eq!(r.header("x-conduit-circuit-open"), Some("true"));
    assert_eq!(up.count(), 5, "a failed trial opens the breaker again");

    // The upstream recovers; the next trial succeeds and closes the breaker.
    up.set_status(200);
    let reopened = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = None;
    while up.count() == 5 && Instant::now() < deadline {
        last = Some(get(&c, "/x", "cb-wait2"));
        thread::sleep(Duration::from_millis(50));
    }
    let last = last.unwrap();
    assert_eq!((last.status, last.from()), (200, Some("solo")), "{last:?}");
    assert!(ms(reopened.elapsed()) >= 700);
    for i in 0..5 {
        let r = get(&c, "/x", &format!("cb-closed-{i}"));
        assert_eq!(
            (r.status, r.from()),
            (200, Some("solo")),
            "closed again: {r:?}"
        );
    }
    assert_eq!(up.count(), 11);
}

// ---------------------------------------------------------------------------------------------
// 3. Retries.

fn retry_site(targets: Vec<String>, retry: Value) -> Value {
    json!({"proxy": {"/": {"targets": targets, "retry": retry}}})
}

#[test]
fn retry_on_5xx_lands_on_the_other_target() {
    let bad = Up::start("bad", 503);
    let good = Up::start("good", 200);
    let c = conduit(retry_site(
        vec![bad.url(), good.url()],
        json!({"attempts": 2, "conditions": ["5xx", "connection_error"], "budgetPercent": 100}),
    ));
    let n = 12;
    let mut statuses = Vec::new();
    for i in 0..n {
        let id = format!("rt-{i}");
        let r = get(&c, "/x", &id);
        statuses.push((r.status, r.from().map(str::to_string)));
        assert!(
            bad.saw(&id) <= 1,
            "{id}: the failing target is tried at most once"
        );
    }
    let ok = statuses
        .iter()
        .filter(|(s, f)| *s == 200 && f.as_deref() == Some("good"))
        .count();
    assert_eq!(
        ok,
        n,
        "every request should be answered 200 by the good target; got {statuses:?} \
         (bad target saw {} requests, good {})",
        bad.count(),
        good.count()
    );
    for i in 0..n {
        assert_eq!(good.saw(&format!("rt-{i}")), 1);
    }
    assert!(
        bad.count() >= 1,
        "some first attempts went to the failing target"
    );
}

#[test]
fn retry_on_connection_error_to_a_dead_target() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let good = Up::start("good", 200);
    let c = conduit(retry_site(
        vec![dead, good.url()],
        json!({"attempts": 2, "conditions": ["5xx", "connection_error"], "budgetPercent": 100}),
    ));
    let statuses: Vec<u16> = (0..10)
        .map(|i| get(&c, "/x", &format!("dead-{i}")).status)
        .collect();
    assert_eq!(
        statuses,
        vec![200; 10],
        "every request succeeds on the live target"
    );
    assert_eq!(good.count(), 10);
}

/// Within the budget's floor (3 retries per window): each failed first attempt is retried on
/// the other target, and the failing target is never tried twice for one request. The longer
/// runs above are ignored because of the budget (see their reasons).
#[test]
fn retries_within_the_floor_go_to_the_other_target() {
    let bad = Up::start("bad", 503);
    let good = Up::start("good", 200);
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mut proxy = serde_json::Map::new();
    let retry =
        json!({"attempts": 2, "conditions": ["5xx", "connection_error"], "budgetPercent": 100});
    proxy.insert(
        "/5xx".into(),
        json!({"targets": [bad.url(), good.url()], "retry": retry.clone()}),
    );
    proxy.insert(
        "/dead".into(),
        json!({"targets": [dead, good.url()], "retry": retry}),
    );
    let c = conduit(json!({"proxy": Value::Object(proxy)}));
    for i in 0..3 {
        let id = format!("fl-{i}");
        let r = get(&c, "/5xx/x", &id);
        assert_eq!((r.status, r.from()), (200, Some("good")), "{r:?}");
        assert_eq!(good.saw(&id), 1);
        assert!(bad.saw(&id) <= 1);
    }
    assert!(
        bad.count() >= 1,
        "some first attempts met the failing target"
    );
    for i in 0..3 {
        let id = format!("fd-{i}");
        let r = get(&c, "/dead/x", &id);
        assert_eq!((r.status, r.from()), (200, Some("good")), "{r:?}");
        assert_eq!(good.saw(&id), 1);
    }
}

#[test]
fn retry_budget_caps_retries() {
    let bad = Up::start("bad", 503);
    let good = Up::start("good", 200);
    let c = conduit(retry_site(
        vec![bad.url(), good.url()],
        json!({"attempts": 2, "conditions": ["5xx"], "budgetPercent": 1}),
    ));
    let n = 20;
    let (mut failed, mut retried) = (0, 0);
    for i in 0..n {
        let id = format!("bg-{i}");
        let r = get(&c, "/x", &id);
        match r.status {
            200 => {
                assert_eq!(r.from(), Some("good"));
                assert_eq!(good.saw(&id), 1);
                if bad.saw(&id) == 1 {
                    retried += 1;
                }
            }
            503 => {
                // Not retried: the failing target's own answer, and the good one saw nothing.
                assert_eq!(r.from(), Some("bad"), "{r:?}");
                assert_eq!(good.saw(&id), 0, "{id} reached the good target");
                failed += 1;
            }
            s => panic!("unexpected status {s}: {r:?}"),
        }
        assert!(bad.saw(&id) <= 1);
    }
    // 1% of at most 20 successes is 0: only the floor of 3 retries per window is allowed.
    assert!(failed >= 1, "a spent budget lets the 5xx through");
    assert!(
        (1..=3).contains(&retried),
        "retries within the budget (floor 3): {retried}"
    );
    assert_eq!(good.count(), n - failed);
}

// ---------------------------------------------------------------------------------------------
// 4. Replaying a POST body.

#[test]
fn post_is_replayed_only_when_its_body_was_buffered() {
    let bad = Up::start("bad", 503);
    let good = Up::start("good", 200);
    let route = |prefix: &str| {
        (
            prefix.to_string(),
            json!({
                "targets": [bad.url(), good.url()],
                "retry": {"attempts": 2, "conditions": ["5xx"], "budgetPercent": 100},
            }),
        )
    };
    let mut proxy = serde_json::Map::new();
    for p in ["/small", "/big"] {
        let (k, v) = route(p);
        proxy.insert(k, v);
    }
    let c = conduit(json!({
        "limits": {"maxBodyBufferBytes": 1024},
        "proxy": Value::Object(proxy),
    }));
    let http = client();

    // Small bodies (300 bytes < 1024): a failed first attempt is replayed on the other target
    // with the identical body. (Three requests: within the retry budget's floor.)
    let mut replayed = 0;
    for i in 0..3 {
        let id = format!("small-{i}");
        let body: Vec<u8> = (0..300).map(|k| b'a' + ((k + i) % 26) as u8).collect();
        let r = send(
            http.post(c.url("/small/post"))
                .header("x-request-id", &id)
                .body(body.clone()),
        );
        assert_eq!((r.status, r.from()), (200, Some("good")), "{r:?}");
        let seen_good: Vec<Hit> = good.hits().into_iter().filter(|h| h.id == id).collect();
        assert_eq!(seen_good.len(), 1);
        assert_eq!(seen_good[0].method, "POST");
        assert_eq!(
            seen_good[0].body, body,
            "the good target got the identical body"
        );
        if let Some(h) = bad.hits().into_iter().find(|h| h.id == id) {
            assert_eq!(h.body, body);
            replayed += 1;
        }
    }
    assert!(replayed >= 1, "at least one POST was retried after a 503");

    // Large bodies (4 KB > 1024): not replayable, so the 503 reaches the client and the good
    // target never sees that request.
    let mut refused = 0;
    for i in 0..4 {
        let id = format!("big-{i}");
        let body = vec![b'z'; 4096];
        let r = send(
            http.post(c.url("/big/post"))
                .header("x-request-id", &id)
                .body(body.clone()),
        );
        match r.from() {
            Some("bad") => {
                assert_eq!(r.status, 503, "{r:?}");
                assert_eq!(good.saw(&id), 0, "{id}: a large POST was replayed");
                let h = bad.hits().into_iter().find(|h| h.id == id).unwrap();
                assert_eq!(h.body.len(), 4096);
                refused += 1;
            }
            Some("good") => {
                assert_eq!(r.status, 200);
                assert_eq!(bad.saw(&id), 0, "{id} went to both targets");
            }
            other => panic!("unexpected answer {other:?}: {r:?}"),
        }
    }
    assert!(refused >= 1, "some large POST met the failing target first");
}

#[test]
fn an_idempotent_request_with_a_body_beyond_the_retry_buffer_is_not_retried() {
    // PUT is idempotent, but a 100 KB body does not fit Pingora's 64 KiB retry buffer: a retry
    // would reach the other target without its body, so there is none.
    let bad = Up::start("bad", 503);
    let good = Up::start("good", 200);
    let c = conduit(json!({
        "proxy": {"/": {
            "targets": [bad.url(), good.url()],
            "retry": {"attempts": 2, "conditions": ["5xx"], "budgetPercent": 100},
        }},
    }));
    let http = client();
    let mut refused = 0;
    for i in 0..4 {
        let id = format!("put-{i}");
        let body = vec![b'p'; 100_000];
        let r = send(
            http.put(c.url("/put"))
                .header("x-request-id", &id)
                .body(body.clone()),
        );
        match r.from() {
            Some("bad") => {
                assert_eq!(r.status, 503, "{r:?}");
                assert_eq!(good.saw(&id), 0, "{id}: a PUT was retried without its body");
                refused += 1;
            }
            Some("good") => {
                assert_eq!(r.status, 200);
                let h = good.hits().into_iter().find(|h| h.id == id).unwrap();
                assert_eq!(h.body.len(), 100_000);
            }
            other => panic!("unexpected answer {other:?}: {r:?}"),
        }
    }
    assert!(refused >= 1, "some PUT met the failing target first");
}

// ---------------------------------------------------------------------------------------------
// 5. Backup targets.

#[test]
fn backup_serves_only_when_the_primary_is_ejected() {
    let a = Up::start("a", 200);
    let b = Up::start("b", 200);
    let c = conduit(json!({
        "outlierDetection": {"consecutive5xx": 3, "baseEjectionTimeSecs": 30, "maxEjectionPercent": 50},
        "proxy": {"/": {"targets": [a.url()], "backup": [b.url()]}},
    }));
    for i in 0..10 {
        let r = get(&c, "/x", &format!("bk-{i}"));
        assert_eq!((r.status, r.from()), (200, Some("a")), "{r:?}");
    }
    assert_eq!(
        b.count(),
        0,
        "the backup gets nothing while the primary is healthy"
    );
    a.set_status(500);
    for i in 0..3 {
        let r = get(&c, "/x", &format!("bk-fail-{i}"));
        assert_eq!((r.status, r.from()), (500, Some("a")), "{r:?}");
    }
    for i in 0..10 {
        let r = get(&c, "/x", &format!("bk-b-{i}"));
        assert_eq!(
            (r.status, r.from()),
            (200, Some("b")),
            "the backup serves: {r:?}"
        );
    }
    assert_eq!(a.count(), 13);
}

#[test]
fn backup_serves_when_the_primary_is_dead_with_retries() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let b = Up::start("b", 200);
    let c = conduit(json!({
        "proxy": {"/": {
            "targets": [dead],
            "backup": [b.url()],
            "retry": {"attempts": 2, "conditions": ["connection_error"], "budgetPercent": 100},
        }},
    }));
    let statuses: Vec<u16> = (0..10)
        .map(|i| get(&c, "/x", &format!("bkd-{i}")).status)
        .collect();
    assert_eq!(statuses, vec![200; 10], "the backup serves every request");
    assert_eq!(b.count(), 10);
}

// ---------------------------------------------------------------------------------------------
// 6. Sticky sessions.

/// The `pin=` value of a response's `Set-Cookie`, if any.
fn pin_of(r: &Resp) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("pin="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

fn with_cookie(c: &Conduit, cookie: &str, id: &str) -> Resp {
    send(
        client()
            .get(c.url("/x"))
            .header("x-request-id", id)
            .header("cookie", format!("pin={cookie}")),
    )
}

#[test]
fn sticky_cookie_pins_and_forgeries_are_ignored() {
    let ups: Vec<Up> = ["s0", "s1", "s2"]
        .iter()
        .map(|n| Up::start(n, 200))
        .collect();
    let c = conduit(json!({
        "proxy": {"/": {
            "targets": ups.iter().map(Up::url).collect::<Vec<_>>(),
            "sticky": {"secret": "0123456789abcdef0123", "cookie": "pin"},
        }},
    }));
    let first = get(&c, "/x", "st-0");
    assert_eq!(first.status, 200);
    let pinned_to = first.from().unwrap().to_string();
    let set = first.header("set-cookie").unwrap().to_string();
    assert!(set.starts_with("pin="), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    let pin = pin_of(&first).unwrap();

    // The cookie pins every request to one target, and is not set again.
    for i in 0..12 {
        let r = with_cookie(&c, &pin, &format!("st-pin-{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.from(), Some(pinned_to.as_str()), "pinned: {r:?}");
        assert_eq!(pin_of(&r), None, "a valid pin is not re-issued");
    }
    let counts: Vec<usize> = ups.iter().map(Up::count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 13);
    assert_eq!(counts.iter().max(), Some(&13), "{counts:?}");

    // A forged cookie (one hex digit of the signature changed) is ignored.
    let mut forged = pin.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_ne!(forged, pin);
    let mut seen = HashSet::new();
    for i in 0..6 {
        let r = with_cookie(&c, &forged, &format!("st-forged-{i}"));
        assert_eq!(r.status, 200);
        seen.insert(r.from().unwrap().to_string());
        let fresh = pin_of(&r).expect("a fresh pin is issued for a forged cookie");
        assert_ne!(fresh, forged);
    }
    assert!(
        seen.len() >= 2,
        "a forged cookie does not pin: traffic spreads again ({seen:?})"
    );
}

#[test]
fn strict_sticky_answers_503_when_the_pinned_target_is_down() {
    let ups: Vec<Up> = ["t0", "t1", "t2"]
        .iter()
        .map(|n| Up::start(n, 200))
        .collect();
    let c = conduit(json!({
        "outlierDetection": {"consecutive5xx": 1, "baseEjectionTimeSecs": 30, "maxEjectionPercent": 100},
        "proxy": {"/": {
            "targets": ups.iter().map(Up::url).collect::<Vec<_>>(),
            "sticky": {"secret": "0123456789abcdef0123", "cookie": "pin", "strict": true},
            "pool": {"maxIdle": 0},
        }},
    }));
    let first = get(&c, "/x", "ss-0");
    let pinned = first.from().unwrap().to_string();
    let pin = pin_of(&first).unwrap();
    let victim = ups.iter().find(|u| u.name == pinned).unwrap();
    victim.kill();
    let others: usize = ups.iter().filter(|u| u.name != pinned).map(Up::count).sum();

    // The first pinned request meets the dead target (502) and ejects it; then strict pinning
    // answers 503 instead of moving the client.
    let r = with_cookie(&c, &pin, "ss-dead");
    assert_eq!(r.status, 502, "{r:?}");
    for i in 0..3 {
        let id = format!("ss-strict-{i}");
        let r = with_cookie(&c, &pin, &id);
        assert_conduit_error(&r, 503, &id);
    }
    let now: usize = ups.iter().filter(|u| u.name != pinned).map(Up::count).sum();
    assert_eq!(
        now, others,
        "strict pinning never moves the client elsewhere"
    );
    // Unpinned clients are still served by the live targets.
    let r = get(&c, "/x", "ss-free");
    assert_eq!(r.status, 200);
    assert_ne!(r.from(), Some(pinned.as_str()));
}

// ---------------------------------------------------------------------------------------------
// 7. Canary.

#[test]
fn canary_weight_and_cohort() {
    let stable = Up::start("stable", 200);
    let canary = Up::start("canary", 200);
    let c = conduit(json!({
        "proxy": {"/": {
            "targets": [stable.url()],
            "canary": {
                "targets": [canary.url()],
                "weight": 20,
                "cohort": {"header": "X-Canary", "values": ["yes"]},
            },
        }},
    }));
    let mut to_canary = 0;
    for i in 0..200 {
        let r = get(&c, "/x", &format!("cn-{i}"));
        assert_eq!(r.status, 200);
        if r.from() == Some("canary") {
            to_canary += 1;
        }
    }
    // Expected 40 (sd ~5.7).
    assert!(
        (18..=66).contains(&to_canary),
        "about 20% to the canary: {to_canary}/200"
    );
    assert_eq!(canary.count(), to_canary);
    let http = client();
    for i in 0..20 {
        let r = send(
            http.get(c.url("/x"))
                .header("x-request-id", format!("cn-yes-{i}"))
                .header("X-Canary", "yes"),
        );
        assert_eq!(
            r.from(),
            Some("canary"),
            "the cohort always goes to the canary"
        );
    }
}

#[test]
fn canary_is_rolled_back_when_it_fails() {
    let stable = Up::start("stable", 200);
    let canary = Up::start("canary", 500);
    let c = conduit(json!({
        "proxy": {"/": {
            "targets": [stable.url()],
            "canary": {
                "targets": [canary.url()],
                "weight": 50,
                "minRequests": 5,
                "rollbackThresholdPercent": 10,
            },
        }},
    }));
    for i in 0..80 {
        get(&c, "/x", &format!("rb-{i}"));
    }
    let before = canary.count();
    assert!(before >= 5, "the canary received traffic first ({before})");
    for i in 0..30 {
        let r = get(&c, "/x", &format!("rb-after-{i}"));
        assert_eq!((r.status, r.from()), (200, Some("stable")), "{r:?}");
    }
    assert_eq!(
        canary.count(),
        before,
        "rolled back: the canary receives nothing"
    );
    assert!(
        before < 40,
        "rolled back soon after minRequests, not at the end ({before} canary requests)"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Groups.

#[test]
fn groups_fail_over_to_the_next_group() {
    let a = Up::start("a", 200);
    let b = Up::start("b", 200);
    let c = conduit(json!({
        "outlierDetection": {"consecutive5xx": 2, "baseEjectionTimeSecs": 30, "maxEjectionPercent": 50},
        "proxy": {"/": {
            "groups": [{"name": "a", "targets": [a.url()]}, {"name": "b", "targets": [b.url()]}],
            "retry": {"attempts": 2, "conditions": ["connection_error", "5xx"]},
        }},
    }));
    for i in 0..10 {
        let r = get(&c, "/x", &format!("gf-{i}"));
        assert_eq!((r.status, r.from()), (200, Some("a")), "{r:?}");
    }
    assert_eq!(b.count(), 0);
    a.kill();
    // Each request to the dead group is retried on group b; after two failures group a is
    // ejected and b takes everything directly.
    for i in 0..10 {
        let r = get(&c, "/x", &format!("gf-dead-{i}"));
        assert_eq!((r.status, r.from()), (200, Some("b")), "{r:?}");
    }
    assert_eq!(b.count(), 10);
}

#[test]
fn groups_round_robin_uses_both() {
    let a = Up::start("a", 200);
    let b = Up::start("b", 200);
    let c = conduit(json!({
        "proxy": {"/": {
            "groups": [{"name": "a", "targets": [a.url()]}, {"name": "b", "targets": [b.url()]}],
            "groupStrategy": "round-robin",
        }},
    }));
    for i in 0..20 {
        assert_eq!(get(&c, "/x", &format!("gr-{i}")).status, 200);
    }
    assert!(
        a.count() >= 5 && b.count() >= 5,
        "a {} b {}",
        a.count(),
        b.count()
    );
    assert_eq!(a.count() + b.count(), 20);
}

// ---------------------------------------------------------------------------------------------
// 9. Admission under load.

fn limited(up: &Up, queue_timeout_ms: u64) -> Conduit {
    conduit(json!({
        "limits": {"maxInflightRequests": 1, "queue": {"size": 1, "timeoutMs": queue_timeout_ms}},
        "proxy": {"/": {"targets": [up.url()]}},
    }))
}

/// Starts a GET in the background; the handle yields the response and how long it took.
fn spawn_get(c: &Conduit, path: &str, id: &str) -> thread::JoinHandle<(Resp, Duration)> {
    let url = c.url(path);
    let id = id.to_string();
    thread::spawn(move || {
        let start = Instant::now();
        let r = send(client().get(url).header("x-request-id", id));
        (r, start.elapsed())
    })
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn queue_timeout_gives_503() {
    let up = Up::start("slow", 200);
    let c = limited(&up, 300);
    let first = spawn_get(&c, "/slow/1500", "q-1");
    wait_for("the first request upstream", || up.count() == 1);
    let start = Instant::now();
    let r = get(&c, "/x", "q-2");
    let waited = start.elapsed();
    assert_conduit_error(&r, 503, "q-2");
    assert!(
        ms(waited) >= 250 && ms(waited) < 1_200,
        "waited {} ms in the queue (timeoutMs 300)",
        ms(waited)
    );
    assert_eq!(
        up.count(),
        1,
        "the queued request never reached the upstream"
    );
    let (r1, _) = first.join().unwrap();
    assert_eq!(r1.status, 200);
    // The slot is free again.
    assert_eq!(get(&c, "/x", "q-3").status, 200);
}

#[test]
fn queue_waits_for_a_slot_and_a_full_queue_refuses_at_once() {
    let up = Up::start("slow", 200);
    let c = limited(&up, 3000);
    let first = spawn_get(&c, "/slow/1000", "qw-1");
    wait_for("the first request upstream", || up.count() == 1);
    let second = spawn_get(&c, "/x", "qw-2");
    // Give the second request time to enter the queue.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(up.count(), 1, "the second request waits");
    let start = Instant::now();
    let r = get(&c, "/x", "qw-3");
    assert_conduit_error(&r, 503, "qw-3");
    assert!(
        ms(start.elapsed()) < 400,
        "a full queue refuses at once ({} ms)",
        ms(start.elapsed())
    );
    let (r1, _) = first.join().unwrap();
    assert_eq!(r1.status, 200);
    let (r2, took) = second.join().unwrap();
    assert_eq!((r2.status, r2.from()), (200, Some("slow")), "{r2:?}");
    assert!(
        ms(took) >= 500,
        "the queued request waited for the slot ({} ms)",
        ms(took)
    );
    assert_eq!(up.count(), 2);
}

#[test]
fn priority_sheds_low_priority_routes_first() {
    let up = Up::start("up", 200);
    let c = conduit(json!({
        "limits": {"maxInflightRequests": 10, "priorityThreshold": 0.5},
        "proxy": {
            "/low": {"targets": [up.url()], "priority": 0},
            "/high": {"targets": [up.url()], "priority": 100},
        },
    }));
    assert_eq!(
        get(&c, "/low/x", "pr-idle").status,
        200,
        "no shedding when idle"
    );
    let slow: Vec<_> = (0..6)
        .map(|i| spawn_get(&c, "/high/slow/2000", &format!("pr-slow-{i}")))
        .collect();
    wait_for("six slow requests in flight", || {
        up.hits()
            .iter()
            .filter(|h| h.path.contains("/slow/"))
            .count()
            == 6
    });
    let start = Instant::now();
    let r = get(&c, "/low/x", "pr-low");
    assert_conduit_error(&r, 503, "pr-low");
    assert!(ms(start.elapsed()) < 1_000, "shed at once");
    let r = get(&c, "/high/x", "pr-high");
    assert_eq!((r.status, r.from()), (200, Some("up")), "{r:?}");
    for h in slow {
        assert_eq!(h.join().unwrap().0.status, 200);
    }
    assert_eq!(up.saw("pr-low"), 0);
    assert_eq!(
        get(&c, "/low/x", "pr-after").status,
        200,
        "served again once load drops"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Fail-open probing.

#[test]
fn fail_open_probes_once_a_second_and_recovers() {
    let up = Up::start("solo", 500);
    let c = conduit(json!({
        "outlierDetection": {"consecutive5xx": 3, "baseEjectionTimeSecs": 60, "maxEjectionPercent": 100},
        "proxy": {"/": {"targets": [up.url()]}},
    }));
    for i in 0..3 {
        let r = get(&c, "/x", &format!("fo-{i}"));
        assert_eq!((r.status, r.from()), (500, Some("solo")));
    }
    // Ejected for 60 s and no other target: 503 at once, except about one request a second.
    let start = Instant::now();
    let (mut refused, mut probes, mut i) = (0, 0, 0);
    while start.elapsed() < Duration::from_millis(2_500) {
        let id = format!("fo-down-{i}");
        let r = get(&c, "/x", &id);
        if r.from() == Some("solo") {
            assert_eq!(r.status, 500);
            probes += 1;
        } else {
            assert_conduit_error(&r, 503, &id);
            refused += 1;
        }
        i += 1;
        thread::sleep(Duration::from_millis(40));
    }
    assert!(
        (2..=4).contains(&probes),
        "about one probe a second over 2.5 s: {probes} (refused {refused})"
    );
    assert!(refused >= 20, "the rest are refused: {refused}");
    assert_eq!(up.count(), 3 + probes);

    // The target recovers: the next probe succeeds and traffic resumes.
    up.set_status(200);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = get(&c, "/x", "fo-wait");
        if r.status == 200 {
            assert_eq!(r.from(), Some("solo"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no probe reached the recovered target"
        );
        thread::sleep(Duration::from_millis(40));
    }
    for k in 0..10 {
        let r = get(&c, "/x", &format!("fo-up-{k}"));
        assert_eq!(
            (r.status, r.from()),
            (200, Some("solo")),
            "traffic resumed: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn validate(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), yaml).unwrap();
    run_cli(dir.path(), &["validate", "-c", "t.yaml"])
}

#[test]
fn validate_rejects_wrong_resilience_configs() {
    const UP: &str = "http://127.0.0.1:9";
    // A config using every feature above validates.
    let good = format!(
        "outlierDetection: {{consecutive5xx: 3, baseEjectionTimeSecs: 1, maxEjectionPercent: 50}}\n\
         limits: {{maxInflightRequests: 10, priorityThreshold: 0.5, maxBodyBufferBytes: 1024, queue: {{size: 1, timeoutMs: 300}}}}\n\
         proxy:\n  /:\n    targets: [{UP}]\n    backup: [{UP}]\n    priority: 100\n\
         \x20   retry: {{attempts: 2, conditions: [5xx, connection_error], budgetPercent: 1}}\n\
         \x20   circuitBreaker: {{errorThresholdPercent: 50, minRequests: 4, openSecs: 1}}\n\
         \x20   sticky: {{secret: \"0123456789abcdef0123\", cookie: pin, strict: true}}\n\
         \x20   canary: {{targets: [{UP}], weight: 20, minRequests: 5, rollbackThresholdPercent: 10, cohort: {{header: X-Canary, values: [\"yes\"]}}}}\n\
         \x20 /g:\n    groups: [{{name: a, targets: [{UP}]}}, {{name: b, targets: [{UP}]}}]\n    groupStrategy: round-robin\n"
    );
    let (code, out, err) = validate(&good);
    assert_eq!(code, 0, "a valid config is accepted\n{out}{err}");

    let cases: [(&str, String, &str); 5] = [
        (
            "unknown strategy",
            format!("proxy:\n  /:\n    targets: [{UP}]\n    strategy: fastest\n"),
            "proxy./.strategy",
        ),
        (
            "hashKey without consistent-hash",
            format!("proxy:\n  /:\n    targets: [{UP}]\n    hashKey: ip\n"),
            "proxy./.hashKey",
        ),
        (
            "sticky secret too short",
            format!("proxy:\n  /:\n    targets: [{UP}]\n    sticky: {{secret: short}}\n"),
            "proxy./.sticky.secret",
        ),
        (
            "canary weight 150",
            format!(
                "proxy:\n  /:\n    targets: [{UP}]\n    canary: {{targets: [{UP}], weight: 150}}\n"
            ),
            "proxy./.canary.weight",
        ),
        (
            "maxBodyBufferBytes 100000",
            format!("limits: {{maxBodyBufferBytes: 100000}}\nproxy: {UP}\n"),
            "limits.maxBodyBufferBytes",
        ),
    ];
    for (what, yaml, path) in cases {
        let (code, out, err) = validate(&yaml);
        assert_eq!(code, 1, "{what}: expected exit 1\n{out}{err}");
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{path}:"))),
            "{what}: no error line starting with `{path}:`\n--- stdout\n{out}--- stderr\n{err}"
        );
    }
}
