//! `conduit probe` against real upstreams on loopback port 0: the table, the exit codes, the
//! health-check path it requests, unreachable targets and `--json`; `https://` targets against
//! a TLS upstream written here with a certificate from a CA generated in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{dead_port, run_cli, Upstream};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Writes `config` as `conduit.yaml` in a new temporary directory.
fn with_config(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("conduit.yaml"), config).unwrap();
    dir
}

/// The table row of `url` (the first line that starts with it).
fn row<'a>(out: &'a str, url: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{url} ")))
        .unwrap_or_else(|| panic!("no row for {url} in:\n{out}"))
}

#[test]
fn all_reachable_prints_the_table_and_exits_0() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let dir = with_config(&format!(
        "sites:\n  - port: 18081\n    proxy:\n      /: {a}\n      /api:\n        targets: [\"{b}\"]\n        healthCheck: {{path: /status/204}}\n",
        a = a.url(),
        b = b.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for col in ["URL", "WHERE", "STATUS", "LATENCY"] {
        assert!(lines[0].contains(col), "{out}");
    }
    let status_col = lines[0].find("STATUS").unwrap();

    let ra = row(&out, &a.url());
    assert!(ra.contains("sites[0].proxy./ "), "{ra}");
    assert_eq!(
        ra.find("200"),
        Some(status_col),
        "columns not aligned:\n{out}"
    );
    assert!(ra.trim_end().ends_with(" ms"), "{ra}");

    let rb = row(&out, &b.url());
    assert!(rb.contains("sites[0].proxy./api"), "{rb}");
    assert_eq!(
        rb.find("204"),
        Some(status_col),
        "columns not aligned:\n{out}"
    );
    assert_eq!(lines[3], "2 targets, 0 unreachable");

    // The request the upstreams saw: the health-check path, Host, Connection and User-Agent.
    let seen = b.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/status/204")
    );
    assert_eq!(seen.header("host"), Some(b.addr.to_string().as_str()));
    assert_eq!(seen.header("connection"), Some("close"));
    assert_eq!(seen.header("user-agent"), Some("conduit-probe"));
    assert_eq!(a.last().target, "/");
}

#[test]
fn a_target_named_twice_is_probed_once_with_both_places() {
    let a = Upstream::start("a");
    let dir = with_config(&format!(
        "sites:\n  - port: 18082\n    proxy:\n      /one: {a}\n      /two: [\"{a}\"]\n    routes:\n      - match: {{path: /r/**}}\n        proxy: {a}\n",
        a = a.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let r = row(&out, &a.url());
    assert!(
        r.contains("sites[0].proxy./one, sites[0].proxy./two, sites[0].routes[0].proxy"),
        "{out}"
    );
    assert!(out.contains("1 target, 0 unreachable"), "{out}");
    assert_eq!(a.count(), 1);
}

#[test]
fn an_unreachable_target_exits_1_with_its_reason() {
    let a = Upstream::start("a");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let dir = with_config(&format!(
        "sites:\n  - port: 18083\n    proxy:\n      /: {a}\n      /gone:\n        targets: [\"{dead}\"]\n",
        a = a.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "1000"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(row(&out, &a.url()).contains("200"), "{out}");
    let r = row(&out, &dead);
    assert!(r.contains("sites[0].proxy./gone"), "{r}");
    assert!(r.contains("unreachable: connection refused"), "{r}");
    assert!(r.trim_end().ends_with('-'), "{r}");
    assert!(out.contains("2 targets, 1 unreachable"), "{out}");
}

#[test]
fn json_output_has_one_object_per_target() {
    let a = Upstream::start("a");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let dir = with_config(&format!(
        "sites:\n  - port: 18084\n    proxy:\n      /:\n        targets: [\"{a}\"]\n        healthCheck: {{path: /status/200}}\n        backup: [\"{dead}\"]\n",
        a = a.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe", "--json"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{out}");

    let up = &rows[0];
    assert_eq!(up["url"], a.url());
    assert_eq!(up["where"], serde_json::json!(["sites[0].proxy./"]));
    assert_eq!(up["reachable"], true);
    assert_eq!(up["status"], 200);
    assert!(up["latency_ms"].is_u64(), "{up}");
    assert!(up["error"].is_null(), "{up}");
    assert_eq!(a.last().target, "/status/200");

    let down = &rows[1];
    assert_eq!(down["url"], dead);
    assert_eq!(
        down["where"],
        serde_json::json!(["sites[0].proxy./.backup"])
    );
    assert_eq!(down["reachable"], false);
    assert!(down["status"].is_null(), "{down}");
    assert!(down["latency_ms"].is_null(), "{down}");
    assert_eq!(down["error"], "connection refused");
}

#[test]
fn a_non_http_answer_is_unreachable() {
    // A listener that answers with something other than HTTP, then closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            // Read the request first so that closing does not reset the connection.
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
        }
    });
    let dir = with_config(&format!(
        "sites:\n  - port: 18085\n    proxy: http://127.0.0.1:{port}\n"
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("unreachable: not an HTTP response"), "{out}");
}

#[test]
fn a_silent_target_times_out() {
    // Accepts the connection but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = with_config(&format!(
        "sites:\n  - port: 18086\n    proxy: http://127.0.0.1:{port}\n"
    ));
    let started = std::time::Instant::now();
    let (code, out, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "300"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("unreachable: no response within 300 ms"),
        "{out}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(listener);
}

#[test]
fn an_invalid_config_is_reported_like_validate() {
    let dir = with_config("sites:\n  - port: 18087\n    prxy: http://127.0.0.1:1\n");
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sites[0].prxy: unknown field")),
        "{out}"
    );
    assert!(err.contains("error(s)"), "{err}");
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let dir = with_config("port: 18088\nproxy: http://127.0.0.1:1\n");
    let (code, _, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--timeout-ms"), "{err}");
    let (code, _, err) = run_cli(dir.path(), &["probe", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Usage:"), "{err}");
}

/// A CA made for one test, and a server certificate it signed for `localhost` and
/// `upstream.test` (no IP address).
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
            .push(DnType::CommonName, "Conduit Probe Test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "upstream.test".to_string()])
                .unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            leaf: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        };
        fs::write(pki.ca_path(), ca_cert.pem()).unwrap();
        pki
    }

    /// The CA's PEM file, absolute (the probe runs in the config's directory).
    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn ca(&self) -> String {
        self.ca_path().to_str().unwrap().to_string()
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// What a TLS upstream saw: one entry per handshake (the SNI) and per request.
#[derive(Default)]
struct Seen {
    snis: Mutex<Vec<Option<String>>>,
    /// `(request target, Host, User-Agent, Connection)`.
    requests: Mutex<Vec<(String, String, String, String)>>,
}

/// An HTTP/1.1-over-TLS upstream on its own runtime, listening on the first address
/// `localhost` resolves to (where `https://localhost:port` leads). `/status/N` answers `N`,
/// anything else 200.
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
    _rt: tokio::runtime::Runtime,
}

impl TlsUpstream {
    fn start(pki: &Pki) -> TlsUpstream {
        let bind = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let record = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    record.snis.lock().unwrap().push(sni);
                    serve(tls, &record).await;
                });
            }
        });
        TlsUpstream {
            addr,
            seen,
            _rt: rt,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn snis(&self) -> Vec<Option<String>> {
        self.seen.snis.lock().unwrap().clone()
    }

    fn requests(&self) -> Vec<(String, String, String, String)> {
        self.seen.requests.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection (no bodies) until the client closes.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, seen: &Seen) {
    let mut io = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut host, mut agent, mut connection) = (String::new(), String::new(), String::new());
        loop {
            let mut h = String::new();
            if io.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim().to_string();
                match k.trim().to_ascii_lowercase().as_str() {
                    "host" => host = v,
                    "user-agent" => agent = v,
                    "connection" => connection = v,
                    _ => {}
                }
            }
        }
        let status: u16 = target
            .strip_prefix("/status/")
            .and_then(|n| n.parse().ok())
            .unwrap_or(200);
        seen.requests
            .lock()
            .unwrap()
            .push((target, host, agent, connection));
        let resp = format!("HTTP/1.1 {status} Probe\r\nContent-Length: 2\r\n\r\nok");
        if io.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        let _ = io.get_mut().flush().await;
    }
}

#[test]
fn https_targets_trusted_through_upstream_tls_ca_are_reachable() {
    let pki = Pki::new();
    let named = TlsUpstream::start(&pki);
    let other = TlsUpstream::start(&pki);
    // Same certificate; the second target is reached under `serverName` with the default path.
    let dir = with_config(&format!(
        "sites:\n  - port: 18089\n    proxy:\n      /a:\n        targets: [\"{a}\"]\n        healthCheck: {{path: /status/204}}\n        upstreamTls: {{ca: {ca}}}\n      /b:\n        targets: [\"{b}\"]\n        upstreamTls: {{ca: {ca}, serverName: upstream.test}}\n",
        a = named.url(),
        b = other.url(),
        ca = pki.ca(),
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "5000"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let status_col = out.lines().next().unwrap().find("STATUS").unwrap();
    let ra = row(&out, &named.url());
    assert!(ra.contains("sites[0].proxy./a"), "{ra}");
    assert_eq!(ra.find("204"), Some(status_col), "{out}");
    assert!(ra.trim_end().ends_with(" ms"), "{ra}");
    let rb = row(&out, &other.url());
    assert_eq!(rb.find("200"), Some(status_col), "{out}");
    assert!(out.contains("2 targets, 0 unreachable"), "{out}");

    // One TLS connection each, with the SNI the proxy would send, and an HTTP/1.1 request
    // whose Host is the URL's authority (not `https://...`).
    assert_eq!(named.snis(), [Some("localhost".to_string())]);
    assert_eq!(other.snis(), [Some("upstream.test".to_string())]);
    let authority = |u: &TlsUpstream| format!("localhost:{}", u.addr.port());
    assert_eq!(
        named.requests(),
        [(
            "/status/204".to_string(),
            authority(&named),
            "conduit-probe".to_string(),
            "close".to_string()
        )]
    );
    let seen = other.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.clone()),
        ("/", authority(&other))
    );
}

#[test]
fn an_https_target_that_fails_verification_is_unreachable_with_a_tls_reason() {
    let pki = Pki::new();
    let untrusted = TlsUpstream::start(&pki);
    let misnamed = TlsUpstream::start(&pki);
    let unverified = TlsUpstream::start(&pki);
    let plain = Upstream::start("plain");
    // `untrusted`: no `ca`, so the system roots, which do not hold the test CA; `misnamed`:
    // trusted, but the certificate is not for `serverName`; `unverified`: `verify: false`.
    let dir = with_config(&format!(
        "sites:\n  - port: 18090\n    proxy:\n      /: {p}\n      /x: {u}\n      /y:\n        targets: [\"{m}\"]\n        upstreamTls: {{ca: {ca}, serverName: other.test}}\n      /z:\n        targets: [\"{v}\"]\n        upstreamTls: {{verify: false}}\n",
        p = plain.url(),
        u = untrusted.url(),
        m = misnamed.url(),
        v = unverified.url(),
        ca = pki.ca(),
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "5000"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(row(&out, &plain.url()).contains("200"), "{out}");

    let r = row(&out, &untrusted.url());
    assert!(r.contains("sites[0].proxy./x"), "{r}");
    assert!(r.contains("unreachable: TLS: "), "{r}");
    assert!(r.contains("UnknownIssuer"), "{r}");
    assert!(r.trim_end().ends_with('-'), "{r}");
    // The handshake failed: no request was sent.
    assert!(untrusted.requests().is_empty());

    let r = row(&out, &misnamed.url());
    assert!(r.contains("unreachable: TLS: "), "{r}");
    assert!(r.contains("not valid for name \"other.test\""), "{r}");
    assert!(misnamed.requests().is_empty());

    assert!(row(&out, &unverified.url()).contains("200"), "{out}");
    assert_eq!(unverified.requests().len(), 1);
    assert!(out.contains("4 targets, 2 unreachable"), "{out}");

    // The same in JSON.
    let (code, out, err) = run_cli(dir.path(), &["probe", "--json", "--timeout-ms", "5000"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let down = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == untrusted.url())
        .unwrap();
    assert_eq!(down["reachable"], false, "{down}");
    assert!(
        down["error"].as_str().unwrap().starts_with("TLS: "),
        "{down}"
    );
}
