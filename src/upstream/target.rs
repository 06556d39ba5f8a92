//! Upstream targets: parsing `http://` and `https://` target URLs, resolving them, the TLS
//! options of a route's `https://` targets (`upstreamTls`: SNI, verification, a CA file loaded
//! once at compile time) and the Pingora peer built from all of that.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName};

/// Concurrent HTTP/2 streams Conduit opens on one upstream connection (`http2: true`).
pub const MAX_H2_STREAMS: usize = 100;

/// The scheme of a target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP (`http://`, default port 80).
    Http,
    /// HTTP over TLS (`https://`, default port 443).
    Https,
}

/// A parsed `http[s]://host[:port]` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub scheme: Scheme,
    /// The host as written (brackets of an IPv6 address removed): the default SNI.
    pub host: String,
    pub port: u16,
}

impl TargetUrl {
    /// Parses a target URL: `http://` or `https://`, a host, an optional port, no path.
    pub fn parse(url: &str) -> Result<TargetUrl, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(format!(
                "`{url}` is not an upstream URL: expected http://host:port or https://host:port"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{url}`: a target URL must not carry a path, query or credentials; use stripPrefix or rewrite"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("`{url}`: unterminated IPv6 address"))?;
            let host = &v6[..end];
            let port = match &v6[end + 1..] {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{url}`: bad port"))?,
                ),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}`: missing host"));
        }
        let port = match port {
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("`{url}`: port must be between 1 and 65535")),
            },
        };
        Ok(TargetUrl { scheme, host, port })
    }

    /// Whether the target is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// Resolves the target to one socket address (the first one DNS returns).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{}`: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("`{}` resolves to no address", self.host))
    }
}

/// Whether `url` names an `https://` target (it need not be valid otherwise).
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Checks an `upstreamTls.serverName`: a DNS name, sent as SNI and checked against the
/// certificate.
pub fn check_server_name(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{name}` is an IP address; serverName must be a DNS name such as api.internal"
        ));
    }
    DnsName::try_from(name).map(|_| ()).map_err(|_| {
        format!(
            "`{name}` is not a DNS name; use a name such as api.internal (no scheme, port or path)"
        )
    })
}

/// CA certificates read from a PEM file at compile time. Two bundles are equal when they hold
/// the same certificates, so a reload after the file changed builds new peers.
#[derive(Clone)]
pub struct CaBundle {
    path: String,
    der: Arc<Vec<Vec<u8>>>,
    /// The certificates as Pingora's peers carry them, built once.
    certs: Arc<CaType>,
}

impl CaBundle {
    /// Reads every certificate of the PEM file at `path`; errors name the path.
    pub fn load(path: &str) -> Result<CaBundle, String> {
        let data = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let der = CertificateDer::pem_slice_iter(&data)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`{path}` is not a PEM certificate file: {e}"))?;
        if der.is_empty() {
            return Err(format!(
                "`{path}` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            ));
        }
        // What Pingora does with each certificate when it connects: fail here, not then.
        let mut store = rustls::RootCertStore::empty();
        for (i, d) in der.iter().enumerate() {
            store.add(CertificateDer::from(d.as_slice())).map_err(|e| {
                format!("`{path}`: certificate {} is not usable as a CA: {e}", i + 1)
            })?;
        }
        // Pingora's X.509 wrapper panics on a certificate it cannot parse; keep that a config
        // error.
        let wrapped = std::panic::catch_unwind(|| {
            der.iter()
                .map(|d| WrappedX509::new(d.clone(), parse_x509))
                .collect::<Vec<_>>()
        })
        .map_err(|_| format!("`{path}`: a certificate cannot be parsed as X.509"))?;
        Ok(CaBundle {
            path: path.to_string(),
            der: Arc::new(der),
            certs: Arc::from(wrapped.into_boxed_slice()),
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn digest(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for d in self.der.iter() {
            ctx.update(&(d.len() as u64).to_be_bytes());
            ctx.update(d);
        }
        ctx.finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for CaBundle {
    // The pool registry keys pools by the spec's Debug text: the digest makes a changed file a
    // different key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("sha256", &self.digest())
            .finish()
    }
}

impl PartialEq for CaBundle {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.der == other.der
    }
}

impl Eq for CaBundle {}

impl std::hash::Hash for CaBundle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.path.hash(state);
        self.der.hash(state);
    }
}

/// How a route's `https://` targets are reached (`upstreamTls`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSpec {
    /// Verify the certificate chain and name (`verify`, default true).
    pub verify: bool,
    /// SNI and the name checked; default: the target URL's host.
    pub server_name: Option<String>,
    /// Trusted CAs instead of the system roots.
    pub ca: Option<CaBundle>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            verify: true,
            server_name: None,
            ca: None,
        }
    }
}

/// The peer of one target: TLS with SNI, verification and CA for `https://` targets; ALPN
/// `h2,http/1.1` (`http2`) or `http/1.1` over TLS, prior-knowledge h2c on plain targets with
/// `http2`. Timeouts are left to the caller. Runs at compile time; the peer is then cloned per
/// request.
pub fn build_peer(
    addr: SocketAddr,
    url: &str,
    tls: &TlsSpec,
    http2: bool,
) -> Result<HttpPeer, String> {
    let target = TargetUrl::parse(url)?;
    let mut peer = if target.is_tls() {
        let sni = tls
            .server_name
            .clone()
            .unwrap_or_else(|| target.host.clone());
        let mut peer = HttpPeer::new(addr, true, sni);
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
        peer.options.ca = tls.ca.as_ref().map(|c| c.certs.clone());
        peer.options.alpn = if http2 { ALPN::H2H1 } else { ALPN::H1 };
        peer
    } else {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.alpn = if http2 { ALPN::H2 } else { ALPN::H1 };
        peer
    };
    if http2 {
        peer.options.max_h2_streams = MAX_H2_STREAMS;
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::upstreams::peer::Peer;

    #[test]
    fn parse_targets() {
        assert_eq!(
            TargetUrl::parse("http://up:4000").unwrap(),
            TargetUrl {
                scheme: Scheme::Http,
                host: "up".into(),
                port: 4000
            }
        );
        assert_eq!(TargetUrl::parse("http://up/").unwrap().port, 80);
        assert_eq!(TargetUrl::parse("http://[::1]:81").unwrap().host, "::1");
        assert!(TargetUrl::parse("ftp://x").is_err());
        assert!(TargetUrl::parse("http://x/base").is_err());
        assert!(TargetUrl::parse("http://x:0").is_err());
        assert!(TargetUrl::parse("https://x/base").is_err());
        let t = TargetUrl::parse("https://api.internal").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            (Scheme::Https, "api.internal", 443)
        );
        assert!(t.is_tls());
        assert_eq!(TargetUrl::parse("https://[::1]:8443").unwrap().port, 8443);
    }

    #[test]
    fn server_names() {
        assert!(check_server_name("api.internal").is_ok());
        assert!(check_server_name("localhost").is_ok());
        assert!(check_server_name("").is_err());
        assert!(check_server_name("api.internal:443").is_err());
        assert!(check_server_name("https://api").is_err());
        assert!(check_server_name("127.0.0.1").is_err());
    }

    #[test]
    fn peers_by_scheme() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let p = build_peer(
            addr,
            "https://api.internal:8443",
            &TlsSpec::default(),
            false,
        )
        .unwrap();
        assert!(p.tls());
        assert_eq!(p.sni(), "api.internal");
        assert!(p.options.verify_cert && p.options.verify_hostname);
        assert_eq!(p.options.alpn, ALPN::H1);

        let tls = TlsSpec {
            verify: false,
            server_name: Some("other.internal".into()),
            ca: None,
        };
        let p = build_peer(addr, "https://127.0.0.1:8443", &tls, true).unwrap();
        assert_eq!(p.sni(), "other.internal");
        assert!(!p.options.verify_cert && !p.options.verify_hostname);
        assert_eq!(p.options.alpn, ALPN::H2H1);
        assert_eq!(p.options.max_h2_streams, MAX_H2_STREAMS);

        let p = build_peer(addr, "http://127.0.0.1:8443", &tls, true).unwrap();
        assert!(!p.tls());
        assert_eq!(p.options.alpn, ALPN::H2);
        let p = build_peer(addr, "http://127.0.0.1:8443", &tls, false).unwrap();
        assert_eq!(p.options.alpn, ALPN::H1);
        assert_eq!(p.options.max_h2_streams, 1);
    }

    #[test]
    fn ca_bundle_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let missing = missing.to_str().unwrap();
        assert!(CaBundle::load(missing).unwrap_err().contains(missing));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let empty = empty.to_str().unwrap();
        let e = CaBundle::load(empty).unwrap_err();
        assert!(e.contains(empty) && e.contains("no PEM certificate"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let junk = junk.to_str().unwrap();
        let e = CaBundle::load(junk).unwrap_err();
        assert!(e.contains(junk), "{e}");
    }
}
