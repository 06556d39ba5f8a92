//! The eight load-balancing strategies end to end, through the real binary and real upstreams:
//! round robin and its weights, weighted random, ip-hash by source address and behind a trusted
//! proxy, consistent hashing by header, cookie and URL (and how little it moves when a target is
//! added by a reload), and the load-aware strategies (least-conn, p2c, least-response-time)
//! steering around a slow upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A config with one route on `/`: `route` is the body of its flow mapping (`targets: [...],
/// strategy: ...`); `site_extra` are extra site lines (indented four spaces).
fn config(route: &str, site_extra: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 1}}\nsites:\n  - port: {{port}}\n{site_extra}    proxy:\n      /: {{{route}}}\n"
    )
}

/// `["url", ...]` as a YAML flow sequence.
fn urls(ups: &[&str]) -> String {
    let quoted: Vec<String> = ups.iter().map(|u| format!("\"{u}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// One GET; the body is the name of the upstream that answered.
fn get(http: &reqwest::blocking::Client, url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.text().unwrap()
}

fn tally<S: AsRef<str>>(names: &[S]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for n in names {
        *t.entry(n.as_ref().to_string()).or_insert(0) += 1;
    }
    t
}

fn share(t: &BTreeMap<String, usize>, name: &str) -> usize {
    t.get(name).copied().unwrap_or(0)
}

/// `total` GETs of `path` from `concurrency` threads (each with its own client); the names of
/// the upstreams that answered.
fn fire(c: &Conduit, path: &str, total: usize, concurrency: usize) -> Vec<String> {
    let left = Arc::new(AtomicUsize::new(total));
    let out = Arc::new(Mutex::new(Vec::new()));
    let url = c.url(path);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (left, out, url) = (left.clone(), out.clone(), url.clone());
            thread::spawn(move || {
                let http = client();
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let name = get(&http, &url, &[]);
                    out.lock().unwrap().push(name);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let v = out.lock().unwrap().clone();
    assert_eq!(v.len(), total);
    v
}

/// A minimal keep-alive HTTP/1.1 upstream answering `200` with its name to bodyless GETs, after
/// a delay that belongs to the instance (so one target of a pool can be slow while the others
/// are fast on the same path). It writes each answer in one piece with `TCP_NODELAY`: the shared
/// harness upstream writes head and body separately, which under Nagle and delayed ACKs costs up
/// to 40 ms a request, too slow for the hundreds of requests a distribution needs.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    fn fast(name: &str) -> Backend {
        Backend::slow(name, Duration::ZERO)
    }

    fn slow(name: &str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, name) = (hits.clone(), stop.clone(), name.to_string());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let (h, name) = (h.clone(), name.clone());
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    loop {
                        // Request line and headers, up to the blank line.
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut hdr = String::new();
                            if reader.read_line(&mut hdr).unwrap_or(0) == 0 {
                                return;
                            }
                            if hdr.trim_end().is_empty() {
                                break;
                            }
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        if !delay.is_zero() {
                            thread::sleep(delay);
                        }
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if out.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Backend { addr, hits, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

#[test]
fn round_robin_takes_turns_exactly() {
    let (a, b, c3) = (Backend::fast("a"), Backend::fast("b"), Backend::fast("c"));
    let route = format!(
        "targets: {}, strategy: round-robin",
        urls(&[&a.url(), &b.url(), &c3.url()])
    );
    let c = Conduit::start(&config(&route, ""));
    let http = client();
    let names: Vec<String> = (0..300).map(|_| get(&http, &c.url("/"), &[])).collect();
    let t = tally(&names);
    assert_eq!(
        (share(&t, "a"), share(&t, "b"), share(&t, "c")),
        (100, 100, 100),
        "{t:?}"
    );
    // In turn: any three consecutive sequential requests went to three different targets.
    for w in names.windows(3) {
        let distinct: HashSet<_> = w.iter().collect();
        assert_eq!(distinct.len(), 3, "not in turn: {w:?}");
    }
    // The upstreams agree.
    assert_eq!((a.count(), b.count(), c3.count()), (100, 100, 100));
}

#[test]
fn weights_split_3_to_1_with_weighted_and_plain_round_robin() {
    for strategy in ["weighted-round-robin", "round-robin"] {
        let (a, b) = (Backend::fast("a"), Backend::fast("b"));
        let route = format!(
            "targets: [{{url: \"{}\", weight: 3}}, {{url: \"{}\", weight: 1}}], strategy: {strategy}",
            a.url(),
            b.url()
        );
        let c = Conduit::start(&config(&route, ""));
        let http = client();
        let names: Vec<String> = (0..400).map(|_| get(&http, &c.url("/"), &[])).collect();
        let t = tally(&names);
        assert_eq!(
            (share(&t, "a"), share(&t, "b")),
            (300, 100),
            "{strategy}: {t:?}"
        );
        // Smooth: every four consecutive requests hold exactly one for b.
        for w in names.windows(4) {
            assert_eq!(
                w.iter().filter(|n| *n == "b").count(),
                1,
                "{strategy} not smooth: {w:?}"
            );
        }
    }
}

#[test]
fn random_follows_the_weights() {
    let (a, b) = (Backend::fast("a"), Backend::fast("b"));
    let route = format!(
        "targets: [{{url: \"{}\", weight: 3}}, {{url: \"{}\", weight: 1}}], strategy: random",
        a.url(),
        b.url()
    );
    let c = Conduit::start(&config(&route, ""));
    let http = client();
    let names: Vec<String> = (0..400).map(|_| get(&http, &c.url("/"), &[])).collect();
    let t = tally(&names);
    // Expected 300/100 (σ ≈ 8.7); the bounds are about ±7σ.
    let na = share(&t, "a");
    assert!((240..=360).contains(&na), "{t:?}");
    assert_eq!(na + share(&t, "b"), 400, "{t:?}");
    // Random, not a rotation: the order does not repeat with the round-robin period.
    assert!(
        (0..names.len() - 4).any(|i| names[i] != names[i + 4]),
        "random picks follow a fixed 4-cycle"
    );
}

#[test]
fn ip_hash_pins_each_client_address_and_spreads_addresses() {
    let (a, b, c3) = (Backend::fast("a"), Backend::fast("b"), Backend::fast("c"));
    let route = format!(
        "targets: {}, strategy: ip-hash",
        urls(&[&a.url(), &b.url(), &c3.url()])
    );
    let c = Conduit::start(&config(&route, ""));
    let mut per_target = BTreeMap::new();
    // Linux routes all of 127/8 to lo: 40 distinct client addresses.
    for last in 2..42u8 {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .local_address(src)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let names: Vec<String> = (0..3)
            .map(|i| get(&http, &c.url(&format!("/p{i}?x={i}")), &[]))
            .collect();
        let distinct: HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), 1, "client {src} moved: {names:?}");
        *per_target.entry(names[0].clone()).or_insert(0) += 1;
    }
    // Chance that 40 addresses miss one of three targets: 3·(2/3)^40 ≈ 3e-7.
    assert_eq!(per_target.len(), 3, "addresses not spread: {per_target:?}");
}

#[test]
fn ip_hash_reads_the_client_from_a_trusted_proxy_only() {
    let (a, b, c3) = (Backend::fast("a"), Backend::fast("b"), Backend::fast("c"));
    let route = format!(
        "targets: {}, strategy: ip-hash",
        urls(&[&a.url(), &b.url(), &c3.url()])
    );
    let c = Conduit::start(&config(&route, "    trustedProxies: [\"127.0.0.1\"]\n"));
    let http = client();
    let mut per_target = BTreeMap::new();
    for k in 0..40u8 {
        let xff = format!("10.1.2.{k}");
        let names: Vec<String> = (0..3)
            .map(|_| get(&http, &c.url("/"), &[("x-forwarded-for", &xff)]))
            .collect();
        let distinct: HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), 1, "client {xff} moved: {names:?}");
        *per_target.entry(names[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(
        per_target.len(),
        3,
        "forwarded clients not spread: {per_target:?}"
    );

    // From 127.0.0.2 (not trusted) the header is ignored: one address, one target.
    let untrusted = reqwest::blocking::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let names: Vec<String> = (0..40u8)
        .map(|k| {
            get(
                &untrusted,
                &c.url("/"),
                &[("x-forwarded-for", &format!("10.1.2.{k}"))],
            )
        })
        .collect();
    assert_eq!(
        tally(&names).len(),
        1,
        "an untrusted peer's X-Forwarded-For steered ip-hash: {:?}",
        tally(&names)
    );
}

/// Maps each key to the upstream that answered a request carrying `X-User: key`.
fn map_users(c: &Conduit, keys: &[String]) -> Vec<String> {
    let http = client();
    keys.iter()
        .map(|k| get(&http, &c.url("/"), &[("x-user", k)]))
        .collect()
}

#[test]
fn consistent_hash_by_header_is_stable_spread_and_moves_little_when_a_target_is_added() {
    let (a, b, c3, d) = (
        Backend::fast("a"),
        Backend::fast("b"),
        Backend::fast("c"),
        Backend::fast("d"),
    );
    let three = urls(&[&a.url(), &b.url(), &c3.url()]);
    let four = urls(&[&a.url(), &b.url(), &c3.url(), &d.url()]);
    let route = |targets: &str| {
        format!("targets: {targets}, strategy: consistent-hash, hashKey: header:X-User")
    };
    let c = Conduit::start(&config(&route(&three), ""));
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();

    let before = map_users(&c, &keys);
    assert_eq!(map_users(&c, &keys), before, "same key, different target");
    let t = tally(&before);
    // 200 keys over 3 targets: 66.7 each expected (σ ≈ 6.7).
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.values().all(|&n| n >= 30), "keys not spread: {t:?}");
    assert_eq!(d.count(), 0);

    // Add d and reload.
    c.write_config(&config(&route(&four), ""));
    c.signal("HUP");
    assert!(
        c.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        c.stderr()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = map_users(&c, &keys);
        if after.iter().any(|n| n == "d") || Instant::now() > deadline {
            break after;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let moved: Vec<(&String, &String, &String)> = keys
        .iter()
        .zip(before.iter().zip(after.iter()))
        .filter(|(_, (x, y))| x != y)
        .map(|(k, (x, y))| (k, x, y))
        .collect();
    let wrong: Vec<_> = moved.iter().filter(|(_, _, to)| *to != "d").collect();
    assert!(
        wrong.is_empty(),
        "keys moved between old targets: {wrong:?}"
    );
    // Expected 1/4 of 200 = 50 (σ ≈ 6.1).
    assert!(
        (20..=80).contains(&moved.len()),
        "{} of 200 keys moved to the new target",
        moved.len()
    );
    assert_eq!(map_users(&c, &keys), after, "unstable after reload");
}

#[test]
fn consistent_hash_by_cookie_and_by_url() {
    let (a, b, c3) = (Backend::fast("a"), Backend::fast("b"), Backend::fast("c"));
    let targets = urls(&[&a.url(), &b.url(), &c3.url()]);
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /c: {{targets: {targets}, strategy: consistent-hash, hashKey: \"cookie:sid\"}}\n      /u: {{targets: {targets}, strategy: consistent-hash, hashKey: url}}\n"
    );
    let c = Conduit::start(&yaml);
    let http = client();

    // Cookie: the same sid lands on one target whatever the path and the other cookies.
    let mut by_cookie = BTreeMap::new();
    for k in 0..40 {
        let names: Vec<String> = (0..3)
            .map(|i| {
                let cookie = format!("theme=t{i}; sid=session-{k}; lang=l{i}");
                get(
                    &http,
                    &c.url(&format!("/c/page-{i}")),
                    &[("cookie", &cookie)],
                )
            })
            .collect();
        let distinct: HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), 1, "sid session-{k} moved: {names:?}");
        *by_cookie.entry(names[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(by_cookie.len(), 3, "sessions not spread: {by_cookie:?}");

    // URL: the same path and query land on one target whatever the headers.
    let mut by_url = BTreeMap::new();
    for k in 0..40 {
        let url = c.url(&format!("/u/item-{k}?v=1"));
        let names: Vec<String> = (0..3)
            .map(|i| {
                let cookie = format!("sid=other-{i}");
                get(
                    &http,
                    &url,
                    &[("cookie", &cookie), ("x-user", &format!("u{i}"))],
                )
            })
            .collect();
        let distinct: HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), 1, "url item-{k} moved: {names:?}");
        *by_url.entry(names[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(by_url.len(), 3, "URLs not spread: {by_url:?}");
}

/// Three targets, the first slow: `strategy` over 40 requests with concurrency 8. Returns the
/// number of requests the slow one served and the per-upstream tally.
fn slow_one_share(strategy: &str, delay: Duration) -> (usize, BTreeMap<String, usize>) {
    let slow = Backend::slow("slow", delay);
    let f1 = Backend::fast("fast1");
    let f2 = Backend::fast("fast2");
    let route = format!(
        "targets: {}, strategy: {strategy}",
        urls(&[&slow.url(), &f1.url(), &f2.url()])
    );
    let c = Conduit::start(&config(&route, ""));
    let names = fire(&c, "/", 40, 8);
    let t = tally(&names);
    assert_eq!(share(&t, "slow"), slow.count(), "{t:?}");
    assert_eq!(
        share(&t, "fast1") + share(&t, "fast2"),
        f1.count() + f2.count()
    );
    (share(&t, "slow"), t)
}

#[test]
fn least_conn_sends_less_to_the_slow_upstream() {
    // Round robin gives the slow target a third (13 or 14 of 40); least-conn only sends it a
    // request while it has no more in flight than the fast ones.
    let (slow, t) = slow_one_share("least-conn", Duration::from_millis(300));
    assert!(
        slow <= 6,
        "least-conn sent {slow} of 40 to the slow upstream: {t:?}"
    );
    assert!(share(&t, "fast1") >= 5 && share(&t, "fast2") >= 5, "{t:?}");
}

#[test]
fn p2c_sends_less_to_the_slow_upstream() {
    let (slow, t) = slow_one_share("p2c", Duration::from_millis(300));
    assert!(
        slow <= 8,
        "p2c sent {slow} of 40 to the slow upstream: {t:?}"
    );
    assert!(share(&t, "fast1") >= 5 && share(&t, "fast2") >= 5, "{t:?}");
}

#[test]
fn round_robin_does_not_avoid_the_slow_upstream() {
    // The control for the two tests above: the slow target is not avoided by accident.
    let (slow, t) = slow_one_share("round-robin", Duration::from_millis(300));
    assert!((12..=15).contains(&slow), "{t:?}");
}

#[test]
fn least_response_time_prefers_the_fast_upstreams() {
    let slow = Backend::slow("slow", Duration::from_millis(400));
    let f1 = Backend::fast("fast1");
    let f2 = Backend::fast("fast2");
    let route = format!(
        "targets: {}, strategy: least-response-time",
        urls(&[&slow.url(), &f1.url(), &f2.url()])
    );
    let c = Conduit::start(&config(&route, ""));
    let http = client();
    // Warm-up: a target without a measured latency is tried first, so each gets some.
    for _ in 0..6 {
        get(&http, &c.url("/"), &[]);
    }
    assert!(slow.count() >= 1, "the slow target was never measured");
    let warm = slow.count();
    // Sequential: the fast ones take (nearly) everything.
    let names: Vec<String> = (0..60).map(|_| get(&http, &c.url("/"), &[])).collect();
    let t = tally(&names);
    assert!(share(&t, "slow") <= 4, "sequential: {t:?}");
    // Concurrent: still the fast ones, load included. (Which fast one is not asserted: a
    // scheduling hiccup on one raises its peak EWMA, and then the other rightly takes all.)
    let names = fire(&c, "/", 40, 8);
    let t2 = tally(&names);
    assert!(share(&t2, "slow") <= 6, "concurrent: {t2:?}");
    assert_eq!(slow.count(), warm + share(&t, "slow") + share(&t2, "slow"));
}
