#![cfg(feature = "forward-auth")]
//! `forwardAuth` through the real binary, with a real auth service written here (plain HTTP/1.1
//! or TLS, keep-alive, on loopback port 0) that records every request it receives and answers
//! by a rule each test scripts. Covered: a 2xx lets the request through with the listed answer
//! headers replacing the client's; 401/403/302 answers reach the client with their body and
//! their Content-Type, WWW-Authenticate, Location and Set-Cookie (and nothing else) while the
//! upstream is never contacted; what the auth service receives; an unreachable, slow or broken
//! service is a 503; an oversized denial is a 502; skipPaths; a route's own forwardAuth;
//! connection reuse; an https service verified with `tls.ca`; `conduit validate` errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// What the auth service answers to one request.
#[derive(Default)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Wait this long before answering.
    delay: Duration,
    /// Bytes written instead of a response, then the connection is closed.
    raw: Option<&'static [u8]>,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Default::default()
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

type Rule = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A real auth service: records requests, counts accepted connections, answers per `rule`.
struct AuthServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl AuthServer {
    fn start(rule: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> AuthServer {
        Self::start_with(None, Arc::new(rule))
    }

    fn start_with(tls: Option<Arc<ServerConfig>>, rule: Arc<Rule>) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = AuthServer {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            accepts: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, accepts, stop) = (
            server.seen.clone(),
            server.accepts.clone(),
            server.stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accepts.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let (seen, rule, tls) = (seen.clone(), rule.clone(), tls.clone());
                thread::spawn(move || match tls {
                    None => serve(stream, &seen, &*rule),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, stream), &seen, &*rule);
                    }
                });
            }
        });
        server
    }

    /// `http://127.0.0.1:<port><path>`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("auth service saw no request")
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one connection: requests in a keep-alive loop.
fn serve<S: Read + Write>(stream: S, seen: &Mutex<Vec<Seen>>, rule: &Rule) {
    let mut io = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if io.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut request = Seen {
            method,
            target,
            headers,
            body: Vec::new(),
        };
        if let Some(n) = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
        {
            request.body = vec![0; n];
            if io.read_exact(&mut request.body).is_err() {
                return;
            }
        }
        seen.lock().unwrap().push(request.clone());
        let reply = rule(&request);
        thread::sleep(reply.delay);
        let out = io.get_mut();
        if let Some(raw) = reply.raw {
            let _ = out.write_all(raw);
            let _ = out.flush();
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if out.write_all(&bytes).is_err() || out.flush().is_err() {
            return;
        }
    }
}

/// A site with one upstream on `/` and the given `forwardAuth` (flow YAML).
fn start(up: &Upstream, forward_auth: &str) -> Conduit {
    Conduit::start(&format!("{}    forwardAuth: {forward_auth}\n", simple(up)))
}

/// Allows `Bearer good` (answering identity headers), denies everything else with a 401.
fn bearer_rule(seen: &Seen) -> Reply {
    if seen.header("authorization") == Some("Bearer good") {
        Reply::status(200)
            .header("X-User", "alice")
            .header("X-Groups", "admin")
            .header("X-Groups", "dev")
            .header("X-Not-Listed", "internal")
    } else {
        Reply::status(401)
            .header("Content-Type", "application/json")
            .header("WWW-Authenticate", "Bearer realm=\"conduit-test\"")
            .header("X-Internal", "do not leak")
            .body(r#"{"error":"login required"}"#)
    }
}

fn json(r: reqwest::blocking::Response) -> serde_json::Value {
    r.json().unwrap()
}

#[test]
fn allowed_requests_carry_the_answer_headers_and_never_the_clients_copies() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(bearer_rule);
    let c = start(
        &up,
        &format!(
            "{{url: '{}', responseHeaders: [X-User, X-Groups, X-Tenant]}}",
            auth.url("/verify")
        ),
    );
    let r = client()
        .get(c.url("/orders?id=7"))
        .header("authorization", "Bearer good")
        .header("x-user", "mallory")
        .header("x-tenant", "someone-else")
        .header("x-not-listed", "client value")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "up");
    assert_eq!(up.count(), 1);
    let seen = up.last();
    assert_eq!(seen.target, "/orders?id=7");
    assert_eq!(seen.header_all("x-user"), ["alice"]);
    assert_eq!(seen.header_all("x-groups"), ["admin", "dev"]);
    // Listed but absent from the answer: the client's copy is removed.
    assert!(seen.header("x-tenant").is_none(), "{seen:?}");
    // Not listed: neither copied from the answer nor touched on the request.
    assert_eq!(seen.header_all("x-not-listed"), ["client value"]);
    assert_eq!(seen.header("authorization"), Some("Bearer good"));
    assert_eq!(auth.count(), 1);
}

#[test]
fn a_401_reaches_the_client_with_its_body_and_challenge_and_the_upstream_sees_nothing() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(bearer_rule);
    let c = start(&up, &format!("{{url: '{}'}}", auth.url("/verify")));
    for credentials in [None, Some("Bearer bad")] {
        let mut req = client()
            .get(c.url("/orders"))
            .header("x-request-id", "deny-1");
        if let Some(v) = credentials {
            req = req.header("authorization", v);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 401);
        let h = r.headers().clone();
        assert_eq!(h["www-authenticate"], "Bearer realm=\"conduit-test\"");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-request-id"], "deny-1");
        assert!(h.get("x-internal").is_none(), "{h:?}");
        assert_eq!(r.text().unwrap(), r#"{"error":"login required"}"#);
    }
    assert_eq!(auth.count(), 2);
    assert_eq!(up.count(), 0);
}

#[test]
fn a_403_and_a_login_redirect_pass_through() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(|seen| match seen.header("x-forwarded-uri") {
        Some("/admin") => Reply::status(403)
            .header("Content-Type", "text/plain")
            .body("forbidden for you"),
        _ => Reply::status(302)
            .header("Location", "https://login.example/start?rd=%2Fapp")
            .header("Set-Cookie", "csrf=abc; Path=/; HttpOnly")
            .header("Set-Cookie", "flow=42; Path=/")
            .header("Cache-Control", "no-store"),
    });
    let c = start(&up, &format!("{{url: '{}'}}", auth.url("/verify")));
    let r = client().get(c.url("/admin")).send().unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().unwrap(), "forbidden for you");

    let r = client().get(c.url("/app")).send().unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://login.example/start?rd=%2Fapp"
    );
    let cookies: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["csrf=abc; Path=/; HttpOnly", "flow=42; Path=/"]);
    assert!(r.headers().get("cache-control").is_none());
    assert_eq!(r.text().unwrap(), "");
    assert_eq!(up.count(), 0);
}

#[test]
fn the_auth_service_sees_forwarding_headers_and_only_the_listed_request_headers() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(|_| Reply::status(204));
    let c = start(
        &up,
        &format!("{{url: '{}'}}", auth.url("/verify?scope=api")),
    );
    let r = client()
        .post(c.url("/api/items?x=1&y=%20z"))
        .header("host", "shop.example")
        .header("authorization", "Basic YTpi")
        .header("cookie", "session=s1")
        .header("x-other", "private")
        .body("payload")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let a = auth.last();
    assert_eq!(a.method, "POST");
    assert_eq!(a.target, "/verify?scope=api");
    assert_eq!(a.header("host"), Some(auth.addr.to_string().as_str()));
    assert_eq!(a.header("authorization"), Some("Basic YTpi"));
    assert_eq!(a.header("cookie"), Some("session=s1"));
    assert!(a.header("x-other").is_none(), "{a:?}");
    assert_eq!(a.header("x-forwarded-method"), Some("POST"));
    assert_eq!(a.header("x-forwarded-uri"), Some("/api/items?x=1&y=%20z"));
    assert_eq!(a.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(a.header("x-forwarded-proto"), Some("http"));
    assert_eq!(a.header("x-forwarded-host"), Some("shop.example"));
    // No body: a POST says so with Content-Length: 0.
    assert_eq!(a.header("content-length"), Some("0"));
    assert!(a.body.is_empty());
    // The upstream still gets the whole request.
    let u = up.last();
    assert_eq!(
        (u.method.as_str(), u.body.as_slice()),
        ("POST", &b"payload"[..])
    );
    assert_eq!(u.header("x-other"), Some("private"));

    // A GET carries no Content-Length.
    let r = client().get(c.url("/g")).send().unwrap();
    assert_eq!(r.status(), 200);
    let a = auth.last();
    assert_eq!(a.method, "GET");
    assert!(a.header("content-length").is_none(), "{a:?}");
    assert!(a.header("authorization").is_none());

    // `requestHeaders` replaces the default list.
    let c = start(
        &up,
        &format!(
            "{{url: '{}', requestHeaders: [X-Api-Token]}}",
            auth.url("/v")
        ),
    );
    let r = client()
        .get(c.url("/h"))
        .header("authorization", "Bearer t")
        .header("cookie", "a=b")
        .header("x-api-token", "tok")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let a = auth.last();
    assert_eq!(a.header("x-api-token"), Some("tok"));
    assert!(a.header("authorization").is_none() && a.header("cookie").is_none());
}

fn assert_refused(r: reqwest::blocking::Response, status: u16, reason: &str, request_id: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["x-request-id"], request_id);
    let v = json(r);
    assert_eq!(v["status"], status);
    assert_eq!(v["error"], reason);
    assert_eq!(v["request_id"], request_id);
}

#[test]
fn an_unreachable_auth_service_is_a_503_and_the_request_is_not_forwarded() {
    let up = Upstream::start("up");
    let c = start(
        &up,
        &format!("{{url: 'http://127.0.0.1:{}/verify'}}", dead_port()),
    );
    let r = client()
        .get(c.url("/x"))
        .header("authorization", "Bearer super-secret-token")
        .header("x-request-id", "dead-1")
        .send()
        .unwrap();
    assert_refused(r, 503, "authentication service unavailable", "dead-1");
    assert_eq!(up.count(), 0);
    assert!(
        c.wait_log("forwardAuth", Duration::from_secs(5)),
        "{}",
        c.stderr()
    );
    let logs = format!("{}{}", c.stdout(), c.stderr());
    assert!(!logs.contains("super-secret-token"), "{logs}");
}

#[test]
fn a_slow_auth_service_is_a_503_after_timeout_ms() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(|_| Reply {
        status: 200,
        delay: Duration::from_millis(3000),
        ..Default::default()
    });
    let c = start(
        &up,
        &format!("{{url: '{}', timeoutMs: 300}}", auth.url("/verify")),
    );
    let started = Instant::now();
    let r = client()
        .get(c.url("/x"))
        .header("x-request-id", "slow-1")
        .send()
        .unwrap();
    let took = started.elapsed();
    assert_refused(r, 503, "authentication service unavailable", "slow-1");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(auth.count(), 1);
    assert_eq!(up.count(), 0);
}

#[test]
fn a_broken_answer_is_a_503_and_an_oversized_denial_a_502() {
    let up = Upstream::start("up");
    let big = vec![b'x'; 100 * 1024];
    let auth = AuthServer::start(move |seen| match seen.header("x-forwarded-uri") {
        Some("/garbage") => Reply {
            raw: Some(b"this is not HTTP\r\n\r\n"),
            ..Default::default()
        },
        Some("/closed") => Reply {
            raw: Some(b""),
            ..Default::default()
        },
        Some("/big-deny") => Reply::status(401).body(big.clone()),
        Some("/big-allow") => Reply::status(200).body(big.clone()),
        _ => Reply::status(200),
    });
    let c = start(&up, &format!("{{url: '{}'}}", auth.url("/verify")));
    for path in ["/garbage", "/closed"] {
        let r = client()
            .get(c.url(path))
            .header("x-request-id", "broken")
            .send()
            .unwrap();
        assert_refused(r, 503, "authentication service unavailable", "broken");
    }
    let r = client()
        .get(c.url("/big-deny"))
        .header("x-request-id", "big")
        .send()
        .unwrap();
    assert_refused(r, 502, "authentication service answer too large", "big");
    assert_eq!(up.count(), 0);
    // The body of an allowing answer is not used: its size does not matter.
    let r = client().get(c.url("/big-allow")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
}

#[test]
fn skip_paths_bypass_the_auth_service() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(|_| Reply::status(401));
    let c = start(
        &up,
        &format!(
            "{{url: '{}', skipPaths: ['/public/**', '/health'], responseHeaders: [X-Auth-User]}}",
            auth.url("/verify")
        ),
    );
    for path in ["/public", "/public/a/b.css", "/health"] {
        let r = client()
            .get(c.url(path))
            .header("x-auth-user", "admin")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        // Nothing vouched for it: the client's copy does not reach the upstream.
        assert!(up.last().header("x-auth-user").is_none(), "{path}");
    }
    assert_eq!(auth.count(), 0);
    assert_eq!(up.count(), 3);
    for path in ["/publicity", "/health/x", "/"] {
        let r = client().get(c.url(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert_eq!(auth.count(), 3);
    assert_eq!(up.count(), 3);
}

#[test]
fn a_routes_own_forward_auth_applies_to_that_route_only() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(bearer_rule);
    let c = Conduit::start(&format!(
        "global: {{bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 5}}\nsites:\n  - port: {{port}}\n    proxy:\n      /private:\n        targets: ['{up}']\n        forwardAuth: {{url: '{auth}', responseHeaders: [X-User]}}\n      /: '{up}'\n",
        up = up.url(),
        auth = auth.url("/verify"),
    ));
    let r = client().get(c.url("/open")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(auth.count(), 0);
    let r = client().get(c.url("/private/doc")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(auth.count(), 1);
    let r = client()
        .get(c.url("/private/doc"))
        .header("authorization", "Bearer good")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-user"), Some("alice"));
    assert_eq!(auth.count(), 2);
    assert_eq!(up.count(), 2);
}

#[test]
fn sequential_requests_reuse_connections_to_the_auth_service() {
    let up = Upstream::start("up");
    let auth = AuthServer::start(|seen| match seen.header("x-forwarded-uri") {
        Some("/deny") => Reply::status(403).body("no"),
        _ => Reply::status(200).body("ok"),
    });
    let c = start(&up, &format!("{{url: '{}'}}", auth.url("/verify")));
    let http = client();
    for i in 0..12 {
        let path = if i % 3 == 2 { "/deny" } else { "/allow" };
        let r = http.get(c.url(path)).send().unwrap();
        assert_eq!(r.status(), if path == "/deny" { 403 } else { 200 });
        r.bytes().unwrap();
    }
    assert_eq!(auth.count(), 12);
    let accepts = auth.accepts();
    assert!(
        (1..=2).contains(&accepts),
        "{accepts} connections for 12 auth requests"
    );
}

/// A CA made for the test and a certificate it signed for `localhost`.
struct Pki {
    dir: tempfile::TempDir,
    leaf: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "forwardAuth test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        Pki {
            dir,
            leaf: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
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

#[test]
fn an_https_auth_service_is_verified_against_tls_ca() {
    let up = Upstream::start("up");
    let pki = Pki::new();
    let auth = AuthServer::start_with(Some(pki.server_config()), Arc::new(bearer_rule));
    let url = format!("https://127.0.0.1:{}/verify", auth.addr.port());
    let c = start(
        &up,
        &format!(
            "{{url: '{url}', responseHeaders: [X-User], tls: {{serverName: localhost, ca: '{}'}}}}",
            pki.ca_path().display()
        ),
    );
    for _ in 0..3 {
        let r = client()
            .get(c.url("/tls"))
            .header("authorization", "Bearer good")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(up.last().header("x-user"), Some("alice"));
    }
    let r = client().get(c.url("/tls")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(auth.count(), 4);
    // Pooled too: 4 auth requests, at most 2 connections (a TLS 1.3 session ticket that arrives
    // after the first request can make the pool drop that connection as no longer idle).
    let accepts = auth.accepts();
    assert!(
        (1..=2).contains(&accepts),
        "{accepts} TLS connections for 4 auth requests"
    );

    // Without the CA (system roots only) the certificate is not trusted: 503, never allowed.
    let c = start(
        &up,
        &format!("{{url: '{url}', tls: {{serverName: localhost}}}}"),
    );
    let r = client()
        .get(c.url("/tls"))
        .header("authorization", "Bearer good")
        .header("x-request-id", "untrusted")
        .send()
        .unwrap();
    assert_refused(r, 503, "authentication service unavailable", "untrusted");
    assert_eq!(auth.count(), 4);
    assert_eq!(up.count(), 3);
}

#[test]
fn validate_rejects_bad_forward_auth_configs() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    forwardAuth:\n      url: 'ftp://auth/verify'\n      requestHeaders: [Authorization, 'bad header', Content-Length]\n      responseHeaders: [X-User, X-User]\n      timeoutMs: 0\n      skipPaths: [nope]\n  - port: 8081\n    proxy:\n      /api:\n        targets: [http://127.0.0.1:9]\n        forwardAuth: {url: 'http://user:pw@auth/verify', timeoutMs: 600000, tls: {verify: false}}\n";
    std::fs::write(dir.path().join("conduit.yaml"), yaml).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1, "{out}{err}");
    for (prefix, needle) in [
        ("sites[0].forwardAuth.url: ", "not an auth service URL"),
        (
            "sites[0].forwardAuth.requestHeaders[1]: ",
            "not a valid header name",
        ),
        ("sites[0].forwardAuth.requestHeaders[2]: ", "framing"),
        ("sites[0].forwardAuth.responseHeaders[1]: ", "listed twice"),
        ("sites[0].forwardAuth.timeoutMs: ", "between 1 and 60000"),
        ("sites[0].forwardAuth.skipPaths[0]: ", "must start with `/`"),
        ("sites[1].proxy./api.forwardAuth.url: ", "credentials"),
        (
            "sites[1].proxy./api.forwardAuth.timeoutMs: ",
            "between 1 and 60000",
        ),
    ] {
        let line = out.lines().find(|l| l.starts_with(prefix));
        assert!(
            line.is_some_and(|l| l.contains(needle)),
            "{prefix} / {needle}:\n{out}"
        );
    }
    assert!(!out.contains("pw@"), "credentials echoed:\n{out}");
    assert!(!out.contains("not supported yet"), "{out}");

    std::fs::write(
        dir.path().join("conduit.yaml"),
        "sites:\n  - port: 8080\n    proxy: http://127.0.0.1:9\n    forwardAuth: {url: 'http://127.0.0.1:4180/oauth2/auth', requestHeaders: [Cookie], responseHeaders: [X-Auth-Request-User], timeoutMs: 2000, skipPaths: ['/oauth2/**']}\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
}
