//! TLS termination through the real binary, with a CA and certificates made in each test: TLS 1.2
//! and 1.3 handshakes, ALPN (h2 end to end, http/1.1, `http2.enabled: false`), certificate choice
//! by SNI (exact, wildcard, `certificates` with and without `sni`, the default), `versions` and
//! `ciphers` enforced by the handshake, the `tls` config errors of `conduit validate`, the hot swap
//! of changed certificate files, `httpRedirectPort`, h2c prior knowledge on plain ports, and client
//! certificates (required, optional, and the headers they give the upstream).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring as ring_provider, CryptoProvider};
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
};
use tokio_rustls::rustls::{
    self, CipherSuite, ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    SignatureScheme, SupportedProtocolVersion,
};
use tokio_rustls::TlsConnector;

/// Every network step of a test client gives up after this long.
const STEP: Duration = Duration::from_secs(5);

const ECDSA_AES128: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
const ECDSA_CHACHA: &str = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A CA made for one test, and a directory for the files of the certificates it signs.
struct Pki {
    dir: tempfile::TempDir,
    ca_key: KeyPair,
    ca_cert: rcgen::Certificate,
}

/// A certificate (ECDSA P-256) and its key, in memory and as PEM files.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl Leaf {
    fn cert(&self) -> String {
        self.cert.to_str().unwrap().to_string()
    }
    fn key(&self) -> String {
        self.key.to_str().unwrap().to_string()
    }
    fn identity(&self) -> Identity {
        Identity {
            chain: vec![self.der.clone()],
            key: self.key_der.clone(),
        }
    }
}

impl Pki {
    fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca_key,
            ca_cert,
        };
        std::fs::write(pki.ca_path(), pki.ca_cert.pem()).unwrap();
        pki
    }

    /// The CA's PEM file (absolute: conduit runs in a directory of its own).
    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn ca(&self) -> String {
        self.ca_path().to_str().unwrap().to_string()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_cert.der().clone()).unwrap();
        roots
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A new certificate for `names` (first one is the CN) with `purpose`, not yet on disk.
    fn make(&self, stem: &str, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        Leaf {
            cert: self.path(&format!("{stem}.pem")),
            key: self.path(&format!("{stem}.key")),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `names`, written to `<stem>.pem` and `<stem>.key`.
    fn server(&self, stem: &str, names: &[&str]) -> Leaf {
        let leaf = self.make(stem, names, ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(&leaf.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&leaf.key, &leaf.key_pem).unwrap();
        leaf
    }

    /// A client certificate for `names` (in memory only).
    fn client(&self, stem: &str, names: &[&str]) -> Leaf {
        self.make(stem, names, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

// ---------------------------------------------------------------------------------------------
// TLS clients
// ---------------------------------------------------------------------------------------------

/// A client certificate chain and its PKCS#8 key.
#[derive(Clone)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

/// How a test client handshakes.
#[derive(Clone, Default)]
struct Opts {
    /// Verify the server against these roots and the requested name; `None`: accept anything
    /// (to look at certificates that do not match the name asked for).
    roots: Option<RootCertStore>,
    /// Only this protocol version (default: 1.3 and 1.2).
    version: Option<&'static SupportedProtocolVersion>,
    /// Only these cipher suites (IANA names).
    suites: Option<Vec<&'static str>>,
    /// ALPN protocols offered (default: none).
    alpn: Vec<&'static [u8]>,
    identity: Option<Identity>,
}

impl Opts {
    fn verify(pki: &Pki) -> Opts {
        Opts {
            roots: Some(pki.roots()),
            ..Opts::default()
        }
    }
    fn version(mut self, v: &'static SupportedProtocolVersion) -> Opts {
        self.version = Some(v);
        self
    }
    fn suites(mut self, s: &[&'static str]) -> Opts {
        self.suites = Some(s.to_vec());
        self
    }
    fn alpn(mut self, a: &[&'static [u8]]) -> Opts {
        self.alpn = a.to_vec();
        self
    }
    fn identity(mut self, id: Identity) -> Opts {
        self.identity = Some(id);
        self
    }

    fn config(&self) -> Arc<ClientConfig> {
        let mut provider = ring_provider::default_provider();
        if let Some(suites) = &self.suites {
            provider
                .cipher_suites
                .retain(|s| s.suite().as_str().is_some_and(|n| suites.contains(&n)));
            assert!(
                !provider.cipher_suites.is_empty(),
                "unknown suite in {suites:?}"
            );
        }
        let provider = Arc::new(provider);
        let versions: Vec<&'static SupportedProtocolVersion> = match self.version {
            Some(v) => vec![v],
            None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .unwrap();
        let builder = match &self.roots {
            Some(roots) => builder.with_root_certificates(roots.clone()),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider))),
        };
        let mut config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(
                    id.chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone())),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Handshakes with conduit on `port`, sending `sni` (none for `None`).
async fn connect(
    port: u16,
    sni: Option<&str>,
    opts: &Opts,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    // rustls sends no SNI for an IP address.
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    };
    tokio::time::timeout(STEP, TlsConnector::from(opts.config()).connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))
}

/// The leaf certificate the server presented.
fn served_leaf(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn alpn(s: &TlsStream<TcpStream>) -> Option<String> {
    s.get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// The leaf certificate served for `sni` (no verification).
async fn leaf_for(port: u16, sni: Option<&str>) -> CertificateDer<'static> {
    let s = connect(port, sni, &Opts::default()).await.unwrap();
    served_leaf(&s)
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 and HTTP/2 over a stream
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 keep-alive request; reads exactly one response.
async fn http1<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<Resp, String> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tokio::time::timeout(STEP, async {
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        s.flush().await.map_err(|e| format!("flush: {e}"))?;
        read_response(s).await
    })
    .await
    .map_err(|_| "no response in time".to_string())?
}

async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Result<Resp, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response head ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed in the body".into());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("connection closed in a chunk size".into());
                }
                rest.extend_from_slice(&chunk[..n]);
            };
            let size = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
            rest.drain(..line_end + 2);
            while rest.len() < size + 2 {
                let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("connection closed in a chunk".into());
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&rest[..size]);
            rest.drain(..size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        Vec::new()
    };
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Handshake and one HTTP/1.1 request on a new connection.
async fn get(
    port: u16,
    sni: Option<&str>,
    opts: &Opts,
    host: &str,
    path: &str,
) -> Result<Resp, String> {
    get_with(port, sni, opts, host, path, &[]).await
}

async fn get_with(
    port: u16,
    sni: Option<&str>,
    opts: &Opts,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<Resp, String> {
    let mut s = connect(port, sni, opts).await?;
    http1(&mut s, host, path, extra).await
}

/// One HTTP/2 request over an established stream (TLS with h2 negotiated, or plain h2c).
async fn h2_get<S>(io: S, uri: &str) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::time::timeout(STEP, async {
        let (send, conn) = h2::client::handshake(io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut send = send.ready().await.map_err(|e| format!("h2 ready: {e}"))?;
        let req = http::Request::builder().uri(uri).body(()).unwrap();
        let (resp, _) = send
            .send_request(req, true)
            .map_err(|e| format!("h2 send: {e}"))?;
        let resp = resp.await.map_err(|e| format!("h2 response: {e}"))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk: Bytes = chunk.map_err(|e| format!("h2 body: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok((status, String::from_utf8_lossy(&out).into_owned()))
    })
    .await
    .map_err(|_| "h2 request timed out".to_string())?
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

const GLOBAL: &str = "global: {bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 5}\n";

/// A TLS site on `{port}` for `host` with `cert`/`key` and `more` YAML lines under `tls`
/// (indented 6) and under the site (indented 4).
fn tls_site(host: &str, leaf: &Leaf, up: &Upstream, tls_more: &str, site_more: &str) -> String {
    format!(
        "  - port: {{port}}\n    host: \"{host}\"\n    proxy: {}\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n{tls_more}{site_more}",
        up.url(),
        leaf.cert(),
        leaf.key(),
    )
}

fn start_one(host: &str, leaf: &Leaf, up: &Upstream, tls_more: &str, site_more: &str) -> Conduit {
    Conduit::start(&format!(
        "{GLOBAL}sites:\n{}",
        tls_site(host, leaf, up, tls_more, site_more)
    ))
}

/// `conduit validate` on `yaml`: (exit code, stdout lines).
fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), yaml).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "t.yaml"]);
    (code, format!("{out}--- stderr\n{err}"))
}

fn assert_invalid(yaml: &str, prefix: &str, says: &str) {
    let (code, out) = validate(yaml);
    assert_eq!(
        code, 1,
        "expected a rejected config for {prefix}\n{yaml}\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{yaml}\n{out}"));
    assert!(line.contains(says), "{line:?} should say {says:?}");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Handshakes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_and_tls12_both_reach_the_upstream_with_forwarded_proto_https() {
    let pki = Pki::new("CA one");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one("a.test", &leaf, &up, "", "");
    for (version, expected) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let opts = Opts::verify(&pki).version(version);
        let mut s = connect(c.port, Some("a.test"), &opts).await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(expected));
        // A client's own X-Forwarded-Proto is not trusted: Conduit sets what it saw.
        let r = http1(&mut s, "a.test", "/v?x=1", &[("X-Forwarded-Proto", "http")])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{expected:?}: {r:?}");
        assert_eq!(r.body, "up");
        assert_eq!(r.header("x-upstream"), Some("up"));
        let seen = up.last();
        assert_eq!(seen.target, "/v?x=1");
        assert_eq!(
            seen.header_all("x-forwarded-proto"),
            vec!["https"],
            "{expected:?}"
        );
    }
    assert_eq!(up.count(), 2);
}

// ---------------------------------------------------------------------------------------------
// 2. ALPN
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_offers_h2_and_http2_works_end_to_end() {
    let pki = Pki::new("CA alpn");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one("a.test", &leaf, &up, "", "");
    let opts = Opts::verify(&pki).alpn(&[b"h2", b"http/1.1"]);
    let s = connect(c.port, Some("a.test"), &opts).await.unwrap();
    assert_eq!(alpn(&s).as_deref(), Some("h2"));
    let (status, body) = h2_get(s, "https://a.test/over/h2?q=2").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "up"));
    let seen = up.last();
    assert_eq!(seen.target, "/over/h2?q=2");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // Only http/1.1 offered: http/1.1 it is.
    let opts = Opts::verify(&pki).alpn(&[b"http/1.1"]);
    let mut s = connect(c.port, Some("a.test"), &opts).await.unwrap();
    assert_eq!(alpn(&s).as_deref(), Some("http/1.1"));
    let r = http1(&mut s, "a.test", "/one", &[]).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_gives_http11_when_the_site_disables_http2() {
    let pki = Pki::new("CA alpn off");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one("a.test", &leaf, &up, "", "    http2: {enabled: false}\n");
    let opts = Opts::verify(&pki).alpn(&[b"h2", b"http/1.1"]);
    let mut s = connect(c.port, Some("a.test"), &opts).await.unwrap();
    assert_eq!(alpn(&s).as_deref(), Some("http/1.1"));
    let r = http1(&mut s, "a.test", "/", &[]).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
}

// ---------------------------------------------------------------------------------------------
// 3. SNI
// ---------------------------------------------------------------------------------------------

struct SniSetup {
    pki: Pki,
    a: Leaf,
    b: Leaf,
    wild: Leaf,
    c: Leaf,
    d: Leaf,
    ups: [Upstream; 4],
    conduit: Conduit,
}

/// Four sites on one port: `a.test` (first: the default), `b.test`, `*.example.test` with a
/// wildcard certificate, and `c.test` whose `certificates` list `c` for `c.test`/`alias.test` and
/// `d` (SAN `d.test`) without `sni`.
fn sni_setup() -> SniSetup {
    let pki = Pki::new("CA sni");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test"]);
    let wild = pki.server("wild", &["*.example.test"]);
    let c = pki.server("c", &["c.test"]);
    let d = pki.server("d", &["d.test"]);
    let ups = [
        Upstream::start("up-a"),
        Upstream::start("up-b"),
        Upstream::start("up-wild"),
        Upstream::start("up-c"),
    ];
    let yaml = format!(
        "{GLOBAL}sites:\n{}{}{}  - port: {{port}}\n    host: c.test\n    proxy: {}\n    tls:\n      certificates:\n        - {{cert: \"{}\", key: \"{}\", sni: [c.test, alias.test]}}\n        - {{cert: \"{}\", key: \"{}\"}}\n",
        tls_site("a.test", &a, &ups[0], "", ""),
        tls_site("b.test", &b, &ups[1], "", ""),
        tls_site("*.example.test", &wild, &ups[2], "", ""),
        ups[3].url(),
        c.cert(),
        c.key(),
        d.cert(),
        d.key(),
    );
    let conduit = Conduit::start(&yaml);
    SniSetup {
        pki,
        a,
        b,
        wild,
        c,
        d,
        ups,
        conduit,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_serves_each_site_its_own_certificate() {
    let t = blocking(sni_setup).await;
    let port = t.conduit.port;
    let verify = Opts::verify(&t.pki);
    // Each name: the handshake verifies against the CA and the name (so the SAN covers it), and
    // the leaf is exactly that site's certificate; a request on it reaches that site's upstream.
    for (name, leaf, up) in [
        ("a.test", &t.a, Some("up-a")),
        ("b.test", &t.b, Some("up-b")),
        ("a.example.test", &t.wild, Some("up-wild")),
        ("other.example.test", &t.wild, Some("up-wild")),
        ("c.test", &t.c, Some("up-c")),
        ("d.test", &t.d, None),
    ] {
        let mut s = connect(port, Some(name), &verify)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            served_leaf(&s) == leaf.der,
            "{name}: wrong certificate served"
        );
        if let Some(up) = up {
            let r = http1(&mut s, name, "/", &[]).await.unwrap();
            assert_eq!((r.status, r.body.as_str()), (200, up), "{name}");
        }
    }
    // `sni` names a certificate explicitly, whether or not its SAN covers the name.
    assert!(leaf_for(port, Some("alias.test")).await == t.c.der);
    // A second-level name under the wildcard is not covered by it: the default.
    assert!(leaf_for(port, Some("x.a.example.test")).await == t.a.der);
    let _ = &t.ups;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_absent_sni_gets_the_first_sites_certificate() {
    let t = blocking(sni_setup).await;
    let port = t.conduit.port;
    assert!(
        leaf_for(port, Some("unknown.test")).await == t.a.der,
        "unknown SNI"
    );
    assert!(leaf_for(port, None).await == t.a.der, "no SNI");
    // Without SNI the site still comes from Host.
    let r = get(port, None, &Opts::default(), "b.test", "/x")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up-b"));
    let _ = (&t.b, &t.wild, &t.c, &t.d, &t.ups);
}

// ---------------------------------------------------------------------------------------------
// 4. Versions and ciphers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_13_only_refuses_a_tls12_client() {
    let pki = Pki::new("CA v13");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one("a.test", &leaf, &up, "      versions: [\"1.3\"]\n", "");
    let tls12 = Opts::verify(&pki).version(&rustls::version::TLS12);
    let err = connect(c.port, Some("a.test"), &tls12).await.err();
    assert!(
        err.as_deref().is_some_and(|e| e.starts_with("handshake")),
        "{err:?}"
    );
    let tls13 = Opts::verify(&pki).version(&rustls::version::TLS13);
    let mut s = connect(c.port, Some("a.test"), &tls13).await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let r = http1(&mut s, "a.test", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    // A client offering both gets 1.3.
    let s = connect(c.port, Some("a.test"), &Opts::verify(&pki))
        .await
        .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_list_is_the_only_suite_negotiated() {
    let pki = Pki::new("CA ciphers");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one(
        "a.test",
        &leaf,
        &up,
        &format!("      versions: [\"1.2\"]\n      ciphers: [{ECDSA_AES128}]\n"),
        "",
    );
    // A client offering every suite (1.3 and 1.2) ends up with exactly the listed one.
    let mut s = connect(c.port, Some("a.test"), &Opts::verify(&pki))
        .await
        .unwrap();
    let conn = s.get_ref().1;
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );
    let r = http1(&mut s, "a.test", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    // A client offering only another suite gets no handshake.
    let other = Opts::verify(&pki)
        .version(&rustls::version::TLS12)
        .suites(&[ECDSA_CHACHA]);
    let err = connect(c.port, Some("a.test"), &other).await.err();
    assert!(
        err.as_deref().is_some_and(|e| e.starts_with("handshake")),
        "{err:?}"
    );
    // A TLS 1.3-only client neither.
    let tls13 = Opts::verify(&pki).version(&rustls::version::TLS13);
    assert!(connect(c.port, Some("a.test"), &tls13).await.is_err());
    assert_eq!(up.count(), 1);
}

#[test]
fn tls_config_errors_name_their_field() {
    let pki = Pki::new("CA errors");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test"]);
    let site = |host: &str, cert: &str, key: &str, more: &str| {
        format!(
            "  - port: 8443\n    host: {host}\n    proxy: http://127.0.0.1:9\n    tls:\n      cert: \"{cert}\"\n      key: \"{key}\"\n{more}"
        )
    };
    let one = |more: &str| {
        format!(
            "{GLOBAL}sites:\n{}",
            site("a.test", &a.cert(), &a.key(), more)
        )
    };

    // The valid base config passes, so each failure below is the one change.
    let (code, out) = validate(&one(""));
    assert_eq!(code, 0, "{out}");

    assert_invalid(
        &one(&format!(
            "      ciphers: [{ECDSA_AES128}, TLS_NOPE_WITH_ROT13]\n"
        )),
        "sites[0].tls.ciphers[1]: ",
        "unknown cipher suite `TLS_NOPE_WITH_ROT13`",
    );
    assert_invalid(
        &one("      versions: [\"1.3\", \"1.1\"]\n"),
        "sites[0].tls.versions[1]: ",
        "unsupported TLS version `1.1`",
    );
    assert_invalid(
        &one(&format!(
            "      versions: [\"1.3\"]\n      ciphers: [{ECDSA_AES128}]\n"
        )),
        "sites[0].tls.ciphers: ",
        "no allowed cipher suite for TLS 1.3",
    );
    // Two sites on one port with different versions.
    assert_invalid(
        &format!(
            "{GLOBAL}sites:\n{}{}",
            site("a.test", &a.cert(), &a.key(), "      versions: [\"1.3\"]\n"),
            site("b.test", &b.cert(), &b.key(), "      versions: [\"1.2\"]\n"),
        ),
        "sites[1].tls: ",
        "must use the same TLS versions",
    );
    // A plain site on a TLS port.
    assert_invalid(
        &format!(
            "{GLOBAL}sites:\n{}  - port: 8443\n    host: b.test\n    proxy: http://127.0.0.1:9\n",
            site("a.test", &a.cert(), &a.key(), ""),
        ),
        "sites[1]: ",
        "port 8443 serves TLS sites",
    );
    // `cert` without `key`.
    assert_invalid(
        &format!(
            "{GLOBAL}sites:\n  - port: 8443\n    host: a.test\n    proxy: http://127.0.0.1:9\n    tls: {{cert: \"{}\"}}\n",
            a.cert()
        ),
        "sites[0].tls.key: ",
        "missing",
    );
    // A key of another certificate.
    assert_invalid(
        &format!(
            "{GLOBAL}sites:\n{}",
            site("a.test", &a.cert(), &b.key(), "")
        ),
        "sites[0].tls.cert: ",
        "does not match",
    );
    // Files that cannot be read, for `cert` and in `certificates`.
    let missing = pki.path("missing.pem");
    let missing = missing.to_str().unwrap();
    assert_invalid(
        &format!("{GLOBAL}sites:\n{}", site("a.test", missing, &a.key(), "")),
        "sites[0].tls.cert: ",
        "cannot read",
    );
    assert_invalid(
        &one(&format!(
            "      certificates:\n        - {{cert: \"{missing}\", key: \"{}\"}}\n",
            b.key()
        )),
        "sites[0].tls.certificates[0].cert: ",
        "cannot read",
    );
    // A file that is not PEM.
    let junk = pki.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    assert_invalid(
        &format!(
            "{GLOBAL}sites:\n{}",
            site("a.test", junk.to_str().unwrap(), &a.key(), "")
        ),
        "sites[0].tls.cert: ",
        "no PEM certificate",
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Certificate hot swap
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_certificate_files_are_served_to_new_connections() {
    let pki = Pki::new("CA swap");
    let a = pki.server("site", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one("a.test", &a, &up, "", "");
    let verify = Opts::verify(&pki);

    // An open keep-alive connection with certificate A.
    let mut old = connect(c.port, Some("a.test"), &verify).await.unwrap();
    assert!(served_leaf(&old) == a.der);
    let r = http1(&mut old, "a.test", "/first", &[]).await.unwrap();
    assert_eq!(r.status, 200);

    // Certificate B over the same files: key first, then the certificate.
    let b = pki.make("unused", &["a.test"], ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(&a.key, &b.key_pem).unwrap();
    std::fs::write(&a.cert, &b.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let s = connect(c.port, Some("a.test"), &verify).await.unwrap();
        if served_leaf(&s) == b.der {
            break;
        }
        assert!(served_leaf(&s) == a.der, "neither A nor B served");
        assert!(
            Instant::now() < deadline,
            "new connections still get certificate A\n{}",
            c.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old connection keeps working.
    let r = http1(&mut old, "a.test", "/second", &[]).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
    assert_eq!(up.last().target, "/second");

    // A broken certificate file: the reload is refused, B keeps serving.
    let rejected = c.stderr().matches("reload rejected").count();
    std::fs::write(
        &a.cert,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while c.stderr().matches("reload rejected").count() == rejected {
        assert!(
            Instant::now() < deadline,
            "no rejected reload\n{}",
            c.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The error lines follow the one that says so.
    let log = c.stderr();
    let rejection = &log[log.rfind("reload rejected").unwrap()..];
    assert!(
        rejection.contains("sites[0].tls.cert: "),
        "the rejection names the field: {rejection}"
    );
    for _ in 0..3 {
        let mut s = connect(c.port, Some("a.test"), &verify).await.unwrap();
        assert!(
            served_leaf(&s) == b.der,
            "a broken file replaced the served certificate"
        );
        let r = http1(&mut s, "a.test", "/third", &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
}

/// Waits until new connections for `a.test` get `want`; false after `within`.
async fn serves_within(port: u16, want: &CertificateDer<'static>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if leaf_for(port, Some("a.test")).await == *want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn start_at(cert: &Path, key: &Path, up: &Upstream) -> Conduit {
    Conduit::start(&format!(
        "{GLOBAL}sites:\n  - port: {{port}}\n    host: a.test\n    proxy: {}\n    tls: {{cert: \"{}\", key: \"{}\"}}\n",
        up.url(),
        cert.display(),
        key.display()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_replaced_by_rename_is_served() {
    let pki = Pki::new("CA rename");
    let a = pki.server("site", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_at(&a.cert, &a.key, &up);
    assert!(leaf_for(c.port, Some("a.test")).await == a.der);
    // Atomic replacement: write beside, rename over.
    let b = pki.make("b", &["a.test"], ExtendedKeyUsagePurpose::ServerAuth);
    for (text, to) in [(&b.key_pem, &a.key), (&b.cert_pem, &a.cert)] {
        let tmp = pki.path("incoming.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    assert!(
        serves_within(c.port, &b.der, Duration::from_secs(8)).await,
        "the renamed-in certificate is not served\n{}",
        c.stderr()
    );
}

/// certbot's layout: `live/cert.pem` is a symlink into `archive/`, retargeted at each renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_renewed_by_retargeting_a_symlink_is_served() {
    use std::os::unix::fs::symlink;
    let pki = Pki::new("CA certbot");
    let up = Upstream::start("up");
    let live = pki.path("live");
    let archive = pki.path("archive");
    std::fs::create_dir(&live).unwrap();
    std::fs::create_dir(&archive).unwrap();
    let renew = |n: usize, leaf: &Leaf| {
        for (link, file, text) in [
            ("privkey.pem", format!("privkey{n}.pem"), &leaf.key_pem),
            ("cert.pem", format!("cert{n}.pem"), &leaf.cert_pem),
        ] {
            std::fs::write(archive.join(&file), text).unwrap();
            let tmp = live.join("link.tmp");
            symlink(archive.join(&file), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(link)).unwrap();
        }
    };
    let first = pki.make("l0", &["a.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let second = pki.make("l1", &["a.test"], ExtendedKeyUsagePurpose::ServerAuth);
    renew(0, &first);
    let c = start_at(&live.join("cert.pem"), &live.join("privkey.pem"), &up);
    assert!(leaf_for(c.port, Some("a.test")).await == first.der);
    renew(1, &second);
    assert!(
        serves_within(c.port, &second.der, Duration::from_secs(5)).await,
        "the renewed certificate is not served\n{}",
        c.stderr()
    );
}

/// A Kubernetes secret volume: `tls.crt` → `..data/tls.crt`, `..data` → a timestamped directory
/// that each update replaces (and the old one is removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_updated_twice_is_served_each_time() {
    use std::os::unix::fs::symlink;
    let pki = Pki::new("CA secret");
    let up = Upstream::start("up");
    let vol = pki.path("secret");
    std::fs::create_dir(&vol).unwrap();
    let update = |n: usize, leaf: &Leaf| {
        let dir = vol.join(format!("..v{n}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
        std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
        symlink(format!("..v{n}"), vol.join("..data_tmp")).unwrap();
        std::fs::rename(vol.join("..data_tmp"), vol.join("..data")).unwrap();
        if n == 0 {
            symlink("..data/tls.crt", vol.join("tls.crt")).unwrap();
            symlink("..data/tls.key", vol.join("tls.key")).unwrap();
        } else {
            std::fs::remove_dir_all(vol.join(format!("..v{}", n - 1))).unwrap();
        }
    };
    let leaves: Vec<Leaf> = (0..3)
        .map(|n| {
            pki.make(
                &format!("l{n}"),
                &["a.test"],
                ExtendedKeyUsagePurpose::ServerAuth,
            )
        })
        .collect();
    update(0, &leaves[0]);
    let c = start_at(&vol.join("tls.crt"), &vol.join("tls.key"), &up);
    assert!(leaf_for(c.port, Some("a.test")).await == leaves[0].der);
    for (n, leaf) in leaves.iter().enumerate().skip(1) {
        update(n, leaf);
        assert!(
            serves_within(c.port, &leaf.der, Duration::from_secs(4)).await,
            "update {n} is not served\n{}",
            c.stderr()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. httpRedirectPort
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirect_port_answers_301_to_https() {
    let pki = Pki::new("CA redirect");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let redirect = free_port();
    let c = start_one(
        "a.test",
        &leaf,
        &up,
        &format!("      httpRedirectPort: {redirect}\n"),
        "",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", redirect)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on the redirect port"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let port = c.port;
    for (host, target, location) in [
        (
            "a.test",
            "/some/path?x=1&y=two",
            format!("https://a.test:{port}/some/path?x=1&y=two"),
        ),
        // The port of Host is the plain one: the redirect names the TLS port.
        (
            &format!("a.test:{redirect}"),
            "/p?q",
            format!("https://a.test:{port}/p?q"),
        ),
        ("a.test", "/", format!("https://a.test:{port}/")),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = blocking(move || raw(redirect, req.as_bytes(), Duration::from_secs(5))).await;
        assert_eq!(raw_status(&answer), 301, "{answer}");
        let got = answer
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no Location in {answer}"));
        assert_eq!(got, location);
    }
    // A client that is slow to send its request (any real client over a network) is answered
    // too: the redirect port has the normal request-head deadline.
    let answer = blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", redirect)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(b"GET /late HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await;
    assert_eq!(raw_status(&answer), 301, "{answer}");
    assert_eq!(up.count(), 0, "a redirect reached the upstream");
    // The TLS port itself serves.
    let r = get(port, Some("a.test"), &Opts::verify(&pki), "a.test", "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 7. h2c
// ---------------------------------------------------------------------------------------------

fn plain(up: &Upstream, site_more: &str) -> Conduit {
    Conduit::start(&format!(
        "{GLOBAL}sites:\n  - port: {{port}}\n    proxy: {}\n{site_more}",
        up.url()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_serves_prior_knowledge_http2_and_http11() {
    let up = Upstream::start("up");
    let c = plain(&up, "    http2: {h2c: true}\n");
    let tcp = TcpStream::connect(("127.0.0.1", c.port)).await.unwrap();
    let (status, body) = h2_get(tcp, "http://h2c.test/prior?k=v").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "up"));
    let seen = up.last();
    assert_eq!(seen.target, "/prior?k=v");
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));

    let mut tcp = TcpStream::connect(("127.0.0.1", c.port)).await.unwrap();
    let r = http1(&mut tcp, "h2c.test", "/one", &[]).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
    // Keep-alive still works on an HTTP/1.1 connection of an h2c port.
    let r = http1(&mut tcp, "h2c.test", "/two", &[]).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_h2c_a_prior_knowledge_client_gets_no_http2() {
    let up = Upstream::start("up");
    let c = plain(&up, "");
    let tcp = TcpStream::connect(("127.0.0.1", c.port)).await.unwrap();
    let got = h2_get(tcp, "http://h2c.test/prior").await;
    assert!(got.is_err(), "HTTP/2 served without h2c: {got:?}");
    // On the wire: the preface is answered with 400 (or the connection is closed).
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let port = c.port;
    let answer = blocking(move || raw(port, preface, Duration::from_secs(5))).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "unexpected answer to an h2 preface: {answer:?}"
    );
    assert_eq!(up.count(), 0);
    // HTTP/1.1 is served.
    let mut tcp = TcpStream::connect(("127.0.0.1", c.port)).await.unwrap();
    let r = http1(&mut tcp, "h2c.test", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 8. Client certificates
// ---------------------------------------------------------------------------------------------

/// Asserts that a request with `opts` is refused by a TLS alert naming `alert`: in TLS 1.3 the
/// server judges the client's certificate after the client's side of the handshake is done, so
/// the refusal may only show on the first read.
async fn refused(port: u16, opts: &Opts, alert: &str) {
    let got = get(port, Some("a.test"), opts, "a.test", "/").await;
    match got {
        Err(e) => assert!(e.contains(alert), "refused, but not with {alert}: {e}"),
        Ok(r) => panic!("accepted (expected alert {alert}): {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_required_needs_a_certificate_from_the_ca() {
    let pki = Pki::new("CA mtls");
    let other = Pki::new("CA other");
    let leaf = pki.server("a", &["a.test"]);
    let good = pki.client("good", &["client.test"]);
    let stranger = other.client("stranger", &["client.test"]);
    let up = Upstream::start("up");
    let c = start_one(
        "a.test",
        &leaf,
        &up,
        &format!("      clientAuth: {{ca: \"{}\"}}\n", pki.ca()),
        "",
    );
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let base = Opts::verify(&pki).version(version);
        refused(c.port, &base, "CertificateRequired").await;
        refused(
            c.port,
            &base.clone().identity(stranger.identity()),
            "UnknownCA",
        )
        .await;
        let r = get(
            c.port,
            Some("a.test"),
            &base.clone().identity(good.identity()),
            "a.test",
            "/ok",
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "up"), "{version:?}");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_optional_accepts_no_certificate_and_a_valid_one() {
    let pki = Pki::new("CA mtls optional");
    let other = Pki::new("CA other");
    let leaf = pki.server("a", &["a.test"]);
    let good = pki.client("good", &["client.test"]);
    let stranger = other.client("stranger", &["client.test"]);
    let up = Upstream::start("up");
    let c = start_one(
        "a.test",
        &leaf,
        &up,
        &format!(
            "      clientAuth: {{ca: \"{}\", optional: true}}\n",
            pki.ca()
        ),
        "",
    );
    let base = Opts::verify(&pki);
    let r = get(c.port, Some("a.test"), &base, "a.test", "/none")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
    let r = get(
        c.port,
        Some("a.test"),
        &base.clone().identity(good.identity()),
        "a.test",
        "/good",
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "up"));
    // A presented certificate must still be valid.
    refused(
        c.port,
        &base.clone().identity(stranger.identity()),
        "UnknownCA",
    )
    .await;
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_headers_reach_the_upstream_and_forged_ones_are_stripped() {
    let pki = Pki::new("CA mtls headers");
    let leaf = pki.server("a", &["a.test"]);
    let good = pki.client("good", &["client-one.test"]);
    let up = Upstream::start("up");
    let c = start_one(
        "a.test",
        &leaf,
        &up,
        &format!(
            "      clientAuth: {{ca: \"{}\", optional: true}}\n",
            pki.ca()
        ),
        "",
    );
    let forged = [
        ("X-Client-Cert-Subject", "CN=forged"),
        ("X-Client-Cert-San", "DNS:forged.test"),
        ("X-Client-Cert-Fingerprint", "00"),
    ];
    let fingerprint: String = ring::digest::digest(&ring::digest::SHA256, good.der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = Opts::verify(&pki);

    // With a certificate: the real values, once each, over HTTP/1.1 ...
    let r = get_with(
        c.port,
        Some("a.test"),
        &base.clone().identity(good.identity()),
        "a.test",
        "/h1",
        &forged,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let check = |seen: &Seen, how: &str| {
        let subject = seen.header_all("x-client-cert-subject");
        assert_eq!(subject.len(), 1, "{how}: {subject:?}");
        assert!(
            subject[0].contains("CN=client-one.test"),
            "{how}: {subject:?}"
        );
        assert_eq!(
            seen.header_all("x-client-cert-san"),
            vec!["DNS:client-one.test"],
            "{how}"
        );
        assert_eq!(
            seen.header_all("x-client-cert-fingerprint"),
            vec![fingerprint.as_str()],
            "{how}"
        );
    };
    check(&up.last(), "HTTP/1.1");

    // ... and over HTTP/2.
    let s = connect(
        c.port,
        Some("a.test"),
        &base.clone().identity(good.identity()).alpn(&[b"h2"]),
    )
    .await
    .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some("h2"));
    let (status, _) = h2_get(s, "https://a.test/h2").await.unwrap();
    assert_eq!(status, 200);
    let seen = up.last();
    assert_eq!(seen.target, "/h2");
    check(&seen, "HTTP/2");

    // Without a certificate: the client's copies are removed.
    let r = get_with(c.port, Some("a.test"), &base, "a.test", "/none", &forged)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.target, "/none");
    for (name, _) in forged {
        assert!(
            seen.header(name).is_none(),
            "{name} passed through: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_client_cert_headers_are_stripped_without_client_auth() {
    let pki = Pki::new("CA no mtls");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let forged = [
        ("X-Client-Cert-Subject", "CN=forged"),
        ("X-Client-Cert-San", "DNS:forged.test"),
        ("X-Client-Cert-Fingerprint", "00"),
    ];
    // A TLS site without clientAuth ...
    let tls = start_one("a.test", &leaf, &up, "", "");
    let r = get_with(
        tls.port,
        Some("a.test"),
        &Opts::verify(&pki),
        "a.test",
        "/tls",
        &forged,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // ... and a plain site.
    let plain = plain(&up, "");
    let mut tcp = TcpStream::connect(("127.0.0.1", plain.port)).await.unwrap();
    let r = http1(&mut tcp, "a.test", "/plain", &forged).await.unwrap();
    assert_eq!(r.status, 200);
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        for (name, _) in forged {
            assert!(
                s.header(name).is_none(),
                "{name} passed through on {}: {s:?}",
                s.target
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. securityHeaders: HSTS on TLS sites
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn security_headers_send_hsts_on_tls_sites() {
    let pki = Pki::new("CA hsts");
    let leaf = pki.server("a", &["a.test"]);
    let up = Upstream::start("up");
    let c = start_one(
        "a.test",
        &leaf,
        &up,
        "",
        "    securityHeaders:\n      hsts: {maxAgeSecs: 63072000, includeSubdomains: true}\n",
    );
    let r = get(c.port, Some("a.test"), &Opts::verify(&pki), "a.test", "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(
        r.header("referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    // HSTS needs TLS: validate refuses it on a plain site.
    let (code, out) = validate(&format!(
        "{GLOBAL}sites:\n  - port: 8080\n    proxy: {}\n    securityHeaders:\n      hsts: {{maxAgeSecs: 10}}\n",
        up.url()
    ));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sites[0].securityHeaders.hsts"), "{out}");
}
