//! The raw configuration types: exactly what a YAML/JSON file may say, checked by serde only.
//!
//! Nothing here reaches the request path. `validate` reads these types and reports every problem
//! with its field path; `compile` turns a validated config into a [`crate::snapshot::Snapshot`].
//! Fields that later work will implement are typed as [`Later`] so that they are recognised (no
//! "unknown field") and then rejected by validation with "not supported yet".

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize};

/// A field Conduit recognises but does not implement yet: any value, rejected by validation.
pub type Later = Option<serde_json::Value>;

/// The whole file after its shape has been normalised to `{version, global, sites}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Schema version of the file (1).
    #[serde(default)]
    pub version: Option<u32>,
    /// Process-wide settings.
    #[serde(default)]
    pub global: Global,
    /// The sites (virtual hosts) served.
    #[serde(default)]
    pub sites: Vec<Site>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Global {
    /// Worker threads per listening service (default: number of CPUs).
    pub workers: Option<usize>,
    /// Tokio work stealing between worker threads (default false: one runtime per thread).
    pub work_stealing: Option<bool>,
    /// How long a graceful shutdown waits for in-flight requests (default 30).
    pub shutdown_timeout_secs: Option<u64>,
    /// Address the site listeners bind to (default `0.0.0.0`).
    pub bind: Option<String>,
    /// Admin API (not supported yet).
    pub admin: Later,
    /// OpenTelemetry export (not supported yet).
    pub otlp: Later,
    /// Shared Redis (not supported yet).
    pub redis: Later,
}

/// One site: a listener port plus a host name, and what it serves.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Site {
    /// `*`, a DNS name, `*.example.com` or a bracketed IPv6 address (default `*`).
    pub host: Option<String>,
    /// Listening port (default 443 with TLS, 80 with a specific host, 8080 otherwise).
    pub port: Option<u16>,
    /// Upstream routing by path prefix.
    pub proxy: Option<Proxy>,
    /// Ordered match rules, checked before the `proxy` prefixes.
    pub routes: Option<Vec<RouteRule>>,
    /// Access log.
    pub logging: Option<Logging>,
    /// Health endpoint answered by Conduit itself.
    pub health_check: Option<HealthCheck>,
    /// Reload the config file when it changes.
    pub hot_reload: Option<bool>,
    /// Request limits.
    pub limits: Option<Limits>,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-*` headers are trusted.
    pub trusted_proxies: Option<Vec<String>>,
    /// Merge repeated slashes in request paths (default true).
    pub merge_slashes: Option<bool>,

    pub tls: Later,
    pub http2: Later,
    pub compression: Later,
    pub response_time: Later,
    pub server_timing: Later,
    pub security_headers: Later,
    pub cors: Later,
    pub rate_limit: Later,
    pub basic_auth: Later,
    pub api_key: Later,
    pub jwt_auth: Later,
    pub forward_auth: Later,
    pub consumers: Later,
    pub ip_filter: Later,
    pub headers: Later,
    pub redirects: Later,
    pub middleware: Later,
    #[serde(rename = "static")]
    pub static_files: Later,
    pub static_options: Later,
    pub tcp: Later,
    pub upload: Later,
    pub metrics: Later,
    pub fallback: Later,
    pub outlier_detection: Later,
    pub mask_errors: Later,
    pub fault_injection: Later,
    pub request_transform: Later,
    pub response_transform: Later,
}

/// `proxy`: one upstream URL for everything, or a map from path prefix to an upstream.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Proxy {
    /// Every path goes to this upstream.
    Single(String),
    /// Longest matching prefix wins.
    Map(BTreeMap<String, Upstream>),
}

/// What a prefix (or a route) forwards to: a URL, a list of URLs, or full options.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Upstream {
    Url(String),
    List(Vec<String>),
    Options(Box<RouteOptions>),
}

/// Options of one proxied route.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteOptions {
    /// Upstream URLs, optionally weighted.
    pub targets: Option<Vec<Target>>,
    /// Load-balancing strategy (default `round-robin`).
    pub strategy: Option<String>,
    /// Remove the matched prefix before forwarding (prefix routes only).
    pub strip_prefix: Option<bool>,
    /// Regex path rewrites; the first rule that matches applies.
    pub rewrite: Option<Vec<Rewrite>>,
    /// Upstream timeouts.
    pub timeout: Option<Timeouts>,
    /// Upstream keep-alive.
    pub pool: Option<PoolOptions>,

    pub hash_key: Later,
    pub http2: Later,
    pub websocket: Later,
    pub retry: Later,
    pub health_check: Later,
    pub backup: Later,
    pub groups: Later,
    pub group_strategy: Later,
    pub sticky: Later,
    pub mirror: Later,
    pub upstream_tls: Later,
    pub priority: Later,
    pub rate_limit: Later,
    pub cache: Later,
    pub canary: Later,
    pub hedge: Later,
    pub circuit_breaker: Later,
}

/// One upstream target: `"http://host:port"` or `{url, weight}`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Target {
    Url(String),
    Weighted(WeightedTarget),
}

/// A target with a weight.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightedTarget {
    pub url: String,
    /// Relative share of requests (default 1).
    pub weight: Option<u32>,
}

/// A regex path rewrite: `from` is searched in the path (anchor it with `^`/`$`), `to` may use `$1`...
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

/// Upstream timeouts in milliseconds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    /// TCP connect (default 3000).
    pub connect_ms: Option<u64>,
    /// Each read from the upstream (default 30000).
    pub read_ms: Option<u64>,
    /// Not supported yet: Pingora buffers request-body writes, so a per-write deadline does not
    /// bound a stalled upstream.
    pub send_ms: Later,
    pub first_byte_ms: Later,
    pub per_try_ms: Later,
}

/// Upstream keep-alive pool.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolOptions {
    /// Idle connections kept per target; 0 turns upstream keep-alive off (default 128).
    pub max_idle: Option<usize>,
    /// How long an idle upstream connection is kept (default 60).
    pub idle_timeout_secs: Option<u64>,
}

/// An ordered match rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteRule {
    /// Stable name of the route (default: its position).
    pub id: Option<String>,
    /// Conditions; all must hold.
    #[serde(rename = "match")]
    pub matcher: Option<Match>,
    /// Where matching requests go.
    pub proxy: Option<Upstream>,
    #[serde(rename = "static")]
    pub static_files: Later,
}

/// Conditions of a route rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    /// Path glob: `*` within one segment, `**` across segments.
    pub path: Option<String>,
    /// Allowed methods.
    pub method: Option<Vec<String>>,
    /// Header name → anchored regex.
    pub headers: Option<BTreeMap<String, String>>,
    /// Query parameter → anchored regex.
    pub query: Option<BTreeMap<String, String>>,
    /// Cookie name → anchored regex.
    pub cookies: Option<BTreeMap<String, String>>,
}

/// `logging`: a switch, a format name, or full options.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Logging {
    Enabled(bool),
    Format(String),
    Options(LoggingOptions),
}

/// Access log options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingOptions {
    /// `dev`, `json`, `combined`, `common` or `short` (default `combined`).
    pub format: Option<String>,
    /// Append to this file instead of standard output.
    pub file: Option<String>,
    /// Paths (globs) not logged.
    pub skip_paths: Option<Vec<String>>,
    /// Log paths without their query string.
    pub strip_query: Option<bool>,
}

/// `healthCheck`: `true` or `{path, includeUpstreams}`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum HealthCheck {
    Enabled(bool),
    Options(HealthCheckOptions),
}

/// Health endpoint options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheckOptions {
    /// Path answered (default `/__health__`).
    pub path: Option<String>,
    pub include_upstreams: Later,
}

/// Request limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// Largest request body (413).
    pub max_body_bytes: Option<u64>,
    /// Largest request head: request line plus headers (431; default 32768).
    pub max_header_bytes: Option<usize>,
    /// Most request header fields (431; default 100).
    pub max_request_headers: Option<usize>,
    /// Most requests in flight on the site (503).
    pub max_inflight_requests: Option<usize>,
    /// Deadline for a client to send a whole request head (408; default 10).
    pub header_timeout_secs: Option<u64>,
    /// How long an idle keep-alive client connection is kept open (default 60).
    pub idle_timeout_secs: Option<u64>,

    pub timeout_secs: Later,
    pub max_body_buffer_bytes: Later,
    pub max_connections_per_ip: Later,
    pub keepalive_request_limit: Later,
    pub priority_threshold: Later,
    pub min_upload_rate_bytes_per_sec: Later,
    pub queue: Later,
}

// ---- Deserialisers for the shape-dependent types. They forward to the map/seq access they are
// given, so that `serde_path_to_error` keeps tracking the path inside them.

macro_rules! visit_map_into {
    ($ty:ty) => {
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            <$ty>::deserialize(de::value::MapAccessDeserializer::new(map)).map(Into::into)
        }
    };
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Proxy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an upstream URL or a map from path prefix to upstream")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Proxy, E> {
                Ok(Proxy::Single(v.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Proxy, A::Error> {
                BTreeMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(Proxy::Map)
            }
        }
        d.deserialize_any(V)
    }
}

impl From<RouteOptions> for Upstream {
    fn from(o: RouteOptions) -> Self {
        Upstream::Options(Box::new(o))
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Upstream;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an upstream URL, a list of URLs, or route options")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Upstream, E> {
                Ok(Upstream::Url(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Upstream, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Upstream::List)
            }
            visit_map_into!(RouteOptions);
        }
        d.deserialize_any(V)
    }
}

impl From<WeightedTarget> for Target {
    fn from(t: WeightedTarget) -> Self {
        Target::Weighted(t)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Target;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a target URL or {url, weight}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Target, E> {
                Ok(Target::Url(v.to_string()))
            }
            visit_map_into!(WeightedTarget);
        }
        d.deserialize_any(V)
    }
}

impl From<LoggingOptions> for Logging {
    fn from(o: LoggingOptions) -> Self {
        Logging::Options(o)
    }
}

impl<'de> Deserialize<'de> for Logging {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Logging;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true/false, a format name, or {format, file, skipPaths, stripQuery}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Logging, E> {
                Ok(Logging::Enabled(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Logging, E> {
                Ok(Logging::Format(v.to_string()))
            }
            visit_map_into!(LoggingOptions);
        }
        d.deserialize_any(V)
    }
}

impl From<HealthCheckOptions> for HealthCheck {
    fn from(o: HealthCheckOptions) -> Self {
        HealthCheck::Options(o)
    }
}

impl<'de> Deserialize<'de> for HealthCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = HealthCheck;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true/false or {path}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HealthCheck, E> {
                Ok(HealthCheck::Enabled(v))
            }
            visit_map_into!(HealthCheckOptions);
        }
        d.deserialize_any(V)
    }
}
