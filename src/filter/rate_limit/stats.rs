//! Counters of every limit, and the serialisable read-out of them (for the admin API's
//! `GET /rate-limits`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::{Limiter, Scope};
use crate::snapshot::Snapshot;

/// What a limit decided so far; kept across reloads while the limit is unchanged.
#[derive(Debug, Default)]
pub struct Counters {
    passed: AtomicU64,
    rejected: AtomicU64,
    dry_run_rejected: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    pub(super) fn passed(&self) {
        self.passed.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the count including this one.
    pub(super) fn dry_run_rejected(&self) -> u64 {
        self.dry_run_rejected.fetch_add(1, Ordering::Relaxed) + 1
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every limit of the running configuration, with its counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub limits: Vec<LimitReport>,
    /// The Redis servers in use (empty without the `redis` feature).
    pub redis: Vec<RedisReport>,
}

/// One limit (a site's, a route's or a consumer's).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LimitReport {
    /// `site`, `route` or `consumer`.
    pub level: &'static str,
    /// The site id (`HOST:PORT`).
    pub site: String,
    /// The route id, for a route's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The consumer, for a consumer's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    pub limit: u64,
    pub window_secs: u64,
    pub burst: u64,
    pub key_by: String,
    /// `memory`, or the Redis URL without its password.
    pub store: String,
    pub dry_run: bool,
    /// Requests this limit let through.
    pub passed: u64,
    /// Requests this limit refused (429).
    pub rejected: u64,
    /// Requests a `dryRun` limit would have refused.
    pub dry_run_rejected: u64,
    /// Decisions made by the local fallback because Redis did not answer.
    pub fallbacks: u64,
    /// Keys held in this process's memory for this limit.
    pub tracked_keys: usize,
}

/// One Redis server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisReport {
    /// The URL without its password.
    pub url: String,
    /// Decisions go to Redis (false: the local fallback answers until Redis is back).
    pub healthy: bool,
    /// Decisions answered by the local fallback since start.
    pub fallbacks: u64,
}

/// The limits of `snapshot` and their counters, each limit once, in site order.
pub fn report(snapshot: &Snapshot) -> Report {
    let mut seen_sites = BTreeSet::new();
    let mut limits = Vec::new();
    let mut redis = Vec::new();
    let mut seen_redis = BTreeSet::new();
    for port in snapshot.ports.values() {
        let sites = port
            .exact
            .values()
            .chain(port.suffix.iter().map(|(_, s)| s))
            .chain(port.any.iter());
        for site in sites {
            if !seen_sites.insert(site.id.clone()) {
                continue;
            }
            let routes = site.rules.iter().chain(site.prefixes.iter());
            let all = site
                .rate_limits
                .site
                .iter()
                .chain(routes.filter_map(|r| r.rate_limit.as_ref()))
                .chain(site.rate_limits.consumers.values());
            for limiter in all {
                limits.push(limit_report(limiter));
                if let Some(r) = limiter.redis_report() {
                    if seen_redis.insert(r.url.clone()) {
                        redis.push(r);
                    }
                }
            }
        }
    }
    limits.sort_by(|a, b| (&a.site, &a.route, &a.consumer).cmp(&(&b.site, &b.route, &b.consumer)));
    Report { limits, redis }
}

fn limit_report(l: &Arc<Limiter>) -> LimitReport {
    let c = &l.state.counters;
    let (level, site, route, consumer) = match &l.scope {
        Scope::Site { site } => ("site", site.to_string(), None, None),
        Scope::Route { site, route } => ("route", site.to_string(), Some(route.to_string()), None),
        Scope::Consumer { site, consumer } => (
            "consumer",
            site.to_string(),
            None,
            Some(consumer.to_string()),
        ),
    };
    LimitReport {
        level,
        site,
        route,
        consumer,
        limit: l.limit,
        window_secs: l.window_secs,
        burst: l.burst,
        key_by: l.key_by.as_config(),
        store: l.store_name(),
        dry_run: l.dry_run,
        passed: c.passed.load(Ordering::Relaxed),
        rejected: c.rejected.load(Ordering::Relaxed),
        dry_run_rejected: c.dry_run_rejected.load(Ordering::Relaxed),
        fallbacks: c.fallbacks.load(Ordering::Relaxed),
        tracked_keys: l.state.memory.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, Mode, Registries};
    use crate::config::{load_str, Format};

    #[test]
    fn the_report_lists_every_limit_with_its_counts() {
        let text = "sites:
  - port: 18081
    rateLimit: {limit: 2}
    proxy:
      /api:
        targets: [http://127.0.0.1:9]
        rateLimit: {limit: 1, keyBy: 'header:X-Client', dryRun: true}
      /: http://127.0.0.1:9
";
        let cfg = load_str(text, Format::Yaml, "t", &|_| None).unwrap();
        assert!(crate::config::validate::validate(&cfg).is_empty());
        let reg = Registries::default();
        let snap = compile(&cfg, &reg, 1, Mode::Check).unwrap();
        let site = snap.ports[&18081].any.as_ref().unwrap();
        let route = site
            .prefixes
            .iter()
            .find(|r| r.id.ends_with("|/api"))
            .unwrap();
        let headers = http::HeaderMap::new();
        for _ in 0..3 {
            let mut state = super::super::RequestState::Pending;
            let _ = futures::executor::block_on(super::super::enforce(
                &site.rate_limits,
                route.rate_limit.as_deref(),
                "/api",
                &headers,
                Some("10.0.0.1".parse().unwrap()),
                None,
                &mut state,
            ));
        }
        let report = report(&snap);
        assert!(report.redis.is_empty());
        let [site_limit, route_limit] = &report.limits[..] else {
            panic!("{report:?}")
        };
        assert_eq!(
            (site_limit.level, site_limit.passed, site_limit.rejected),
            ("site", 2, 1)
        );
        assert_eq!(site_limit.site, "*:18081");
        assert_eq!(site_limit.tracked_keys, 1);
        assert_eq!(route_limit.route.as_deref(), Some("*:18081|/api"));
        assert_eq!((route_limit.passed, route_limit.dry_run_rejected), (1, 2));
        assert_eq!(route_limit.key_by, "header:x-client");
        assert_eq!(route_limit.store, "memory");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["limits"][1]["dryRunRejected"], 2);
    }
}
