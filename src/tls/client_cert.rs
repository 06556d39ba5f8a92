//! Verified client certificates (mTLS): what a request may learn of the certificate its
//! connection presented — subject, SAN names and SHA-256 fingerprint — forwarded upstream as
//! `X-Client-Cert-Subject`, `X-Client-Cert-San` and `X-Client-Cert-Fingerprint`.
//!
//! The handshake happens before any request exists, so the facts are kept per connection (by its
//! socket pair) for as long as the connection is open; HTTP/1 and HTTP/2 requests find them the
//! same way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Header names Conduit sets; copies sent by a client are always removed.
pub const SUBJECT: &str = "x-client-cert-subject";
pub const SAN: &str = "x-client-cert-san";
pub const FINGERPRINT: &str = "x-client-cert-fingerprint";

/// What a verified client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 distinguished name, e.g. `CN=alice,O=Example`.
    pub subject: String,
    /// DNS names, e-mail addresses, URIs and IP addresses of the SAN, comma-separated.
    pub san: String,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub fingerprint: String,
}

impl ClientCert {
    /// Reads a DER certificate; `None` when it does not parse (rustls already verified it).
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject().to_string();
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push(format!("DNS:{n}")),
                    GeneralName::RFC822Name(n) => names.push(format!("email:{n}")),
                    GeneralName::URI(n) => names.push(format!("URI:{n}")),
                    GeneralName::IPAddress(ip) => {
                        let text = match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .map(|a| std::net::IpAddr::from(a).to_string())
                                .ok(),
                            16 => <[u8; 16]>::try_from(*ip)
                                .map(|a| std::net::IpAddr::from(a).to_string())
                                .ok(),
                            _ => None,
                        };
                        if let Some(t) = text {
                            names.push(format!("IP:{t}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let fingerprint = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Some(ClientCert {
            subject,
            san: names.join(", "),
            fingerprint,
        })
    }
}

type Key = (SocketAddr, SocketAddr);

/// Client certificates of open connections, by (client, local) address.
static OPEN: LazyLock<Mutex<HashMap<Key, Arc<ClientCert>>>> = LazyLock::new(Mutex::default);

/// Keeps a connection's certificate findable until dropped (when the connection ends).
pub struct Registered(Key);

/// Records the certificate of the connection `client` → `local`.
pub fn register(client: SocketAddr, local: SocketAddr, cert: ClientCert) -> Registered {
    let key = (client, local);
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Arc::new(cert));
    Registered(key)
}

impl Drop for Registered {
    fn drop(&mut self) {
        OPEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// The certificate of the connection `client` → `local`, if it presented one.
pub fn lookup(client: SocketAddr, local: SocketAddr) -> Option<Arc<ClientCert>> {
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(client, local))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_forget() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let cert = ClientCert {
            subject: "CN=x".into(),
            san: String::new(),
            fingerprint: "00".into(),
        };
        let reg = register(a, b, cert.clone());
        assert_eq!(lookup(a, b).as_deref(), Some(&cert));
        drop(reg);
        assert_eq!(lookup(a, b), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(ClientCert::from_der(b"not a certificate"), None);
    }
}
