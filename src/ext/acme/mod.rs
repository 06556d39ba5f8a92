//! Automatic certificates with ACME (feature `acme`): what a site's `tls.acme` asks for, where
//! the account and certificates are stored, the challenges answered while an order is pending,
//! and the background service that issues and renews.
//!
//! The certificates take the ordinary path: at compile time a site with `acme` serves
//! `<storage>/<host>.crt` / `<host>.key` when they exist (a temporary self-signed certificate
//! otherwise), and those files are watched. The service writes renewed files atomically, the
//! watcher reloads the configuration, and new handshakes get the new certificate: a hot swap
//! without restart.

mod certs;
pub mod challenge;
mod check;
mod order;
mod service;
pub mod storage;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::raw::{self, RawConfig};

pub use service::AcmeService;

/// Let's Encrypt's production directory, the default `directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Default `storage`, relative to the working directory.
pub const DEFAULT_STORAGE: &str = "./acme";
/// Default `renewBeforeDays`.
pub const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;
/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How the CA checks that we control a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `GET http://<host>/.well-known/acme-challenge/<token>` on port 80.
    Http01,
    /// A TLS handshake on port 443 offering ALPN `acme-tls/1`.
    TlsAlpn01,
}

impl ChallengeKind {
    /// Parses `challenge` (`None` for an unknown name).
    pub fn parse(name: Option<&str>) -> Option<ChallengeKind> {
        match name {
            None | Some("http-01") => Some(ChallengeKind::Http01),
            Some("tls-alpn-01") => Some(ChallengeKind::TlsAlpn01),
            Some(_) => None,
        }
    }
}

/// One host's certificate as `tls.acme` asks for it, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The DNS name the certificate is for (the site's `host`, lower case).
    pub host: String,
    pub email: Option<String>,
    pub directory: String,
    /// Absolute storage directory.
    pub storage: PathBuf,
    pub challenge: ChallengeKind,
    pub ca_root: Option<PathBuf>,
    /// Renew when less than this remains.
    pub renew_before: Duration,
}

impl Wanted {
    /// The settings of `acme` for a site of host `host`.
    pub fn new(a: &raw::Acme, host: &str) -> Wanted {
        let storage = PathBuf::from(a.storage.as_deref().unwrap_or(DEFAULT_STORAGE));
        let storage = std::path::absolute(&storage).unwrap_or(storage);
        Wanted {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            email: a.email.clone(),
            directory: a.directory.clone().unwrap_or_else(|| LETS_ENCRYPT.into()),
            storage,
            challenge: ChallengeKind::parse(a.challenge.as_deref())
                .unwrap_or(ChallengeKind::Http01),
            ca_root: a.ca_root.as_ref().map(PathBuf::from),
            renew_before: Duration::from_secs(
                u64::from(a.renew_before_days.unwrap_or(DEFAULT_RENEW_BEFORE_DAYS)) * 86_400,
            ),
        }
    }

    /// `<storage>/<host>.crt`: the certificate chain, leaf first.
    pub fn cert_path(&self) -> PathBuf {
        storage::cert_path(&self.storage, &self.host)
    }

    /// `<storage>/<host>.key`: its private key.
    pub fn key_path(&self) -> PathBuf {
        storage::key_path(&self.storage, &self.host)
    }
}

/// Every certificate a config asks ACME for, in config order; a host named twice in the same
/// storage is wanted once (its first settings).
pub fn plan(raw: &RawConfig) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    for site in &raw.sites {
        let (Some(a), Some(host)) = (
            site.tls.as_ref().and_then(|t| t.acme.as_ref()),
            site.host.as_deref(),
        ) else {
            continue;
        };
        let w = Wanted::new(a, host);
        if !out
            .iter()
            .any(|o| o.host == w.host && o.storage == w.storage)
        {
            out.push(w);
        }
    }
    out
}

/// The hooks the rest of Conduit calls (no-ops of the same names exist without the feature).
pub mod hooks {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use pingora::proxy::Session;
    use pingora::server::Server;
    use rustls::server::ClientHello;
    use rustls::sign::CertifiedKey;

    use super::{certs, challenge, Wanted, ACME_TLS_ALPN};
    use crate::config::load::LoadedConfig;
    use crate::config::raw;
    use crate::config::ConfigError;
    use crate::snapshot::SnapshotHandle;

    /// Compile time: the certificate of a site whose `tls` has `acme` (`None` without `acme`).
    /// The stored pair when it loads, a temporary self-signed one otherwise; the stored files
    /// are added to `files` so their creation or renewal reloads the configuration. `serve`:
    /// also create the storage directory (0700) so that it can be watched.
    pub fn site_certificate(
        t: &raw::Tls,
        host: &str,
        serve: bool,
        files: &mut Vec<PathBuf>,
    ) -> Option<Arc<CertifiedKey>> {
        let mut w = Wanted::new(t.acme.as_ref()?, host);
        if serve {
            match super::storage::ensure_dir(&w.storage) {
                Ok(dir) => w.storage = dir,
                Err(e) => tracing::warn!(
                    host = %w.host,
                    "cannot create the ACME storage directory {}: {e}",
                    w.storage.display()
                ),
            }
        }
        let (cert, key) = (w.cert_path(), w.key_path());
        files.push(cert.clone());
        files.push(key.clone());
        if cert.exists() || key.exists() {
            match super::storage::load_pair(&cert, &key, &w.host) {
                Ok(ck) => return Some(ck),
                Err(e) => tracing::warn!(
                    host = %w.host,
                    "stored ACME certificate not usable, serving a temporary one until it is \
                     issued again: {e}"
                ),
            }
        }
        match certs::placeholder(&w.host) {
            Ok(ck) => Some(ck),
            Err(e) => {
                tracing::error!(host = %w.host, "cannot make a temporary certificate: {e}");
                None
            }
        }
    }

    /// Request path, before the site lookup: answers a pending HTTP-01 challenge
    /// (`GET /.well-known/acme-challenge/<token>`) on any port. `Ok(true)`: answered.
    pub async fn answer_http01(session: &mut Session) -> pingora::Result<bool> {
        let answer = {
            let req = session.req_header();
            if !matches!(req.method.as_str(), "GET" | "HEAD") {
                return Ok(false);
            }
            match challenge::http01(req.uri.path()) {
                Some(a) => a,
                None => return Ok(false),
            }
        };
        let head = session.req_header().method == http::Method::HEAD;
        let mut resp = pingora::http::ResponseHeader::build_no_case(200, Some(3))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/octet-stream")?;
        resp.insert_header(http::header::CONTENT_LENGTH, answer.len())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        session.write_response_header(Box::new(resp), head).await?;
        if !head {
            session
                .write_response_body(Some(bytes::Bytes::from(answer)), true)
                .await?;
        }
        Ok(true)
    }

    /// Handshake: the TLS-ALPN-01 certificate for a client that offers only-or-also
    /// `acme-tls/1` with the name of a pending challenge.
    pub fn tls_alpn01_certificate(hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if !challenge::any_tls_alpn01() {
            return None;
        }
        let offered = hello.alpn()?.any(|p| p == ACME_TLS_ALPN);
        if !offered {
            return None;
        }
        challenge::tls_alpn01(hello.server_name()?)
    }

    /// Adds `acme-tls/1` (last, so no ordinary client ever gets it) to a TLS port's ALPN list.
    pub fn add_alpn(protocols: &mut Vec<Vec<u8>>) {
        protocols.push(ACME_TLS_ALPN.to_vec());
    }

    /// Validation of every site's `tls.acme`.
    pub fn validate(cfg: &LoadedConfig) -> Vec<ConfigError> {
        super::check::validate(cfg)
    }

    /// Server start: registers the background service that issues and renews.
    pub fn add_service(server: &mut Server, handle: Arc<SnapshotHandle>, source: &Path) {
        server.add_service(pingora::services::background::background_service(
            "acme",
            super::AcmeService::new(handle, source.to_path_buf()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let w = Wanted::new(&raw::Acme::default(), "Example.COM.");
        assert_eq!(w.host, "example.com");
        assert_eq!(w.directory, LETS_ENCRYPT);
        assert_eq!(w.challenge, ChallengeKind::Http01);
        assert!(w.storage.is_absolute());
        assert!(w.storage.ends_with("acme"));
        assert_eq!(w.renew_before, Duration::from_secs(30 * 86_400));
        assert!(w.cert_path().ends_with("acme/example.com.crt"));
        assert!(w.key_path().ends_with("acme/example.com.key"));
    }

    #[test]
    fn plan_lists_each_host_once() {
        let site = |host: &str| raw::Site {
            host: Some(host.into()),
            tls: Some(raw::Tls {
                acme: Some(raw::Acme::default()),
                ..raw::Tls::default()
            }),
            ..raw::Site::default()
        };
        let cfg = RawConfig {
            sites: vec![site("a.example"), site("b.example"), site("A.example")],
            ..RawConfig::default()
        };
        let hosts: Vec<String> = plan(&cfg).into_iter().map(|w| w.host).collect();
        assert_eq!(hosts, ["a.example", "b.example"]);
    }
}
