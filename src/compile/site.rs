//! Compiling one site: its routes (prefix map and rules), pools, access log and limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::glob::Glob;
use super::registries::Registries;
use super::route::{Matcher, Route, RuleMatch};
use super::{regex_bounded, regex_limited, Mode};
use super::{
    DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_IDLE,
    DEFAULT_MAX_REQUEST_HEADERS,
};
use crate::config::load::join;
use crate::config::raw::{self, Upstream};
use crate::config::ConfigError;
use crate::observe::access_log::{AccessLog, LogFormat};
use crate::snapshot::{Site, SiteLimits};
use crate::upstream::target::TargetUrl;
use crate::upstream::PoolSpec;

pub(crate) fn compile_site(
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
        websocket: opts.websocket.unwrap_or(false),
    })
}
