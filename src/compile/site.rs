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
use crate::config::validate::MAX_BODY_BUFFER;
use crate::config::ConfigError;
use crate::observe::access_log::{AccessLog, LogFormat};
use crate::snapshot::{Site, SiteLimits};
use crate::upstream::endpoint::{BreakerPolicy, OutlierPolicy};
use crate::upstream::health::StatusSet;
use crate::upstream::pool::{
    CanarySpec, CohortKey, GroupStrategy, HealthSpec, RetrySpec, TargetSpec, TierSpec,
};
use crate::upstream::sticky::StickySpec;
use crate::upstream::strategy::HashKey;
use crate::upstream::target::{build_peer, CaBundle, TargetUrl, TlsSpec};
use crate::upstream::PoolSpec;

pub(crate) fn compile_site(
    s: &raw::Site,
    p: &str,
    id: &str,
    reg: &Registries,
    mode: Mode,
    idle_total: &mut usize,
    redis: Option<&raw::Redis>,
) -> Result<Site, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let rates =
        crate::filter::rate_limit::Compiler::new(&reg.rate_limits, redis, mode == Mode::Serve, id);
    let rate_limits = rates.site(s, p).unwrap_or_else(|e| {
        errors.push(e);
        Default::default()
    });
    let mut rules = Vec::new();
    let outlier = s.outlier_detection.as_ref().map(|o| OutlierPolicy {
        consecutive_failures: o.consecutive5xx.unwrap_or(5),
        base_ejection: Duration::from_secs(o.base_ejection_time_secs.unwrap_or(30)),
        max_ejection: Duration::from_secs(o.max_ejection_time_secs.unwrap_or(300)),
        max_ejection_percent: o.max_ejection_percent.unwrap_or(10),
    });
    let mut prefixes = Vec::new();
    let access = match crate::filter::Access::compile_site(s, id) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            errors.push(e);
            Arc::new(crate::filter::Access::default())
        }
    };
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
                &outlier,
                &access,
                &rates,
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
                &outlier,
                &access,
                &rates,
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
                    &outlier,
                    &access,
                    &rates,
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
        max_body_buffer: l.max_body_buffer_bytes.unwrap_or(MAX_BODY_BUFFER) as u64,
        max_conns_per_ip: l.max_connections_per_ip,
        // Shedding by priority is on when the site asks for it or a route sets a priority.
        priority_threshold: l.priority_threshold.or(sets_priority(s).then_some(0.8)),
        queue: l
            .queue
            .as_ref()
            .map(|q| (q.size, Duration::from_millis(q.timeout_ms.unwrap_or(1000)))),
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
        access,
        request_transform: s
            .request_transform
            .as_ref()
            .map(crate::filter::transform::compile),
        response_transform: s
            .response_transform
            .as_ref()
            .map(crate::filter::transform::compile),
        security_headers: super::security::compile_security_headers(
            s.security_headers.as_ref(),
            s.tls.is_some(),
        ),
        state: reg.site_state(id),
        rate_limits,
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

/// Whether any route of the site sets `priority`.
fn sets_priority(s: &raw::Site) -> bool {
    let sets = |u: &Upstream| matches!(u, Upstream::Options(o) if o.priority.is_some());
    let in_map = match &s.proxy {
        Some(raw::Proxy::Map(map)) => map.values().any(sets),
        _ => false,
    };
    in_map
        || s.routes
            .iter()
            .flatten()
            .filter_map(|r| r.proxy.as_ref())
            .any(sets)
}

/// Whether a route's `healthCheck` asks for active checks: any check field set, or none of the
/// fields that also make sense alone (`maxConnectionsPerUpstream`, `slowStartSecs`).
fn active_checks(h: &raw::ActiveHealth) -> bool {
    h.path.is_some()
        || h.interval_secs.is_some()
        || h.timeout_ms.is_some()
        || h.healthy_threshold.is_some()
        || h.unhealthy_threshold.is_some()
        || h.expected_status.is_some()
        || (h.max_connections_per_upstream.is_none() && h.slow_start_secs.is_none())
}

/// The targets of a list as specs, resolving each address; errors name the field.
fn target_specs(list: &[raw::Target], path: &str) -> Result<Vec<TargetSpec>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let (url, weight, tpath) = match t {
                raw::Target::Url(u) => (u, 1, format!("{path}[{i}]")),
                raw::Target::Weighted(w) => {
                    (&w.url, w.weight.unwrap_or(1), format!("{path}[{i}].url"))
                }
            };
            let addr = TargetUrl::parse(url)
                .and_then(|t| t.resolve())
                .map_err(|e| ConfigError::new(tpath, e))?;
            Ok((addr, url.clone(), weight))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn compile_route(
    id: &str,
    matcher: Matcher,
    upstream: &Upstream,
    path: &str,
    reg: &Registries,
    idle_total: &mut usize,
    outlier: &Option<OutlierPolicy>,
    site_access: &Arc<crate::filter::Access>,
    rates: &crate::filter::rate_limit::Compiler<'_>,
) -> Result<Route, ConfigError> {
    let default_opts = raw::RouteOptions::default();
    let (list, opts): (Vec<raw::Target>, &raw::RouteOptions) = match upstream {
        Upstream::Url(u) => (vec![raw::Target::Url(u.clone())], &default_opts),
        Upstream::List(list) => (
            list.iter().cloned().map(raw::Target::Url).collect(),
            &default_opts,
        ),
        Upstream::Options(o) => (o.targets.clone().unwrap_or_default(), o.as_ref()),
    };
    // A bare URL reports its errors at the field itself, not at `[0]`.
    let single = matches!(upstream, Upstream::Url(_));
    let strategy = opts
        .strategy
        .clone()
        .unwrap_or_else(|| "round-robin".into());
    let tiers = match &opts.groups {
        Some(groups) => groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                Ok(TierSpec {
                    name: g.name.clone(),
                    strategy: g.strategy.clone().unwrap_or_else(|| strategy.clone()),
                    targets: target_specs(&g.targets, &format!("{path}.groups[{i}].targets"))?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
        None => {
            let tpath = match upstream {
                Upstream::Options(_) => format!("{path}.targets"),
                _ => path.to_string(),
            };
            let mut targets = target_specs(&list, &tpath);
            if single {
                targets = targets.map_err(|e| ConfigError::new(path, e.message));
            }
            vec![TierSpec {
                name: String::new(),
                strategy: strategy.clone(),
                targets: targets?,
            }]
        }
    };
    let backup = opts
        .backup
        .as_ref()
        .map(|b| {
            Ok::<_, ConfigError>(TierSpec {
                name: "backup".into(),
                strategy: strategy.clone(),
                targets: target_specs(b, &format!("{path}.backup"))?,
            })
        })
        .transpose()?;
    let canary = opts
        .canary
        .as_ref()
        .map(|c| {
            Ok::<_, ConfigError>(CanarySpec {
                targets: target_specs(&c.targets, &format!("{path}.canary.targets"))?,
                weight: c.weight.unwrap_or(0),
                cohort: c.cohort.as_ref().and_then(|co| {
                    let key = match (&co.header, &co.cookie) {
                        (Some(h), _) => {
                            CohortKey::Header(http::HeaderName::from_bytes(h.as_bytes()).ok()?)
                        }
                        (None, Some(c)) => CohortKey::Cookie(c.clone()),
                        (None, None) => return None,
                    };
                    Some((key, co.values.clone()))
                }),
                rollback_threshold_percent: c.rollback_threshold_percent.unwrap_or(10),
                min_requests: c.min_requests.unwrap_or(20),
            })
        })
        .transpose()?;
    let t = opts.timeout.clone().unwrap_or_default();
    let pool = opts.pool.clone().unwrap_or_default();
    let max_idle = pool.max_idle.unwrap_or(DEFAULT_MAX_IDLE);
    let target_count: usize = tiers.iter().map(|t| t.targets.len()).sum::<usize>()
        + backup.as_ref().map_or(0, |b| b.targets.len())
        + canary.as_ref().map_or(0, |c| c.targets.len());
    *idle_total += max_idle * target_count;
    let health = opts.health_check.as_ref();
    // `upstreamTls`: the CA file is read here, once per compile, never on the request path.
    let tls = match &opts.upstream_tls {
        None => TlsSpec::default(),
        Some(u) => TlsSpec {
            verify: u.verify.unwrap_or(true),
            server_name: u.server_name.clone(),
            ca: u
                .ca
                .as_deref()
                .map(CaBundle::load)
                .transpose()
                .map_err(|e| ConfigError::new(join(&join(path, "upstreamTls"), "ca"), e))?,
        },
    };
    let http2 = opts.http2.unwrap_or(false);
    let read_timeout = Duration::from_millis(t.per_try_ms.or(t.read_ms).unwrap_or(30_000));
    let spec = PoolSpec {
        tiers,
        group_strategy: match opts.group_strategy.as_deref() {
            Some("round-robin") => GroupStrategy::RoundRobin,
            _ => GroupStrategy::Failover,
        },
        backup,
        canary,
        hash_key: opts.hash_key.as_deref().and_then(HashKey::parse),
        connect_timeout: Duration::from_millis(t.connect_ms.unwrap_or(3000)),
        read_timeout,
        idle_timeout: Duration::from_secs(pool.idle_timeout_secs.unwrap_or(60)),
        keepalive: max_idle > 0,
        // `healthCheck` with only the connection cap or slow start sets no active checks.
        health: health.filter(|h| active_checks(h)).map(|h| HealthSpec {
            path: h.path.clone().unwrap_or_else(|| "/".into()),
            interval: Duration::from_secs(h.interval_secs.unwrap_or(10)),
            timeout: Duration::from_millis(h.timeout_ms.unwrap_or(2000)),
            healthy_threshold: h.healthy_threshold.unwrap_or(1),
            unhealthy_threshold: h.unhealthy_threshold.unwrap_or(3),
            statuses: h
                .expected_status
                .as_deref()
                .and_then(|s| StatusSet::parse(s).ok())
                .unwrap_or_default(),
        }),
        slow_start: health
            .and_then(|h| h.slow_start_secs)
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        max_conns: health.and_then(|h| h.max_connections_per_upstream),
        outlier: outlier.clone(),
        breaker: opts.circuit_breaker.as_ref().map(|b| BreakerPolicy {
            error_threshold_percent: b.error_threshold_percent.unwrap_or(50),
            min_requests: b.min_requests.unwrap_or(20),
            open: Duration::from_secs(b.open_secs.unwrap_or(30)),
        }),
        retry: opts.retry.as_ref().map(|r| {
            let conds = r
                .conditions
                .clone()
                .unwrap_or_else(|| vec!["connection_error".into(), "5xx".into(), "timeout".into()]);
            RetrySpec {
                attempts: r.attempts.unwrap_or(2),
                on_connect_error: conds.iter().any(|c| c == "connection_error"),
                on_5xx: conds.iter().any(|c| c == "5xx"),
                on_timeout: conds.iter().any(|c| c == "timeout"),
                backoff: Duration::from_millis(r.backoff_ms.unwrap_or(0)),
                jitter: r.backoff_jitter.unwrap_or(true),
                budget_percent: r.budget_percent.unwrap_or(20),
            }
        }),
        sticky: opts.sticky.as_ref().map(|s| StickySpec {
            cookie: s.cookie.clone().unwrap_or_else(|| "conduit_sticky".into()),
            secret: s.secret.clone(),
            strict: s.strict.unwrap_or(false),
            max_age: s.max_age_secs,
        }),
        tls,
        http2,
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
    let own = crate::filter::AccessFields::of_route(opts);
    let access = if own.any() {
        Arc::new(site_access.as_ref().clone().with(own, id)?)
    } else {
        site_access.clone()
    };
    let rate_limit = opts
        .rate_limit
        .as_ref()
        .map(|r| rates.route(r, id, &join(path, "rateLimit")))
        .transpose()?;
    Ok(Route {
        access,
        rate_limit,
        id: Arc::from(id),
        matcher,
        strip_prefix: opts.strip_prefix.unwrap_or(false),
        rewrites,
        pool,
        websocket: opts.websocket.unwrap_or(false),
        priority: opts
            .priority
            .unwrap_or(crate::proxy::admission::DEFAULT_PRIORITY),
        mirror: match &opts.mirror {
            Some(url) => {
                let mirror_err = |e| ConfigError::new(format!("{path}.mirror"), e);
                let addr = TargetUrl::parse(url)
                    .and_then(|t| t.resolve())
                    .map_err(mirror_err)?;
                let mut peer = build_peer(addr, url, &spec.tls, spec.http2).map_err(mirror_err)?;
                if url.starts_with("https://") && !spec.tls.verify {
                    tracing::warn!(
                        route = id,
                        target = %url,
                        "upstreamTls.verify is false: the certificate of this https mirror is not verified"
                    );
                }
                peer.options.connection_timeout = Some(spec.connect_timeout);
                peer.options.read_timeout = Some(spec.read_timeout);
                Some(Box::new(peer))
            }
            None => None,
        },
        hedge: opts
            .hedge
            .as_ref()
            .map(|h| (Duration::from_millis(h.delay_ms), h.max_extra.unwrap_or(1))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(yaml: &str) -> raw::ActiveHealth {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn active_checks_only_when_asked_for() {
        assert!(active_checks(&health("{}")));
        assert!(active_checks(&health("{path: /ready}")));
        assert!(active_checks(&health(
            "{intervalSecs: 5, maxConnectionsPerUpstream: 3}"
        )));
        assert!(!active_checks(&health("{maxConnectionsPerUpstream: 3}")));
        assert!(!active_checks(&health("{slowStartSecs: 30}")));
    }
}
