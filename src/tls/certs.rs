//! Reading certificates and keys from PEM files into rustls's signing form.

use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Reads every certificate of a PEM file (leaf first for a chain).
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{path}` is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`{path}` holds no PEM certificate"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("`{path}` is not a PEM key file: {e}"))?
        .ok_or_else(|| format!("`{path}` holds no PEM private key"))
}

/// A certificate chain (plus extra intermediates) and its key, checked to belong together.
pub fn certified_key(
    cert: &str,
    key: &str,
    extra_chain: &[CertificateDer<'static>],
) -> Result<Arc<CertifiedKey>, String> {
    let mut chain = read_certs(cert)?;
    chain.extend(extra_chain.iter().cloned());
    let der = read_key(key)?;
    let signing = any_supported_type(&der).map_err(|e| format!("`{key}`: unsupported key: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("`{key}` does not match the certificate in `{cert}`: {e}"))?;
    Ok(Arc::new(ck))
}

/// Whether the leaf of `ck` is valid for DNS name `name` (its SANs, wildcards included).
pub fn covers(ck: &CertifiedKey, name: &str) -> bool {
    let Some(leaf) = ck.end_entity_cert().ok() else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(server) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&server).is_ok()
}
