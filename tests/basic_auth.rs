//! `basicAuth` through the real binary: requests need `Authorization: Basic` credentials of a
//! configured user (plaintext, bcrypt or argon2 password), else a 401 JSON error with a
//! `WWW-Authenticate` challenge (unless `challenge: false`) and the upstream is not contacted;
//! `Authorization` is removed before forwarding unless `forwardCredentials`; `skipPaths` need no
//! credentials; bad configurations are rejected by `conduit validate` with their field paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine as _;
use common::*;

fn start(up: &Upstream, basic_auth: &str) -> Conduit {
    Conduit::start(&format!("{}    basicAuth: {basic_auth}\n", simple(up)))
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// `$` is the config's variable marker: a hash written into the YAML needs `$$`.
fn escaped(hash: &str) -> String {
    hash.replace('$', "$$")
}

fn argon2_hash(password: &str) -> String {
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(
            password.as_bytes(),
            &SaltString::encode_b64(b"sixteen byte salt").unwrap(),
        )
        .unwrap()
        .to_string()
}

fn assert_401(
    r: reqwest::blocking::Response,
    reason: &str,
    request_id: &str,
    challenge: Option<&str>,
) {
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], request_id);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        challenge
    );
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 401);
    assert_eq!(v["error"], reason);
    assert_eq!(v["request_id"], request_id);
}

#[test]
fn missing_or_wrong_credentials_are_401_with_a_challenge() {
    let up = Upstream::start("up");
    let c = start(&up, "{users: {alice: wonderland}, realm: Staff area}");
    let http = client();
    let challenge = Some("Basic realm=\"Staff area\", charset=\"UTF-8\"");

    let r = http
        .get(c.url("/a"))
        .header("x-request-id", "none")
        .send()
        .unwrap();
    assert_401(r, "authentication required", "none", challenge);

    let r = http
        .get(c.url("/a"))
        .header("authorization", basic("alice:wonderlanD"))
        .header("x-request-id", "wrong")
        .send()
        .unwrap();
    assert_401(r, "invalid credentials", "wrong", challenge);

    let r = http
        .get(c.url("/a"))
        .header("authorization", "Basic %%%")
        .header("x-request-id", "garbage")
        .send()
        .unwrap();
    assert_401(r, "invalid credentials", "garbage", challenge);

    let r = http
        .get(c.url("/a"))
        .header("authorization", "Bearer abc")
        .header("x-request-id", "bearer")
        .send()
        .unwrap();
    assert_401(r, "authentication required", "bearer", challenge);
    assert_eq!(up.count(), 0, "the upstream was contacted: {:?}", up.last());
}

#[test]
fn right_password_passes_and_authorization_is_removed() {
    let up = Upstream::start("up");
    let c = start(&up, "{users: {alice: 'pa:ss word'}}");
    let r = client()
        .get(c.url("/items"))
        .header("authorization", basic("alice:pa:ss word"))
        .header("x-other", "kept")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "up");
    let seen = up.last();
    assert_eq!(seen.target, "/items");
    assert_eq!(seen.header("authorization"), None, "{seen:?}");
    assert_eq!(seen.header("x-other"), Some("kept"));
}

#[test]
fn bcrypt_and_argon2_users() {
    let up = Upstream::start("up");
    let bcrypt_hash = bcrypt::hash("b-secret", 4).unwrap();
    let argon_hash = argon2_hash("a-secret");
    let c = start(
        &up,
        &format!(
            "{{users: {{bea: '{}', ari: '{}', pat: plain}}}}",
            escaped(&bcrypt_hash),
            escaped(&argon_hash)
        ),
    );
    let http = client();
    // Twice each: the second is answered from the verification cache, with the same result.
    for _ in 0..2 {
        for (creds, status) in [
            ("bea:b-secret", 200),
            ("ari:a-secret", 200),
            ("pat:plain", 200),
            ("bea:a-secret", 401),
            ("ari:b-secret", 401),
            ("bea:b-secreT", 401),
            ("ari:", 401),
        ] {
            let r = http
                .get(c.url("/h"))
                .header("authorization", basic(creds))
                .send()
                .unwrap();
            assert_eq!(r.status(), status, "{creds}");
        }
    }
    assert_eq!(up.count(), 6);
}

#[test]
fn challenge_false_sends_no_www_authenticate() {
    let up = Upstream::start("up");
    let c = start(&up, "{users: {alice: pw}, challenge: false}");
    let r = client()
        .get(c.url("/a"))
        .header("x-request-id", "quiet")
        .send()
        .unwrap();
    assert_401(r, "authentication required", "quiet", None);
    let r = client()
        .get(c.url("/a"))
        .header("authorization", basic("alice:nope"))
        .header("x-request-id", "quiet2")
        .send()
        .unwrap();
    assert_401(r, "invalid credentials", "quiet2", None);
    assert_eq!(up.count(), 0);
}

#[test]
fn skip_paths_need_no_credentials() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        "{users: {alice: pw}, skipPaths: ['/public/**', '/ping']}",
    );
    let http = client();
    for p in ["/public", "/public/a/b.css", "/ping"] {
        let r = http.get(c.url(p)).send().unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
    // Presented credentials are still removed on a skipped path.
    let r = http
        .get(c.url("/public/x"))
        .header("authorization", basic("alice:whatever"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("authorization"), None);
    for p in ["/publicity", "/ping/x", "/"] {
        let r = http.get(c.url(p)).send().unwrap();
        assert_eq!(r.status(), 401, "{p}");
    }
    assert_eq!(up.count(), 4);
}

#[test]
fn forward_credentials_keeps_authorization() {
    let up = Upstream::start("up");
    let c = start(&up, "{users: {alice: pw}, forwardCredentials: true}");
    let creds = basic("alice:pw");
    let r = client()
        .get(c.url("/f"))
        .header("authorization", &creds)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("authorization"), Some(creds.as_str()));
}

#[test]
fn validate_rejects_bad_basic_auth_configs() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    basicAuth:\n      users: {ok: pw, empty: '', badhash: '$$2b$$04$$tooShortToBeAHash', slow: '$$2b$$03$$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE', argon: '$$argon2id$$v=19$$garbage'}\n      realm: 'say \"hi\"'\n      skipPaths: ['nope']\n  - port: 8081\n    proxy: http://127.0.0.1:9\n    basicAuth: {users: {}}\n";
    std::fs::write(dir.path().join("conduit.yaml"), yaml).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1, "{out}{err}");
    for (prefix, needle) in [
        ("sites[0].basicAuth.users.empty: ", "must not be empty"),
        ("sites[0].basicAuth.users.badhash: ", "bcrypt"),
        ("sites[0].basicAuth.users.slow: ", "cost 3"),
        ("sites[0].basicAuth.users.argon: ", "argon2"),
        ("sites[0].basicAuth.realm: ", "`\"`"),
        ("sites[0].basicAuth.skipPaths[0]: ", "must start with `/`"),
        ("sites[1].basicAuth.users: ", "at least one user"),
    ] {
        let line = out.lines().find(|l| l.starts_with(prefix));
        assert!(
            line.is_some_and(|l| l.contains(needle)),
            "{prefix} / {needle}:\n{out}"
        );
    }
    assert!(!out.contains("not supported yet"), "{out}");
    assert!(!out.contains("tooShort"), "a hash was echoed:\n{out}");
    assert!(err.contains("7 error(s)"), "{err}");

    // A good one passes.
    std::fs::write(
        dir.path().join("conduit.yaml"),
        format!(
            "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    basicAuth: {{users: {{a: pw, b: '{}'}}, realm: Ops, challenge: false, skipPaths: ['/public/**'], forwardCredentials: true}}\n",
            escaped(&bcrypt::hash("x", 4).unwrap())
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
}
