//! Active health checks through the real binary: a target failing its checks stops receiving
//! traffic after `unhealthyThreshold` checks, comes back after `healthyThreshold` passes, ramps up
//! under `slowStartSecs`, `expectedStatus` decides what passes, and
//! `maxConnectionsPerUpstream` answers 503 with `x-conduit-circuit-open` when the target is full.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A test upstream whose answer to `GET /health` is set by the test; every other path answers
/// `200` with its name as the body.
struct Controlled {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    /// Each `/health` answer: when it was sent and its status.
    checks: Arc<Mutex<Vec<(Instant, u16)>>>,
    stop: Arc<AtomicBool>,
}

impl Controlled {
    fn start(name: &str, health: u16) -> Controlled {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = Controlled {
            addr: listener.local_addr().unwrap(),
            health: Arc::new(AtomicU16::new(health)),
            checks: Arc::default(),
            stop: Arc::default(),
        };
        let (health, checks, stop, name) = (
            c.health.clone(),
            c.checks.clone(),
            c.stop.clone(),
            name.to_string(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (health, checks, name) = (health.clone(), checks.clone(), name.clone());
                thread::spawn(move || serve(stream, &name, &health, &checks));
            }
        });
        c
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many `/health` answers it sent.
    fn check_count(&self) -> usize {
        self.checks.lock().unwrap().len()
    }

    /// When it first answered `/health` with `status` at or after `since`.
    fn answered(&self, status: u16, since: Instant) -> Option<Instant> {
        self.checks
            .lock()
            .unwrap()
            .iter()
            .find(|(at, s)| *s == status && *at >= since)
            .map(|(at, _)| *at)
    }
}

impl Drop for Controlled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, name: &str, health: &AtomicU16, checks: &Mutex<Vec<(Instant, u16)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
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
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, body) = if path == "/health" {
            let status = health.load(Ordering::SeqCst);
            checks.lock().unwrap().push((Instant::now(), status));
            (status, "health".to_string())
        } else {
            (200, name.to_string())
        };
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A site with one route over `targets` and the given `healthCheck` options.
fn config(targets: &[String], health: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n        targets: [{}]\n        healthCheck: {{{health}}}\n",
        targets.join(", ")
    )
}

/// Sends `n` sequential requests; counts the answering upstream's name (the body).
fn tally(c: &Conduit, http: &reqwest::blocking::Client, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let r = http.get(c.url(&format!("/t/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200);
        *counts.entry(r.text().unwrap()).or_insert(0) += 1;
    }
    counts
}

/// Sends sequential requests for `span`; returns (requests answered by `name`, all requests).
fn share_for(
    c: &Conduit,
    http: &reqwest::blocking::Client,
    name: &str,
    span: Duration,
) -> (usize, usize) {
    let end = Instant::now() + span;
    let (mut hits, mut all) = (0, 0);
    while Instant::now() < end {
        let r = http.get(c.url("/share")).send().unwrap();
        assert_eq!(r.status(), 200);
        all += 1;
        if r.text().unwrap() == name {
            hits += 1;
        }
    }
    (hits, all)
}

/// Polls until 20 requests in a row all go to `name`; false after `timeout`.
fn all_go_to(c: &Conduit, http: &reqwest::blocking::Client, name: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tally(c, http, 20).get(name) == Some(&20) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls until `f` holds; false after `timeout`.
fn wait_for(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn failing_target_is_taken_out_after_the_threshold() {
    let good = Upstream::start("good");
    let bad = Controlled::start("bad", 500);
    let c = Conduit::start(&config(
        &[good.url(), bad.url()],
        "path: /health, intervalSecs: 1, unhealthyThreshold: 2",
    ));
    let http = client();
    // One failed check is not enough: the first second still shares traffic.
    assert!(wait_for(Duration::from_secs(3), || bad.check_count() >= 1));
    let early = tally(&c, &http, 10);
    assert!(early.get("bad").copied().unwrap_or(0) >= 1, "{early:?}");
    // The second failed check (about a second later) takes it out.
    assert!(all_go_to(&c, &http, "good", Duration::from_secs(5)));
    assert!(bad.check_count() >= 2);
    let down_at = bad.check_count();
    let after = tally(&c, &http, 20);
    assert_eq!(after.get("good"), Some(&20), "{after:?}");
    // The check request: GET <path> with the target's authority, our agent, no keep-alive.
    let check = good
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.target == "/health")
        .cloned()
        .expect("the healthy target was checked too");
    assert_eq!(check.method, "GET");
    assert_eq!(check.header("host"), Some(good.addr.to_string().as_str()));
    assert_eq!(check.header("user-agent"), Some("conduit-health"));
    assert_eq!(check.header("connection"), Some("close"));
    // The down target keeps being checked, and the change was logged once.
    assert!(wait_for(Duration::from_secs(3), || bad.check_count() > down_at));
    let log = c.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("marked unhealthy"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(&bad.url()), "{}", lines[0]);
    assert!(lines[0].contains("status 500"), "{}", lines[0]);
}

#[test]
fn target_returns_after_healthy_threshold_passes() {
    // Answers in one write: fast, so a second holds many requests.
    let good = Controlled::start("good", 200);
    let flaky = Controlled::start("flaky", 503);
    let c = Conduit::start(&config(
        &[good.url(), flaky.url()],
        "path: /health, intervalSecs: 1, unhealthyThreshold: 1, healthyThreshold: 2",
    ));
    let http = client();
    assert!(all_go_to(&c, &http, "good", Duration::from_secs(5)));
    let flipped = Instant::now();
    flaky.health.store(200, Ordering::SeqCst);
    assert!(wait_for(Duration::from_secs(3), || flaky
        .answered(200, flipped)
        .is_some()));
    let first_pass = flaky.answered(200, flipped).unwrap();
    // One pass of two: still out (the next check is at least a second later).
    thread::sleep(Duration::from_millis(100));
    let mut between = HashMap::new();
    while first_pass.elapsed() < Duration::from_millis(800) {
        for (k, v) in tally(&c, &http, 5) {
            *between.entry(k).or_insert(0) += v;
        }
    }
    assert_eq!(between.get("flaky"), None, "{between:?}");
    // The second pass brings it back into the round robin.
    assert!(wait_for(Duration::from_secs(4), || tally(&c, &http, 4)
        .contains_key("flaky")));
    let back = tally(&c, &http, 20);
    let n = back.get("flaky").copied().unwrap_or(0);
    assert!((5..=15).contains(&n), "{back:?}");
    assert!(c.stderr().contains("upstream healthy again"));
}

#[test]
fn slow_start_ramps_a_returning_target() {
    // Answers in one write: fast, so a second holds many requests.
    let good = Controlled::start("good", 200);
    let flaky = Controlled::start("flaky", 500);
    let c = Conduit::start(&config(
        &[good.url(), flaky.url()],
        "path: /health, intervalSecs: 1, unhealthyThreshold: 1, slowStartSecs: 3",
    ));
    let http = client();
    assert!(all_go_to(&c, &http, "good", Duration::from_secs(5)));
    let flipped = Instant::now();
    flaky.health.store(200, Ordering::SeqCst);
    assert!(wait_for(Duration::from_secs(3), || flaky
        .answered(200, flipped)
        .is_some()));
    let back = flaky.answered(200, flipped).unwrap();
    // First second: the share ramps from 10% of its half: well under half.
    let (early, early_all) = share_for(&c, &http, "flaky", Duration::from_millis(1000));
    assert!(early_all >= 20, "only {early_all} requests");
    assert!(
        (early as f64) < 0.35 * early_all as f64,
        "{early} of {early_all} in the first second"
    );
    // After the ramp: about half.
    let wait = Duration::from_millis(3300).saturating_sub(back.elapsed());
    thread::sleep(wait);
    let (late, late_all) = share_for(&c, &http, "flaky", Duration::from_millis(800));
    assert!(late_all >= 20, "only {late_all} requests");
    let share = late as f64 / late_all as f64;
    assert!(
        (0.3..=0.7).contains(&share),
        "{late} of {late_all} after the ramp"
    );
    assert!(late as f64 / late_all as f64 > early as f64 / early_all as f64 + 0.1);
}

#[test]
fn expected_status_decides_what_passes() {
    // `plain` answers 200 to every path, which is not the expected 204.
    let plain = Upstream::start("plain");
    let nc = Controlled::start("nocontent", 204);
    let c = Conduit::start(&config(
        &[plain.url(), nc.url()],
        "path: /health, intervalSecs: 1, unhealthyThreshold: 1, expectedStatus: \"204\"",
    ));
    let http = client();
    assert!(all_go_to(&c, &http, "nocontent", Duration::from_secs(5)));
    assert!(plain
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.target == "/health"));
    let log = c.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("marked unhealthy"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(&plain.url()) && line.contains("status 200"),
        "{line}"
    );
    let nc_down = log
        .lines()
        .filter(|l| l.contains("marked unhealthy"))
        .any(|l| l.split(' ').any(|w| w.ends_with(&nc.url())));
    assert!(!nc_down, "{log}");
}

#[test]
fn connection_cap_answers_503_circuit_open() {
    let up = Upstream::start("capped");
    let c = Conduit::start(&config(&[up.url()], "maxConnectionsPerUpstream: 1"));
    let url = c.url("/slow/1500");
    let slow = thread::spawn(move || client().get(url).send().unwrap().status().as_u16());
    assert!(wait_for(Duration::from_secs(3), || up
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.target == "/slow/1500")));
    let r = client().get(c.url("/second")).send().unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-conduit-circuit-open"], "true");
    assert_eq!(slow.join().unwrap(), 200);
    // The slot is free again.
    let r = client().get(c.url("/third")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "capped");
}
