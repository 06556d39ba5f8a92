//! Active health checks of `https://` targets, through the real binary: the checks use the
//! target's TLS settings (`upstreamTls.ca`), so a target that answers its check with 500 is
//! taken out for its status, and the healthy one takes all traffic. The TLS upstreams are
//! written here (tokio-rustls and a minimal HTTP/1.1 responder) with a certificate from a CA
//! generated in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, Conduit};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A CA made for the test and a server certificate it signed for `localhost`.
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
            .push(DnType::CommonName, "Conduit Health Test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            leaf: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        };
        std::fs::write(pki.ca_path(), ca_cert.pem()).unwrap();
        pki
    }

    /// The CA's PEM file, absolute (conduit runs in a directory of its own).
    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
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

/// Counters of one TLS upstream.
#[derive(Default)]
struct Counts {
    handshakes: AtomicUsize,
    checks: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/1.1-over-TLS upstream on its own runtime, on the first address `localhost` resolves
/// to. `GET /health` answers `health`; any other request 200 with the upstream's name as body.
struct TlsUpstream {
    addr: SocketAddr,
    counts: Arc<Counts>,
    _rt: tokio::runtime::Runtime,
}

impl TlsUpstream {
    fn start(pki: &Pki, name: &str, health: u16) -> TlsUpstream {
        let bind = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let (c, name) = (counts.clone(), name.to_string());
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, c, name) = (acceptor.clone(), c.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    c.handshakes.fetch_add(1, Ordering::SeqCst);
                    serve(tls, &c, &name, health).await;
                });
            }
        });
        TlsUpstream {
            addr,
            counts,
            _rt: rt,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn checks(&self) -> usize {
        self.counts.checks.load(Ordering::SeqCst)
    }
}

/// Answers the requests of one connection (GETs, no bodies) until the client closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, c: &Counts, name: &str, health: u16) {
    let mut io = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut h = String::new();
            if io.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            if h.trim_end().is_empty() {
                break;
            }
        }
        let status = if target == "/health" {
            c.checks.fetch_add(1, Ordering::SeqCst);
            health
        } else {
            c.requests.fetch_add(1, Ordering::SeqCst);
            200
        };
        let resp = format!(
            "HTTP/1.1 {status} Test\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n{name}",
            name.len()
        );
        if io.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        let _ = io.get_mut().flush().await;
    }
}

/// The bodies (upstream names) of `n` requests, counted by name.
fn tally(c: &Conduit, n: usize) -> std::collections::HashMap<String, usize> {
    let http = client();
    let mut out = std::collections::HashMap::new();
    for i in 0..n {
        let r = http.get(c.url(&format!("/req/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200, "{}", c.stderr());
        *out.entry(r.text().unwrap()).or_insert(0) += 1;
    }
    out
}

#[test]
fn a_failing_https_target_is_taken_out_for_its_status() {
    let pki = Pki::new();
    let good = TlsUpstream::start(&pki, "good", 200);
    let bad = TlsUpstream::start(&pki, "bad", 500);
    let c = Conduit::start(&format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    proxy:\n      /:\n        targets: [\"{g}\", \"{b}\"]\n        upstreamTls: {{ca: {ca}}}\n        healthCheck: {{path: /health, intervalSecs: 1, unhealthyThreshold: 1}}\n",
        g = good.url(),
        b = bad.url(),
        ca = pki.ca_path().display(),
    ));
    let started = Instant::now();
    // The first check of each target runs at once; one failure takes `bad` out.
    assert!(
        c.wait_log(
            "upstream marked unhealthy by active health checks",
            Duration::from_secs(5)
        ),
        "{}",
        c.stderr()
    );
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));

    let after = tally(&c, 30);
    assert_eq!(after.get("good"), Some(&30), "{after:?}\n{}", c.stderr());
    assert_eq!(bad.counts.requests.load(Ordering::SeqCst), 0);

    // Both targets were checked over TLS (a completed handshake, then `GET /health`), and the
    // healthy one stays in: its checks passed.
    assert!(good.checks() >= 1 && bad.checks() >= 1);
    assert!(good.counts.handshakes.load(Ordering::SeqCst) >= 1);
    let log = c.stderr();
    let down: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("marked unhealthy"))
        .collect();
    assert_eq!(down.len(), 1, "{log}");
    assert!(down[0].contains(&bad.url()), "{}", down[0]);
    assert!(!down[0].contains(&good.url()), "{}", down[0]);
    // Taken out for its status, not for the handshake.
    assert!(down[0].contains("status 500"), "{}", down[0]);
    assert!(!down[0].to_ascii_lowercase().contains("tls"), "{}", down[0]);
}
