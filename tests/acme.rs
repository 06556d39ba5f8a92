//! ACME through the real binary against a real `pebble` (Debian package `pebble`), with real
//! validation (`PEBBLE_VA_ALWAYS_VALID=0`): pebble resolves the test host names through a tiny
//! DNS stub answering 127.0.0.1, and its `httpPort` / `tlsPort` are the ports Conduit listens on.
//! Covered: issuance by HTTP-01 and by TLS-ALPN-01, the issued certificate served to a client
//! trusting pebble's root (from its management API), the stored files' modes, renewal at start of
//! an expiring stored certificate, and a renewal (a reload raising `renewBeforeDays`) that
//! hot-swaps the served certificate without a restart.
#![cfg(feature = "acme")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const PEBBLE: &str = "/usr/bin/pebble";
/// How long issuance may take (pebble validates at once with `PEBBLE_VA_NOSLEEP`).
const ISSUE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A DNS stub: every A question is answered 127.0.0.1, every other type with no records.
// ---------------------------------------------------------------------------------------------

struct DnsStub {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl DnsStub {
    fn start() -> DnsStub {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !done.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = dns_answer(&buf[..n]) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        DnsStub { port, stop }
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The answer to one DNS query: the question echoed, plus `127.0.0.1` for type A.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    while *query.get(i)? != 0 {
        i += 1 + usize::from(query[i]);
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let question = query.get(12..i + 5)?;
    let is_a = qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[0..2]); // id
    out.extend_from_slice(&[0x85, 0x80]); // response, authoritative, recursion desired/available
    out.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if is_a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Pebble
// ---------------------------------------------------------------------------------------------

struct Pebble {
    child: Child,
    dir: tempfile::TempDir,
    listen: u16,
    management: u16,
    _dns: DnsStub,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, issuing
    /// certificates valid for `validity` (pebble's default when `None`).
    /// `None` (the test is skipped, loudly) when pebble is not installed, unless
    /// `CONDUIT_REQUIRE_PEBBLE` is set, as `.ci/run` sets it: then a missing pebble fails.
    fn start(http_port: u16, tls_port: u16, validity: Option<Duration>) -> Option<Pebble> {
        if !Path::new(PEBBLE).exists() {
            assert!(
                std::env::var_os("CONDUIT_REQUIRE_PEBBLE").is_none(),
                "{PEBBLE} is missing: install it with `apt-get install pebble` (.ci/run does)"
            );
            eprintln!(
                "SKIPPED: {PEBBLE} is not installed (`apt-get install pebble`; .ci/run does)"
            );
            return None;
        }
        let dns = DnsStub::start();
        let dir = tempfile::tempdir().unwrap();
        // The certificate of pebble's own HTTPS API, from a CA made here (Conduit's `caRoot`).
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "pebble API CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        std::fs::write(dir.path().join("api-ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("api.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("api.key"), key.serialize_pem()).unwrap();
        let (listen, management) = (free_port(), free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("api.pem"),
            "privateKey": dir.path().join("api.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(v) = validity {
            pebble["certificateValidityPeriod"] = v.as_secs().into();
        }
        let config = dir.path().join("pebble.json");
        std::fs::write(
            &config,
            serde_json::to_vec(&serde_json::json!({ "pebble": pebble })).unwrap(),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{}", dns.port))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Pebble {
            child,
            dir,
            listen,
            management,
            _dns: dns,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(p.log().contains("ACME directory available")
            && TcpStream::connect(("127.0.0.1", listen)).is_ok())
        {
            assert!(
                p.child.try_wait().unwrap().is_none(),
                "pebble exited: {}",
                p.log()
            );
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                p.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        Some(p)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen)
    }

    /// The PEM file Conduit trusts for pebble's API (`caRoot`).
    fn api_ca(&self) -> PathBuf {
        self.dir.path().join("api-ca.pem")
    }

    /// The root pebble issues under, from its management API.
    fn issuing_root(&self) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut std::fs::read(self.api_ca()).unwrap().as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let pem = https_get(self.management, "127.0.0.1", "/roots/0", roots);
        let root = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("a PEM root from /roots/0")
            .unwrap();
        root
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// TLS clients
// ---------------------------------------------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// A TLS connection to 127.0.0.1:`port` with SNI `name`, verified against `roots`.
fn tls(
    port: u16,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap())
        .map_err(|e| format!("{e}"))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(s)
}

/// `GET path` over TLS (Connection: close); the whole answer.
fn https_get(port: u16, name: &str, path: &str, roots: RootCertStore) -> String {
    let mut s = tls(port, name, client_config(roots, &[b"http/1.1"])).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(text)
}

/// The leaf Conduit serves for `name`, if it verifies against `root` (pebble's).
fn trusted_leaf(
    port: u16,
    name: &str,
    root: &CertificateDer<'static>,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let s = tls(port, name, client_config(roots, &[b"http/1.1"]))?;
    Ok(s.conn.peer_certificates().unwrap()[0].clone().into_owned())
}

/// Waits until Conduit serves `name` a certificate from pebble that is not `not`.
fn wait_trusted(
    port: u16,
    name: &str,
    root: &CertificateDer<'static>,
    not: Option<&CertificateDer<'static>>,
    conduit: &Conduit,
    pebble: &Pebble,
) -> CertificateDer<'static> {
    let deadline = Instant::now() + ISSUE;
    let mut last = String::new();
    while Instant::now() < deadline {
        match trusted_leaf(port, name, root) {
            Ok(leaf) if Some(&leaf) != not => return leaf,
            Ok(_) => last = "still the previous certificate".into(),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no pebble certificate served for {name} ({last})\n--- conduit:\n{}\n--- pebble:\n{}",
        conduit.stderr(),
        pebble.log()
    );
}

/// The leaf of a stored PEM chain.
fn stored_leaf(path: &Path) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut std::fs::read(path).unwrap().as_slice())
        .next()
        .unwrap()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------------------------
// Conduit
// ---------------------------------------------------------------------------------------------

/// HTTP-01 listeners: the TLS site's `httpRedirectPort`, and a plain site for the same host.
#[derive(Clone, Copy)]
struct Plain {
    redirect: u16,
    site: u16,
}

impl Plain {
    fn new() -> Plain {
        Plain {
            redirect: free_port(),
            site: free_port(),
        }
    }
}

/// A site for `host` on `{port}` whose certificate comes from `pebble`. With `plain`, the site
/// redirects from `plain.redirect` (which `http-01` validation requires) and a site without
/// `tls` serves the host on `plain.site`, which is where pebble sends its HTTP-01 requests: the
/// redirect port closes a connection whose request head is not already there when it is
/// accepted (its header timeout is zero), so concurrent validation requests to it fail at
/// random — see the report of this change.
fn acme_site(
    host: &str,
    up: &Upstream,
    pebble: &Pebble,
    acme_more: &str,
    plain: Option<Plain>,
) -> String {
    let redirect = plain.map_or(String::new(), |p| {
        format!("      httpRedirectPort: {}\n", p.redirect)
    });
    let plain_site = plain.map_or(String::new(), |p| {
        format!(
            "  - host: {host}\n    port: {}\n    proxy: {}\n",
            p.site,
            up.url()
        )
    });
    format!(
        "global: {{bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 5}}
sites:
  - host: {host}
    port: {{port}}
    tls:
{redirect}      acme:
        email: ops@acme.test
        directory: {dir}
        caRoot: {ca}
{acme_more}    proxy: {up}
{plain_site}",
        dir = pebble.directory(),
        ca = pebble.api_ca().display(),
        up = up.url(),
    )
}

fn start_conduit(yaml: &str, port: u16) -> Conduit {
    let mut c = Conduit::start_on(yaml, port);
    assert!(
        c.wait_ready(Duration::from_secs(15)),
        "conduit did not start: {}",
        c.stderr()
    );
    c
}

/// Starts the binary on `c`'s directory and config; waits until it listens.
fn spawn(c: &mut Conduit) {
    let stdout = std::fs::File::create(c.dir.path().join("stdout.log")).unwrap();
    let stderr = std::fs::File::create(c.dir.path().join("stderr.log")).unwrap();
    c.child = Some(
        Command::new(bin())
            .arg("-c")
            .arg(&c.config)
            .current_dir(c.dir.path())
            .env("CONDUIT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    assert!(c.wait_ready(Duration::from_secs(15)), "{}", c.stderr());
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn http01_issues_a_trusted_certificate_stored_privately() {
    let host = "http01.acme.test";
    let (port, plain) = (free_port(), Plain::new());
    let Some(pebble) = Pebble::start(plain.site, dead_port(), None) else {
        return;
    };
    let up = Upstream::start("acme-up");
    let yaml = acme_site(
        host,
        &up,
        &pebble,
        "        challenge: http-01\n",
        Some(plain),
    );
    let conduit = start_conduit(&yaml, port);
    let root = pebble.issuing_root();

    let leaf = wait_trusted(port, host, &root, None, &conduit, &pebble);
    // The validation really came over HTTP, to Conduit's plain port.
    let log = pebble.log();
    assert!(
        log.contains(&format!(
            "http://{host}:{}/.well-known/acme-challenge/",
            plain.site
        )),
        "{log}"
    );
    assert!(!log.contains("PEBBLE_VA_ALWAYS_VALID is enabled"), "{log}");

    // The certificate served is the stored one; a client trusting pebble reaches the upstream.
    let storage = conduit.dir.path().join("acme");
    assert_eq!(leaf, stored_leaf(&storage.join(format!("{host}.crt"))));
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    assert_eq!(https_get(port, host, "/", roots), "acme-up");

    // Private storage: the directory 0700, the account, certificate and key 0600.
    assert_eq!(mode(&storage), 0o700);
    let mut files: Vec<String> = std::fs::read_dir(&storage)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("account-") && f.ends_with(".json")),
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(&storage.join(f)), 0o600, "{f}");
    }
    assert!(std::fs::read_to_string(storage.join(format!("{host}.key")))
        .unwrap()
        .contains("PRIVATE KEY"));

    // Once validated, the challenge path is no longer answered: it reaches the site.
    assert_eq!(
        client()
            .get(format!(
                "http://127.0.0.1:{}/.well-known/acme-challenge/x",
                plain.site
            ))
            .header("host", host)
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "acme-up"
    );
}

#[test]
fn tls_alpn01_issues_a_trusted_certificate_on_the_tls_port() {
    let host = "alpn.acme.test";
    let port = free_port();
    // Nothing listens on pebble's HTTP-01 port: the TLS port is the only way to validate.
    let Some(pebble) = Pebble::start(dead_port(), port, None) else {
        return;
    };
    let up = Upstream::start("alpn-up");
    let yaml = acme_site(host, &up, &pebble, "        challenge: tls-alpn-01\n", None);
    let conduit = start_conduit(&yaml, port);
    let root = pebble.issuing_root();

    let leaf = wait_trusted(port, host, &root, None, &conduit, &pebble);
    let storage = conduit.dir.path().join("acme");
    assert_eq!(leaf, stored_leaf(&storage.join(format!("{host}.crt"))));
    assert!(pebble.log().contains("Pulled a task from the Tasks queue"));
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    assert_eq!(https_get(port, host, "/", roots.clone()), "alpn-up");

    // With no challenge pending, a client offering acme-tls/1 gets the ordinary certificate.
    let s = tls(port, host, client_config(roots, &[b"acme-tls/1"])).unwrap();
    assert_eq!(s.conn.peer_certificates().unwrap()[0], leaf);
}

#[test]
fn an_expiring_stored_certificate_is_renewed_at_start() {
    let host = "expiring.acme.test";
    let (port, plain) = (free_port(), Plain::new());
    let Some(pebble) = Pebble::start(plain.site, dead_port(), None) else {
        return;
    };
    let up = Upstream::start("exp-up");
    let yaml = acme_site(host, &up, &pebble, "", Some(plain));
    // A stored certificate with 5 days left (fewer than the default 30), before the start.
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    std::fs::create_dir_all(&storage).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![host.to_string()]).unwrap();
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(86_400)).into();
    p.not_after = (now + Duration::from_secs(5 * 86_400)).into();
    let old = p.self_signed(&key).unwrap();
    std::fs::write(storage.join(format!("{host}.crt")), old.pem()).unwrap();
    std::fs::write(storage.join(format!("{host}.key")), key.serialize_pem()).unwrap();
    let config = dir.path().join("conduit.yaml");
    std::fs::write(&config, yaml.replace("{port}", &port.to_string())).unwrap();
    let mut conduit = Conduit {
        child: None,
        dir,
        config,
        port,
    };
    spawn(&mut conduit);

    let root = pebble.issuing_root();
    let leaf = wait_trusted(port, host, &root, None, &conduit, &pebble);
    assert_ne!(leaf, *old.der());
    assert!(
        conduit.wait_log("4 days left", Duration::from_secs(5)),
        "{}",
        conduit.stderr()
    );
    assert_eq!(mode(&storage.join(format!("{host}.crt"))), 0o600);
}

#[test]
fn renewal_hot_swaps_the_served_certificate_without_restart() {
    let host = "renew.acme.test";
    let (port, plain) = (free_port(), Plain::new());
    // Pebble issues for 20 days: fresh with renewBeforeDays 10, due with 30.
    let Some(pebble) = Pebble::start(
        plain.site,
        dead_port(),
        Some(Duration::from_secs(20 * 86_400)),
    ) else {
        return;
    };
    let up = Upstream::start("renew-up");
    let site = |days: u32| {
        acme_site(
            host,
            &up,
            &pebble,
            &format!("        renewBeforeDays: {days}\n"),
            Some(plain),
        )
    };
    let mut conduit = start_conduit(&site(10), port);
    let pid = conduit.child.as_ref().unwrap().id();
    let root = pebble.issuing_root();
    let first = wait_trusted(port, host, &root, None, &conduit, &pebble);
    let cert_file = conduit.dir.path().join("acme").join(format!("{host}.crt"));

    // A reload alone orders nothing while the certificate is fresh.
    conduit.signal("HUP");
    thread::sleep(Duration::from_secs(1));
    assert_eq!(stored_leaf(&cert_file), first);

    // 20 days left < 30: the reload makes the certificate due; it is renewed and swapped in.
    conduit.write_config(&site(30));
    conduit.signal("HUP");
    let second = wait_trusted(port, host, &root, Some(&first), &conduit, &pebble);
    assert_ne!(second, first);
    assert_eq!(stored_leaf(&cert_file), second);
    // Same process, still serving; and the swap did not start a renewal loop.
    assert_eq!(conduit.child.as_ref().unwrap().id(), pid);
    assert!(conduit
        .child
        .as_mut()
        .unwrap()
        .try_wait()
        .unwrap()
        .is_none());
    thread::sleep(Duration::from_secs(2));
    assert_eq!(stored_leaf(&cert_file), second);
    assert_eq!(trusted_leaf(port, host, &root).unwrap(), second);
}

#[test]
fn validate_accepts_acme_and_names_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let good = "host: a.example.com\ntls:\n  httpRedirectPort: 80\n  acme: {email: ops@example.com}\nproxy: http://127.0.0.1:1\n";
    std::fs::write(dir.path().join("good.yaml"), good).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "good.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    // `validate` creates no storage directory.
    assert!(!dir.path().join("acme").exists());

    let bad = "host: '*.example.com'\ntls:\n  acme: {email: nobody, directory: 'http://ca.example/dir'}\nproxy: http://127.0.0.1:1\n";
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "bad.yaml"]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    for want in [
        "tls.acme: needs the site's `host` to be one exact DNS name",
        "tls.acme.email:",
        "tls.acme.directory:",
        "tls.acme.challenge: http-01 is answered over plain HTTP",
    ] {
        assert!(all.contains(want), "{want} in {all}");
    }
}
