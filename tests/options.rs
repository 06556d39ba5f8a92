//! Options that shape the data path: slash merging, upstream keep-alive and timeouts, worker
//! scheduling, the health path and route ids — each observed through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

fn site(extra_global: &str, body: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 1{extra_global}}}\nsites:\n  - port: {{port}}\n{body}"
    )
}

#[test]
fn merge_slashes_can_be_turned_off() {
    let up = Upstream::start("one");
    let c = Conduit::start(&site(
        "",
        &format!("    mergeSlashes: false\n    proxy: {}\n", up.url()),
    ));
    let a = raw(
        c.port,
        b"GET //a//b/./c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(raw_status(&a), 200);
    assert_eq!(up.last().target, "//a//b/c");

    let c2 = Conduit::start(&site("", &format!("    proxy: {}\n", up.url())));
    raw(
        c2.port,
        b"GET //a//b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(up.last().target, "/a/b");
}

#[test]
fn pool_max_idle_zero_turns_upstream_keepalive_off() {
    let up = Upstream::start("one");
    let yaml = site(
        "",
        &format!(
            "    proxy:\n      /:\n        targets: [{}]\n        pool: {{maxIdle: 0}}\n",
            up.url()
        ),
    );
    let c = Conduit::start(&yaml);
    let http = client();
    for _ in 0..5 {
        assert_eq!(http.get(c.url("/")).send().unwrap().status(), 200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 5);
}

#[test]
fn pool_idle_timeout_closes_idle_upstream_connections() {
    let up = Upstream::start("one");
    let yaml = site(
        "",
        &format!(
            "    proxy:\n      /:\n        targets: [{}]\n        pool: {{idleTimeoutSecs: 1}}\n",
            up.url()
        ),
    );
    let c = Conduit::start(&yaml);
    let http = client();
    assert_eq!(http.get(c.url("/")).send().unwrap().status(), 200);
    assert_eq!(http.get(c.url("/")).send().unwrap().status(), 200);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "reused while fresh"
    );
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(http.get(c.url("/")).send().unwrap().status(), 200);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "a new connection after the idle timeout"
    );
}

#[test]
fn send_timeout_is_refused_until_it_can_bound_body_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("conduit.yaml"),
        "proxy:\n  /:\n    targets: [http://127.0.0.1:9]\n    timeout: {sendMs: 300}\n",
    )
    .unwrap();
    let (code, out, _) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("proxy./.timeout.sendMs: not supported yet"),
        "{out}"
    );
}

#[test]
fn work_stealing_runtime_serves() {
    let up = Upstream::start("one");
    let c = Conduit::start(
        &site(
            ", workStealing: true",
            &format!("    proxy: {}\n", up.url()),
        )
        .replace("workers: 1", "workers: 2"),
    );
    let http = client();
    for _ in 0..10 {
        assert_eq!(http.get(c.url("/")).send().unwrap().text().unwrap(), "one");
    }
}

#[test]
fn health_path_is_configurable() {
    let up = Upstream::start("one");
    let c = Conduit::start(&site(
        "",
        &format!(
            "    healthCheck: {{path: /healthz}}\n    proxy: {}\n",
            up.url()
        ),
    ));
    let r = client().get(c.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "{\"status\":\"ok\"}\n");
    assert_eq!(up.count(), 0);
    // The default path is now an ordinary request.
    assert_eq!(
        client()
            .get(c.url("/__health__"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "one"
    );
    let mut head = client().head(c.url("/healthz")).send().unwrap();
    assert_eq!(head.status(), 200);
    let mut rest = Vec::new();
    head.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn route_ids_name_routes_in_the_access_log() {
    let up = Upstream::start("one");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = site(
        "",
        &format!(
            "    logging: {{format: json, file: {}}}\n    routes:\n      - id: beta\n        match: {{path: /b/**}}\n        proxy: {u}\n    proxy:\n      /a: {u}\n",
            log.display(),
            u = up.url()
        ),
    );
    let c = Conduit::start(&yaml);
    client().get(c.url("/b/x")).send().unwrap();
    client().get(c.url("/a/x")).send().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let routes: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["route"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(routes.len(), 2, "{text}");
    assert!(routes[0].ends_with("|routes[beta]"), "{routes:?}");
    assert!(routes[1].ends_with("|/a"), "{routes:?}");
}
