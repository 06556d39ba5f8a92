//! Compilation: a validated raw config becomes an immutable [`Snapshot`]. Regexes, globs, peers
//! and pools are all built here, once, so the request path only reads.

pub mod glob;
pub mod host;
mod regex;
mod registries;
pub mod route;
mod site;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::load::{join, LoadedConfig};
use crate::config::ConfigError;
use crate::snapshot::{PortSites, ProcessSettings, Snapshot};
use host::HostPattern;
pub use regex::{regex_bounded, regex_limited};
pub use registries::Registries;

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
        let site = match site::compile_site(
            raw_site,
            &prefix,
            &format!("{}:{port}", host.to_ascii_lowercase()),
            reg,
            mode,
            &mut idle_total,
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
    if !errors.is_empty() {
        return Err(errors);
    }
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
        },
        watch_config: watch,
    })
}
