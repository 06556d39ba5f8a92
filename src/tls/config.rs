//! The rustls server configuration of a TLS port: protocol versions and cipher suites enforced
//! by the handshake itself, optional or required client certificates, ALPN, and the SNI resolver.

use std::sync::Arc;

use pingora::listeners::tls::Acceptor;
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::certs::read_certs;
use super::resolver::SniResolver;

/// Sessions kept for session-id resumption.
const SESSION_CACHE: usize = 16_384;

/// The process's ticket issuer (rotating its key every few hours), shared by every acceptor.
fn ticketer() -> Option<Arc<dyn rustls::server::ProducesTickets>> {
    static TICKETER: std::sync::OnceLock<Option<Arc<dyn rustls::server::ProducesTickets>>> =
        std::sync::OnceLock::new();
    TICKETER
        .get_or_init(|| rustls::crypto::ring::Ticketer::new().ok())
        .clone()
}

/// Handshake policy of a port; every site on a TLS port must ask for the same one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    /// `"1.2"`, `"1.3"`; empty = both.
    pub versions: Vec<String>,
    /// IANA cipher-suite names; empty = the provider's defaults.
    pub ciphers: Vec<String>,
    /// Client CA file and whether a certificate is optional.
    pub client_auth: Option<(String, bool)>,
    /// Offer HTTP/2 by ALPN.
    pub h2: bool,
}

/// Cipher suites this build supports, by IANA name.
pub fn known_ciphers() -> Vec<&'static str> {
    rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect()
}

/// The accepting side of one TLS port.
pub struct PortTls {
    pub acceptor: Acceptor,
    pub policy: TlsPolicy,
}

impl std::fmt::Debug for PortTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortTls")
            .field("policy", &self.policy)
            .finish()
    }
}

impl PortTls {
    /// Builds the port's acceptor; errors say which setting is wrong.
    pub fn build(policy: &TlsPolicy, resolver: SniResolver) -> Result<PortTls, String> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !policy.ciphers.is_empty() {
            provider.cipher_suites.retain(|s| {
                s.suite()
                    .as_str()
                    .is_some_and(|n| policy.ciphers.iter().any(|c| c == n))
            });
        }
        let versions: Vec<&'static SupportedProtocolVersion> = if policy.versions.is_empty() {
            vec![&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            policy
                .versions
                .iter()
                .filter_map(|v| match v.as_str() {
                    "1.3" => Some(&rustls::version::TLS13),
                    "1.2" => Some(&rustls::version::TLS12),
                    _ => None,
                })
                .collect()
        };
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("versions and ciphers leave no usable cipher suite: {e}"))?;
        let builder = match &policy.client_auth {
            None => builder.with_no_client_auth(),
            Some((ca, optional)) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("`{ca}`: not a usable CA certificate: {e}"))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if *optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("`{ca}`: client verifier: {e}"))?,
                )
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        // Stateless resumption with one process-wide, self-rotating ticket key, so resumed
        // sessions survive reloads and need no server-side cache; the cache stays for clients
        // that prefer session ids.
        if let Some(ticketer) = ticketer() {
            config.ticketer = ticketer;
        }
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.alpn_protocols = if policy.h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        crate::ext::acme_hooks::add_alpn(&mut config.alpn_protocols);
        Ok(PortTls {
            acceptor: Acceptor::from_server_config(Arc::new(config)),
            policy: policy.clone(),
        })
    }
}

/// Checks that a cipher list leaves a suite for each allowed version.
pub fn check_policy(versions: &[String], ciphers: &[String]) -> Result<(), String> {
    if ciphers.is_empty() {
        return Ok(());
    }
    let provider: CryptoProvider = rustls::crypto::ring::default_provider();
    let want13 = versions.is_empty() || versions.iter().any(|v| v == "1.3");
    let want12 = versions.is_empty() || versions.iter().any(|v| v == "1.2");
    let chosen: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| {
            s.suite()
                .as_str()
                .is_some_and(|n| ciphers.iter().any(|c| c == n))
        })
        .collect();
    let has = |v: &'static SupportedProtocolVersion| chosen.iter().any(|s| s.version() == v);
    for (wanted, version, name) in [
        (want13, &rustls::version::TLS13, "1.3"),
        (want12, &rustls::version::TLS12, "1.2"),
    ] {
        if wanted && !has(version) {
            return Err(format!(
                "no allowed cipher suite for TLS {name}: add one, or leave {name} out of `versions`"
            ));
        }
    }
    Ok(())
}
