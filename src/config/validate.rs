//! Semantic checks of a structurally valid config. Every problem is reported, each with its field
//! path and a fix; fields that Conduit recognises but does not implement yet are rejected here.

use std::collections::BTreeMap;

use serde::Serialize;

use super::load::{join, LoadedConfig};
use super::raw::{self, Global, Site, Upstream};
use super::ConfigError;
use crate::compile::{glob::Glob, host::HostPattern, regex_bounded, regex_limited};
use crate::upstream::target::TargetUrl;

/// Load-balancing strategies.
pub const STRATEGIES: [&str; 8] = [
    "round-robin",
    "weighted-round-robin",
    "random",
    "least-conn",
    "least-response-time",
    "ip-hash",
    "consistent-hash",
    "p2c",
];
/// How a group is chosen among `groups`.
pub const GROUP_STRATEGIES: [&str; 2] = ["failover", "round-robin"];
/// Retry conditions.
pub const RETRY_CONDITIONS: [&str; 3] = ["connection_error", "5xx", "timeout"];
/// The largest request body a retry can replay (Pingora's retry buffer).
pub const MAX_BODY_BUFFER: usize = 65_536;
/// Access-log formats.
pub const LOG_FORMATS: [&str; 5] = ["dev", "json", "combined", "common", "short"];

/// Checks the whole config; returns every error found.
pub fn validate(cfg: &LoadedConfig) -> Vec<ConfigError> {
    let mut v = Validator {
        errors: Vec::new(),
        site_trusted: false,
        has_redis: cfg.raw.global.redis.is_some(),
        site_consumers: false,
    };
    let global_prefix = if cfg.shape == super::load::Shape::Full {
        "global"
    } else {
        ""
    };
    v.global(&cfg.raw.global, global_prefix);
    if let Some(version) = cfg.raw.version {
        if version != 1 {
            v.err(
                "version",
                &format!("unsupported config version {version}; this Conduit reads version 1"),
            );
        }
    }
    if cfg.raw.sites.is_empty() {
        v.err(
            "sites",
            "no sites: add at least one site with `proxy` or `routes`",
        );
    }
    let mut seen: BTreeMap<(String, u16), String> = BTreeMap::new();
    for (i, site) in cfg.raw.sites.iter().enumerate() {
        let prefix = cfg.site_paths.get(i).cloned().unwrap_or_default();
        v.site(site, &prefix);
        // Compare hosts as they match: `""`, no host and `*` are one; IPv6 is canonical.
        let host = match HostPattern::parse(site.host.as_deref().unwrap_or("*")) {
            Ok(HostPattern::Any) => "*".to_string(),
            Ok(HostPattern::Exact(h)) => h,
            Ok(HostPattern::Suffix(s)) => format!("*{s}"),
            Err(_) => continue,
        };
        let key = (host.clone(), effective_port(site));
        if let Some(first) = seen.get(&key) {
            v.err(
                &join(&prefix, "host"),
                &format!(
                    "host `{host}` on port {} is already served by {first}",
                    key.1
                ),
            );
        } else {
            seen.insert(
                key,
                if prefix.is_empty() {
                    "the site".into()
                } else {
                    prefix
                },
            );
        }
    }
    // `tls.acme` of every site (checks across sites; "not compiled in" without the feature).
    v.errors.extend(crate::ext::acme_hooks::validate(cfg));
    v.errors
}

/// The port a site listens on: `port`, else 443 with TLS, 80 with a specific host, else 8080.
pub fn effective_port(site: &Site) -> u16 {
    if let Some(port) = site.port {
        return port;
    }
    if site.tls.is_some() {
        return 443;
    }
    match site.host.as_deref() {
        Some(h) if h != "*" && !h.is_empty() => 80,
        _ => 8080,
    }
}

struct Validator {
    errors: Vec<ConfigError>,
    /// The site being checked lists `trustedProxies` (route-level `ipFilter.trustProxy` needs it).
    site_trusted: bool,
    /// `global.redis` is set (`rateLimit.store: redis` needs it).
    has_redis: bool,
    /// The site being checked lists `consumers` (`rateLimit.keyBy: consumer` needs them).
    site_consumers: bool,
}

impl Validator {
    fn err(&mut self, path: &str, message: &str) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn later<T: Serialize>(&mut self, prefix: &str, field: &str, value: &Option<T>) {
        if value.is_some() {
            self.err(
                &join(prefix, field),
                "not supported yet: this version of Conduit does not implement this field; remove it",
            );
        }
    }

    /// `rateLimit` of a site, a route or a consumer (`p` is the owner's path).
    fn rate_limit(
        &mut self,
        r: &Option<raw::RateLimit>,
        p: &str,
        level: crate::filter::rate_limit::Level,
    ) {
        if let Some(r) = r {
            let cx = crate::filter::rate_limit::Context {
                level,
                has_redis: self.has_redis,
                has_consumers: self.site_consumers,
            };
            self.errors.extend(crate::filter::rate_limit::validate(
                r,
                &join(p, "rateLimit"),
                cx,
            ));
        }
    }

    fn global(&mut self, g: &Global, prefix: &str) {
        if let Some(w) = g.workers {
            if w == 0 || w > 1024 {
                self.err(&join(prefix, "workers"), "must be between 1 and 1024");
            }
        }
        if let Some(s) = g.shutdown_timeout_secs {
            if s > 3600 {
                self.err(&join(prefix, "shutdownTimeoutSecs"), "must be at most 3600");
            }
        }
        if let Some(bind) = &g.bind {
            if bind.parse::<std::net::IpAddr>().is_err() {
                self.err(
                    &join(prefix, "bind"),
                    "must be an IP address such as 0.0.0.0, 127.0.0.1 or ::",
                );
            }
        }
        self.later(prefix, "admin", &g.admin);
        self.later(prefix, "otlp", &g.otlp);
        if let Some(r) = &g.redis {
            self.errors
                .extend(crate::filter::rate_limit::validate_redis(
                    r,
                    &join(prefix, "redis"),
                ));
        }
    }

    fn site(&mut self, s: &Site, p: &str) {
        self.site_trusted = s.trusted_proxies.as_ref().is_some_and(|l| !l.is_empty());
        self.site_consumers = s.consumers.is_some();
        if let Some(host) = &s.host {
            if let Err(why) = HostPattern::parse(host) {
                self.err(&join(p, "host"), &why);
            }
        }
        if s.port == Some(0) {
            self.err(&join(p, "port"), "must be between 1 and 65535");
        }
        if s.proxy.is_none() && s.routes.as_ref().is_none_or(Vec::is_empty) {
            self.err(p, "the site serves nothing: add `proxy` or `routes`");
        }
        match &s.proxy {
            Some(raw::Proxy::Single(url)) => self.target_url(&join(p, "proxy"), url),
            Some(raw::Proxy::Map(map)) => {
                if map.is_empty() {
                    self.err(&join(p, "proxy"), "empty map: add a prefix such as \"/\"");
                }
                for (prefix, upstream) in map {
                    let path = join(&join(p, "proxy"), prefix);
                    if !prefix.starts_with('/') {
                        self.err(&path, "a proxy prefix must start with `/`");
                    }
                    self.upstream(&path, upstream);
                }
            }
            None => {}
        }
        if let Some(routes) = &s.routes {
            for (i, r) in routes.iter().enumerate() {
                self.route_rule(&format!("{}[{i}]", join(p, "routes")), r);
            }
        }
        if let Some(l) = &s.logging {
            self.logging(&join(p, "logging"), l);
        }
        if let Some(raw::HealthCheck::Options(h)) = &s.health_check {
            let hp = join(p, "healthCheck");
            if let Some(path) = &h.path {
                if !path.starts_with('/') {
                    self.err(&join(&hp, "path"), "must start with `/`");
                }
            }
            self.later(&hp, "includeUpstreams", &h.include_upstreams);
        }
        if let Some(l) = &s.limits {
            self.limits(&join(p, "limits"), l);
        }
        if let Some(t) = &s.tls {
            self.tls(&join(p, "tls"), t, s);
        }
        if let Some(h) = &s.http2 {
            self.http2(&join(p, "http2"), h, s.tls.is_some());
        }
        self.errors.extend(crate::filter::validate(
            crate::filter::AccessFields::of_site(s),
            s.trusted_proxies.as_ref().is_some_and(|l| !l.is_empty()),
            p,
        ));
        self.rate_limit(&s.rate_limit, p, crate::filter::rate_limit::Level::Site);
        for (i, c) in s
            .consumers
            .iter()
            .flat_map(|c| c.consumers.iter())
            .enumerate()
        {
            let cp = format!("{}[{i}]", join(&join(p, "consumers"), "consumers"));
            self.rate_limit(
                &c.rate_limit,
                &cp,
                crate::filter::rate_limit::Level::Consumer,
            );
        }
        self.transforms(s, p);
        if let Some(c) = &s.consumers {
            self.errors.extend(crate::filter::validate_consumers(
                c,
                s,
                &join(p, "consumers"),
            ));
        }
        if let Some(raw::SecurityHeaders::Options(o)) = &s.security_headers {
            let sp = join(p, "securityHeaders");
            match crate::compile::security_headers(o, s.tls.is_some()) {
                Ok(_) => {}
                Err((field, why)) => self.err(&join(&sp, &field), &why),
            }
        }
        if let Some(o) = &s.outlier_detection {
            let op = join(p, "outlierDetection");
            if o.consecutive5xx.is_some_and(|v| v == 0 || v > 1000) {
                self.err(&join(&op, "consecutive5xx"), "must be between 1 and 1000");
            }
            if o.base_ejection_time_secs
                .is_some_and(|v| v == 0 || v > 86_400)
            {
                self.err(
                    &join(&op, "baseEjectionTimeSecs"),
                    "must be between 1 and 86400",
                );
            }
            if o.max_ejection_time_secs
                .is_some_and(|v| v == 0 || v > 86_400)
            {
                self.err(
                    &join(&op, "maxEjectionTimeSecs"),
                    "must be between 1 and 86400",
                );
            }
            if let (Some(b), Some(m)) = (o.base_ejection_time_secs, o.max_ejection_time_secs) {
                if m < b {
                    self.err(
                        &join(&op, "maxEjectionTimeSecs"),
                        "must not be below baseEjectionTimeSecs",
                    );
                }
            }
            if o.max_ejection_percent.is_some_and(|v| v > 100) {
                self.err(
                    &join(&op, "maxEjectionPercent"),
                    "must be between 0 and 100",
                );
            }
        }
        if let Some(list) = &s.trusted_proxies {
            for (i, entry) in list.iter().enumerate() {
                if crate::proxy::forwarded::parse_trusted(entry).is_none() {
                    self.err(
                        &format!("{}[{i}]", join(p, "trustedProxies")),
                        "must be an IP address or a CIDR such as 10.0.0.0/8",
                    );
                }
            }
        }
        for (field, value) in [
            ("compression", &s.compression),
            ("responseTime", &s.response_time),
            ("serverTiming", &s.server_timing),
            ("cors", &s.cors),
            ("headers", &s.headers),
            ("redirects", &s.redirects),
            ("middleware", &s.middleware),
            ("static", &s.static_files),
            ("staticOptions", &s.static_options),
            ("tcp", &s.tcp),
            ("upload", &s.upload),
            ("metrics", &s.metrics),
            ("fallback", &s.fallback),
            ("maskErrors", &s.mask_errors),
            ("faultInjection", &s.fault_injection),
        ] {
            self.later(p, field, value);
        }
    }

    /// `requestTransform` / `responseTransform`: valid edits, and templates only of what the
    /// site can provide (`{{ jwt.* }}` needs a JWT check, `{{ consumer }}` needs consumers).
    fn transforms(&mut self, s: &Site, p: &str) {
        let routes_jwt = || {
            let opts = s
                .routes
                .iter()
                .flatten()
                .filter_map(|r| r.proxy.as_ref())
                .chain(match &s.proxy {
                    Some(raw::Proxy::Map(m)) => m.values().collect::<Vec<_>>(),
                    _ => Vec::new(),
                });
            opts.into_iter().any(|u| match u {
                raw::Upstream::Options(o) => o.jwt_auth.is_some(),
                _ => false,
            })
        };
        let consumer_jwt = s
            .consumers
            .as_ref()
            .is_some_and(|c| c.consumers.iter().any(|c| c.jwt.is_some()));
        let has_jwt = s.jwt_auth.is_some() || consumer_jwt || routes_jwt();
        for (field, t) in [
            ("requestTransform", &s.request_transform),
            ("responseTransform", &s.response_transform),
        ] {
            let Some(t) = t else { continue };
            let tp = join(p, field);
            let (errors, uses) = crate::filter::transform::validate(t, &tp);
            self.errors.extend(errors);
            if uses.jwt && !has_jwt {
                self.err(
                    &join(&tp, "setHeaders"),
                    "uses `{{ jwt.* }}` but no `jwtAuth` (or consumer `jwt`) verifies tokens on this site",
                );
            }
            if uses.consumer && s.consumers.is_none() {
                self.err(
                    &join(&tp, "setHeaders"),
                    "uses `{{ consumer }}` but the site has no `consumers`",
                );
            }
        }
    }

    fn target_url(&mut self, path: &str, url: &str) {
        if let Err(why) = TargetUrl::parse(url) {
            self.err(path, &why);
        }
    }

    fn upstream(&mut self, p: &str, u: &Upstream) {
        match u {
            Upstream::Url(url) => self.target_url(p, url),
            Upstream::List(urls) => {
                if urls.is_empty() {
                    self.err(p, "empty target list");
                }
                for (i, url) in urls.iter().enumerate() {
                    self.target_url(&format!("{p}[{i}]"), url);
                }
            }
            Upstream::Options(o) => self.route_options(p, o),
        }
    }

    fn targets(&mut self, p: &str, targets: &[raw::Target]) {
        if targets.is_empty() {
            self.err(p, "empty: list at least one upstream URL");
        }
        for (i, t) in targets.iter().enumerate() {
            let tp = format!("{p}[{i}]");
            match t {
                raw::Target::Url(url) => self.target_url(&tp, url),
                raw::Target::Weighted(w) => {
                    self.target_url(&join(&tp, "url"), &w.url);
                    if let Some(weight) = w.weight {
                        if weight == 0 || weight > 1000 {
                            self.err(&join(&tp, "weight"), "must be between 1 and 1000");
                        }
                    }
                }
            }
        }
    }

    fn strategy(&mut self, p: &str, strategy: &str) {
        if !STRATEGIES.contains(&strategy) {
            self.err(
                p,
                &format!(
                    "unknown strategy `{strategy}`; expected one of {}",
                    STRATEGIES.join(", ")
                ),
            );
        }
    }

    fn route_options(&mut self, p: &str, o: &raw::RouteOptions) {
        self.errors.extend(crate::filter::validate(
            crate::filter::AccessFields::of_route(o),
            self.site_trusted,
            p,
        ));
        match (&o.targets, &o.groups) {
            (None, None) => self.err(
                &join(p, "targets"),
                "missing: list at least one upstream URL (or use `groups`)",
            ),
            (Some(_), Some(_)) => self.err(
                &join(p, "groups"),
                "use either `targets` or `groups`, not both",
            ),
            (Some(t), None) => self.targets(&join(p, "targets"), t),
            (None, Some(groups)) => {
                let gp = join(p, "groups");
                if groups.is_empty() {
                    self.err(&gp, "empty: list at least one group");
                }
                let mut names = std::collections::HashSet::new();
                for (i, g) in groups.iter().enumerate() {
                    let ip = format!("{gp}[{i}]");
                    if g.name.is_empty() || !names.insert(g.name.as_str()) {
                        self.err(&join(&ip, "name"), "must be a non-empty name used once");
                    }
                    self.targets(&join(&ip, "targets"), &g.targets);
                    if let Some(st) = &g.strategy {
                        self.strategy(&join(&ip, "strategy"), st);
                    }
                }
            }
        }
        if let Some(gs) = &o.group_strategy {
            if o.groups.is_none() {
                self.err(&join(p, "groupStrategy"), "only applies with `groups`");
            } else if !GROUP_STRATEGIES.contains(&gs.as_str()) {
                self.err(
                    &join(p, "groupStrategy"),
                    &format!(
                        "unknown group strategy `{gs}`; expected one of {}",
                        GROUP_STRATEGIES.join(", ")
                    ),
                );
            }
        }
        if let Some(strategy) = &o.strategy {
            self.strategy(&join(p, "strategy"), strategy);
        }
        if let Some(key) = &o.hash_key {
            let kp = join(p, "hashKey");
            let ok = match key.split_once(':') {
                None => matches!(key.as_str(), "ip" | "url"),
                Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                Some(("cookie", name)) => !name.is_empty() && !name.contains([';', '=', ' ']),
                Some(_) => false,
            };
            if !ok {
                self.err(
                    &kp,
                    "must be `ip`, `url`, `header:<Name>` or `cookie:<Name>`",
                );
            }
            let hash = |s: Option<&str>| matches!(s, Some("consistent-hash" | "ip-hash"));
            let hashing = hash(o.strategy.as_deref())
                || o.groups
                    .iter()
                    .flatten()
                    .any(|g| hash(g.strategy.as_deref()));
            if !hashing {
                self.err(
                    &kp,
                    "only applies with strategy `consistent-hash` (or `ip-hash`, which hashes `ip`)",
                );
            } else if o.strategy.as_deref() == Some("ip-hash") && key != "ip" {
                self.err(&kp, "`ip-hash` always hashes the client address; use `consistent-hash` for other keys");
            }
        }
        if let Some(b) = &o.backup {
            self.targets(&join(p, "backup"), b);
        }
        if let Some(r) = &o.retry {
            self.retry(&join(p, "retry"), r);
        }
        if let Some(h) = &o.health_check {
            self.active_health(&join(p, "healthCheck"), h);
        }
        if let Some(st) = &o.sticky {
            let sp = join(p, "sticky");
            if st.secret.len() < 16 {
                self.err(&join(&sp, "secret"), "must be at least 16 characters");
            }
            if let Some(c) = &st.cookie {
                if c.is_empty()
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    self.err(
                        &join(&sp, "cookie"),
                        "must be a cookie name (letters, digits, `-`, `_`, `.`)",
                    );
                }
            }
            if matches!(o.strategy.as_deref(), Some("consistent-hash" | "ip-hash")) {
                self.err(
                    &sp,
                    "a hash strategy already pins clients; use one or the other",
                );
            }
        }
        if let Some(m) = &o.mirror {
            self.target_url(&join(p, "mirror"), m);
        }
        if let Some(pr) = o.priority {
            if pr > 100 {
                self.err(&join(p, "priority"), "must be between 0 and 100");
            }
        }
        if let Some(c) = &o.canary {
            let cp = join(p, "canary");
            self.targets(&join(&cp, "targets"), &c.targets);
            if c.weight.is_some_and(|w| w > 100) {
                self.err(
                    &join(&cp, "weight"),
                    "must be a percentage between 0 and 100",
                );
            }
            if c.rollback_threshold_percent
                .is_some_and(|w| w == 0 || w > 100)
            {
                self.err(
                    &join(&cp, "rollbackThresholdPercent"),
                    "must be between 1 and 100",
                );
            }
            if c.min_requests == Some(0) {
                self.err(&join(&cp, "minRequests"), "must be greater than 0");
            }
            match &c.cohort {
                Some(co) => {
                    let hp = join(&cp, "cohort");
                    if co.header.is_some() == co.cookie.is_some() {
                        self.err(&hp, "name exactly one of `header` or `cookie`");
                    }
                    if let Some(h) = &co.header {
                        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                            self.err(&join(&hp, "header"), "not a valid header name");
                        }
                    }
                    if co.values.is_empty() {
                        self.err(&join(&hp, "values"), "list at least one value");
                    }
                }
                None if c.weight.unwrap_or(0) == 0 => {
                    self.err(&cp, "the canary receives nothing: set `weight` or `cohort`")
                }
                None => {}
            }
            if o.groups.is_some() {
                self.err(&cp, "cannot be combined with `groups`");
            }
        }
        if let Some(h) = &o.hedge {
            let hp = join(p, "hedge");
            if h.delay_ms == 0 || h.delay_ms > 60_000 {
                self.err(&join(&hp, "delayMs"), "must be between 1 and 60000");
            }
            if h.max_extra.is_some_and(|m| m == 0 || m > 4) {
                self.err(&join(&hp, "maxExtra"), "must be between 1 and 4");
            }
            if o.mirror.is_some() {
                self.err(&hp, "cannot be combined with `mirror` on one route");
            }
        }
        if o.http2 == Some(true) && o.websocket == Some(true) {
            self.err(
                &join(p, "http2"),
                "cannot be combined with `websocket: true`: WebSocket upgrades need HTTP/1.1 to the upstream; put WebSocket paths on a route without `http2`",
            );
        }
        if let Some(t) = &o.upstream_tls {
            let tp = join(p, "upstreamTls");
            let url = |t: &raw::Target| match t {
                raw::Target::Url(u) => u.clone(),
                raw::Target::Weighted(w) => w.url.clone(),
            };
            let any_https = o
                .targets
                .iter()
                .flatten()
                .chain(o.groups.iter().flatten().flat_map(|g| g.targets.iter()))
                .chain(o.backup.iter().flatten())
                .chain(o.canary.iter().flat_map(|c| c.targets.iter()))
                .map(url)
                .chain(o.mirror.iter().cloned())
                .any(|u| crate::upstream::target::is_https(&u));
            if !any_https {
                self.err(
                    &tp,
                    "only applies to https:// targets, and every target of this route is http://; remove it or use https:// URLs",
                );
            }
            if let Some(name) = &t.server_name {
                if let Err(why) = crate::upstream::target::check_server_name(name) {
                    self.err(&join(&tp, "serverName"), &why);
                }
            }
            if let Some(ca) = &t.ca {
                if let Err(why) = crate::upstream::target::CaBundle::load(ca) {
                    self.err(&join(&tp, "ca"), &why);
                }
            }
        }
        if let Some(b) = &o.circuit_breaker {
            let bp = join(p, "circuitBreaker");
            if b.error_threshold_percent.is_some_and(|v| v == 0 || v > 100) {
                self.err(
                    &join(&bp, "errorThresholdPercent"),
                    "must be between 1 and 100",
                );
            }
            if b.min_requests == Some(0) {
                self.err(&join(&bp, "minRequests"), "must be greater than 0");
            }
            if b.open_secs.is_some_and(|v| v == 0 || v > 3600) {
                self.err(&join(&bp, "openSecs"), "must be between 1 and 3600");
            }
        }
        if let Some(rules) = &o.rewrite {
            for (i, r) in rules.iter().enumerate() {
                let rp = format!("{}[{i}]", join(p, "rewrite"));
                if let Err(e) = regex_bounded(&r.from) {
                    self.err(&join(&rp, "from"), &e);
                }
                if !r.to.starts_with('/') && !r.to.starts_with('$') {
                    self.err(&join(&rp, "to"), "must produce a path starting with `/`");
                }
            }
        }
        if let Some(t) = &o.timeout {
            let tp = join(p, "timeout");
            for (field, value) in [("connectMs", t.connect_ms), ("readMs", t.read_ms)] {
                if let Some(v) = value {
                    if v == 0 || v > 3_600_000 {
                        self.err(&join(&tp, field), "must be between 1 and 3600000 ms");
                    }
                }
            }
            self.later(&tp, "sendMs", &t.send_ms);
            self.later(&tp, "firstByteMs", &t.first_byte_ms);
            if let Some(v) = t.per_try_ms {
                if v == 0 || v > 3_600_000 {
                    self.err(&join(&tp, "perTryMs"), "must be between 1 and 3600000 ms");
                }
                if o.retry.is_none() {
                    self.err(
                        &join(&tp, "perTryMs"),
                        "only applies with `retry`; use `readMs` otherwise",
                    );
                }
            }
        }
        if let Some(pool) = &o.pool {
            if let Some(secs) = pool.idle_timeout_secs {
                if secs == 0 || secs > 3600 {
                    self.err(
                        &join(&join(p, "pool"), "idleTimeoutSecs"),
                        "must be between 1 and 3600",
                    );
                }
            }
            if let Some(n) = pool.max_idle {
                if n > 100_000 {
                    self.err(&join(&join(p, "pool"), "maxIdle"), "must be at most 100000");
                }
            }
        }
        self.rate_limit(&o.rate_limit, p, crate::filter::rate_limit::Level::Route);
        self.later(p, "cache", &o.cache);
    }

    fn tls(&mut self, p: &str, t: &raw::Tls, site: &Site) {
        match (&t.cert, &t.key) {
            (Some(_), Some(_)) => {}
            (Some(_), None) => self.err(&join(p, "key"), "missing: `cert` needs its `key`"),
            (None, Some(_)) => self.err(&join(p, "cert"), "missing: `key` needs its `cert`"),
            (None, None)
                if t.acme.is_none() && t.certificates.as_ref().is_none_or(Vec::is_empty) =>
            {
                self.err(
                    p,
                    "no certificate: set `cert` and `key`, list `certificates`, or use `acme`",
                )
            }
            (None, None) => {}
        }
        for (i, c) in t.certificates.iter().flatten().enumerate() {
            for (j, name) in c.sni.iter().flatten().enumerate() {
                if name != "*" && HostPattern::parse(name).is_err() {
                    self.err(
                        &format!("{}[{i}].sni[{j}]", join(p, "certificates")),
                        "must be a DNS name, `*.example.com` or `*`",
                    );
                }
            }
        }
        let versions = t.versions.clone().unwrap_or_default();
        if t.versions.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                &join(p, "versions"),
                "list at least one of \"1.2\", \"1.3\"",
            );
        }
        for (i, v) in versions.iter().enumerate() {
            if !matches!(v.as_str(), "1.2" | "1.3") {
                self.err(
                    &format!("{}[{i}]", join(p, "versions")),
                    &format!("unsupported TLS version `{v}`; use \"1.2\" or \"1.3\""),
                );
            }
        }
        let ciphers = t.ciphers.clone().unwrap_or_default();
        let known = crate::tls::config::known_ciphers();
        for (i, c) in ciphers.iter().enumerate() {
            if !known.contains(&c.as_str()) {
                self.err(
                    &format!("{}[{i}]", join(p, "ciphers")),
                    &format!(
                        "unknown cipher suite `{c}`; expected one of {}",
                        known.join(", ")
                    ),
                );
            }
        }
        if t.ciphers.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                &join(p, "ciphers"),
                "list at least one cipher suite, or leave it out",
            );
        }
        if let Err(why) = crate::tls::config::check_policy(&versions, &ciphers) {
            self.err(&join(p, "ciphers"), &why);
        }
        if let Some(r) = t.http_redirect_port {
            if r == 0 || Some(r) == site.port || r == effective_port(site) {
                self.err(
                    &join(p, "httpRedirectPort"),
                    "must be a port other than the site's own",
                );
            }
        }
    }

    fn http2(&mut self, p: &str, h: &raw::Http2, tls: bool) {
        if h.max_concurrent_streams
            .is_some_and(|n| n == 0 || n > 10_000)
        {
            self.err(
                &join(p, "maxConcurrentStreams"),
                "must be between 1 and 10000",
            );
        }
        if h.initial_window_size
            .is_some_and(|n| !(65_535..=2_147_483_647).contains(&n))
        {
            self.err(
                &join(p, "initialWindowSize"),
                "must be between 65535 and 2147483647 bytes",
            );
        }
        if h.h2c == Some(true) && tls {
            self.err(
                &join(p, "h2c"),
                "h2c is for plaintext ports; on TLS, HTTP/2 is negotiated by ALPN",
            );
        }
        if h.enabled == Some(false) && h.h2c == Some(true) {
            self.err(&join(p, "h2c"), "contradicts `enabled: false`");
        }
    }

    fn retry(&mut self, p: &str, r: &raw::Retry) {
        if r.attempts.is_some_and(|a| a == 0 || a > 10) {
            self.err(
                &join(p, "attempts"),
                "must be between 1 and 10 (attempts include the first)",
            );
        }
        for (i, c) in r.conditions.iter().flatten().enumerate() {
            if !RETRY_CONDITIONS.contains(&c.as_str()) {
                self.err(
                    &format!("{}[{i}]", join(p, "conditions")),
                    &format!(
                        "unknown condition `{c}`; expected one of {}",
                        RETRY_CONDITIONS.join(", ")
                    ),
                );
            }
        }
        if r.backoff_ms.is_some_and(|b| b > 60_000) {
            self.err(&join(p, "backoffMs"), "must be at most 60000");
        }
        if r.budget_percent.is_some_and(|b| b == 0 || b > 100) {
            self.err(&join(p, "budgetPercent"), "must be between 1 and 100");
        }
    }

    fn active_health(&mut self, p: &str, h: &raw::ActiveHealth) {
        if let Some(path) = &h.path {
            if !path.starts_with('/') {
                self.err(&join(p, "path"), "must start with `/`");
            }
        }
        if h.interval_secs.is_some_and(|v| v == 0 || v > 3600) {
            self.err(&join(p, "intervalSecs"), "must be between 1 and 3600");
        }
        if h.timeout_ms.is_some_and(|v| v == 0 || v > 60_000) {
            self.err(&join(p, "timeoutMs"), "must be between 1 and 60000");
        }
        for (field, v) in [
            ("unhealthyThreshold", h.unhealthy_threshold),
            ("healthyThreshold", h.healthy_threshold),
        ] {
            if v.is_some_and(|v| v == 0 || v > 100) {
                self.err(&join(p, field), "must be between 1 and 100");
            }
        }
        if let Some(e) = &h.expected_status {
            if let Err(why) = crate::upstream::health::StatusSet::parse(e) {
                self.err(&join(p, "expectedStatus"), &why);
            }
        }
        if h.slow_start_secs.is_some_and(|v| v > 3600) {
            self.err(&join(p, "slowStartSecs"), "must be at most 3600");
        }
        if h.max_connections_per_upstream == Some(0) {
            self.err(
                &join(p, "maxConnectionsPerUpstream"),
                "must be greater than 0",
            );
        }
    }

    fn route_rule(&mut self, p: &str, r: &raw::RouteRule) {
        self.later(p, "static", &r.static_files);
        match &r.proxy {
            Some(u) => {
                self.upstream(&join(p, "proxy"), u);
                if let Upstream::Options(o) = u {
                    if o.strip_prefix == Some(true) {
                        self.err(
                            &join(&join(p, "proxy"), "stripPrefix"),
                            "stripPrefix applies to `proxy` prefixes only; use `rewrite` in a route",
                        );
                    }
                }
            }
            None if r.static_files.is_none() => {
                self.err(&join(p, "proxy"), "missing: a route needs `proxy`")
            }
            None => {}
        }
        if let Some(id) = &r.id {
            if id.is_empty() || id.len() > 128 {
                self.err(&join(p, "id"), "must be 1 to 128 characters");
            }
        }
        let Some(m) = &r.matcher else { return };
        let mp = join(p, "match");
        if let Some(path) = &m.path {
            if let Err(why) = Glob::parse(path) {
                self.err(&join(&mp, "path"), &why);
            }
        }
        if let Some(methods) = &m.method {
            for (i, method) in methods.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    self.err(
                        &format!("{}[{i}]", join(&mp, "method")),
                        "must be an upper-case method name such as GET",
                    );
                }
            }
        }
        for (field, map) in [
            ("headers", &m.headers),
            ("query", &m.query),
            ("cookies", &m.cookies),
        ] {
            let Some(map) = map else { continue };
            for (name, pattern) in map {
                let fp = join(&join(&mp, field), name);
                if field == "headers" && http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.err(&fp, "not a valid header name");
                }
                if let Err(e) = regex_limited(pattern) {
                    self.err(&fp, &e);
                }
            }
        }
    }

    fn logging(&mut self, p: &str, l: &raw::Logging) {
        let format = match l {
            raw::Logging::Enabled(_) => None,
            raw::Logging::Format(f) => Some((p.to_string(), f)),
            raw::Logging::Options(o) => {
                if let Some(paths) = &o.skip_paths {
                    for (i, g) in paths.iter().enumerate() {
                        if let Err(why) = Glob::parse(g) {
                            self.err(&format!("{}[{i}]", join(p, "skipPaths")), &why);
                        }
                    }
                }
                if let Some(file) = &o.file {
                    if file.is_empty() {
                        self.err(&join(p, "file"), "must not be empty");
                    }
                }
                o.format.as_ref().map(|f| (join(p, "format"), f))
            }
        };
        if let Some((fp, f)) = format {
            if !LOG_FORMATS.contains(&f.as_str()) {
                self.err(
                    &fp,
                    &format!(
                        "unknown log format `{f}`; expected one of {}",
                        LOG_FORMATS.join(", ")
                    ),
                );
            }
        }
    }

    fn limits(&mut self, p: &str, l: &raw::Limits) {
        let positive: [(&str, Option<u64>); 6] = [
            ("maxBodyBytes", l.max_body_bytes),
            ("maxHeaderBytes", l.max_header_bytes.map(|v| v as u64)),
            ("maxRequestHeaders", l.max_request_headers.map(|v| v as u64)),
            (
                "maxInflightRequests",
                l.max_inflight_requests.map(|v| v as u64),
            ),
            ("headerTimeoutSecs", l.header_timeout_secs),
            ("idleTimeoutSecs", l.idle_timeout_secs),
        ];
        for (field, value) in positive {
            if value == Some(0) {
                self.err(&join(p, field), "must be greater than 0");
            }
        }
        if let Some(n) = l.max_request_headers {
            if n > 256 {
                self.err(
                    &join(p, "maxRequestHeaders"),
                    "must be at most 256 (the parser's own limit)",
                );
            }
        }
        if let Some(n) = l.max_header_bytes {
            if n > 1_048_576 {
                self.err(&join(p, "maxHeaderBytes"), "must be at most 1048576");
            }
        }
        if let Some(n) = l.max_body_buffer_bytes {
            if n > MAX_BODY_BUFFER {
                self.err(
                    &join(p, "maxBodyBufferBytes"),
                    "must be at most 65536 (the largest body a retry can replay)",
                );
            }
        }
        if l.max_connections_per_ip == Some(0) {
            self.err(&join(p, "maxConnectionsPerIp"), "must be greater than 0");
        }
        if let Some(t) = l.priority_threshold {
            if !(t > 0.0 && t <= 1.0) {
                self.err(
                    &join(p, "priorityThreshold"),
                    "must be a fraction above 0 and at most 1",
                );
            }
            if l.max_inflight_requests.is_none() {
                self.err(
                    &join(p, "priorityThreshold"),
                    "only applies with `maxInflightRequests`",
                );
            }
        }
        if let Some(q) = &l.queue {
            let qp = join(p, "queue");
            if q.size == 0 || q.size > 1_000_000 {
                self.err(&join(&qp, "size"), "must be between 1 and 1000000");
            }
            if q.timeout_ms.is_some_and(|t| t == 0 || t > 600_000) {
                self.err(&join(&qp, "timeoutMs"), "must be between 1 and 600000");
            }
            if l.max_inflight_requests.is_none() {
                self.err(&qp, "only applies with `maxInflightRequests`");
            }
        }
        for (field, value) in [
            ("timeoutSecs", &l.timeout_secs),
            ("keepaliveRequestLimit", &l.keepalive_request_limit),
            ("minUploadRateBytesPerSec", &l.min_upload_rate_bytes_per_sec),
        ] {
            self.later(p, field, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Format};

    fn check(text: &str) -> Vec<String> {
        let cfg = load_str(text, Format::Yaml, "t", &|_| None).unwrap();
        validate(&cfg).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn later_fields_are_rejected_by_path() {
        let errs = check("proxy:\n  /api:\n    targets: [http://a:1]\n    cache: {ttl: 2}\n");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("proxy./api.cache: not supported yet")),
            "{errs:?}"
        );
    }

    #[test]
    fn semantic_errors_all_at_once() {
        let errs = check(
            "host: 'bad host!'\nproxy:\n  api: ftp://x\n  /b:\n    targets: []\n    strategy: fastest\nlogging: fancy\n",
        );
        assert!(errs.iter().any(|e| e.starts_with("host: ")), "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("proxy.api: a proxy prefix")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("proxy./b.targets: empty")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("proxy./b.strategy: unknown strategy `fastest`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("logging: unknown log format")),
            "{errs:?}"
        );
    }

    #[test]
    fn default_ports() {
        let site = |host: Option<&str>| Site {
            host: host.map(str::to_string),
            ..Site::default()
        };
        assert_eq!(effective_port(&site(None)), 8080);
        assert_eq!(effective_port(&site(Some("example.com"))), 80);
    }
}
