//! The process-wide store of pending ACME challenges: HTTP-01 key authorizations by token, and
//! TLS-ALPN-01 certificates by host. The issuing task offers a challenge and holds the returned
//! [`Offer`] until the CA has validated; dropping it withdraws the challenge.
//!
//! The request path and the handshake read it; with nothing pending they pay one atomic load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

/// The path prefix of HTTP-01 requests.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

static HTTP01: RwLock<BTreeMap<String, String>> = RwLock::new(BTreeMap::new());
static HTTP01_COUNT: AtomicUsize = AtomicUsize::new(0);
static TLS_ALPN01: RwLock<BTreeMap<String, Arc<CertifiedKey>>> = RwLock::new(BTreeMap::new());
static TLS_ALPN01_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A challenge being offered; withdrawn when dropped.
#[derive(Debug)]
pub struct Offer {
    kind: Kind,
    key: String,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Http01,
    TlsAlpn01,
}

/// Offers `key_authorization` at `/.well-known/acme-challenge/<token>`.
pub fn offer_http01(token: &str, key_authorization: &str) -> Offer {
    let mut map = HTTP01.write().unwrap_or_else(|e| e.into_inner());
    if map
        .insert(token.to_string(), key_authorization.to_string())
        .is_none()
    {
        HTTP01_COUNT.fetch_add(1, Ordering::SeqCst);
    }
    Offer {
        kind: Kind::Http01,
        key: token.to_string(),
    }
}

/// Offers `cert` to `acme-tls/1` handshakes for `host`.
pub fn offer_tls_alpn01(host: &str, cert: Arc<CertifiedKey>) -> Offer {
    let host = host.to_ascii_lowercase();
    let mut map = TLS_ALPN01.write().unwrap_or_else(|e| e.into_inner());
    if map.insert(host.clone(), cert).is_none() {
        TLS_ALPN01_COUNT.fetch_add(1, Ordering::SeqCst);
    }
    Offer {
        kind: Kind::TlsAlpn01,
        key: host,
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        match self.kind {
            Kind::Http01 => {
                let mut map = HTTP01.write().unwrap_or_else(|e| e.into_inner());
                if map.remove(&self.key).is_some() {
                    HTTP01_COUNT.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Kind::TlsAlpn01 => {
                let mut map = TLS_ALPN01.write().unwrap_or_else(|e| e.into_inner());
                if map.remove(&self.key).is_some() {
                    TLS_ALPN01_COUNT.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// The key authorization answering request path `path`, if it is a pending HTTP-01 challenge.
pub fn http01(path: &str) -> Option<String> {
    if HTTP01_COUNT.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    HTTP01
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(token)
        .cloned()
}

/// Whether some TLS-ALPN-01 challenge is pending.
pub fn any_tls_alpn01() -> bool {
    TLS_ALPN01_COUNT.load(Ordering::SeqCst) > 0
}

/// The challenge certificate for `host`, if a TLS-ALPN-01 challenge for it is pending.
pub fn tls_alpn01(host: &str) -> Option<Arc<CertifiedKey>> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    TLS_ALPN01
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&host)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_is_answered_while_offered() {
        let path = format!("{HTTP01_PREFIX}tok-unit-1");
        assert_eq!(http01(&path), None);
        let offer = offer_http01("tok-unit-1", "tok-unit-1.thumb");
        assert_eq!(http01(&path).as_deref(), Some("tok-unit-1.thumb"));
        assert_eq!(http01("/tok-unit-1"), None);
        assert_eq!(http01(&format!("{HTTP01_PREFIX}other")), None);
        drop(offer);
        assert_eq!(http01(&path), None);
    }

    #[test]
    fn tls_alpn01_is_served_while_offered() {
        let ck = super::super::certs::placeholder("alpn-unit.example").unwrap();
        assert!(tls_alpn01("alpn-unit.example").is_none());
        let offer = offer_tls_alpn01("Alpn-Unit.example", ck.clone());
        assert!(any_tls_alpn01());
        assert!(tls_alpn01("alpn-unit.example.").is_some());
        drop(offer);
        assert!(tls_alpn01("alpn-unit.example").is_none());
    }
}
