//! `rateLimit` and `global.redis` in the config: their checks (every error with its field path)
//! and their compilation into [`Limiter`]s that point into the long-lived [`Registry`].

use std::collections::HashMap;
use std::sync::Arc;

use super::gcra::{Gcra, NANOS};
use super::key::KeyBy;
use super::registry::Registry;
use super::{Limiter, Scope, SiteRateLimits};
use crate::compile::glob::Glob;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;

/// Default `windowSecs`.
pub const DEFAULT_WINDOW_SECS: u64 = 60;
/// Largest `limit` and `burst` (so that one request is at least a microsecond of a window).
pub const MAX_LIMIT: u64 = 1_000_000;
/// Largest `windowSecs` (a day).
pub const MAX_WINDOW_SECS: u64 = 86_400;
/// Largest `global.redis.timeoutMs`.
pub const MAX_REDIS_TIMEOUT_MS: u64 = 10_000;

/// Where a `rateLimit` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Site,
    Route,
    Consumer,
}

/// What a `rateLimit`'s checks need to know about the rest of the config.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub level: Level,
    /// `global.redis` is set.
    pub has_redis: bool,
    /// The site lists `consumers`.
    pub has_consumers: bool,
}

/// Checks one `rateLimit` at `path`.
pub fn validate(r: &raw::RateLimit, path: &str, cx: Context) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, msg: String| errors.push(ConfigError::new(join(path, field), msg));
    if r.limit == 0 || r.limit > MAX_LIMIT {
        err("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    if let Some(w) = r.window_secs {
        if w == 0 || w > MAX_WINDOW_SECS {
            err(
                "windowSecs",
                format!("must be between 1 and {MAX_WINDOW_SECS}"),
            );
        }
    }
    if r.burst.is_some_and(|b| b > MAX_LIMIT) {
        err("burst", format!("must be between 0 and {MAX_LIMIT}"));
    }
    if r.limit > 0 && r.limit <= MAX_LIMIT {
        let window = r.window_secs.unwrap_or(DEFAULT_WINDOW_SECS).max(1);
        if r.limit > window.saturating_mul(MAX_LIMIT) {
            err(
                "limit",
                format!(
                    "{} per {window} s is above one request per microsecond",
                    r.limit
                ),
            );
        }
    }
    match r.key_by.as_deref().map(KeyBy::parse) {
        None | Some(Ok(KeyBy::Consumer)) if cx.level == Level::Consumer => {}
        Some(Ok(_)) if cx.level == Level::Consumer => err(
            "keyBy",
            "a consumer's limit always counts by the consumer: remove `keyBy` or set it to `consumer`"
                .into(),
        ),
        Some(Ok(KeyBy::Consumer)) if !cx.has_consumers => err(
            "keyBy",
            "`consumer` needs `consumers` on the site (without them every request would count by its address)"
                .into(),
        ),
        Some(Err(why)) => err("keyBy", why),
        _ => {}
    }
    if let Some(store) = &r.store {
        if let Err(why) = check_store(store, cx.has_redis) {
            err("store", why);
        }
    }
    for (i, pattern) in r.skip_paths.iter().flatten().enumerate() {
        if let Err(e) = Glob::parse(pattern) {
            err(&format!("skipPaths[{i}]"), e);
        }
    }
    errors
}

/// Checks a `store` value.
fn check_store(store: &str, has_redis: bool) -> Result<(), String> {
    let url = store.starts_with("redis://") || store.starts_with("rediss://");
    if store != "memory" && store != "redis" && !url {
        return Err(format!(
            "unknown store `{store}`: use `memory`, `redis` or a `redis://` / `rediss://` URL"
        ));
    }
    if store == "memory" {
        return Ok(());
    }
    if cfg!(not(feature = "redis")) {
        return Err(super::needs_redis_feature());
    }
    if store == "redis" && !has_redis {
        return Err("`redis` uses `global.redis.url`, which is not set: set it or give a `redis://` URL here".into());
    }
    #[cfg(feature = "redis")]
    if url {
        super::redis::check_url(store)?;
    }
    Ok(())
}

/// Checks `global.redis`.
pub fn validate_redis(r: &raw::Redis, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    #[cfg(not(feature = "redis"))]
    {
        let _ = r;
        errors.push(ConfigError::new(path, super::needs_redis_feature()));
    }
    #[cfg(feature = "redis")]
    {
        if let Err(why) = super::redis::check_url(&r.url) {
            errors.push(ConfigError::new(join(path, "url"), why));
        }
        if r.timeout_ms
            .is_some_and(|t| t == 0 || t > MAX_REDIS_TIMEOUT_MS)
        {
            errors.push(ConfigError::new(
                join(path, "timeoutMs"),
                format!("must be between 1 and {MAX_REDIS_TIMEOUT_MS}"),
            ));
        }
    }
    errors
}

/// Compiles the limits of one site and its routes.
pub struct Compiler<'a> {
    registry: &'a Registry,
    redis: Option<&'a raw::Redis>,
    /// Open Redis connections (false for `conduit validate`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    serve: bool,
    site_id: &'a str,
}

impl<'a> Compiler<'a> {
    /// A compiler for the site `site_id` (`HOST:PORT`); `redis` is `global.redis`.
    pub fn new(
        registry: &'a Registry,
        redis: Option<&'a raw::Redis>,
        serve: bool,
        site_id: &'a str,
    ) -> Compiler<'a> {
        Compiler {
            registry,
            redis,
            serve,
            site_id,
        }
    }

    /// The site's own limit and its consumers' limits; `path` is the site's path.
    pub fn site(&self, s: &raw::Site, path: &str) -> Result<SiteRateLimits, ConfigError> {
        let site = s
            .rate_limit
            .as_ref()
            .map(|r| {
                self.build(
                    r,
                    Scope::Site {
                        site: self.site_id.into(),
                    },
                    &join(path, "rateLimit"),
                )
            })
            .transpose()?;
        let mut consumers = HashMap::new();
        for (i, c) in s
            .consumers
            .iter()
            .flat_map(|c| c.consumers.iter())
            .enumerate()
        {
            let Some(r) = &c.rate_limit else { continue };
            let p = format!(
                "{}[{i}].rateLimit",
                join(&join(path, "consumers"), "consumers")
            );
            let name: Arc<str> = c.username.as_str().into();
            let limiter = self.build(
                r,
                Scope::Consumer {
                    site: self.site_id.into(),
                    consumer: name.clone(),
                },
                &p,
            )?;
            consumers.insert(name, limiter);
        }
        Ok(SiteRateLimits { site, consumers })
    }

    /// A route's limit; `route_id` is the route's stable id, `path` the field's path.
    pub fn route(
        &self,
        r: &raw::RateLimit,
        route_id: &str,
        path: &str,
    ) -> Result<Arc<Limiter>, ConfigError> {
        self.build(
            r,
            Scope::Route {
                site: self.site_id.into(),
                route: route_id.into(),
            },
            path,
        )
    }

    fn build(
        &self,
        r: &raw::RateLimit,
        scope: Scope,
        path: &str,
    ) -> Result<Arc<Limiter>, ConfigError> {
        let window_secs = r.window_secs.unwrap_or(DEFAULT_WINDOW_SECS).max(1);
        let limit = r.limit.max(1);
        let burst = r.burst.unwrap_or(0);
        let default_key = if matches!(scope, Scope::Consumer { .. }) {
            KeyBy::Consumer
        } else {
            KeyBy::Ip
        };
        let key_by = match r.key_by.as_deref() {
            Some(k) => KeyBy::parse(k).map_err(|e| ConfigError::new(join(path, "keyBy"), e))?,
            None => default_key,
        };
        let store_url = match r.store.as_deref() {
            None | Some("memory") => None,
            Some("redis") => match self.redis {
                Some(g) => Some(g.url.clone()),
                None => {
                    return Err(ConfigError::new(
                        join(path, "store"),
                        "`redis` uses `global.redis.url`, which is not set",
                    ))
                }
            },
            Some(url) => Some(url.to_string()),
        };
        // The parameters that make a limit the same one: an identical limit keeps its counters
        // over a reload, any change starts afresh.
        let params = format!("{limit}/{window_secs}s+{burst} by {}", key_by.as_config());
        let identity = format!(
            "{}\n{params}\n{}",
            scope.id(),
            store_url.as_deref().unwrap_or("memory")
        );
        let state = self.registry.state(&identity);
        #[cfg(feature = "redis")]
        let redis = match store_url {
            None => None,
            Some(url) => {
                self.redis_store(&url, &scope, &params, limit, window_secs, burst, path)?
            }
        };
        #[cfg(not(feature = "redis"))]
        if store_url.is_some() {
            return Err(ConfigError::new(
                join(path, "store"),
                super::needs_redis_feature(),
            ));
        }
        Ok(Arc::new(Limiter {
            scope,
            limit,
            window_secs,
            burst,
            key_by,
            dry_run: r.dry_run.unwrap_or(false),
            headers: r.headers.unwrap_or(true),
            skip: r
                .skip_paths
                .iter()
                .flatten()
                .filter_map(|g| Glob::parse(g).ok())
                .collect(),
            gcra: Gcra::new(limit, window_secs, burst, NANOS),
            state,
            #[cfg(feature = "redis")]
            redis,
        }))
    }

    /// The Redis side of a limit; `None` in `conduit validate`.
    #[cfg(feature = "redis")]
    #[allow(clippy::too_many_arguments)]
    fn redis_store(
        &self,
        url: &str,
        scope: &Scope,
        params: &str,
        limit: u64,
        window_secs: u64,
        burst: u64,
        path: &str,
    ) -> Result<Option<super::RedisStore>, ConfigError> {
        if !self.serve {
            return Ok(None);
        }
        let backend = self
            .registry
            .backend(url)
            .map_err(|e| ConfigError::new(join(path, "store"), e))?;
        // Instances share a count when they name the same limit: the site's host (not its
        // port, which may differ between instances), the route or consumer, and the parameters.
        let shared = format!("{}\n{params}", scope.shared_id());
        let mut prefix = b"conduit:rl:".to_vec();
        prefix.extend_from_slice(super::hex_digest(shared.as_bytes()).as_bytes());
        prefix.push(b':');
        Ok(Some(super::RedisStore {
            backend,
            prefix,
            gcra: Gcra::new(limit, window_secs, burst, super::gcra::MICROS),
            timeout: std::time::Duration::from_millis(
                self.redis
                    .and_then(|g| g.timeout_ms)
                    .unwrap_or(super::redis::DEFAULT_TIMEOUT_MS),
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(yaml: &str) -> raw::RateLimit {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn errors(yaml: &str, level: Level) -> Vec<String> {
        validate(
            &rl(yaml),
            "rateLimit",
            Context {
                level,
                has_redis: false,
                has_consumers: false,
            },
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn every_field_is_checked_with_its_path() {
        assert!(errors("{limit: 5}", Level::Site).is_empty());
        let e = errors(
            "{limit: 0, windowSecs: 0, burst: 2000000, keyBy: cookie:x, store: mongo, skipPaths: [nope]}",
            Level::Site,
        );
        for field in [
            "limit",
            "windowSecs",
            "burst",
            "keyBy",
            "store",
            "skipPaths[0]",
        ] {
            assert!(
                e.iter()
                    .any(|m| m.starts_with(&format!("rateLimit.{field}: "))),
                "{field}: {e:?}"
            );
        }
        let e = errors("{limit: 5, keyBy: consumer}", Level::Route);
        assert!(e[0].contains("needs `consumers`"), "{e:?}");
        let e = errors("{limit: 5, keyBy: ip}", Level::Consumer);
        assert!(e[0].starts_with("rateLimit.keyBy: "), "{e:?}");
        assert!(errors("{limit: 5, keyBy: consumer}", Level::Consumer).is_empty());
    }

    #[test]
    fn redis_stores_need_the_feature_or_the_global_url() {
        let e = errors("{limit: 5, store: redis}", Level::Site);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("rateLimit.store: "), "{e:?}");
        let e = errors("{limit: 5, store: 'redis://127.0.0.1:6379'}", Level::Site);
        if cfg!(feature = "redis") {
            assert!(e.is_empty(), "{e:?}");
        } else {
            assert!(e[0].contains("needs the `redis` feature"), "{e:?}");
        }
    }

    #[test]
    fn limits_compile_with_defaults_and_keep_state_by_identity() {
        let reg = Registry::default();
        let c = Compiler::new(&reg, None, true, "*:8080");
        let a = c.route(&rl("{limit: 5}"), "*:8080|/api", "p").unwrap();
        assert_eq!((a.limit, a.window_secs, a.burst), (5, 60, 0));
        assert_eq!(a.key_by, KeyBy::Ip);
        let b = c
            .route(&rl("{limit: 5, windowSecs: 60}"), "*:8080|/api", "p")
            .unwrap();
        assert!(Arc::ptr_eq(&a.state, &b.state));
        let other = c.route(&rl("{limit: 5}"), "*:8080|/b", "p").unwrap();
        assert!(!Arc::ptr_eq(&a.state, &other.state));
        let changed = c.route(&rl("{limit: 6}"), "*:8080|/api", "p").unwrap();
        assert!(!Arc::ptr_eq(&a.state, &changed.state));
    }
}
