//! Criterion benches for upstream selection: `Pool::select` under each of the eight strategies
//! (4 targets; 16 as well for round robin and consistent hashing), a whole attempt's
//! bookkeeping (select, in-flight guard, `Pool::record`), and `Pool::record` alone.
//!
//! Pools are built exactly as the server builds them (`Pool::build` on a `PoolSpec`), with fresh
//! per-target state. Hash strategies get a different key on every iteration (cycling through
//! 1024 precomputed URLs or client addresses) so the numbers are not one cached answer.
//! Run with `cargo bench --bench strategies`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use conduit::upstream::endpoint::{EndpointState, Outcome};
use conduit::upstream::pool::{Place, SelectRequest, TargetSpec};
use conduit::upstream::strategy::HashKey;
use conduit::upstream::{Pool, PoolSpec};

const KEYS: usize = 1024;

/// `n` loopback targets; weights 4, 3, 2, 1, 4, 3, ... when `weighted`, else all 1.
fn targets(n: usize, weighted: bool) -> Vec<TargetSpec> {
    (0..n)
        .map(|i| {
            let addr: SocketAddr = format!("127.0.0.1:{}", 10_000 + i).parse().unwrap();
            let weight = if weighted { 4 - (i % 4) as u32 } else { 1 };
            (addr, format!("http://{addr}"), weight)
        })
        .collect()
}

fn pool(strategy: &str, n: usize, weighted: bool, hash_key: Option<HashKey>) -> Pool {
    let mut spec = PoolSpec::simple(targets(n, weighted), strategy);
    spec.hash_key = hash_key;
    let fresh = |_: &str| -> Arc<EndpointState> { Default::default() };
    Pool::build(&spec, "bench", &fresh).unwrap()
}

fn request<'a>(
    headers: &'a http::HeaderMap,
    target: &'a str,
    client_ip: Option<IpAddr>,
) -> SelectRequest<'a> {
    SelectRequest {
        client_ip,
        target,
        headers,
        tried: &[],
    }
}

/// Every target of `pool` is picked by some of 1024 plain requests (or keys for hash pools).
fn assert_spreads(pool: &Pool, reqs: &[SelectRequest]) {
    let n = pool.endpoints().count();
    let seen: HashSet<u64> = (0..KEYS)
        .map(|i| pool.select(&reqs[i % reqs.len()]).unwrap().endpoint.id)
        .collect();
    assert_eq!(seen.len(), n, "not every target was picked");
}

fn select(c: &mut Criterion) {
    let plain = http::HeaderMap::new();
    let urls: Vec<String> = (0..KEYS).map(|i| format!("/api/items/{i}?v=1")).collect();
    let ips: Vec<IpAddr> = (0..KEYS)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8)))
        .collect();
    let one = [request(&plain, "/api/items/1", Some(ips[0]))];
    let by_url: Vec<SelectRequest> = urls
        .iter()
        .map(|u| request(&plain, u, Some(ips[0])))
        .collect();
    let by_ip: Vec<SelectRequest> = ips
        .iter()
        .map(|ip| request(&plain, "/api/items/1", Some(*ip)))
        .collect();

    // (label, strategy, targets, weighted, hash key)
    let cases: [(&str, &str, usize, bool, Option<HashKey>); 10] = [
        ("round-robin", "round-robin", 4, false, None),
        ("round-robin", "round-robin", 16, false, None),
        (
            "weighted-round-robin",
            "weighted-round-robin",
            4,
            true,
            None,
        ),
        ("random", "random", 4, true, None),
        ("least-conn", "least-conn", 4, false, None),
        ("least-response-time", "least-response-time", 4, false, None),
        ("p2c", "p2c", 4, false, None),
        ("ip-hash", "ip-hash", 4, false, None),
        (
            "consistent-hash",
            "consistent-hash",
            4,
            false,
            Some(HashKey::Url),
        ),
        (
            "consistent-hash",
            "consistent-hash",
            16,
            false,
            Some(HashKey::Url),
        ),
    ];

    let mut g = c.benchmark_group("select");
    for (label, strategy, n, weighted, key) in cases {
        let p = pool(strategy, n, weighted, key.clone());
        let reqs: &[SelectRequest] = match (strategy, &key) {
            ("ip-hash", _) => &by_ip,
            (_, Some(_)) => &by_url,
            _ => &one,
        };
        if strategy == "least-response-time" {
            // Measured latencies (1, 2, 3, 4 ms) so the cost is not the unknown-latency floor.
            for (i, e) in p.endpoints().enumerate() {
                let l = Duration::from_millis(1 + i as u64);
                p.record(&e.state, Place::Primary(0), Outcome::Success, Some(l));
            }
        }
        if strategy != "least-response-time" {
            // (least-response-time sequentially always picks the fastest: by design.)
            assert_spreads(&p, reqs);
        }
        g.bench_with_input(BenchmarkId::new(label, n), &p, |b, p| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(p.select(black_box(&reqs[i])).unwrap().endpoint.id)
            })
        });
    }
    g.finish();
}

fn record(c: &mut Criterion) {
    let plain = http::HeaderMap::new();
    let req = request(&plain, "/api/items/1", None);
    let mut g = c.benchmark_group("record");
    let p = pool("least-response-time", 4, false, None);
    let state = p.endpoints().next().unwrap().state.clone();
    g.bench_function("success", |b| {
        b.iter(|| {
            p.record(
                black_box(&state),
                Place::Primary(0),
                Outcome::Success,
                Some(black_box(Duration::from_micros(800))),
            )
        })
    });
    g.bench_function("failure", |b| {
        b.iter(|| {
            p.record(
                black_box(&state),
                Place::Primary(0),
                Outcome::Failure,
                Some(black_box(Duration::from_micros(800))),
            )
        })
    });
    // What the gateway does per attempt: select, hold the in-flight guard, record, release.
    for strategy in ["round-robin", "least-conn", "p2c", "least-response-time"] {
        let p = pool(strategy, 4, false, None);
        g.bench_function(BenchmarkId::new("attempt", strategy), |b| {
            b.iter(|| {
                let chosen = p.select(black_box(&req)).unwrap();
                let guard = chosen.endpoint.state.begin();
                p.record(
                    guard.state(),
                    chosen.place,
                    Outcome::Success,
                    Some(Duration::from_micros(800)),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, select, record);
criterion_main!(benches);
