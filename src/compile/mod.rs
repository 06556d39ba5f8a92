//! Compilation: a validated raw config becomes an immutable [`Snapshot`]. Regexes, globs, peers
//! and pools are all built here, once, so the request path only reads.

pub mod glob;
pub mod host;
mod regex;
mod registries;
pub mod route;
mod security;
mod site;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::load::{join, LoadedConfig};
use crate::config::ConfigError;
use crate::snapshot::{PortSites, ProcessSettings, Snapshot};
use host::HostPattern;
pub use regex::{regex_bounded, regex_limited};
pub use registries::Registries;
pub use security::security_headers;

/// Default total deadline for a request head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle keep-alive timeout of client connections.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default largest request head.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Default most request header fields.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
const DEFAULT_MAX_IDLE: usize = 128;

/// What a compile may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Build everything, open log files.
    Serve,
    /// `conduit validate`: resolve and build, but open no files.
    Check,
}

/// Compiles a validated config into a snapshot of `generation`.
pub fn compile(
    cfg: &LoadedConfig,
    reg: &Registries,
    generation: u64,
    mode: Mode,
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let g = &cfg.raw.global;
    let mut ports: BTreeMap<u16, PortSites> = BTreeMap::new();
    let mut watch = false;
    let mut idle_total = 0usize;
    let mut tls_sites: BTreeMap<u16, Vec<tls::SiteTls>> = BTreeMap::new();
    let mut plain_ports: BTreeMap<u16, String> = BTreeMap::new();
    let mut redirects: Vec<(u16, u16, String)> = Vec::new();
    let mut cert_files = Vec::new();
    let mut h2_settings: Option<(u32, Option<u32>, String)> = None;
    for (i, raw_site) in cfg.raw.sites.iter().enumerate() {
        let prefix = cfg.site_paths.get(i).cloned().unwrap_or_default();
        watch |= raw_site.hot_reload.unwrap_or(false);
        let port = crate::config::validate::effective_port(raw_site);
        let host = raw_site.host.clone().unwrap_or_else(|| "*".into());
        let pattern = match HostPattern::parse(&host) {
            Ok(p) => p,
            Err(e) => {
                errors.push(ConfigError::new(join(&prefix, "host"), e));
                continue;
            }
        };
        if let Some(h) = &raw_site.http2 {
            let mine = (
                h.max_concurrent_streams
                    .unwrap_or(crate::server::H2_MAX_STREAMS),
                h.initial_window_size,
            );
            match &h2_settings {
                Some((streams, window, first)) if (*streams, *window) != mine => {
                    errors.push(ConfigError::new(
                        join(&prefix, "http2"),
                        format!("maxConcurrentStreams and initialWindowSize must be the same on every site (one HTTP/2 server serves them all); `{first}` sets them differently"),
                    ));
                }
                Some(_) => {}
                None => h2_settings = Some((mine.0, mine.1, join(&prefix, "http2"))),
            }
        }
        match &raw_site.tls {
            Some(t) => {
                let tp = join(&prefix, "tls");
                match tls::compile_site_tls(
                    t,
                    raw_site.http2.as_ref(),
                    &host,
                    &tp,
                    mode == Mode::Serve,
                ) {
                    Ok(st) => {
                        cert_files.extend(st.files.iter().cloned());
                        tls_sites.entry(port).or_default().push(st);
                    }
                    Err(mut e) => errors.append(&mut e),
                }
                if let Some(r) = t.http_redirect_port {
                    redirects.push((r, port, join(&tp, "httpRedirectPort")));
                }
            }
            None => {
                plain_ports.entry(port).or_insert_with(|| prefix.clone());
            }
        }
        let site = match site::compile_site(
            raw_site,
            &prefix,
            &format!("{}:{port}", host.to_ascii_lowercase()),
            reg,
            mode,
            &mut idle_total,
            g.redis.as_ref(),
        ) {
            Ok(s) => Arc::new(s),
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        let entry = ports.entry(port).or_insert_with(|| PortSites {
            header_timeout: site.limits.header_timeout,
            idle_timeout: site.limits.idle_timeout,
            ..PortSites::default()
        });
        entry.header_timeout = entry.header_timeout.min(site.limits.header_timeout);
        entry.idle_timeout = entry.idle_timeout.min(site.limits.idle_timeout);
        entry.track_connections |= site.limits.max_conns_per_ip.is_some();
        entry.h2c |=
            raw_site.tls.is_none() && raw_site.http2.as_ref().and_then(|h| h.h2c).unwrap_or(false);
        let taken = match &pattern {
            HostPattern::Any => entry.any.is_some(),
            HostPattern::Exact(h) => entry.exact.contains_key(h),
            HostPattern::Suffix(s) => entry.suffix.iter().any(|(x, _)| x == s),
        };
        if taken {
            errors.push(ConfigError::new(
                join(&prefix, "host"),
                format!("another site already serves host `{host}` on port {port}"),
            ));
            continue;
        }
        match pattern {
            HostPattern::Any => entry.any = Some(site),
            HostPattern::Exact(h) => {
                entry.exact.insert(h, site);
            }
            HostPattern::Suffix(s) => {
                entry.suffix.push((s, site));
                entry
                    .suffix
                    .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
            }
        }
    }
    for (port, sites) in &tls_sites {
        if let Some(path) = plain_ports.get(port) {
            errors.push(ConfigError::new(
                path.clone(),
                format!("port {port} serves TLS sites: every site on it needs `tls` (or move this site to another port)"),
            ));
            continue;
        }
        match tls::compile_port_tls(*port, sites) {
            Ok(t) => {
                if let Some(entry) = ports.get_mut(port) {
                    entry.tls = Some(Arc::new(t));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    for (redirect, https, path) in redirects {
        let entry = ports.entry(redirect).or_insert_with(|| PortSites {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ..PortSites::default()
        });
        match entry.redirect_https {
            _ if entry.tls.is_some()
                || entry.any.is_some()
                || !entry.exact.is_empty()
                || !entry.suffix.is_empty() =>
            {
                errors.push(ConfigError::new(
                    path,
                    format!(
                        "port {redirect} already serves sites; pick a free port for the redirect"
                    ),
                ));
            }
            Some(other) if other != https => errors.push(ConfigError::new(
                path,
                format!("port {redirect} already redirects to port {other}"),
            )),
            _ => entry.redirect_https = Some(https),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    cert_files.sort();
    cert_files.dedup();
    let workers = g
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(Snapshot {
        generation,
        ports,
        process: ProcessSettings {
            workers,
            work_stealing: g.work_stealing.unwrap_or(false),
            shutdown_timeout: Duration::from_secs(g.shutdown_timeout_secs.unwrap_or(30)),
            bind: g
                .bind
                .as_deref()
                .unwrap_or("0.0.0.0")
                .parse()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            keepalive_pool_size: idle_total.clamp(128, 1_000_000),
            h2_max_streams: h2_settings
                .as_ref()
                .map_or(crate::server::H2_MAX_STREAMS, |h| h.0),
            h2_window: h2_settings.and_then(|h| h.1),
        },
        watch_config: watch,
        cert_files,
    })
}
