#![cfg(feature = "jwt")]
//! `jwtAuth` through the real binary: bearer tokens verified with a secret, a public key (PEM
//! file) or a JWKS served by a real HTTP server written here (it can switch its key set, fail,
//! and stop). Missing and invalid tokens are 401 JSON errors with RFC 6750 challenges and never
//! reach the upstream; an unknown `kid` triggers one refetch of the JWKS; a failing JWKS
//! endpoint (and a reload) keeps the last good keys; `skipPaths`, route-level `jwtAuth` and
//! `forwardCredentials: false` work end to end; bad configurations are rejected by
//! `conduit validate` with their field paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig, ServerConnection, StreamOwned};

const SECRET: &str = "integration-test-secret-0123456789abcdef";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rsa_token(private: &str, alg: Algorithm, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let pem = std::fs::read(fixture(private)).unwrap();
    encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn start(up: &Upstream, jwt_auth: &str) -> Conduit {
    Conduit::start(&format!("{}    jwtAuth: {jwt_auth}\n", simple(up)))
}

fn get(c: &Conduit, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
    let mut r = client().get(c.url(path));
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.send().unwrap()
}

/// A 401 JSON error with `reason` and the RFC 6750 challenge for it.
fn assert_401(r: reqwest::blocking::Response, reason: &str) {
    assert_eq!(r.status(), 401, "{reason}");
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    if reason == "bearer token required" {
        assert_eq!(challenge, "Bearer realm=\"conduit\"");
    } else {
        assert_eq!(
            challenge,
            format!(
                "Bearer realm=\"conduit\", error=\"invalid_token\", error_description=\"{reason}\""
            )
        );
    }
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], 401);
    assert_eq!(v["error"], reason);
}

#[test]
fn valid_token_reaches_the_upstream_and_missing_one_is_401() {
    let up = Upstream::start("up");
    let c = start(&up, &format!("{{secret: '{SECRET}'}}"));
    let token = hs256(json!({"sub": "ann", "exp": now() + 300}));

    let r = get(&c, "/a", Some(&token));
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "up");
    assert_eq!(up.count(), 1);
    // forwardCredentials defaults to true: the upstream sees the token.
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );

    assert_401(get(&c, "/a", None), "bearer token required");
    let r = client()
        .get(c.url("/a"))
        .header("authorization", "Basic YTpi")
        .send()
        .unwrap();
    assert_401(r, "bearer token required");
    assert_401(get(&c, "/a", Some("not-a-jwt")), "malformed token");
    assert_eq!(up.count(), 1, "refused requests never reach the upstream");
    // Tokens are never logged.
    assert!(!c.stderr().contains(&token));
}

#[test]
fn invalid_tokens_are_refused_with_their_reason() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        &format!("{{secret: '{SECRET}', issuer: 'https://idp', audience: [api, admin]}}"),
    );
    let t = now();
    let ok = json!({"iss": "https://idp", "aud": "api", "exp": t + 300});
    let with = |patch: Value| {
        let mut claims = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    assert_eq!(get(&c, "/", Some(&hs256(ok.clone()))).status(), 200);
    assert_eq!(
        get(&c, "/", Some(&hs256(with(json!({"aud": ["x", "admin"]}))))).status(),
        200
    );

    for (claims, reason) in [
        (with(json!({"exp": t - 3600})), "token expired"),
        (with(json!({"nbf": t + 3600})), "token not yet valid"),
        (with(json!({"iat": t + 3600})), "token issued in the future"),
        (
            with(json!({"iss": "https://evil"})),
            "token issuer not accepted",
        ),
        (with(json!({"aud": "web"})), "token audience not accepted"),
        (
            json!({"iss": "https://idp", "aud": "api"}),
            "token has no expiry",
        ),
    ] {
        assert_401(get(&c, "/", Some(&hs256(claims))), reason);
    }

    // Signed with another secret.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &ok,
        &EncodingKey::from_secret(b"another-secret-of-sufficient-length!!"),
    )
    .unwrap();
    assert_401(get(&c, "/", Some(&forged)), "invalid token signature");
    // A valid token with its payload swapped.
    let good = hs256(ok.clone());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(with(json!({"aud": "admin", "role": "root"}))
            .to_string()
            .as_bytes()),
        parts[2]
    );
    assert_401(get(&c, "/", Some(&tampered)), "invalid token signature");
    // Unsigned (`alg: none`).
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(ok.to_string().as_bytes())
    );
    assert_401(get(&c, "/", Some(&none)), "token algorithm not allowed");
    assert_401(
        get(&c, "/", Some(&format!("{none}{}", parts[2]))),
        "token algorithm not allowed",
    );
    assert_eq!(up.count(), 2);
}

#[test]
fn hs256_token_made_with_the_rsa_public_key_is_refused() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        &format!("{{publicKey: {}}}", fixture("rsa_public.pem")),
    );
    let claims = json!({"exp": now() + 300});

    let r = get(
        &c,
        "/",
        Some(&rsa_token(
            "rsa_private.pem",
            Algorithm::RS256,
            None,
            claims.clone(),
        )),
    );
    assert_eq!(r.status(), 200);

    // Algorithm confusion: HS256 with the public key's PEM text as the HMAC secret.
    let pem = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&pem),
    )
    .unwrap();
    assert_401(get(&c, "/", Some(&confused)), "token algorithm not allowed");
    // PS256 is RSA too, but not allowed unless listed.
    assert_401(
        get(
            &c,
            "/",
            Some(&rsa_token(
                "rsa_private.pem",
                Algorithm::PS256,
                None,
                claims.clone(),
            )),
        ),
        "token algorithm not allowed",
    );
    // Another RSA key.
    assert_401(
        get(
            &c,
            "/",
            Some(&rsa_token(
                "rsa2_private.pem",
                Algorithm::RS256,
                None,
                claims,
            )),
        ),
        "invalid token signature",
    );
    assert_eq!(up.count(), 1);
}

#[test]
fn skip_paths_and_forward_credentials_false() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        &format!("{{secret: '{SECRET}', skipPaths: ['/public/**'], forwardCredentials: false}}"),
    );
    let token = hs256(json!({"exp": now() + 300}));
    let r = get(&c, "/private", Some(&token));
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("authorization"), None, "token stripped");

    assert_eq!(get(&c, "/public/a/b", None).status(), 200);
    assert_eq!(get(&c, "/public", None).status(), 200);
    assert_401(get(&c, "/publicx", None), "bearer token required");
    assert_401(get(&c, "/private", None), "bearer token required");
    assert_eq!(up.count(), 3);
}

#[test]
fn route_level_jwt_auth() {
    let up = Upstream::start("up");
    let yaml = format!(
        "global: {{bind: 127.0.0.1, workers: 2}}\nsites:\n  - port: {{port}}\n    proxy:\n      /open: {u}\n      /secure:\n        targets: [{u}]\n        jwtAuth: {{secret: '{SECRET}', forwardCredentials: false}}\n",
        u = up.url()
    );
    let c = Conduit::start(&yaml);
    assert_eq!(get(&c, "/open/x", None).status(), 200);
    assert_401(get(&c, "/secure/x", None), "bearer token required");
    let token = hs256(json!({"exp": now() + 300}));
    assert_eq!(get(&c, "/secure/x", Some(&token)).status(), 200);
    assert_eq!(up.last().header("authorization"), None);
    assert_eq!(up.count(), 2);
}

// ---- JWKS ----

/// What the JWKS server answers.
#[derive(Clone)]
enum Answer {
    Keys(Value),
    Status(u16),
    Garbage,
}

/// A real JWKS endpoint on loopback: answers `GET` with the current [`Answer`], counts hits,
/// and can be stopped (its port then refuses connections).
struct JwksServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl JwksServer {
    fn start(keys: Value) -> JwksServer {
        JwksServer::start_on("127.0.0.1:0".parse().unwrap(), None, keys)
    }

    /// Listens on `bind`, speaking TLS with `tls` when given.
    fn start_on(bind: SocketAddr, tls: Option<Arc<ServerConfig>>, keys: Value) -> JwksServer {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Answer::Keys(keys)));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, h, s) = (answer.clone(), hits.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (a, h, tls) = (a.clone(), h.clone(), tls.clone());
                thread::spawn(move || match tls {
                    None => serve_jwks(stream, &a, &h),
                    Some(config) => {
                        let Ok(conn) = ServerConnection::new(config) else {
                            return;
                        };
                        serve_jwks(StreamOwned::new(conn, stream), &a, &h);
                    }
                });
            }
        });
        JwksServer {
            addr,
            answer,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until the server was hit more than `n` times.
    fn wait_hits_over(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.hits() <= n {
            assert!(Instant::now() < deadline, "JWKS not fetched (hits {n})");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        assert!(TcpStream::connect(self.addr).is_err(), "still listening");
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_jwks<S: Read + Write>(mut stream: S, answer: &Mutex<Answer>, hits: &AtomicUsize) {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if !head.starts_with(b"GET /.well-known/jwks.json ") {
        return;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let (status, body) = match answer.lock().unwrap().clone() {
        Answer::Keys(v) => (200, v.to_string()),
        Answer::Status(s) => (s, "{\"error\": \"down\"}".to_string()),
        Answer::Garbage => (200, "<html>maintenance</html>".to_string()),
    };
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let _ = stream.flush();
}

/// An EC P-256 signing key and its JWK.
struct EcKey {
    kid: String,
    pair: rcgen::KeyPair,
}

impl EcKey {
    fn new(kid: &str) -> EcKey {
        EcKey {
            kid: kid.to_string(),
            pair: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key_raw();
        assert_eq!((point.len(), point[0]), (65, 4));
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
               "x": b64(&point[1..33]), "y": b64(&point[33..])})
    }

    fn token(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        encode(
            &header,
            &claims,
            &EncodingKey::from_ec_der(&self.pair.serialize_der()),
        )
        .unwrap()
    }
}

/// The JWK of the RSA fixture (no `alg`: RS256 by default).
fn rsa_jwk(kid: &str) -> Value {
    use x509_parser::prelude::FromDer;
    let pem = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
    let x509_parser::public_key::PublicKey::RSA(rsa) = spki.parsed().unwrap() else {
        panic!("not RSA");
    };
    let trim = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    json!({"kty": "RSA", "kid": kid, "n": b64(&trim(rsa.modulus)), "e": b64(&trim(rsa.exponent))})
}

fn keys(list: &[Value]) -> Value {
    json!({ "keys": list })
}

#[test]
fn jwks_unknown_kid_triggers_one_refetch() {
    let up = Upstream::start("up");
    let (ec1, ec2, ec3) = (EcKey::new("ec-1"), EcKey::new("ec-2"), EcKey::new("ec-3"));
    let jwks = JwksServer::start(keys(&[ec1.jwk(), rsa_jwk("rsa-1")]));
    let c = start(
        &up,
        &format!("{{jwksUrl: '{}', audience: api}}", jwks.url()),
    );
    // The background fetch at start.
    jwks.wait_hits_over(0, Duration::from_secs(10));
    let claims = json!({"aud": "api", "exp": now() + 300});

    assert_eq!(get(&c, "/", Some(&ec1.token(claims.clone()))).status(), 200);
    let rs = rsa_token(
        "rsa_private.pem",
        Algorithm::RS256,
        Some("rsa-1"),
        claims.clone(),
    );
    assert_eq!(get(&c, "/", Some(&rs)).status(), 200);
    // The key without `alg` verifies only its family's default (RS256).
    let ps = rsa_token(
        "rsa_private.pem",
        Algorithm::PS256,
        Some("rsa-1"),
        claims.clone(),
    );
    assert_401(get(&c, "/", Some(&ps)), "token algorithm not allowed");
    // A kid naming one key, signed by another.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let wrong = encode(
        &header,
        &claims,
        &EncodingKey::from_ec_der(&ec2.pair.serialize_der()),
    )
    .unwrap();
    assert_401(get(&c, "/", Some(&wrong)), "invalid token signature");
    // An HS256 token with a JWKS kid.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let hs = encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_401(get(&c, "/", Some(&hs)), "token algorithm not allowed");
    assert_401(
        get(
            &c,
            "/",
            Some(&ec1.token(json!({"aud": "web", "exp": now() + 300}))),
        ),
        "token audience not accepted",
    );
    assert_eq!(jwks.hits(), 1, "known keys need no fetch");

    // Key rotation: ec-2 appears, rsa-1 goes. The first token with ec-2 triggers a refetch
    // and is accepted.
    jwks.set(Answer::Keys(keys(&[ec1.jwk(), ec2.jwk()])));
    let started = Instant::now();
    assert_eq!(get(&c, "/", Some(&ec2.token(claims.clone()))).status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(jwks.hits(), 2);
    assert_eq!(get(&c, "/", Some(&ec2.token(claims.clone()))).status(), 200);
    assert_eq!(get(&c, "/", Some(&ec1.token(claims.clone()))).status(), 200);

    // Another unknown kid within the minute: no second refetch, refused at once.
    jwks.set(Answer::Keys(keys(&[ec1.jwk(), ec2.jwk(), ec3.jwk()])));
    let started = Instant::now();
    assert_401(
        get(&c, "/", Some(&ec3.token(claims.clone()))),
        "unknown signing key",
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_401(get(&c, "/", Some(&rs)), "unknown signing key");
    assert_eq!(jwks.hits(), 2, "at most one refetch per minute");
    assert_eq!(up.count(), 5);
}

#[test]
fn jwks_failures_and_reloads_keep_the_last_good_keys() {
    let up = Upstream::start("up");
    let ec1 = EcKey::new("ec-1");
    let mut jwks = JwksServer::start(keys(&[ec1.jwk()]));
    let url = jwks.url();
    let site = |extra: &str| {
        format!(
            "{}    hotReload: true\n    jwtAuth: {{jwksUrl: '{url}', jwksRefreshSecs: 5{extra}}}\n",
            simple(&up)
        )
    };
    let c = Conduit::start(&site(""));
    jwks.wait_hits_over(0, Duration::from_secs(10));
    let token = ec1.token(json!({"exp": now() + 600}));
    assert_eq!(get(&c, "/", Some(&token)).status(), 200);

    // The endpoint fails (500), then answers garbage: each refresh fails, the keys stay.
    for (i, answer) in [Answer::Status(500), Answer::Garbage]
        .into_iter()
        .enumerate()
    {
        jwks.set(answer);
        let before = jwks.hits();
        jwks.wait_hits_over(before, Duration::from_secs(12));
        thread::sleep(Duration::from_millis(200));
        assert_eq!(get(&c, "/", Some(&token)).status(), 200, "failure {i}");
    }
    assert!(c.wait_log("JWKS fetch failed", Duration::from_secs(2)));

    // The endpoint goes away; a reload compiles the config again and finds the same keys.
    jwks.stop();
    c.write_config(&site(", skipPaths: ['/public/**']"));
    assert!(c.wait_log("configuration reloaded", Duration::from_secs(10)));
    assert_eq!(get(&c, "/public/x", None).status(), 200);
    thread::sleep(Duration::from_secs(6));
    assert_eq!(get(&c, "/", Some(&token)).status(), 200);
    assert_401(get(&c, "/", None), "bearer token required");
    assert!(!c.stderr().contains(&token), "a token was logged");
}

#[test]
fn validate_checks_jwt_configs_without_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = JwksServer::start(keys(&[EcKey::new("k").jwk()]));
    let yaml = format!(
        "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    jwtAuth: {{secret: short, algorithms: [HS256, RS256, none]}}\n  - port: 8081\n    proxy: http://127.0.0.1:9\n    jwtAuth: {{secret: '{SECRET}', jwksUrl: '{url}'}}\n  - port: 8082\n    proxy:\n      /a:\n        targets: [http://127.0.0.1:9]\n        jwtAuth: {{publicKey: /no/such/key.pem, leewaySecs: 100000}}\n  - port: 8083\n    proxy: http://127.0.0.1:9\n    jwtAuth: {{jwksUrl: 'ftp://idp/keys', jwksRefreshSecs: 0}}\n",
        url = jwks.url()
    );
    std::fs::write(dir.path().join("conduit.yaml"), yaml).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1, "{out}{err}");
    for (prefix, needle) in [
        ("sites[0].jwtAuth.algorithms[2]: ", "never accepted"),
        ("sites[0].jwtAuth.algorithms: ", "mixes HMAC"),
        ("sites[0].jwtAuth.secret: ", "at least 32 bytes"),
        ("sites[1].jwtAuth: ", "exactly one of"),
        ("sites[2].proxy./a.jwtAuth.publicKey: ", "cannot read"),
        ("sites[2].proxy./a.jwtAuth.leewaySecs: ", "at most"),
        ("sites[3].jwtAuth.jwksUrl: ", "http:// or https://"),
        ("sites[3].jwtAuth.jwksRefreshSecs: ", "between"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(prefix) && l.contains(needle)),
            "{prefix} / {needle}:\n{out}"
        );
    }
    assert!(!out.contains("not supported yet"), "{out}");
    assert!(!out.contains(SECRET), "a secret was echoed:\n{out}");

    // A good one passes, and validating fetches nothing.
    std::fs::write(
        dir.path().join("conduit.yaml"),
        format!(
            "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    jwtAuth: {{jwksUrl: '{}', algorithms: [ES256], issuer: [a, b], audience: api, skipPaths: ['/health'], forwardCredentials: false}}\n  - port: 8081\n    proxy: http://127.0.0.1:9\n    jwtAuth: {{publicKey: '{}', algorithms: [RS256, PS512]}}\n",
            jwks.url(),
            fixture("rsa_public.pem")
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(jwks.hits(), 0);
}

// ---- JWKS over HTTPS ----

/// A CA made for the test and a server certificate it signed for `localhost`.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "jwt test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            leaf: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// Starts conduit like [`Conduit::start`], with one more environment variable.
fn start_with_env(yaml: &str, var: &str, value: &Path) -> Conduit {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("conduit.yaml");
    std::fs::write(&config, yaml.replace("{port}", &port.to_string())).unwrap();
    let child = Command::new(bin())
        .arg("-c")
        .arg(&config)
        .current_dir(dir.path())
        .env("CONDUIT_LOG", "info")
        .env(var, value)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut c = Conduit {
        child: Some(child),
        dir,
        config,
        port,
    };
    assert!(c.wait_ready(Duration::from_secs(10)), "{}", c.stderr());
    c
}

#[test]
fn jwks_over_https_is_fetched_from_a_verified_server_only() {
    let up = Upstream::start("up");
    let pki = Pki::new();
    let ec1 = EcKey::new("tls-1");
    // Listen where `localhost` resolves first, as Conduit resolves the URL's host.
    let bind = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
    let jwks = JwksServer::start_on(bind, Some(pki.server_config()), keys(&[ec1.jwk()]));
    let url = format!(
        "https://localhost:{}/.well-known/jwks.json",
        jwks.addr.port()
    );
    let yaml = format!("{}    jwtAuth: {{jwksUrl: '{url}'}}\n", simple(&up));
    let token = ec1.token(json!({"exp": now() + 300}));

    // Trusting the test CA (as the system roots, through SSL_CERT_FILE): fetched and used.
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    let c = start_with_env(&yaml, "SSL_CERT_FILE", ca.path());
    jwks.wait_hits_over(0, Duration::from_secs(10));
    assert_eq!(get(&c, "/", Some(&token)).status(), 200);
    drop(c);

    // With the system roots the certificate is not trusted: no request is completed, no keys.
    let c = Conduit::start(&yaml);
    assert!(
        c.wait_log("JWKS fetch failed", Duration::from_secs(10)),
        "{}",
        c.stderr()
    );
    assert_401(get(&c, "/", Some(&token)), "unknown signing key");
    assert_eq!(up.count(), 1);
    assert_eq!(
        jwks.hits(),
        1,
        "only the verified connection got the document"
    );
}
