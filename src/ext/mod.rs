//! Optional features, each gated here at its `mod` line. Features whose fields are not yet
//! implemented are still rejected by `conduit validate` ("not supported yet").
//!
//! A feature that the rest of Conduit calls into exposes its hooks as a module of functions;
//! without the feature, a module of the same name here holds no-ops, so call sites carry no
//! `#[cfg]`.

#[cfg(feature = "acme")]
pub mod acme;

/// The ACME hooks (feature `acme`): compile-time certificates, the HTTP-01 answer, the
/// TLS-ALPN-01 certificate, validation and the background service.
#[cfg(feature = "acme")]
pub use acme::hooks as acme_hooks;

/// The ACME hooks without the `acme` feature: nothing to serve, and `tls.acme` is refused.
#[cfg(not(feature = "acme"))]
pub mod acme_hooks {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use pingora::proxy::Session;
    use pingora::server::Server;
    use rustls::server::ClientHello;
    use rustls::sign::CertifiedKey;

    use crate::config::load::LoadedConfig;
    use crate::config::raw;
    use crate::config::ConfigError;
    use crate::snapshot::SnapshotHandle;

    /// No ACME certificates without the feature.
    pub fn site_certificate(
        _t: &raw::Tls,
        _host: &str,
        _serve: bool,
        _files: &mut Vec<PathBuf>,
    ) -> Option<Arc<CertifiedKey>> {
        None
    }

    /// No challenge to answer without the feature.
    pub async fn answer_http01(_session: &mut Session) -> pingora::Result<bool> {
        Ok(false)
    }

    /// No challenge certificate without the feature.
    pub fn tls_alpn01_certificate(_hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }

    /// `acme-tls/1` is not offered without the feature.
    pub fn add_alpn(_protocols: &mut Vec<Vec<u8>>) {}

    /// Every `tls.acme` is an error: this binary cannot act on it.
    pub fn validate(cfg: &LoadedConfig) -> Vec<ConfigError> {
        cfg.raw
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.tls.as_ref().is_some_and(|t| t.acme.is_some()))
            .map(|(i, _)| {
                ConfigError::new(
                    cfg.site_field(i, "tls.acme"),
                    "the acme feature is not compiled in: build Conduit with `--features acme` \
                     (part of `standard`), or remove `acme` and set `cert`/`key`",
                )
            })
            .collect()
    }

    /// No background service without the feature.
    pub fn add_service(_server: &mut Server, _handle: Arc<SnapshotHandle>, _source: &Path) {}
}

/// The optional features compiled into this binary.
pub fn compiled_features() -> Vec<&'static str> {
    [
        ("jwt", cfg!(feature = "jwt")),
        ("consumers", cfg!(feature = "consumers")),
        ("forward-auth", cfg!(feature = "forward-auth")),
        ("cache", cfg!(feature = "cache")),
        ("acme", cfg!(feature = "acme")),
        ("rhai", cfg!(feature = "rhai")),
        ("wasm", cfg!(feature = "wasm")),
        ("tcp", cfg!(feature = "tcp")),
        ("upload", cfg!(feature = "upload")),
        ("redis", cfg!(feature = "redis")),
        ("disk-cache", cfg!(feature = "disk-cache")),
        ("fault-injection", cfg!(feature = "fault-injection")),
        ("otlp", cfg!(feature = "otlp")),
        ("kubernetes", cfg!(feature = "kubernetes")),
        ("mimalloc", cfg!(feature = "mimalloc")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}
