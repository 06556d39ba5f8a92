//! Criterion benches for the per-request cost of the credential filters: verifying an HS256,
//! RS256 and ES256 bearer token the first time it is seen (a prepared [`Verifier`]: signature,
//! claims), the compiled `jwtAuth` filter's `check` of a token it verified before (the
//! verified-token cache: what every later request with the same token pays), and a `basicAuth`
//! check of a bcrypt user whose credentials are already in the verification cache.
//!
//! Run with `cargo bench --features jwt --bench auth`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pingora::http::RequestHeader;
use serde_json::json;

use conduit::config::raw;
use conduit::filter::basic_auth;
use conduit::filter::jwt::{self, Verifier};

const SECRET: &str = "a-bench-secret-that-is-long-enough-0123456789";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Realistic claims: issuer, audience, subject, times and a few custom claims.
fn claims() -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": "https://idp.example.com",
        "aud": "api",
        "sub": "user-1234",
        "iat": now,
        "exp": now + 3600,
        "scope": "read write",
        "tenant": "acme",
    })
}

/// (name, token, verifier, publicKey or secret field for the jwtAuth config)
fn cases() -> Vec<(&'static str, String, Verifier, String)> {
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let rsa_private = std::fs::read(fixture("rsa_private.pem")).unwrap();
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
    )
    .unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_der(&ec.serialize_der()),
    )
    .unwrap();
    let rsa_public = fixture("rsa_public.pem");
    vec![
        (
            "hs256",
            hs,
            Verifier::new(Some(SECRET), None, None, 60).unwrap(),
            format!("secret: '{SECRET}'"),
        ),
        (
            "rs256",
            rs,
            Verifier::new(None, Some(&rsa_public), None, 60).unwrap(),
            format!("publicKey: '{rsa_public}'"),
        ),
        (
            "es256",
            es,
            Verifier::new(None, Some(&ec.public_key_pem()), None, 60).unwrap(),
            format!(
                "publicKey: \"{}\"",
                ec.public_key_pem().replace('\n', "\\n")
            ),
        ),
    ]
}

fn bench_jwt(c: &mut Criterion) {
    let mut verifier = c.benchmark_group("jwt_verifier");
    let cases = cases();
    for (name, token, v, _) in &cases {
        assert!(v.verify(token).is_ok());
        verifier.bench_function(*name, |b| b.iter(|| v.verify(black_box(token)).unwrap()));
    }
    verifier.finish();

    let mut filter = c.benchmark_group("jwt_auth_check_cached");
    for (name, token, _, key) in &cases {
        let yaml = format!("{{{key}, issuer: 'https://idp.example.com', audience: [api]}}");
        let raw: raw::JwtAuth = serde_yaml_ng::from_str(&yaml).unwrap();
        assert!(jwt::validate(&raw, "jwtAuth").is_empty());
        let auth = jwt::compile(&raw, "bench").unwrap();
        let mut req = RequestHeader::build("GET", b"/api/orders", None).unwrap();
        req.insert_header("authorization", format!("Bearer {token}"))
            .unwrap();
        // The static-key path never waits, so polling it once to completion is the whole cost.
        assert!(
            futures::executor::block_on(auth.check(&mut req, "/api/orders"))
                .unwrap()
                .is_some()
        );
        filter.bench_function(*name, |b| {
            b.iter(|| {
                futures::executor::block_on(auth.check(black_box(&mut req), "/api/orders")).unwrap()
            })
        });
    }
    filter.finish();
}

fn bench_basic(c: &mut Criterion) {
    let hash = bcrypt::hash("correct horse battery staple", 10).unwrap();
    let raw = raw::BasicAuth {
        users: [("alice".to_string(), hash)].into_iter().collect(),
        // Keep the header so one request can be checked again and again.
        forward_credentials: Some(true),
        ..Default::default()
    };
    assert!(basic_auth::validate(&raw, "basicAuth").is_empty());
    let auth = basic_auth::compile(&raw);
    let mut req = RequestHeader::build("GET", b"/api/orders", None).unwrap();
    // base64("alice:correct horse battery staple")
    req.insert_header(
        "authorization",
        "Basic YWxpY2U6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==",
    )
    .unwrap();
    // The first check pays the bcrypt verification (on the blocking pool) and fills the cache.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(auth.check(&mut req, "/api/orders")).unwrap();
    // A cached check never waits, so polling it once to completion is the whole cost.
    c.bench_function("basic_auth_check/bcrypt_cached", |b| {
        b.iter(|| {
            futures::executor::block_on(auth.check(black_box(&mut req), "/api/orders")).unwrap()
        })
    });
}

criterion_group!(benches, bench_jwt, bench_basic);
criterion_main!(benches);
