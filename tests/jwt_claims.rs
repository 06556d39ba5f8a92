//! JWT claims after verification, through the real binary: `{{ jwt.<claim> }}` templates fill
//! headers for the upstream and the client (and remove a client's forged copy when the claim is
//! absent), `consumers.sharedJwt` names the consumer by a claim, and a consumer's own JWT
//! credential (selected by `iss`, verified with that consumer's key) identifies it.
#![cfg(all(feature = "jwt", feature = "consumers"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "claims-test-secret-0123456789abcdef012";
const ACME_SECRET: &str = "acme-consumer-secret-0123456789abcdef0";

fn token(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn exp() -> u64 {
    jsonwebtoken::get_current_timestamp() + 300
}

fn get(
    c: &Conduit,
    path: &str,
    bearer: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut r = client().get(c.url(path));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

#[test]
fn claims_fill_templates_and_shared_jwt_names_the_consumer() {
    let up = Upstream::start("up");
    let c = Conduit::start(&format!(
        "{}    jwtAuth: {{secret: '{SECRET}', skipPaths: [/public/**]}}
    consumers:
      sharedJwt: sub
      skipPaths: [/public/**]
      consumers:
        - {{username: alice, headers: {{X-Plan: gold}}}}
        - {{username: '42', headers: {{X-Plan: numeric}}}}
    requestTransform:
      setHeaders: {{X-User-ID: '{{{{ jwt.sub }}}}', X-Roles: '{{{{ jwt.roles }}}}', X-Who: '{{{{ consumer }}}}'}}
    responseTransform:
      setHeaders: {{X-Token-Subject: '{{{{ jwt.sub }}}}'}}
",
        simple(&up)
    ));

    let t = token(
        SECRET,
        json!({"sub": "alice", "roles": ["admin", "dev"], "exp": exp()}),
    );
    let r = get(
        &c,
        "/api",
        Some(&t),
        &[("x-user-id", "mallory"), ("x-consumer-id", "42")],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-token-subject"], "alice");
    let seen = up.last();
    assert_eq!(seen.header_all("x-user-id"), vec!["alice"], "{seen:?}");
    assert_eq!(seen.header("x-roles"), Some("[\"admin\",\"dev\"]"));
    assert_eq!(seen.header("x-who"), Some("alice"));
    assert_eq!(seen.header_all("x-consumer-id"), vec!["alice"]);
    assert_eq!(seen.header("x-plan"), Some("gold"));

    // A numeric claim names a consumer too.
    let r = get(
        &c,
        "/api",
        Some(&token(SECRET, json!({"sub": 42, "exp": exp()}))),
        &[],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-plan"), Some("numeric"));

    // A valid token naming no consumer: 403, the upstream untouched.
    let before = up.count();
    let r = get(
        &c,
        "/api",
        Some(&token(SECRET, json!({"sub": "bob", "exp": exp()}))),
        &[],
    );
    assert_eq!(r.status(), 403);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "token does not name a known consumer");
    assert_eq!(up.count(), before);

    // Skipped path, no token: templated headers are removed, not passed through.
    let r = get(
        &c,
        "/public/x",
        None,
        &[("x-user-id", "mallory"), ("x-who", "alice")],
    );
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-token-subject").is_none());
    let seen = up.last();
    assert!(seen.header("x-user-id").is_none(), "{seen:?}");
    assert!(seen.header("x-who").is_none(), "{seen:?}");
    assert!(seen.header("x-consumer-id").is_none(), "{seen:?}");
}

#[test]
fn a_consumer_jwt_is_verified_with_that_consumers_key() {
    let up = Upstream::start("up");
    let c = Conduit::start(&format!(
        "{}    consumers:
      consumers:
        - username: acme
          jwt: {{key: acme-issuer, secret: '{ACME_SECRET}'}}
        - username: globex
          apiKey: globex-key
    requestTransform:
      setHeaders: {{X-Sub: '{{{{ jwt.sub }}}}'}}
",
        simple(&up)
    ));
    let good = token(
        ACME_SECRET,
        json!({"iss": "acme-issuer", "sub": "svc-1", "exp": exp()}),
    );
    let r = get(&c, "/", Some(&good), &[]);
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some("acme"));
    assert_eq!(seen.header("x-sub"), Some("svc-1"));
    assert!(seen.header("authorization").is_none(), "{seen:?}");

    let before = up.count();
    // Signed with another secret, an unknown issuer, expired: all 401.
    for t in [
        token(SECRET, json!({"iss": "acme-issuer", "exp": exp()})),
        token(ACME_SECRET, json!({"iss": "globex", "exp": exp()})),
        token(ACME_SECRET, json!({"iss": "acme-issuer", "exp": 1000})),
    ] {
        assert_eq!(get(&c, "/", Some(&t), &[]).status(), 401);
    }
    assert_eq!(up.count(), before);
    assert_eq!(
        get(&c, "/", None, &[("x-api-key", "globex-key")]).status(),
        200
    );
    assert_eq!(up.last().header("x-consumer-id"), Some("globex"));
    assert!(up.last().header("x-sub").is_none());
}
