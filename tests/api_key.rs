//! `apiKey` through the real binary: a request needs one of the keys in the header or the
//! `api_key` query parameter (401 JSON otherwise, the upstream never contacted), the key is
//! removed before forwarding unless `forwardCredentials`, `skipPaths` need no key, and bad
//! configurations are rejected by `conduit validate` with their field paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn start(up: &Upstream, api_key: &str) -> Conduit {
    Conduit::start(&format!("{}    apiKey: {api_key}\n", simple(up)))
}

fn assert_401(r: reqwest::blocking::Response, reason: &str, request_id: &str) {
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], request_id);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 401);
    assert_eq!(v["error"], reason);
    assert_eq!(v["request_id"], request_id);
}

#[test]
fn missing_or_wrong_key_is_401_and_upstream_sees_nothing() {
    let up = Upstream::start("up");
    let c = start(&up, "{keys: [k-one, k-two]}");
    let http = client();

    let r = http
        .get(c.url("/a?x=1"))
        .header("x-request-id", "no-key")
        .send()
        .unwrap();
    assert_401(r, "missing API key", "no-key");

    let r = http
        .get(c.url("/a"))
        .header("x-api-key", "k-on")
        .header("x-request-id", "wrong-header")
        .send()
        .unwrap();
    assert_401(r, "invalid API key", "wrong-header");

    let r = http
        .get(c.url("/a?api_key=k-one-extra"))
        .header("x-request-id", "wrong-query")
        .send()
        .unwrap();
    assert_401(r, "invalid API key", "wrong-query");

    // An empty key is a missing one.
    let r = http
        .get(c.url("/a?api_key="))
        .header("x-request-id", "empty")
        .send()
        .unwrap();
    assert_401(r, "missing API key", "empty");
    assert_eq!(up.count(), 0, "the upstream was contacted: {:?}", up.last());

    // The second key works too (header names are case-insensitive), and only then the upstream
    // is reached.
    let r = http
        .get(c.url("/a"))
        .header("X-Api-Key", "k-two")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "up");
    assert_eq!(up.count(), 1);
}

#[test]
fn key_in_header_is_removed_before_forwarding() {
    let up = Upstream::start("up");
    let c = start(&up, "{keys: [s3cret]}");
    let r = client()
        .get(c.url("/items?page=2"))
        .header("x-api-key", "s3cret")
        .header("x-other", "kept")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.target, "/items?page=2");
    assert_eq!(seen.header("x-api-key"), None, "{seen:?}");
    assert_eq!(seen.header("x-other"), Some("kept"));
}

#[test]
fn key_in_query_is_removed_other_params_kept_in_order() {
    let up = Upstream::start("up");
    let c = start(&up, "{keys: ['a b&c']}");
    let r = client()
        .get(c.url("/search?z=9&api_key=a%20b%26c&a=1&a=2"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/search?z=9&a=1&a=2");

    let r = client().get(c.url("/only?api_key=a+b%26c")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/only");
}

#[test]
fn custom_header_name() {
    let up = Upstream::start("up");
    let c = start(&up, "{keys: [tok], header: X-Token}");
    let http = client();
    // The default header is not read when another is configured.
    let r = http
        .get(c.url("/x"))
        .header("x-api-key", "tok")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), 0);
    let r = http
        .get(c.url("/x"))
        .header("x-token", "tok")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-token"), None);
    // The query parameter still works when the header is absent.
    let r = http.get(c.url("/x?api_key=tok")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/x");
}

#[test]
fn forward_credentials_passes_the_key_on() {
    let up = Upstream::start("up");
    let c = start(&up, "{keys: [fwd], forwardCredentials: true}");
    let http = client();
    let r = http
        .get(c.url("/x?b=1"))
        .header("x-api-key", "fwd")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-api-key"), Some("fwd"));
    let r = http.get(c.url("/x?api_key=fwd&b=1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/x?api_key=fwd&b=1");
}

#[test]
fn skip_paths_need_no_key() {
    let up = Upstream::start("up");
    let c = start(&up, "{keys: [s], skipPaths: ['/public/**']}");
    let http = client();
    for path in ["/public", "/public/a/b.css?v=1"] {
        let r = http.get(c.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(up.last().target, "/public/a/b.css?v=1");
    // Matched on the normalised path: dot segments cannot smuggle a protected path through.
    for target in ["/public/../private", "/public/%2E%2E/private"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let answer = raw(c.port, req.as_bytes(), std::time::Duration::from_secs(10));
        assert_eq!(raw_status(&answer), 401, "{target}: {answer}");
    }
    for path in ["/publicx", "/private", "/"] {
        let r = http.get(c.url(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert_eq!(up.count(), 2);
}

#[test]
fn validate_rejects_bad_api_key_configs() {
    let dir = tempfile::tempdir().unwrap();
    let long = "k".repeat(513);
    let yaml = format!(
        "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    apiKey:\n      keys: [ok, '', {long}]\n      header: 'bad header'\n      skipPaths: ['/ok/**', 'nope']\n  - port: 8081\n    proxy: http://127.0.0.1:9\n    apiKey: {{keys: []}}\n"
    );
    std::fs::write(dir.path().join("conduit.yaml"), yaml).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1, "{out}{err}");
    for (prefix, needle) in [
        ("sites[0].apiKey.keys[1]: ", "empty"),
        ("sites[0].apiKey.keys[2]: ", "512 bytes"),
        ("sites[0].apiKey.header: ", "not a valid header name"),
        ("sites[0].apiKey.skipPaths[1]: ", "must start with `/`"),
        ("sites[1].apiKey.keys: ", "at least one key"),
    ] {
        let line = out.lines().find(|l| l.starts_with(prefix));
        assert!(
            line.is_some_and(|l| l.contains(needle)),
            "{prefix} / {needle}:\n{out}"
        );
    }
    assert!(!out.contains("not supported yet"), "{out}");
    assert!(!out.contains(&long), "a key was echoed:\n{out}");
    assert!(err.contains("5 error(s)"), "{err}");

    // A good one passes.
    std::fs::write(
        dir.path().join("conduit.yaml"),
        "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    apiKey: {keys: [a], header: X-Token, skipPaths: ['/public/**'], forwardCredentials: true}\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
}

// ---- known bugs in src/ outside `apiKey` (see the report); run with `cargo test -- --ignored` ----

/// The access log records the request target as the client sent it, captured before the
/// `apiKey` filter removes `api_key`, so a key given in the query is written to the log.
#[test]
fn query_key_is_not_written_to_the_access_log() {
    let up = Upstream::start("up");
    let c = Conduit::start(&format!(
        "{}    logging: true\n    apiKey: {{keys: [leaky-key]}}\n",
        simple(&up)
    ));
    let r = client()
        .get(c.url("/logged?api_key=leaky-key&b=1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().target, "/logged?b=1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c.stdout().contains("/logged") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = c.stdout();
    assert!(log.contains("/logged"), "no access log line: {log}");
    assert!(!log.contains("leaky-key"), "the key was logged: {log}");
}
