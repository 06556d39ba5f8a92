//! `ipFilter` through the real binary: deny and allow lists (IPv4 and IPv6 loopback), the
//! forwarded client address with `trustProxy`, spoofed `X-Forwarded-For`, `dryRun`, and the
//! validation errors of `conduit validate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// `simple(&up)` with `extra` appended to the site (each line indented by four spaces).
fn site(up: &Upstream, extra: &str) -> String {
    format!("{}{extra}", simple(up))
}

/// Asserts a 403 JSON error with a request id.
fn assert_denied(r: reqwest::blocking::Response) {
    assert_eq!(r.status(), 403);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 403);
    assert_eq!(v["error"], "client address denied");
    assert!(
        v["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert_eq!(v["request_id"], id.as_str());
}

#[test]
fn denied_loopback_gets_403_and_upstream_sees_nothing() {
    let up = Upstream::start("up");
    let c = Conduit::start(&site(&up, "    ipFilter: {deny: [127.0.0.1]}\n"));
    let http = client();
    assert_denied(http.get(c.url("/x")).send().unwrap());
    assert_denied(http.post(c.url("/echo")).body("hello").send().unwrap());
    assert_eq!(up.count(), 0);
}

#[test]
fn allow_list_lets_matching_clients_through() {
    let up = Upstream::start("up");
    let c = Conduit::start(&site(
        &up,
        "    ipFilter: {allow: [10.0.0.0/8, 127.0.0.0/8]}\n",
    ));
    let r = client().get(c.url("/x")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "up");
    assert_eq!(up.count(), 1);
}

#[test]
fn allow_list_refuses_everyone_else() {
    let up = Upstream::start("up");
    let c = Conduit::start(&site(&up, "    ipFilter: {allow: [10.0.0.0/8]}\n"));
    assert_denied(client().get(c.url("/x")).send().unwrap());
    assert_eq!(up.count(), 0);
}

/// Starts conduit with `yaml` (whose `{port}` is a free port) listening on `[::1]`.
fn start_v6(yaml: &str) -> Conduit {
    for _ in 0..5 {
        let port = free_port();
        let c = Conduit::start_on(yaml, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if c.stderr().contains("conduit listening") && TcpStream::connect(("::1", port)).is_ok()
            {
                return c;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("conduit did not start on [::1]");
}

#[test]
fn ipv6_loopback_is_matched() {
    let up = Upstream::start("up6");
    let base = format!(
        "global: {{bind: \"::1\", workers: 1, shutdownTimeoutSecs: 5}}\nsites:\n  - port: {{port}}\n    proxy: {}\n",
        up.url()
    );
    let http = client();
    let denied = start_v6(&format!("{base}    ipFilter: {{deny: [\"::1/128\"]}}\n"));
    let r = http
        .get(format!("http://[::1]:{}/x", denied.port))
        .send()
        .unwrap();
    assert_denied(r);
    assert_eq!(up.count(), 0);
    drop(denied);
    // IPv6-only allow list: ::1 passes, and an IPv4 entry does not cover it.
    let allowed = start_v6(&format!(
        "{base}    ipFilter: {{allow: [\"::1\"], deny: [127.0.0.1]}}\n"
    ));
    let r = http
        .get(format!("http://[::1]:{}/x", allowed.port))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "up6");
}

#[test]
fn trust_proxy_judges_the_forwarded_client() {
    let up = Upstream::start("up");
    let c = Conduit::start(&site(
        &up,
        "    trustedProxies: [127.0.0.1]\n    ipFilter: {deny: [10.0.0.0/8], trustProxy: true}\n",
    ));
    let http = client();
    assert_denied(
        http.get(c.url("/x"))
            .header("x-forwarded-for", "10.1.2.3")
            .send()
            .unwrap(),
    );
    assert_eq!(up.count(), 0);
    let r = http
        .get(c.url("/x"))
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Without the header the client is the (trusted) peer itself.
    assert_eq!(http.get(c.url("/x")).send().unwrap().status(), 200);
    assert_eq!(up.count(), 2);
}

#[test]
fn spoofed_forwarded_for_does_not_pass_a_denied_peer() {
    let up = Upstream::start("up");
    let http = client();
    // No trustedProxies: the peer is judged, X-Forwarded-For is ignored.
    let c = Conduit::start(&site(&up, "    ipFilter: {allow: [192.0.2.0/24]}\n"));
    assert_denied(
        http.get(c.url("/x"))
            .header("x-forwarded-for", "192.0.2.1")
            .send()
            .unwrap(),
    );
    drop(c);
    // trustProxy, but the peer is not one of the trustedProxies: the header is not believed.
    let c = Conduit::start(&site(
        &up,
        "    trustedProxies: [10.9.9.9]\n    ipFilter: {allow: [192.0.2.0/24], trustProxy: true}\n",
    ));
    assert_denied(
        http.get(c.url("/x"))
            .header("x-forwarded-for", "192.0.2.1")
            .header("x-real-ip", "192.0.2.1")
            .send()
            .unwrap(),
    );
    assert_eq!(up.count(), 0);
}

#[test]
fn dry_run_never_blocks_and_logs_each_request() {
    let up = Upstream::start("up");
    let c = Conduit::start(&site(
        &up,
        "    ipFilter: {deny: [127.0.0.0/8], dryRun: true}\n",
    ));
    let http = client();
    for _ in 0..3 {
        let r = http
            .get(c.url("/x"))
            .header("authorization", "Bearer sekrit-token-123")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(up.count(), 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    let count = |s: &str| s.matches("ipFilter dry run").count();
    while count(&c.stderr()) < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    // Give a duplicate line a moment to show up before counting exactly.
    thread::sleep(Duration::from_millis(200));
    let log = c.stderr();
    assert_eq!(count(&log), 3, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("ipFilter dry run"))
        .unwrap();
    assert!(line.contains("127.0.0.1"), "{line}");
    assert!(line.contains("127.0.0.0/8"), "{line}");
    assert!(!log.contains("sekrit"), "{log}");
}

/// Runs `conduit validate` on `yaml`; returns (exit code, stdout).
fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let (code, out, _) = run_cli(dir.path(), &["validate", "-c", "c.yaml"]);
    (code, out)
}

const SITE: &str =
    "global: {bind: 127.0.0.1}\nsites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n";

#[test]
fn validate_reports_bad_entries_with_their_path() {
    let (code, out) = validate(&format!(
        "{SITE}    ipFilter: {{allow: [10.0.0.0/8, \"::1\", 10.0.0.0/33], deny: [nope]}}\n"
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sites[0].ipFilter.allow[2]") && l.contains("10.0.0.0/33")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("sites[0].ipFilter.deny[0]")),
        "{out}"
    );
    assert!(
        !out.contains("allow[0]") && !out.contains("allow[1]"),
        "{out}"
    );
    // An empty filter is an error too.
    let (code, out) = validate(&format!("{SITE}    ipFilter: {{allow: []}}\n"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("sites[0].ipFilter:")),
        "{out}"
    );
    // A good one passes.
    let (code, out) = validate(&format!(
        "{SITE}    ipFilter: {{allow: [\"fd00::/8\", 127.0.0.1], deny: [\"::ffff:10.0.0.1\"], dryRun: true}}\n"
    ));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn validate_requires_trusted_proxies_for_trust_proxy() {
    let (code, out) = validate(&format!(
        "{SITE}    ipFilter: {{deny: [10.0.0.0/8], trustProxy: true}}\n"
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sites[0].ipFilter.trustProxy")
                && l.contains("add trustedProxies")),
        "{out}"
    );
    let (code, out) = validate(&format!(
        "{SITE}    trustedProxies: [127.0.0.1]\n    ipFilter: {{deny: [10.0.0.0/8], trustProxy: true}}\n"
    ));
    assert_eq!(code, 0, "{out}");
}
