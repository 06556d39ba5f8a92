//! A dead or slow upstream gets a clear answer: 502 or 504 with the request id, and Conduit
//! keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn dead_upstream_is_502_with_request_id() {
    let dead = dead_port();
    let good = Upstream::start("good");
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /dead: http://127.0.0.1:{dead}\n      /: {}\n",
        good.url()
    );
    let c = Conduit::start(&yaml);
    let http = client();
    let r = http
        .get(c.url("/dead/x"))
        .header("x-request-id", "req-502")
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-request-id"], "req-502");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 502);
    assert_eq!(v["request_id"], "req-502");
    // Still serving.
    assert_eq!(
        http.get(c.url("/ok")).send().unwrap().text().unwrap(),
        "good"
    );
}

#[test]
fn slow_upstream_is_504() {
    let up = Upstream::start("slow");
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n        targets: [{}]\n        timeout: {{readMs: 300}}\n",
        up.url()
    );
    let c = Conduit::start(&yaml);
    let start = std::time::Instant::now();
    let r = client().get(c.url("/slow/2000")).send().unwrap();
    assert_eq!(r.status(), 504);
    assert!(start.elapsed() < std::time::Duration::from_millis(1500));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 504);
    assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(client().get(c.url("/fast")).send().unwrap().status(), 200);
}
