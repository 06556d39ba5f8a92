//! `consumers` through the real binary: a request is identified by a consumer's API key (header
//! or `?api_key=`) or Basic password; the upstream sees the consumer's name in `idHeader` and the
//! consumer's own headers, never the credential nor a client-forged id; unknown credentials are
//! 401 with the upstream untouched; `skipPaths` pass anonymously; `{{ consumer }}` templates.
#![cfg(feature = "consumers")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

const CONSUMERS: &str = "    consumers:
      idHeader: X-Client
      skipPaths: [/public/**]
      consumers:
        - username: acme
          apiKey: [acme-key-1, acme-key-2]
          headers: {X-Plan: gold, X-Tenant: '7'}
        - username: globex
          basicAuth: 'globex-pass'
          headers: {X-Plan: free}
";

fn start(up: &Upstream, extra: &str) -> Conduit {
    Conduit::start(&format!("{}{CONSUMERS}{extra}", simple(up)))
}

#[test]
fn api_key_and_basic_identify_consumers_with_their_headers() {
    let up = Upstream::start("up");
    let c = start(&up, "");
    let http = client();

    let r = http
        .get(c.url("/orders?api_key=acme-key-2&page=2"))
        .header("x-client", "globex")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.target, "/orders?page=2",
        "the query key reached the upstream"
    );
    assert_eq!(seen.header_all("x-client"), vec!["acme"], "{seen:?}");
    assert_eq!(seen.header("x-plan"), Some("gold"));
    assert_eq!(seen.header("x-tenant"), Some("7"));

    let r = http
        .get(c.url("/orders"))
        .header("x-api-key", "acme-key-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert!(seen.header("x-api-key").is_none(), "{seen:?}");
    assert_eq!(seen.header("x-client"), Some("acme"));

    let r = http
        .get(c.url("/orders"))
        .basic_auth("globex", Some("globex-pass"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-client"), Some("globex"));
    assert_eq!(seen.header("x-plan"), Some("free"));
    assert!(seen.header("authorization").is_none(), "{seen:?}");
    assert!(seen.header("x-tenant").is_none());
}

#[test]
fn unknown_credentials_are_refused_before_the_upstream() {
    let up = Upstream::start("up");
    let c = start(&up, "");
    let http = client();
    for (name, req) in [
        ("none", http.get(c.url("/x"))),
        (
            "bad key",
            http.get(c.url("/x")).header("x-api-key", "acme-key-3"),
        ),
        ("bad query key", http.get(c.url("/x?api_key=nope"))),
        (
            "bad password",
            http.get(c.url("/x")).basic_auth("globex", Some("wrong")),
        ),
        (
            "key as a password",
            http.get(c.url("/x")).basic_auth("acme", Some("acme-key-1")),
        ),
    ] {
        let r = req.header("x-request-id", "rid-1").send().unwrap();
        assert_eq!(r.status(), 401, "{name}");
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["status"], 401, "{name}");
        assert_eq!(v["request_id"], "rid-1", "{name}");
    }
    assert_eq!(up.count(), 0, "the upstream was contacted: {:?}", up.last());
}

#[test]
fn skipped_paths_are_anonymous_and_cannot_forge_an_id() {
    let up = Upstream::start("up");
    let c = start(&up, "");
    let r = client()
        .get(c.url("/public/logo.png"))
        .header("x-client", "acme")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert!(seen.header("x-client").is_none(), "{seen:?}");
    assert!(seen.header("x-plan").is_none());
}

#[test]
fn consumer_name_in_templates() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        "    requestTransform: {setHeaders: {X-Who: 'consumer={{ consumer }}'}}
    responseTransform: {setHeaders: {X-Served-To: '{{ consumer }}'}}
",
    );
    let r = client()
        .get(c.url("/x"))
        .header("x-api-key", "acme-key-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-to"], "acme");
    assert_eq!(up.last().header("x-who"), Some("consumer=acme"));

    // No consumer on a skipped path: the templated headers are absent, even if the client sent one.
    let r = client()
        .get(c.url("/public/x"))
        .header("x-who", "consumer=acme")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-served-to").is_none());
    assert!(up.last().header("x-who").is_none());
}

#[test]
fn bad_consumer_configs_are_rejected_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "sites:\n  - proxy: http://127.0.0.1:9\n    consumers:\n      consumers:\n        - username: a\n          apiKey: same\n        - username: b\n          apiKey: same\n        - username: c\n    requestTransform: {setHeaders: {X-U: '{{ jwt.sub }}'}}\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "c.yaml"]);
    let err = format!("{out}{err}");
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "sites[0].consumers.consumers[1].apiKey: this key is also a key of consumer `a`"
        ),
        "{err}"
    );
    assert!(
        err.contains("sites[0].consumers.consumers[2]: has no credential"),
        "{err}"
    );
    assert!(
        err.contains("sites[0].requestTransform.setHeaders: uses `{{ jwt.* }}`"),
        "{err}"
    );
}

#[test]
fn connection_cannot_name_a_header_conduit_sets() {
    let up = Upstream::start("up");
    let c = start(&up, "");
    let answer = raw(
        c.port,
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-API-Key: acme-key-1\r\nConnection: close, X-Client, X-Plan\r\n\r\n",
        std::time::Duration::from_secs(5),
    );
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let seen = up.last();
    assert_eq!(seen.header("x-client"), Some("acme"), "{seen:?}");
    assert_eq!(seen.header("x-plan"), Some("gold"), "{seen:?}");
}
