//! Choosing the certificate of a handshake by SNI: exact names, then wildcards, then certificates
//! whose own names cover the requested one, then the port's default.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::covers;

/// The certificates of one TLS port.
#[derive(Debug, Default)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` → the certificate for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Certificates listed without `sni`: chosen when their own names cover the request.
    by_names: Vec<Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Serves `ck` for `name`: `example.com`, `*.example.com`, or `*` (the default). The first
    /// certificate given for a name keeps it.
    pub fn add(&mut self, name: &str, ck: &Arc<CertifiedKey>) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name == "*" {
            self.default.get_or_insert_with(|| ck.clone());
        } else if let Some(suffix) = name.strip_prefix("*.") {
            self.wildcard
                .entry(suffix.to_string())
                .or_insert_with(|| ck.clone());
        } else {
            self.exact.entry(name).or_insert_with(|| ck.clone());
        }
    }

    /// Serves `ck` for whatever names its certificate holds.
    pub fn add_by_names(&mut self, ck: &Arc<CertifiedKey>) {
        self.by_names.push(ck.clone());
    }

    /// Uses `ck` when nothing else matches, unless a default is set already.
    pub fn default_to(&mut self, ck: &Arc<CertifiedKey>) {
        self.default.get_or_insert_with(|| ck.clone());
    }

    /// The certificate for a requested server name (`None`: no SNI).
    pub fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(ck) = self.exact.get(&name) {
                return Some(ck.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(ck) = self.wildcard.get(parent) {
                    return Some(ck.clone());
                }
            }
            if let Some(ck) = self.by_names.iter().find(|ck| covers(ck, &name)) {
                return Some(ck.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // An ACME CA validating a pending TLS-ALPN-01 challenge gets the challenge certificate.
        if let Some(ck) = crate::ext::acme_hooks::tls_alpn01_certificate(&hello) {
            return Some(ck);
        }
        self.pick(hello.server_name())
    }
}
