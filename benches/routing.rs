//! Criterion benches for the per-request hot paths that do not need a socket: route matching,
//! path normalisation, host lookup, upstream selection and snapshot load.
//!
//! The snapshot is built through the public pipeline (load → validate → compile), exactly as the
//! server builds it. Run with `cargo bench --bench routing`; the load test is `bench/run.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use conduit::compile::host::normalize_host;
use conduit::compile::route::RequestView;
use conduit::compile::{compile, Mode, Registries};
use conduit::config::{load_str, validate::validate, Format};
use conduit::proxy::normalize::normalize_path;
use conduit::snapshot::{Snapshot, SnapshotHandle};

const PORT: u16 = 18080;

/// Four sites on one port (exact, two wildcards, catch-all); the exact one has 20 prefixes and
/// four `routes[]` rules, all checked before the prefixes.
const CONFIG: &str = r#"
global:
  workers: 1
  bind: 127.0.0.1
sites:
  - host: api.example.com
    port: 18080
    routes:
      - id: admin-get
        match: { path: "/admin/**", method: [GET], headers: { x-admin: "yes|true" } }
        proxy: http://127.0.0.1:9001
      - id: beta-users
        match: { path: "/api/*/users/**", cookies: { beta: "on" } }
        proxy: http://127.0.0.1:9002
      - id: search-v2
        match: { path: "/search", query: { v: "2" } }
        proxy: http://127.0.0.1:9003
      - id: uploads-put
        match: { path: "/uploads/**", method: [PUT, POST] }
        proxy: http://127.0.0.1:9004
    proxy:
      /api/v1/users: http://127.0.0.1:9101
      /api/v1/orders: http://127.0.0.1:9102
      /api/v1/products: http://127.0.0.1:9103
      /api/v1/carts: http://127.0.0.1:9104
      /api/v2/users: http://127.0.0.1:9105
      /api/v2/orders: http://127.0.0.1:9106
      /api/v2/products: { targets: [http://127.0.0.1:9107, http://127.0.0.1:9108], stripPrefix: true }
      /api/v2/search: http://127.0.0.1:9109
      /auth/login: http://127.0.0.1:9110
      /auth/logout: http://127.0.0.1:9111
      /auth/token: http://127.0.0.1:9112
      /billing: http://127.0.0.1:9113
      /reports: http://127.0.0.1:9114
      /metrics: http://127.0.0.1:9115
      /graphql: http://127.0.0.1:9116
      /assets: http://127.0.0.1:9117
      /images: http://127.0.0.1:9118
      /docs: { targets: [http://127.0.0.1:9119], rewrite: [{ from: "/docs/(.*)", to: "/v2/docs/$1" }] }
      /ws: http://127.0.0.1:9120
      /s: http://127.0.0.1:9121
  - host: "*.internal.example.com"
    port: 18080
    proxy: http://127.0.0.1:9201
  - host: "*.example.com"
    port: 18080
    proxy: http://127.0.0.1:9202
  - port: 18080
    proxy: http://127.0.0.1:9203
"#;

fn snapshot() -> Snapshot {
    let loaded = load_str(CONFIG, Format::Yaml, "bench", &|_| None).expect("bench config loads");
    let errors = validate(&loaded);
    assert!(errors.is_empty(), "bench config invalid: {errors:?}");
    compile(&loaded, &Registries::default(), 1, Mode::Check).expect("bench config compiles")
}

fn routing(c: &mut Criterion) {
    let snap = snapshot();
    let site = snap.ports[&PORT].find("api.example.com").unwrap().clone();
    assert_eq!(site.prefixes.len(), 20);
    assert_eq!(site.rules.len(), 4);

    let plain = http::HeaderMap::new();
    let mut admin = http::HeaderMap::new();
    admin.insert("x-admin", http::HeaderValue::from_static("true"));
    admin.insert(
        http::header::COOKIE,
        http::HeaderValue::from_static("session=abc; theme=dark"),
    );

    // A GET that fails every rule, then falls through to the shortest prefix (the last one).
    let deep = RequestView {
        method: "GET",
        path: "/s/12345/profile",
        query: Some("page=2&sort=asc"),
        headers: &admin,
    };
    // A hit on the first rule.
    let rule = RequestView {
        method: "GET",
        path: "/admin/users/42",
        query: None,
        headers: &admin,
    };
    // The longest prefix, first in the list (after the rules).
    let first_prefix = RequestView {
        method: "GET",
        path: "/api/v1/users/42",
        query: None,
        headers: &plain,
    };
    // No rule and no prefix matches.
    let miss = RequestView {
        method: "GET",
        path: "/nothing/here/at/all",
        query: Some("q=1"),
        headers: &admin,
    };

    assert_eq!(&*site.route(&deep).unwrap().id, "api.example.com:18080|/s");
    assert!(site.route(&rule).unwrap().id.ends_with("admin-get]"));
    assert!(site
        .route(&first_prefix)
        .unwrap()
        .id
        .ends_with("/api/v1/users"));
    assert!(site.route(&miss).is_none());

    let mut g = c.benchmark_group("route");
    g.bench_function("hit_rule_first", |b| {
        b.iter(|| black_box(site.route(black_box(&rule))).is_some())
    });
    g.bench_function("hit_prefix_first", |b| {
        b.iter(|| black_box(site.route(black_box(&first_prefix))).is_some())
    });
    g.bench_function("hit_prefix_deep", |b| {
        b.iter(|| black_box(site.route(black_box(&deep))).is_some())
    });
    g.bench_function("miss", |b| {
        b.iter(|| black_box(site.route(black_box(&miss))).is_none())
    });
    g.finish();

    let route = site.route(&first_prefix).unwrap();
    let mut g = c.benchmark_group("upstream");
    let headers = http::HeaderMap::new();
    let select = conduit::upstream::pool::SelectRequest {
        client_ip: None,
        target: "/",
        headers: &headers,
        tried: &[],
    };
    g.bench_function("pool_select", |b| {
        b.iter(|| black_box(route.pool.select(black_box(&select))).is_ok())
    });
    g.bench_function("peer_clone", |b| {
        let up = route.pool.select(&select).unwrap();
        b.iter(|| Box::new(black_box(&up.endpoint.peer).clone()))
    });
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let clean = "/api/v1/users/42/orders/2024-01-01";
    let dirty = "/api//v1/./users/%7Ejohn/../42/%61rders/%2e%2e/orders/%2F2024";
    assert!(matches!(
        normalize_path(clean, true),
        Ok(std::borrow::Cow::Borrowed(_))
    ));
    assert_eq!(
        normalize_path(dirty, true).unwrap(),
        "/api/v1/users/42/orders/%2F2024"
    );

    let mut g = c.benchmark_group("normalize_path");
    g.bench_function("clean", |b| {
        b.iter(|| normalize_path(black_box(clean), true).map(|p| p.len()))
    });
    g.bench_function("dirty", |b| {
        b.iter(|| normalize_path(black_box(dirty), true).map(|p| p.len()))
    });
    g.finish();
}

fn host(c: &mut Criterion) {
    let snap = snapshot();
    let sites = &snap.ports[&PORT];
    assert_eq!(
        &*sites.find("api.example.com").unwrap().id,
        "api.example.com:18080"
    );
    assert_eq!(
        &*sites.find("db.internal.example.com").unwrap().id,
        "*.internal.example.com:18080"
    );
    assert_eq!(&*sites.find("other.test").unwrap().id, "*:18080");

    let mut g = c.benchmark_group("host");
    g.bench_function("find_exact", |b| {
        b.iter(|| black_box(sites.find(black_box("api.example.com"))).is_some())
    });
    g.bench_function("find_wildcard", |b| {
        b.iter(|| black_box(sites.find(black_box("db.internal.example.com"))).is_some())
    });
    g.bench_function("find_fallback", |b| {
        b.iter(|| black_box(sites.find(black_box("other.test"))).is_some())
    });
    g.bench_function("normalize_and_find", |b| {
        b.iter(|| {
            let host = normalize_host(black_box(b"API.Example.com:18080")).unwrap();
            black_box(sites.find(&host)).is_some()
        })
    });
    g.finish();
}

fn snapshot_load(c: &mut Criterion) {
    let handle = SnapshotHandle::new(snapshot());
    let mut g = c.benchmark_group("snapshot");
    g.bench_function("load", |b| b.iter(|| black_box(handle.load()).generation));
    g.bench_function("load_and_find_site", |b| {
        b.iter(|| {
            let snap = handle.load();
            snap.ports
                .get(&PORT)
                .and_then(|p| p.find(black_box("api.example.com")))
                .is_some()
        })
    });
    g.sample_size(20);
    g.bench_function("build_from_yaml", |b| {
        b.iter(|| black_box(snapshot()).generation)
    });
    g.finish();
}

criterion_group!(benches, routing, normalize, host, snapshot_load);
criterion_main!(benches);
