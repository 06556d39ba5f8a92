//! Compiling `tls` and `http2` of the sites on one port into the port's TLS acceptor: every
//! certificate is read and checked against its key here, so a bad file fails the load (or the
//! reload, keeping the old certificates serving).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::tls::certs::{certified_key, read_certs};
use crate::tls::resolver::SniResolver;
use crate::tls::{PortTls, TlsPolicy};

/// The TLS part of one site.
pub(crate) struct SiteTls {
    pub policy: TlsPolicy,
    /// The site's own certificate (`cert` + `key`), served for its host.
    pub own: Option<Arc<CertifiedKey>>,
    /// `certificates[]`: explicit names (empty: the certificate's own names) and the key.
    pub more: Vec<(Vec<String>, Arc<CertifiedKey>)>,
    pub host: String,
    /// Config path of the site's `tls`, for errors.
    pub path: String,
    /// Files whose change should reload the certificates.
    pub files: Vec<PathBuf>,
}

/// Reads the certificates of a site's `tls`; errors carry their field paths.
pub(crate) fn compile_site_tls(
    t: &raw::Tls,
    http2: Option<&raw::Http2>,
    host: &str,
    path: &str,
    serve: bool,
) -> Result<SiteTls, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    let extra: Vec<CertificateDer<'static>> = match &t.ca {
        Some(ca) => {
            files.push(PathBuf::from(ca));
            read_certs(ca).unwrap_or_else(|e| {
                errors.push(ConfigError::new(join(path, "ca"), e));
                Vec::new()
            })
        }
        None => Vec::new(),
    };
    let mut load = |cert: &str, key: &str, field: String| {
        files.push(PathBuf::from(cert));
        files.push(PathBuf::from(key));
        certified_key(cert, key, &extra).map_err(|e| ConfigError::new(field, e))
    };
    let own = match (&t.cert, &t.key) {
        (Some(c), Some(k)) => match load(c, k, join(path, "cert")) {
            Ok(ck) => Some(ck),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        _ => None,
    };
    let mut more = Vec::new();
    for (i, c) in t.certificates.iter().flatten().enumerate() {
        match load(
            &c.cert,
            &c.key,
            format!("{}[{i}].cert", join(path, "certificates")),
        ) {
            Ok(ck) => more.push((c.sni.clone().unwrap_or_default(), ck)),
            Err(e) => errors.push(e),
        }
    }
    // `acme`: the stored certificate, or a temporary one until it is issued.
    let own = own.or_else(|| crate::ext::acme_hooks::site_certificate(t, host, serve, &mut files));
    if let Some(ca) = t.client_auth.as_ref().map(|c| &c.ca) {
        files.push(PathBuf::from(ca));
    }
    let policy = TlsPolicy {
        versions: t.versions.clone().unwrap_or_default(),
        ciphers: t.ciphers.clone().unwrap_or_default(),
        client_auth: t
            .client_auth
            .as_ref()
            .map(|c| (c.ca.clone(), c.optional.unwrap_or(false))),
        h2: http2.and_then(|h| h.enabled).unwrap_or(true),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(SiteTls {
        policy,
        own,
        more,
        host: host.to_string(),
        path: path.to_string(),
        files,
    })
}

/// Builds the acceptor of a port from its sites' TLS, in config order. The first site's
/// certificate is the default for clients that send no (or an unknown) server name, unless a
/// site of host `*` or a certificate for `*` says otherwise.
pub(crate) fn compile_port_tls(port: u16, sites: &[SiteTls]) -> Result<PortTls, ConfigError> {
    let Some(first) = sites.first() else {
        return Err(ConfigError::new("", format!("port {port}: no TLS site")));
    };
    if let Some(other) = sites.iter().find(|s| s.policy != first.policy) {
        return Err(ConfigError::new(
            other.path.clone(),
            format!(
                "sites sharing port {port} must use the same TLS versions, ciphers, clientAuth \
                 and http2 (they share one listener); `{}` differs from `{}`",
                other.host, first.host
            ),
        ));
    }
    let mut resolver = SniResolver::default();
    for s in sites {
        if let Some(ck) = &s.own {
            resolver.add(&s.host, ck);
        }
        for (names, ck) in &s.more {
            if names.is_empty() {
                resolver.add_by_names(ck);
            } else {
                for n in names {
                    resolver.add(n, ck);
                }
            }
        }
    }
    if let Some(ck) = sites.iter().find_map(|s| {
        s.own
            .clone()
            .or_else(|| s.more.first().map(|(_, ck)| ck.clone()))
    }) {
        resolver.default_to(&ck);
    }
    PortTls::build(&first.policy, resolver).map_err(|e| ConfigError::new(first.path.clone(), e))
}
