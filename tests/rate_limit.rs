//! `rateLimit` through the real binary, in-memory store: the request after `limit` in a window
//! is 429 with `Retry-After`, `RateLimit-*` headers and a JSON body (allowed responses carry the
//! headers too); `burst` adds to the bucket, not the rate; keys by client address (after
//! `trustedProxies`), by header and by consumer; route and site limits both apply, the tightest
//! shown; counters survive a reload that leaves the limit unchanged and start afresh when it
//! changes; `dryRun` never refuses; `skipPaths`; bad fields are rejected with their paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::blocking::{RequestBuilder, Response};

fn start(up: &Upstream, extra: &str) -> Conduit {
    Conduit::start(&format!("{}{extra}", simple(up)))
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// `(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset)` of a response.
fn limits(r: &Response) -> (u64, u64, u64) {
    let n = |name| {
        header(r, name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", r.headers()))
            .parse()
            .unwrap()
    };
    (
        n("ratelimit-limit"),
        n("ratelimit-remaining"),
        n("ratelimit-reset"),
    )
}

fn send(req: RequestBuilder) -> Response {
    req.send().unwrap()
}

/// Asserts a 429 from the rate limiter; returns its `(limit, remaining, reset, retry-after)`.
fn assert_429(r: Response, request_id: &str) -> (u64, u64, u64, u64) {
    assert_eq!(r.status(), 429, "{:?}", r.headers());
    let (limit, remaining, reset) = limits(&r);
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert_eq!(header(&r, "x-request-id").as_deref(), Some(request_id));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 429);
    assert_eq!(v["error"], "rate limit exceeded");
    assert_eq!(v["request_id"], request_id);
    (limit, remaining, reset, retry)
}

#[test]
fn the_request_after_the_limit_is_429_with_headers_and_a_json_body() {
    let up = Upstream::start("up");
    let c = start(&up, "    rateLimit: {limit: 5, windowSecs: 60}\n");
    let http = client();
    // One request every 12 s refills the bucket; the full bucket of 5 is used at once.
    for i in 1..=5u64 {
        let r = send(http.get(c.url("/a")));
        assert_eq!(r.status(), 200);
        let (limit, remaining, reset) = limits(&r);
        assert_eq!((limit, remaining), (5, 5 - i), "request {i}");
        // Full again in 12 s per request used (a second less if this test ran slowly).
        assert!(
            (12 * i - 1..=12 * i).contains(&reset),
            "request {i}: reset {reset}"
        );
    }
    let r = send(
        http.get(c.url("/a"))
            .header("accept", "application/json")
            .header("x-request-id", "sixth"),
    );
    let (limit, remaining, reset, retry) = assert_429(r, "sixth");
    assert_eq!((limit, remaining), (5, 0));
    assert!((59..=60).contains(&reset), "reset {reset}");
    assert!((11..=12).contains(&retry), "retry-after {retry}");
    assert_eq!(up.count(), 5, "a limited request reached the upstream");
    // Any path of the site shares the site's limit; the health endpoint is not limited.
    let r = send(http.get(c.url("/other")).header("x-request-id", "other"));
    assert_429(r, "other");
    assert_eq!(send(http.get(c.url("/__health__"))).status(), 200);
}

#[test]
fn burst_adds_to_the_bucket_not_to_the_rate() {
    let up = Upstream::start("up");
    // One request per 2 s, and 3 more at once: 4 immediately, then one every 2 s.
    let c = start(&up, "    rateLimit: {limit: 1, windowSecs: 2, burst: 3}\n");
    let http = client();
    for i in 1..=4u64 {
        let r = send(http.get(c.url("/")));
        assert_eq!(r.status(), 200, "request {i}");
        let (limit, remaining, _) = limits(&r);
        assert_eq!((limit, remaining), (4, 4 - i));
    }
    let (limit, remaining, reset, retry) = assert_429(
        send(http.get(c.url("/")).header("x-request-id", "b5")),
        "b5",
    );
    assert_eq!((limit, remaining), (4, 0));
    assert!((7..=8).contains(&reset), "reset {reset}");
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    // 2.5 s later one request came back, not four.
    std::thread::sleep(Duration::from_millis(2500));
    let r = send(http.get(c.url("/")));
    assert_eq!(r.status(), 200);
    assert_eq!(limits(&r).1, 0);
    assert_429(
        send(http.get(c.url("/")).header("x-request-id", "b7")),
        "b7",
    );
    assert_eq!(up.count(), 5);
}

#[test]
fn client_addresses_are_counted_apart_after_trusted_proxies() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        "    trustedProxies: [127.0.0.1]\n    rateLimit: {limit: 2, keyBy: ip}\n",
    );
    let http = client();
    let from = |ip: &str| send(http.get(c.url("/")).header("x-forwarded-for", ip));
    assert_eq!(from("10.0.0.1").status(), 200);
    assert_eq!(from("10.0.0.1").status(), 200);
    assert_eq!(from("10.0.0.1").status(), 429);
    let r = from("10.0.0.2");
    assert_eq!(r.status(), 200);
    assert_eq!(limits(&r).1, 1);
    // The socket peer itself is one more client.
    assert_eq!(send(http.get(c.url("/"))).status(), 200);
}

#[test]
fn header_keys_limit_each_value_apart() {
    let up = Upstream::start("up");
    let c = start(&up, "    rateLimit: {limit: 2, keyBy: 'header:X-Client'}\n");
    let http = client();
    let with = |v: &str| send(http.get(c.url("/")).header("x-client", v));
    assert_eq!(limits(&with("alpha")).1, 1);
    assert_eq!(limits(&with("alpha")).1, 0);
    assert_eq!(with("alpha").status(), 429);
    // Another value has its own bucket.
    assert_eq!(limits(&with("beta")).1, 1);
    assert_eq!(limits(&with("beta")).1, 0);
    assert_eq!(with("beta").status(), 429);
    // Without the header the client address is the key.
    let r = send(http.get(c.url("/")));
    assert_eq!(r.status(), 200);
    assert_eq!(limits(&r).1, 1);
}

#[test]
fn headers_false_keeps_allowed_responses_bare_but_not_the_429() {
    let up = Upstream::start("up");
    let c = start(&up, "    rateLimit: {limit: 2, headers: false}\n");
    let http = client();
    for _ in 0..2 {
        let r = send(http.get(c.url("/")));
        assert_eq!(r.status(), 200);
        assert!(
            header(&r, "ratelimit-remaining").is_none(),
            "{:?}",
            r.headers()
        );
        assert!(header(&r, "ratelimit-limit").is_none());
    }
    let r = send(http.get(c.url("/")).header("x-request-id", "bare-1"));
    let (limit, remaining, _, retry) = assert_429(r, "bare-1");
    assert_eq!((limit, remaining), (2, 0));
    assert!(retry >= 1);
}

#[test]
fn a_header_key_is_read_before_the_access_check_removes_it() {
    // `apiKey` strips X-API-Key before forwarding; the limit still counts per key.
    let up = Upstream::start("up");
    let c = start(
        &up,
        "    apiKey: {keys: [key-a, key-b]}\n    rateLimit: {limit: 1, keyBy: 'header:X-API-Key'}\n",
    );
    let http = client();
    let with = |v: &str| send(http.get(c.url("/")).header("x-api-key", v));
    assert_eq!(with("key-a").status(), 200);
    assert_eq!(with("key-a").status(), 429);
    assert_eq!(with("key-b").status(), 200, "key-b has its own bucket");
    assert!(up.last().header("x-api-key").is_none());
}

#[test]
fn route_limits_apply_on_their_route_and_the_site_limit_everywhere() {
    let up = Upstream::start("up");
    let c = Conduit::start(&format!(
        "global: {{bind: 127.0.0.1, workers: 2}}
sites:
  - port: {{port}}
    rateLimit: {{limit: 4}}
    proxy:
      /tight:
        targets: [{u}]
        rateLimit: {{limit: 2}}
      /: {u}
",
        u = up.url()
    ));
    let http = client();
    // On /tight both apply; the route's has fewer left, so its headers show.
    let r = send(http.get(c.url("/tight")));
    assert_eq!((limits(&r).0, limits(&r).1), (2, 1));
    let r = send(http.get(c.url("/tight/x")));
    assert_eq!((limits(&r).0, limits(&r).1), (2, 0));
    let (limit, ..) = assert_429(
        send(http.get(c.url("/tight")).header("x-request-id", "t3")),
        "t3",
    );
    assert_eq!(limit, 2);
    // Elsewhere only the site's limit applies: 2 of its 4 are used (the refused request did
    // not reach it).
    let r = send(http.get(c.url("/free")));
    assert_eq!((limits(&r).0, limits(&r).1), (4, 1));
    let r = send(http.get(c.url("/free")));
    assert_eq!((limits(&r).0, limits(&r).1), (4, 0));
    let (limit, ..) = assert_429(
        send(http.get(c.url("/free")).header("x-request-id", "f3")),
        "f3",
    );
    assert_eq!(limit, 4);
    assert_eq!(up.count(), 4);
}

fn reload_config(up: &Upstream, site_limit: u32, extra_route: bool) -> String {
    let extra = if extra_route {
        format!("      /added: {}\n", up.url())
    } else {
        String::new()
    };
    format!(
        "global: {{bind: 127.0.0.1, workers: 2}}
sites:
  - port: {{port}}
    rateLimit: {{limit: {site_limit}}}
    proxy:
      /api:
        targets: [{u}]
        rateLimit: {{limit: 1, windowSecs: 600}}
      /: {u}
{extra}",
        u = up.url()
    )
}

fn reload(c: &Conduit, yaml: &str, times: usize) {
    c.write_config(yaml);
    c.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.stderr().matches("configuration reloaded").count() < times {
        assert!(std::time::Instant::now() < deadline, "{}", c.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_survive_a_reload_and_a_changed_limit_starts_afresh() {
    let up = Upstream::start("up");
    let c = Conduit::start(&reload_config(&up, 3, false));
    let http = client();
    assert_eq!(send(http.get(c.url("/api"))).status(), 200);
    assert_eq!(send(http.get(c.url("/api"))).status(), 429);
    assert_eq!(send(http.get(c.url("/"))).status(), 200);
    assert_eq!(send(http.get(c.url("/"))).status(), 200);
    assert_eq!(send(http.get(c.url("/"))).status(), 429);

    // An unrelated change: both limits keep their counts.
    reload(&c, &reload_config(&up, 3, true), 1);
    assert_eq!(send(http.get(c.url("/added"))).status(), 429);
    assert_eq!(send(http.get(c.url("/api"))).status(), 429);

    // The site's limit changes: it starts afresh; the route's is unchanged and still empty.
    reload(&c, &reload_config(&up, 5, true), 2);
    let r = send(http.get(c.url("/")));
    assert_eq!(r.status(), 200);
    assert_eq!((limits(&r).0, limits(&r).1), (5, 4));
    assert_eq!(send(http.get(c.url("/api"))).status(), 429);
}

#[test]
fn dry_run_never_refuses_shows_no_headers_and_logs() {
    let up = Upstream::start("up");
    let c = start(&up, "    rateLimit: {limit: 1, dryRun: true}\n");
    let http = client();
    for _ in 0..5 {
        let r = send(http.get(c.url("/")));
        assert_eq!(r.status(), 200);
        assert!(header(&r, "ratelimit-limit").is_none(), "{:?}", r.headers());
    }
    assert_eq!(up.count(), 5);
    assert!(
        c.wait_log("rateLimit dryRun", Duration::from_secs(5)),
        "{}",
        c.stderr()
    );
    // One line per 10 s, not one per request.
    assert_eq!(c.stderr().matches("rateLimit dryRun").count(), 1);
}

#[test]
fn skip_paths_are_not_limited() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        "    rateLimit: {limit: 1, skipPaths: ['/static/**']}\n",
    );
    let http = client();
    for _ in 0..3 {
        let r = send(http.get(c.url("/static/app.js")));
        assert_eq!(r.status(), 200);
        assert!(header(&r, "ratelimit-limit").is_none());
    }
    assert_eq!(send(http.get(c.url("/page"))).status(), 200);
    assert_eq!(send(http.get(c.url("/page"))).status(), 429);
    // Skipping is judged on the normalised path.
    assert_eq!(send(http.get(c.url("/static//x/../y.css"))).status(), 200);
}

#[cfg(feature = "consumers")]
#[test]
fn consumer_keys_and_consumer_limits() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        "    rateLimit: {limit: 3, keyBy: consumer}
    consumers:
      skipPaths: [/public/**]
      consumers:
        - username: acme
          apiKey: acme-key
        - username: globex
          apiKey: globex-key
          rateLimit: {limit: 1}
",
    );
    let http = client();
    let as_key = |k: &str| send(http.get(c.url("/")).header("x-api-key", k));
    // acme: counted by its name under the site's limit.
    for left in [2, 1, 0] {
        let r = as_key("acme-key");
        assert_eq!(r.status(), 200);
        assert_eq!((limits(&r).0, limits(&r).1), (3, left));
    }
    assert_eq!(as_key("acme-key").status(), 429);
    // globex has its own, tighter limit (shown), and its own site bucket.
    let r = as_key("globex-key");
    assert_eq!(r.status(), 200);
    assert_eq!((limits(&r).0, limits(&r).1), (1, 0));
    let (limit, ..) = assert_429(
        send(
            http.get(c.url("/"))
                .header("x-api-key", "globex-key")
                .header("x-request-id", "g2"),
        ),
        "g2",
    );
    assert_eq!(limit, 1);
    // No consumer (a skipped path): counted by client address, apart from the consumers.
    let r = send(http.get(c.url("/public/x")));
    assert_eq!(r.status(), 200);
    assert_eq!((limits(&r).0, limits(&r).1), (3, 2));
}

#[test]
fn bad_rate_limits_are_rejected_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conduit.yaml");
    std::fs::write(
        &path,
        "sites:
  - port: 8080
    rateLimit: {limit: 0, windowSecs: 0, keyBy: 'cookie:x', store: redis, skipPaths: [nope]}
    consumers:
      consumers:
        - username: acme
          apiKey: k
          rateLimit: {limit: 1, keyBy: ip, burst: 2000000}
    proxy:
      /a:
        targets: [http://127.0.0.1:9]
        rateLimit: {limit: 5, keyBy: 'header:bad name'}
      /b:
        targets: [http://127.0.0.1:9]
        rateLimit: {limit: 5, store: 'redis://127.0.0.1:1'}
",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    for prefix in [
        "sites[0].rateLimit.limit: must be between 1 and 1000000",
        "sites[0].rateLimit.windowSecs: must be between 1 and 86400",
        "sites[0].rateLimit.keyBy: unknown key `cookie:x`",
        "sites[0].rateLimit.skipPaths[0]: ",
        "sites[0].proxy./a.rateLimit.keyBy: `bad name` is not a valid header name",
        "sites[0].consumers.consumers[0].rateLimit.keyBy: a consumer's limit always counts by the consumer",
        "sites[0].consumers.consumers[0].rateLimit.burst: must be between 0 and 1000000",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(prefix)),
            "no line starting with {prefix:?}:\n{out}{err}"
        );
    }
    let store = |needle: &str| {
        out.lines()
            .any(|l| l.starts_with("sites[0].rateLimit.store: ") && l.contains(needle))
    };
    let b_store = out
        .lines()
        .any(|l| l.starts_with("sites[0].proxy./b.rateLimit.store: "));
    if cfg!(feature = "redis") {
        assert!(store("global.redis.url"), "{out}");
        assert!(!b_store, "{out}");
    } else {
        assert!(store("needs the `redis` feature"), "{out}");
        assert!(b_store, "{out}");
        assert!(out.contains("needs the `redis` feature"), "{out}");
    }
}

#[test]
fn global_redis_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conduit.yaml");
    std::fs::write(
        &path,
        "global:
  redis: {url: 'http://cache:6379', timeoutMs: 0}
sites:
  - port: 8080
    proxy: http://127.0.0.1:9
    rateLimit: {limit: 5, keyBy: consumer}
",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let has = |prefix: &str| out.lines().any(|l| l.starts_with(prefix));
    assert!(
        has("sites[0].rateLimit.keyBy: `consumer` needs `consumers`"),
        "{out}"
    );
    if cfg!(feature = "redis") {
        assert!(
            has("global.redis.url: must be a `redis://` or `rediss://` URL"),
            "{out}"
        );
        assert!(
            has("global.redis.timeoutMs: must be between 1 and 10000"),
            "{out}"
        );
    } else {
        assert!(has("global.redis: needs the `redis` feature"), "{out}");
    }
}
