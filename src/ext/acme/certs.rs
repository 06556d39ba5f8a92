//! Certificates made locally for ACME: the temporary self-signed certificate a site serves until
//! its first one is issued, the TLS-ALPN-01 challenge certificate (RFC 8737), and the key and
//! certificate signing request of an order.

use std::sync::Arc;

use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

fn params(host: &str) -> Result<CertificateParams, String> {
    CertificateParams::new(vec![host.to_string()])
        .map_err(|e| format!("`{host}` cannot be a certificate name: {e}"))
}

fn certified(der: CertificateDer<'static>, key: &KeyPair) -> Result<Arc<CertifiedKey>, String> {
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = any_supported_type(&key_der).map_err(|e| format!("unusable key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(vec![der], signing)))
}

/// A self-signed certificate for `host`, served until the CA has issued one (clients do not
/// trust it; it lets the listener start and answer TLS-ALPN-01 meanwhile).
pub fn placeholder(host: &str) -> Result<Arc<CertifiedKey>, String> {
    let key = KeyPair::generate().map_err(|e| format!("key generation: {e}"))?;
    let mut p = params(host)?;
    p.distinguished_name.push(
        DnType::CommonName,
        "Conduit temporary certificate (ACME pending)",
    );
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("self-signing: {e}"))?;
    certified(cert.der().clone(), &key)
}

/// The TLS-ALPN-01 certificate: `host` as its only name, and the critical `acmeIdentifier`
/// extension holding the SHA-256 digest of the key authorization.
pub fn tls_alpn01(host: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = KeyPair::generate().map_err(|e| format!("key generation: {e}"))?;
    let mut p = params(host)?;
    p.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("self-signing: {e}"))?;
    certified(cert.der().clone(), &key)
}

/// A new key (PEM) and the DER certificate signing request naming `host`.
pub fn key_and_csr(host: &str) -> Result<(String, Vec<u8>), String> {
    let key = KeyPair::generate().map_err(|e| format!("key generation: {e}"))?;
    let mut p = params(host)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    let csr = p
        .serialize_request(&key)
        .map_err(|e| format!("certificate request: {e}"))?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_certificate_names_the_host_and_carries_the_digest() {
        let digest = [7u8; 32];
        let ck = tls_alpn01("alpn.example", &digest).unwrap();
        let der = ck.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            [x509_parser::extensions::GeneralName::DNSName(
                "alpn.example"
            )]
        );
    }

    #[test]
    fn placeholder_covers_the_host() {
        let ck = placeholder("p.example").unwrap();
        assert!(crate::tls::certs::covers(&ck, "p.example"));
        assert!(!crate::tls::certs::covers(&ck, "q.example"));
    }

    #[test]
    fn csr_is_der() {
        let (key, csr) = key_and_csr("c.example").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(csr[0], 0x30);
    }
}
