//! The Redis store (feature `redis`): the same GCRA as the in-memory store, run atomically by a
//! Lua script on the Redis server, so several Conduit processes share one count.
//!
//! The connection is opened when the limit is compiled (at start or reload), and one decision
//! is one `EVALSHA` round trip (the script is loaded again by itself after a Redis
//! restart). The script reads the server's clock (`TIME`), so instances need no synchronised
//! clocks, and stores the key's TAT with an expiry of exactly the time until the bucket is full,
//! after which a missing key means the same thing: Redis never holds more than the keys active in
//! the last window.
//!
//! Runtimes: Pingora runs one tokio runtime per worker thread, and a redis `ConnectionManager`
//! spawns its connection and reconnection tasks on whatever runtime is current when it (re)connects.
//! So all Redis I/O runs on one dedicated runtime (one thread, started on first use): a worker
//! spawns each script call there and waits for the answer with the decision deadline
//! (`global.redis.timeoutMs`, default 50). There is one connection manager (one multiplexed
//! connection) per distinct Redis URL per process.
//!
//! When Redis fails or misses the deadline, the limit decides with its local in-memory store
//! instead, the fallback is counted, a warning is logged at most once per 10 s, and decisions
//! stop going to Redis: a background probe pings it every 500 ms and, once it answers, shared
//! limiting resumes (logged once).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::gcra::{Decision, Gcra};
use super::memory::now_ns;

/// Decision deadline when `global.redis.timeoutMs` is not set.
pub const DEFAULT_TIMEOUT_MS: u64 = 50;
/// At most one fallback warning per this many nanoseconds.
const WARN_EVERY_NS: u64 = 10_000_000_000;
/// Pause between two probes of an unreachable Redis.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// GCRA on the server: KEYS[1] the bucket, ARGV[1] the interval and ARGV[2] the span
/// (`capacity × interval`), both in microseconds. Returns `{allowed, until_full, wait}` in
/// microseconds.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > span then
  return {0, tat - now, ahead - span}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  string.format('%.0f', math.max(1, math.ceil(ahead / 1000))))
return {1, ahead, 0}
"#;

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SCRIPT));

/// The runtime that owns every Redis connection; `None` if it could not be started.
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("conduit-redis")
                .enable_all()
                .build()
                .map_err(|e| tracing::error!("cannot start the Redis client runtime: {e}"))
                .ok()
        })
        .as_ref()
}

/// The URL with any password replaced by `***` (for logs and the read-out).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let hidden = match rest[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => rest[..at].to_string(),
            };
            format!("{scheme}://{hidden}@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// Checks a `redis://` / `rediss://` URL without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must be a `redis://` or `rediss://` URL".into());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("not a valid Redis URL: {e}"))
}

/// One Redis server: its connection manager and its health.
pub struct RedisBackend {
    url: String,
    manager: ConnectionManager,
    healthy: AtomicBool,
    probing: AtomicBool,
    fallbacks: AtomicU64,
    /// Fallbacks not yet reported in a warning.
    unreported: AtomicU64,
    /// When the last warning was logged (`now_ns`, 0: never).
    last_warn: AtomicU64,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend for `url`; connects lazily, on the first decision.
    pub fn open(url: &str) -> Result<RedisBackend, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a valid Redis URL: {e}"))?;
        let rt = runtime().ok_or("cannot start the Redis client runtime")?;
        let _entered = rt.enter();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot set up the Redis connection: {e}"))?;
        // Connect now, so that the first request does not pay for the connection (and a TLS
        // handshake) within its decision deadline. A failure here is handled by that request.
        let mut warm = manager.clone();
        rt.spawn(async move {
            let cmd = redis::cmd("PING");
            let _ =
                tokio::time::timeout(Duration::from_secs(2), cmd.query_async::<String>(&mut warm))
                    .await;
        });
        Ok(RedisBackend {
            url: redact(url),
            manager,
            healthy: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            last_warn: AtomicU64::new(0),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether decisions currently go to Redis.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Decisions answered locally since start.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Decides one request for `key` in Redis; `None` when Redis cannot answer in `timeout`
    /// (the caller then decides locally; this backend has counted and logged the fallback).
    pub async fn decide(
        self: &Arc<Self>,
        gcra: &Gcra,
        key: Vec<u8>,
        timeout: Duration,
    ) -> Option<Decision> {
        if !self.healthy() {
            self.fell_back("unreachable");
            return None;
        }
        let Some(rt) = runtime() else {
            self.fell_back("no client runtime");
            return None;
        };
        let mut conn = self.manager.clone();
        let (interval, span) = (gcra.interval(), gcra.span());
        let task = rt.spawn(async move {
            GCRA_SCRIPT
                .key(key)
                .arg(interval)
                .arg(span)
                .invoke_async::<(i64, i64, i64)>(&mut conn)
                .await
        });
        let abort = task.abort_handle();
        let why = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok((allowed, until_full, wait)))) => {
                let until_full = u64::try_from(until_full).unwrap_or(0);
                return Some(if allowed == 1 {
                    gcra.allowed(until_full)
                } else {
                    gcra.refused(until_full, u64::try_from(wait).unwrap_or(0))
                });
            }
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(e)) => format!("client task failed: {e}"),
            Err(_) => {
                abort.abort();
                format!("no answer within {} ms", timeout.as_millis())
            }
        };
        self.mark_down();
        self.fell_back(&why);
        None
    }

    /// Counts a local decision and logs at most one warning per interval.
    fn fell_back(&self, why: &str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let pending = self.unreported.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ns().max(1);
        let last = self.last_warn.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY_NS)
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.unreported.fetch_sub(pending, Ordering::Relaxed);
            tracing::warn!(
                redis = %self.url,
                fallbacks = pending,
                "redis unavailable ({why}): rate limits fall back to local in-memory counters"
            );
        }
    }

    /// Stops sending decisions to Redis and starts the probe that brings them back.
    fn mark_down(self: &Arc<Self>) {
        self.healthy.store(false, Ordering::Relaxed);
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(rt) = runtime() else { return };
        let me = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(backend) = me.upgrade() else { return };
                let mut conn = backend.manager.clone();
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), ping).await {
                    // In this order: a failure in between starts a new probe.
                    backend.probing.store(false, Ordering::Release);
                    backend.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(
                        redis = %backend.url,
                        "redis reachable again: shared rate limiting resumes"
                    );
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("rediss://user:secret@cache:6380/1"),
            "rediss://user:***@cache:6380/1"
        );
        assert_eq!(redact("redis://:secret@cache"), "redis://:***@cache");
        assert_eq!(redact("redis://user@cache"), "redis://user@cache");
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("rediss://cache.example.com").is_ok());
        assert!(check_url("http://cache").is_err());
    }
}
