//! `https://` targets and HTTP/2 to upstreams, through the real binary: a TLS upstream written
//! here (HTTP/1.1, and h2 when offered by ALPN) with certificates made by a CA generated in the
//! test. Verification against `upstreamTls.ca`, the system roots, `verify: false` and
//! `serverName`; a failed verification is a 502; `http2: true` negotiates h2 (or h2c on plain
//! targets). Also the validation of `upstreamTls` and `http2`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A CA made for one test and a server certificate it signed for `localhost` and
/// `upstream.test` (no IP address).
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Conduit Test CA");
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
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki {
            dir,
            ca_pem: ca_cert.pem(),
            leaf: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        };
        std::fs::write(pki.ca_path(), &pki.ca_pem).unwrap();
        pki
    }

    /// The CA's PEM file (absolute: conduit runs in a directory of its own).
    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn ca(&self) -> String {
        self.ca_path().to_str().unwrap().to_string()
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
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
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// One handshake as the upstream saw its ClientHello (recorded even when it fails later).
#[derive(Debug, Clone)]
struct Hello {
    sni: Option<String>,
    alpn_offered: Vec<String>,
}

/// One request the upstream answered.
#[derive(Debug, Clone)]
struct Hit {
    /// `HTTP/1.1` or `HTTP/2`.
    version: String,
    path: String,
    /// `Host` (HTTP/1.1) or `:authority` (h2).
    host: Option<String>,
}

#[derive(Default)]
struct Record {
    hellos: Mutex<Vec<Hello>>,
    hits: Mutex<Vec<Hit>>,
}

/// A real upstream on its own runtime: TLS with the test certificate (`tls`), or plain h2c
/// (`tls` = None). It answers every request `200` with body `name`.
struct TlsUpstream {
    addr: SocketAddr,
    record: Arc<Record>,
    _rt: tokio::runtime::Runtime,
}

impl TlsUpstream {
    /// Listens on the first address `host` resolves to (so a target `https://host:port` that
    /// Conduit resolves the same way reaches it).
    fn start(host: &str, tls: Option<Arc<ServerConfig>>, name: &str) -> TlsUpstream {
        let bind = (host, 0).to_socket_addrs().unwrap().next().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Record::default());
        let (rec, name) = (record.clone(), name.to_string());
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (rec, name, tls) = (rec.clone(), name.clone(), tls.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        Some(config) => serve_tls(tcp, config, rec, name).await,
                        None => serve_h2(tcp, rec, name).await,
                    }
                });
            }
        });
        TlsUpstream {
            addr,
            record,
            _rt: rt,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn hellos(&self) -> Vec<Hello> {
        self.record.hellos.lock().unwrap().clone()
    }

    fn hits(&self) -> Vec<Hit> {
        self.record.hits.lock().unwrap().clone()
    }
}

async fn serve_tls(
    tcp: tokio::net::TcpStream,
    config: Arc<ServerConfig>,
    rec: Arc<Record>,
    name: String,
) {
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let Ok(start) = acceptor.await else { return };
    let hello = start.client_hello();
    rec.hellos.lock().unwrap().push(Hello {
        sni: hello.server_name().map(str::to_string),
        alpn_offered: hello
            .alpn()
            .map(|protos| {
                protos
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default(),
    });
    let Ok(stream) = start.into_stream(config).await else {
        return;
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        serve_h2(stream, rec, name).await;
    } else {
        serve_h1(stream, rec, name).await;
    }
}

/// HTTP/1.1 with keep-alive; requests carry no body (GET).
async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(stream: S, rec: Arc<Record>, name: String) {
    let mut io = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let _method = parts.next();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").to_string();
        let mut host = None;
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
                if k.trim().eq_ignore_ascii_case("host") {
                    host = Some(v.trim().to_string());
                }
            }
        }
        rec.hits.lock().unwrap().push(Hit {
            version,
            path,
            host,
        });
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n{name}",
            name.len()
        );
        if io.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        let _ = io.get_mut().flush().await;
    }
}

/// HTTP/2 (over TLS after ALPN `h2`, or h2c with prior knowledge).
async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin>(stream: S, rec: Arc<Record>, name: String) {
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        rec.hits.lock().unwrap().push(Hit {
            version: match req.version() {
                http::Version::HTTP_2 => "HTTP/2".to_string(),
                v => format!("{v:?}"),
            },
            path: req.uri().path().to_string(),
            host: req.uri().authority().map(|a| a.to_string()).or_else(|| {
                req.headers()
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            }),
        });
        let resp = http::Response::builder()
            .status(200)
            .header("x-upstream", name.as_str())
            .body(())
            .unwrap();
        if let Ok(mut send) = respond.send_response(resp, false) {
            let _ = send.send_data(bytes::Bytes::from(name.clone()), true);
        }
    }
}

fn config(route: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n{route}"
    )
}

fn get(c: &Conduit, path: &str, id: &str) -> reqwest::blocking::Response {
    client()
        .get(c.url(path))
        .header("x-request-id", id)
        .send()
        .unwrap()
}

fn assert_502(r: reqwest::blocking::Response, id: &str) {
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-request-id"], id);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], 502, "{v}");
    assert_eq!(v["request_id"], id, "{v}");
}

#[test]
fn https_target_verified_by_configured_ca_sends_sni_and_client_host() {
    let pki = Pki::new();
    let up = TlsUpstream::start(
        "localhost",
        Some(pki.server_config(&[b"http/1.1"])),
        "tls-up",
    );
    let c = Conduit::start(&config(&format!(
        "        targets: [https://localhost:{}]\n        upstreamTls: {{ca: {}}}\n",
        up.port(),
        pki.ca()
    )));
    let r = get(&c, "/hello", "tls-ok");
    assert_eq!(r.status(), 200, "{}", c.stderr());
    assert_eq!(r.headers()["x-upstream"], "tls-up");
    assert_eq!(r.text().unwrap(), "tls-up");
    let hellos = up.hellos();
    assert!(!hellos.is_empty());
    assert_eq!(hellos[0].sni.as_deref(), Some("localhost"));
    // Without `http2`, only HTTP/1.1 is offered.
    assert_eq!(hellos[0].alpn_offered, vec!["http/1.1".to_string()]);
    let hits = up.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].version, "HTTP/1.1");
    assert_eq!(hits[0].path, "/hello");
    assert_eq!(
        hits[0].host.as_deref(),
        Some(format!("127.0.0.1:{}", c.port).as_str()),
        "the upstream gets the client's Host"
    );
    // Connections are reused: more requests, (almost) no new handshakes.
    for i in 0..4 {
        assert_eq!(get(&c, &format!("/again/{i}"), "tls-ok-n").status(), 200);
    }
    assert_eq!(up.hits().len(), 5);
    assert!(up.hellos().len() < 5, "{:?}", up.hellos());
}

#[test]
fn private_ca_without_upstream_tls_is_502() {
    let pki = Pki::new();
    let up = TlsUpstream::start(
        "localhost",
        Some(pki.server_config(&[b"http/1.1"])),
        "tls-up",
    );
    let c = Conduit::start(&config(&format!(
        "        targets: [https://localhost:{}]\n",
        up.port()
    )));
    assert_502(get(&c, "/x", "untrusted"), "untrusted");
    // The handshake was tried (with SNI) and refused; no request reached the upstream.
    assert!(
        up.hellos()
            .iter()
            .any(|h| h.sni.as_deref() == Some("localhost")),
        "{:?}",
        up.hellos()
    );
    assert!(up.hits().is_empty(), "{:?}", up.hits());
    // The error is logged after the answer went out: wait for it.
    assert!(
        c.wait_log("TLSHandshakeFailure", std::time::Duration::from_secs(5)),
        "the log says why: {}",
        c.stderr()
    );
    let log = c.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("TLSHandshakeFailure"))
        .unwrap();
    assert!(line.contains("UnknownIssuer"), "{line}");
}

#[test]
fn verify_false_accepts_an_untrusted_certificate_with_a_warning() {
    let pki = Pki::new();
    let up = TlsUpstream::start("localhost", Some(pki.server_config(&[b"http/1.1"])), "lax");
    let c = Conduit::start(&config(&format!(
        "        targets: [https://localhost:{}]\n        upstreamTls: {{verify: false}}\n",
        up.port()
    )));
    let r = get(&c, "/x", "lax");
    assert_eq!(r.status(), 200, "{}", c.stderr());
    assert_eq!(r.text().unwrap(), "lax");
    let log = c.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("verify is false"))
        .unwrap_or_else(|| panic!("no warning in {log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("https://localhost:{}", up.port())),
        "names the target: {line}"
    );
    assert!(
        line.contains(&format!("route=\"*:{}|/\"", c.port)),
        "names the route: {line}"
    );
    assert_eq!(
        log.matches("verify is false").count(),
        1,
        "one warning per pool build, not per request: {log}"
    );
}

#[test]
fn server_name_not_in_the_certificate_is_502() {
    let pki = Pki::new();
    let up = TlsUpstream::start(
        "localhost",
        Some(pki.server_config(&[b"http/1.1"])),
        "tls-up",
    );
    let c = Conduit::start(&config(&format!(
        "        targets: [https://localhost:{}]\n        upstreamTls: {{ca: {}, serverName: other.test}}\n",
        up.port(),
        pki.ca()
    )));
    assert_502(get(&c, "/x", "wrong-name"), "wrong-name");
    assert!(
        up.hellos()
            .iter()
            .any(|h| h.sni.as_deref() == Some("other.test")),
        "serverName is the SNI: {:?}",
        up.hellos()
    );
    assert!(up.hits().is_empty(), "{:?}", up.hits());
}

#[test]
fn server_name_matching_a_san_works_with_an_ip_url() {
    let pki = Pki::new();
    let up = TlsUpstream::start(
        "127.0.0.1",
        Some(pki.server_config(&[b"http/1.1"])),
        "by-name",
    );
    let c = Conduit::start(&config(&format!(
        "        targets: [https://127.0.0.1:{}]\n        upstreamTls: {{ca: {}, serverName: upstream.test}}\n",
        up.port(),
        pki.ca()
    )));
    let r = get(&c, "/x", "san");
    assert_eq!(r.status(), 200, "{}", c.stderr());
    assert_eq!(r.text().unwrap(), "by-name");
    assert_eq!(up.hellos()[0].sni.as_deref(), Some("upstream.test"));
}

#[test]
fn ip_url_without_server_name_is_502_when_the_certificate_has_no_ip() {
    let pki = Pki::new();
    let up = TlsUpstream::start("127.0.0.1", Some(pki.server_config(&[b"http/1.1"])), "ip");
    let c = Conduit::start(&config(&format!(
        "        targets: [https://127.0.0.1:{}]\n        upstreamTls: {{ca: {}}}\n",
        up.port(),
        pki.ca()
    )));
    assert_502(get(&c, "/x", "no-ip-san"), "no-ip-san");
    // An IP address is not sent as SNI.
    assert!(
        up.hellos().iter().all(|h| h.sni.is_none()),
        "{:?}",
        up.hellos()
    );
}

#[test]
fn http2_true_negotiates_h2_by_alpn() {
    let pki = Pki::new();
    let up = TlsUpstream::start(
        "localhost",
        Some(pki.server_config(&[b"h2", b"http/1.1"])),
        "h2-up",
    );
    let route = |h2: bool| {
        format!(
            "        targets: [https://localhost:{}]\n        upstreamTls: {{ca: {}}}\n        http2: {h2}\n",
            up.port(),
            pki.ca()
        )
    };
    let c = Conduit::start(&config(&route(true)));
    for i in 0..3 {
        let r = get(&c, &format!("/h2/{i}"), "h2");
        assert_eq!(r.status(), 200, "{}", c.stderr());
        assert_eq!(r.text().unwrap(), "h2-up");
    }
    let hellos = up.hellos();
    assert_eq!(
        hellos[0].alpn_offered,
        vec!["h2".to_string(), "http/1.1".to_string()]
    );
    let hits = up.hits();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.version == "HTTP/2"), "{hits:?}");
    assert_eq!(
        hits[0].host.as_deref(),
        Some(format!("127.0.0.1:{}", c.port).as_str()),
        ":authority is the client's Host"
    );
    assert_eq!(hellos.len(), 1, "one h2 connection carries every request");
    drop(c);

    // The same upstream without `http2`: HTTP/1.1.
    let c = Conduit::start(&config(&route(false)));
    assert_eq!(get(&c, "/h1", "h1").status(), 200);
    let last = up.hits().last().cloned().unwrap();
    assert_eq!(
        (last.path.as_str(), last.version.as_str()),
        ("/h1", "HTTP/1.1")
    );
}

#[test]
fn http2_on_a_plain_target_is_prior_knowledge_h2c() {
    let up = TlsUpstream::start("127.0.0.1", None, "h2c-up");
    let c = Conduit::start(&config(&format!(
        "        targets: [http://127.0.0.1:{}]\n        http2: true\n",
        up.port()
    )));
    let r = get(&c, "/c", "h2c");
    assert_eq!(r.status(), 200, "{}", c.stderr());
    assert_eq!(r.text().unwrap(), "h2c-up");
    let hits = up.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].version, "HTTP/2");
}

#[test]
fn https_mirror_gets_its_copy_over_verified_tls() {
    let pki = Pki::new();
    let primary = Upstream::start("primary");
    let shadow = TlsUpstream::start(
        "localhost",
        Some(pki.server_config(&[b"http/1.1"])),
        "shadow",
    );
    let c = Conduit::start(&config(&format!(
        "        targets: [{}]\n        mirror: https://localhost:{}\n        upstreamTls: {{ca: {}}}\n",
        primary.url(),
        shadow.port(),
        pki.ca()
    )));
    let r = get(&c, "/copy", "mirror");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "primary");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while shadow.hits().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let hits = shadow.hits();
    assert_eq!(hits.len(), 1, "{}", c.stderr());
    assert_eq!(hits[0].path, "/copy");
    assert_eq!(shadow.hellos()[0].sni.as_deref(), Some("localhost"));
}

// ---- validation ----

fn validate(dir: &Path, yaml: &str) -> (i32, String) {
    std::fs::write(dir.join("t.yaml"), yaml).unwrap();
    let (code, out, err) = run_cli(dir, &["validate", "-c", "t.yaml"]);
    (code, format!("{out}{err}"))
}

#[test]
fn upstream_tls_and_http2_are_validated() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let bad_ca = dir.path().join("bad.pem");
    std::fs::write(&bad_ca, "no certificate here\n").unwrap();
    let bad_ca = bad_ca.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let yaml = format!(
        "proxy:
  /plain:
    targets: [http://127.0.0.1:9]
    upstreamTls: {{verify: false}}
  /name:
    targets: [https://127.0.0.1:9]
    upstreamTls: {{serverName: 'bad name:443'}}
  /bad-ca:
    targets: [https://127.0.0.1:9]
    upstreamTls: {{ca: {bad_ca}}}
  /missing-ca:
    targets: [https://127.0.0.1:9]
    upstreamTls: {{ca: {missing}}}
  /ws:
    targets: [http://127.0.0.1:9]
    websocket: true
    http2: true
"
    );
    let (code, out) = validate(dir.path(), &yaml);
    assert_eq!(code, 1, "{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{out}"))
            .to_string()
    };
    assert!(line("proxy./plain.upstreamTls: ").contains("https://"));
    assert!(line("proxy./name.upstreamTls.serverName: ").contains("DNS name"));
    assert!(line("proxy./bad-ca.upstreamTls.ca: ").contains(bad_ca));
    assert!(line("proxy./missing-ca.upstreamTls.ca: ").contains(missing));
    assert!(line("proxy./ws.http2: ").contains("websocket"));

    // The valid forms pass: a CA, verify off, serverName, http2 on https and on http targets,
    // a backup https target and a bare https URL.
    let yaml = format!(
        "proxy:
  /a:
    targets: [https://127.0.0.1:9]
    upstreamTls: {{ca: {}, serverName: upstream.test}}
    http2: true
  /b:
    targets: [http://127.0.0.1:9]
    backup: [https://127.0.0.1:10]
    upstreamTls: {{verify: false}}
  /c:
    targets: [http://127.0.0.1:9]
    http2: true
  /d: https://127.0.0.1:11
",
        pki.ca()
    );
    let (code, out) = validate(dir.path(), &yaml);
    assert_eq!(code, 0, "{out}");
}
