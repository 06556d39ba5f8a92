//! Compilation: a validated raw config becomes an immutable [`Snapshot`]. Regexes, globs, peers
//! and pools are all built here, once, so the request path only reads.

pub mod glob;
pub mod host;
pub mod route;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use regex::Regex;

use crate::config::load::{join, LoadedConfig};
use crate::config::raw::{self, Upstream};
use crate::config::ConfigError;
use crate::observe::access_log::{AccessLog, LogFormat, LogSink};
use crate::snapshot::{PortSites, ProcessSettings, Site, SiteLimits, SiteState, Snapshot};
use crate::upstream::target::TargetUrl;
use crate::upstream::{PoolRegistry, PoolSpec};
use glob::Glob;
use host::HostPattern;
use route::{Matcher, Route, RuleMatch};

/// Default total deadline for a request head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle keep-alive timeout of client connections.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default largest request head.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Default most request header fields.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
const DEFAULT_MAX_IDLE: usize = 128;
/// Bound on compiled regex size (bytes of program), so a config cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a bounded-size regex; the error is one line naming the pattern.
pub fn regex_bounded(pattern: &str) -> Result<Regex, String> {
    build_regex(pattern, pattern)
}

/// Compiles an anchored (whole-value) regex of bounded size. The pattern is checked on its own
/// first, so that an unbalanced `)` cannot escape the anchors.
pub fn regex_limited(pattern: &str) -> Result<Regex, String> {
    build_regex(pattern, pattern)?;
    build_regex(&format!("^(?:{pattern})$"), pattern)
}

fn build_regex(source: &str, shown: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let why = match &e {
                regex::Error::Syntax(text) => text
                    .lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with("error:"))
                    .map(|l| {
                        l.trim_start()
                            .trim_start_matches("error:")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_else(|| "syntax error".into()),
                regex::Error::CompiledTooBig(_) => "pattern too large".into(),
                _ => e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("invalid")
                    .to_string(),
            };
            format!("invalid regex `{shown}`: {why}")
        })
}

/// Long-lived state that compiled snapshots point into; it survives reloads.
#[derive(Default)]
pub struct Registries {
    pub pools: PoolRegistry,
    sites: Mutex<HashMap<String, Weak<SiteState>>>,
    sinks: Mutex<HashMap<String, Arc<LogSink>>>,
}

impl Registries {
    fn site_state(&self, id: &str) -> Arc<SiteState> {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = sites.get(id).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(SiteState::default());
        sites.insert(id.to_string(), Arc::downgrade(&s));
        s
    }

    fn sink(&self, target: &str) -> std::io::Result<Arc<LogSink>> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sinks.get(target) {
            return Ok(s.clone());
        }
        let sink = Arc::new(if target == "-" {
            LogSink::stdout()?
        } else {
            LogSink::file(target)?
        });
        sinks.insert(target.to_string(), sink.clone());
        Ok(sink)
    }

    /// Flushes every access-log sink (at shutdown).
    pub fn flush_logs(&self, timeout: Duration) {
        let sinks: Vec<_> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in sinks {
            s.flush(timeout);
        }
    }
}

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
        let site = match compile_site(
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

fn compile_site(
    s: &raw::Site,
    p: &str,
    id: &str,
    reg: &Registries,
    mode: Mode,
    idle_total: &mut usize,
) -> Result<Site, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut prefixes = Vec::new();
    if let Some(list) = &s.routes {
        for (i, r) in list.iter().enumerate() {
            let rp = format!("{}[{i}]", join(p, "routes"));
            let route_id = format!(
                "{id}|routes[{}]",
                r.id.clone().unwrap_or_else(|| i.to_string())
            );
            let matcher = match compile_rule(r.matcher.as_ref()) {
                Ok(m) => m,
                Err((field, e)) => {
                    errors.push(ConfigError::new(join(&join(&rp, "match"), &field), e));
                    continue;
                }
            };
            let Some(upstream) = &r.proxy else { continue };
            match compile_route(
                &route_id,
                Matcher::Rule(matcher),
                upstream,
                &join(&rp, "proxy"),
                reg,
                idle_total,
            ) {
                Ok(route) => rules.push(route),
                Err(e) => errors.push(e),
            }
        }
    }
    match &s.proxy {
        Some(raw::Proxy::Single(url)) => {
            let upstream = Upstream::Url(url.clone());
            match compile_route(
                &format!("{id}|/"),
                Matcher::Prefix("/".into()),
                &upstream,
                &join(p, "proxy"),
                reg,
                idle_total,
            ) {
                Ok(route) => prefixes.push(route),
                Err(e) => errors.push(e),
            }
        }
        Some(raw::Proxy::Map(map)) => {
            for (prefix, upstream) in map {
                let route_id = format!("{id}|{prefix}");
                let path = join(&join(p, "proxy"), prefix);
                match compile_route(
                    &route_id,
                    Matcher::Prefix(prefix.clone()),
                    upstream,
                    &path,
                    reg,
                    idle_total,
                ) {
                    Ok(route) => prefixes.push(route),
                    Err(e) => errors.push(e),
                }
            }
        }
        None => {}
    }
    prefixes.sort_by_key(|r| match &r.matcher {
        Matcher::Prefix(p) => std::cmp::Reverse(p.len()),
        Matcher::Rule(_) => std::cmp::Reverse(0),
    });

    let health_path = match &s.health_check {
        Some(raw::HealthCheck::Enabled(true)) => Some("/__health__".to_string()),
        Some(raw::HealthCheck::Options(o)) => {
            Some(o.path.clone().unwrap_or_else(|| "/__health__".into()))
        }
        _ => None,
    };

    let access_log = match &s.logging {
        None | Some(raw::Logging::Enabled(false)) => None,
        Some(l) => {
            let (format, file, skip, strip) = match l {
                raw::Logging::Enabled(_) => ("combined", None, &None, false),
                raw::Logging::Format(f) => (f.as_str(), None, &None, false),
                raw::Logging::Options(o) => (
                    o.format.as_deref().unwrap_or("combined"),
                    o.file.as_deref(),
                    &o.skip_paths,
                    o.strip_query.unwrap_or(false),
                ),
            };
            let skip_paths = skip
                .iter()
                .flatten()
                .filter_map(|g| Glob::parse(g).ok())
                .collect();
            let sink = match mode {
                Mode::Check => {
                    if let Some(file) = file {
                        if let Err(why) = check_log_file(file) {
                            errors.push(ConfigError::new(join(&join(p, "logging"), "file"), why));
                        }
                    }
                    None
                }
                Mode::Serve => match reg.sink(file.unwrap_or("-")) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errors.push(ConfigError::new(
                            join(&join(p, "logging"), "file"),
                            format!("cannot open access log: {e}"),
                        ));
                        None
                    }
                },
            };
            sink.map(|sink| AccessLog {
                format: LogFormat::parse(format).unwrap_or(LogFormat::Combined),
                skip_paths,
                strip_query: strip,
                sink,
            })
        }
    };

    let l = s.limits.clone().unwrap_or_default();
    let limits = SiteLimits {
        max_body_bytes: l.max_body_bytes,
        max_header_bytes: l.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES),
        max_request_headers: l.max_request_headers.unwrap_or(DEFAULT_MAX_REQUEST_HEADERS),
        max_inflight: l.max_inflight_requests,
        header_timeout: l
            .header_timeout_secs
            .map_or(DEFAULT_HEADER_TIMEOUT, Duration::from_secs),
        idle_timeout: l
            .idle_timeout_secs
            .map_or(DEFAULT_IDLE_TIMEOUT, Duration::from_secs),
    };
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .flatten()
        .filter_map(|t| crate::proxy::forwarded::parse_trusted(t))
        .collect();

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Site {
        id: Arc::from(id),
        health_path,
        rules,
        prefixes,
        access_log,
        limits,
        trusted_proxies,
        merge_slashes: s.merge_slashes.unwrap_or(true),
        state: reg.site_state(id),
    })
}

/// What `conduit validate` can check about an access-log file without creating it.
fn check_log_file(file: &str) -> Result<(), String> {
    let path = std::path::Path::new(file);
    if path.is_dir() {
        return Err(format!("`{file}` is a directory"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "cannot open access log: directory `{}` does not exist",
            dir.display()
        ));
    }
    Ok(())
}

fn compile_rule(m: Option<&raw::Match>) -> Result<RuleMatch, (String, String)> {
    let Some(m) = m else {
        return Ok(RuleMatch::default());
    };
    let regexes = |field: &str,
                   map: &Option<BTreeMap<String, String>>|
     -> Result<Vec<(String, Regex)>, (String, String)> {
        map.iter()
            .flatten()
            .map(|(k, v)| {
                regex_limited(v)
                    .map(|re| (k.clone(), re))
                    .map_err(|e| (format!("{field}.{k}"), e))
            })
            .collect()
    };
    let headers = regexes("headers", &m.headers)?
        .into_iter()
        .map(|(k, re)| {
            http::HeaderName::from_bytes(k.as_bytes())
                .map(|n| (n, re))
                .map_err(|_| {
                    (
                        format!("headers.{k}"),
                        "not a valid header name".to_string(),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RuleMatch {
        path: m
            .path
            .as_deref()
            .map(Glob::parse)
            .transpose()
            .map_err(|e| ("path".to_string(), e))?,
        methods: m.method.clone().unwrap_or_default(),
        headers,
        query: regexes("query", &m.query)?,
        cookies: regexes("cookies", &m.cookies)?,
    })
}

fn compile_route(
    id: &str,
    matcher: Matcher,
    upstream: &Upstream,
    path: &str,
    reg: &Registries,
    idle_total: &mut usize,
) -> Result<Route, ConfigError> {
    let default_opts = raw::RouteOptions::default();
    let (urls, opts): (Vec<(String, u32, String)>, &raw::RouteOptions) = match upstream {
        Upstream::Url(u) => (vec![(u.clone(), 1, path.to_string())], &default_opts),
        Upstream::List(list) => (
            list.iter()
                .enumerate()
                .map(|(i, u)| (u.clone(), 1, format!("{path}[{i}]")))
                .collect(),
            &default_opts,
        ),
        Upstream::Options(o) => (
            o.targets
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, t)| match t {
                    raw::Target::Url(u) => (u.clone(), 1, format!("{path}.targets[{i}]")),
                    raw::Target::Weighted(w) => (
                        w.url.clone(),
                        w.weight.unwrap_or(1),
                        format!("{path}.targets[{i}].url"),
                    ),
                })
                .collect(),
            o.as_ref(),
        ),
    };
    let mut targets = Vec::with_capacity(urls.len());
    for (url, weight, tpath) in urls {
        let addr = TargetUrl::parse(&url)
            .and_then(|t| t.resolve())
            .map_err(|e| ConfigError::new(tpath, e))?;
        targets.push((addr, url, weight));
    }
    let t = opts.timeout.clone().unwrap_or_default();
    let pool = opts.pool.clone().unwrap_or_default();
    let max_idle = pool.max_idle.unwrap_or(DEFAULT_MAX_IDLE);
    *idle_total += max_idle * targets.len();
    let spec = PoolSpec {
        targets,
        connect_timeout: Duration::from_millis(t.connect_ms.unwrap_or(3000)),
        read_timeout: Duration::from_millis(t.read_ms.unwrap_or(30_000)),
        write_timeout: t.send_ms.map(Duration::from_millis),
        idle_timeout: Duration::from_secs(pool.idle_timeout_secs.unwrap_or(60)),
        keepalive: max_idle > 0,
    };
    let pool = reg
        .pools
        .get_or_build(id, &spec)
        .map_err(|e| ConfigError::new(path, e.to_string()))?;
    let rewrites = opts
        .rewrite
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            regex_bounded(&r.from)
                .map(|re| (re, r.to.clone()))
                .map_err(|e| ConfigError::new(format!("{path}.rewrite[{i}].from"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Route {
        id: Arc::from(id),
        matcher,
        strip_prefix: opts.strip_prefix.unwrap_or(false),
        rewrites,
        pool,
    })
}
