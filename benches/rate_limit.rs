//! Criterion benches for the rate limiter's decision: the GCRA arithmetic alone, the in-memory
//! store (one hot key, and 10 000 keys in turn), and a request's whole check (`enforce`) against
//! a route limit and a site limit, as the proxy runs it. Limits are compiled through the public
//! compiler, as the server compiles them.
//!
//! With `--features redis` and `CONDUIT_BENCH_REDIS=redis://127.0.0.1:6379` set, one decision
//! through a real Redis (one script round trip) is measured too.
//! Run with `cargo bench --bench rate_limit`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use conduit::config::raw::RateLimit;
use conduit::filter::rate_limit::gcra::{Gcra, NANOS};
use conduit::filter::rate_limit::key::Key;
use conduit::filter::rate_limit::memory::{now_ns, MemoryStore};
use conduit::filter::rate_limit::{
    enforce, Compiler, Limiter, Registry, RequestState, SiteRateLimits,
};

const KEYS: u32 = 10_000;

fn raw(limit: u64, window_secs: u64) -> RateLimit {
    RateLimit {
        limit,
        window_secs: Some(window_secs),
        ..RateLimit::default()
    }
}

fn limiter(reg: &Registry, limit: u64, scope: &str) -> Arc<Limiter> {
    Compiler::new(reg, None, true, "*:8080")
        .route(&raw(limit, 60), scope, "bench")
        .unwrap()
}

fn memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit");
    let gcra = Gcra::new(100, 60, 10, NANOS);
    g.bench_function("gcra_check", |b| {
        let mut now = 0u64;
        let mut tat = None;
        b.iter(|| {
            now += 700_000_000;
            let (d, t) = gcra.check(black_box(tat), now);
            tat = t.or(tat);
            black_box(d)
        })
    });

    let store = MemoryStore::default();
    let key = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))).hash();
    g.bench_function("memory_one_key", |b| {
        b.iter(|| black_box(store.decide(&gcra, black_box(key), now_ns())))
    });

    let keys: Vec<u64> = (0..KEYS)
        .map(|i| Key::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))).hash())
        .collect();
    let store = MemoryStore::default();
    g.bench_function("memory_10k_keys", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(store.decide(&gcra, keys[i], now_ns()))
        })
    });

    // A request's whole check: route limit, then site limit, keyed by client address.
    let reg = Registry::default();
    let site = SiteRateLimits {
        site: Some(limiter(&reg, 1_000_000, "*:8080|site")),
        consumers: HashMap::new(),
    };
    let route = limiter(&reg, 1_000_000, "*:8080|/api");
    let headers = http::HeaderMap::new();
    g.bench_function("enforce_route_and_site_1k_clients", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 1) % 1000;
            let client = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
            let mut state = RequestState::Pending;
            let out = futures::executor::block_on(enforce(
                &site,
                Some(&route),
                "/api/items",
                &headers,
                client,
                None,
                &mut state,
            ));
            black_box((out, state))
        })
    });
    g.finish();
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("CONDUIT_BENCH_REDIS") else {
        eprintln!("CONDUIT_BENCH_REDIS is not set: the Redis decision is not measured");
        return;
    };
    let reg = Registry::default();
    let redis = conduit::config::raw::Redis {
        url: url.clone(),
        timeout_ms: Some(1000),
    };
    let mut r = raw(1_000_000, 60);
    r.store = Some("redis".into());
    let limiter = Compiler::new(&reg, Some(&redis), true, "bench:1")
        .route(&r, "bench:1|/", "bench")
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let mut g = c.benchmark_group("rate_limit");
    g.bench_function("redis_decide", |b| {
        b.iter(|| black_box(rt.block_on(limiter.decide(key))))
    });
    g.finish();
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
