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
    /// Shared Redis for rate limiting (`store: redis`).
    pub redis: Option<Redis>,
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

    /// TLS termination on this site's port.
    pub tls: Option<Tls>,
    /// HTTP/2 settings of this site's port.
    pub http2: Option<Http2>,
    pub compression: Later,
    pub response_time: Later,
    pub server_timing: Later,
    /// Security response headers (HSTS on TLS, nosniff, frame options, referrer policy, CSP).
    pub security_headers: Option<SecurityHeaders>,
    pub cors: Later,
    /// Request rate limit for the whole site.
    pub rate_limit: Option<RateLimit>,
    /// HTTP Basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// API-key authentication.
    pub api_key: Option<ApiKey>,
    /// Bearer JSON Web Tokens (feature `jwt`).
    pub jwt_auth: Option<JwtAuth>,
    /// Ask an external service whether to allow each request (feature `forward-auth`).
    pub forward_auth: Option<ForwardAuth>,
    /// Named API clients with their own credentials, limits and headers (feature `consumers`).
    pub consumers: Option<Consumers>,
    /// Allow/deny lists of client addresses.
    pub ip_filter: Option<IpFilter>,
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
    /// Passive ejection of failing targets, for every route of the site.
    pub outlier_detection: Option<OutlierDetection>,
    pub mask_errors: Later,
    pub fault_injection: Later,
    /// Headers set on / removed from requests before they are forwarded (templates allowed).
    pub request_transform: Option<Transform>,
    /// Headers set on / removed from responses before they reach the client (templates allowed).
    pub response_transform: Option<Transform>,
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

    /// What hash strategies hash: `ip`, `url`, `header:<Name>` or `cookie:<Name>` (default `ip`).
    pub hash_key: Option<String>,
    /// Allow WebSocket (HTTP/1.1 Upgrade) requests on this route (default false).
    pub websocket: Option<bool>,
    /// Retrying failed attempts on another target.
    pub retry: Option<Retry>,
    /// Active health checks of the targets.
    pub health_check: Option<ActiveHealth>,
    /// Targets used only when every primary target is down.
    pub backup: Option<Vec<Target>>,
    /// Named groups of targets, each with its own strategy (instead of `targets`).
    pub groups: Option<Vec<Group>>,
    /// How a group is chosen: `failover` (default: the first group with a live target) or
    /// `round-robin`.
    pub group_strategy: Option<String>,
    /// Pin a client to one target with an HMAC-signed cookie.
    pub sticky: Option<Sticky>,
    /// Copy every request (with its body) to this URL; its responses are discarded.
    pub mirror: Option<String>,
    /// Importance of this route under load (0–100, default 50); see `limits.priorityThreshold`.
    pub priority: Option<u8>,
    /// Send a share of traffic (or a cohort) to canary targets, rolled back automatically.
    pub canary: Option<Canary>,
    /// Race a second attempt for slow GET/HEAD requests.
    pub hedge: Option<Hedge>,
    /// Error-rate circuit breaker per target.
    pub circuit_breaker: Option<CircuitBreaker>,

    /// Speak HTTP/2 to the upstream (`https://` targets negotiate it by ALPN; plain `http://`
    /// targets use prior-knowledge h2c).
    pub http2: Option<bool>,
    /// Verification of `https://` targets.
    pub upstream_tls: Option<UpstreamTls>,
    /// Request rate limit for this route (applies together with the site's).
    pub rate_limit: Option<RateLimit>,
    pub cache: Later,

    /// HTTP Basic authentication for this route (replaces the site's `basicAuth` here).
    pub basic_auth: Option<BasicAuth>,
    /// API keys for this route (replaces the site's `apiKey` here).
    pub api_key: Option<ApiKey>,
    /// JWT authentication for this route (replaces the site's `jwtAuth` here).
    pub jwt_auth: Option<JwtAuth>,
    /// Forward authentication for this route (replaces the site's `forwardAuth` here).
    pub forward_auth: Option<ForwardAuth>,
    /// Client address allow/deny lists for this route (replaces the site's `ipFilter` here).
    pub ip_filter: Option<IpFilter>,
}

/// `upstreamTls`: how `https://` targets are verified.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamTls {
    /// Verify the target's certificate and name (default true; `false` is logged as a warning).
    pub verify: Option<bool>,
    /// Name sent as SNI and checked against the certificate (default: the target URL's host).
    pub server_name: Option<String>,
    /// PEM file of the CA(s) to trust instead of the system roots.
    pub ca: Option<String>,
}

/// `tls`: TLS termination.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tls {
    /// PEM certificate chain (leaf first) of the site's host name.
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    pub key: Option<String>,
    /// PEM file of intermediate certificates appended to every served chain.
    pub ca: Option<String>,
    /// More certificates, chosen by SNI.
    pub certificates: Option<Vec<TlsCertificate>>,
    /// Also listen on this plain-HTTP port and answer 301 to `https://`.
    pub http_redirect_port: Option<u16>,
    /// Allowed protocol versions: `"1.2"`, `"1.3"` (default both).
    pub versions: Option<Vec<String>>,
    /// Allowed cipher suites by IANA name (default: rustls's safe defaults).
    pub ciphers: Option<Vec<String>>,
    /// Client certificates (mTLS).
    pub client_auth: Option<ClientAuth>,
    /// Certificates for the site's host from an ACME CA (Let's Encrypt by default), issued and
    /// renewed in the background (feature `acme`).
    pub acme: Option<Acme>,
}

/// `tls.acme`: automatic certificates for the site's host (an exact DNS name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Acme {
    /// Contact address of the CA account (`ops@example.com`).
    pub email: Option<String>,
    /// ACME directory URL (default: Let's Encrypt production,
    /// `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: Option<String>,
    /// Directory for the account and the certificates, `<host>.crt` / `<host>.key` (default
    /// `./acme`, relative to the working directory).
    pub storage: Option<String>,
    /// How the CA checks control of the host: `http-01` (plain HTTP, port 80) or `tls-alpn-01`
    /// (the TLS port, 443) (default `http-01`).
    pub challenge: Option<String>,
    /// PEM file of the root that signs the ACME server's own HTTPS certificate, for a private
    /// or test CA (default: the system roots).
    pub ca_root: Option<String>,
    /// Renew when fewer days than this remain (default 30).
    pub renew_before_days: Option<u32>,
}

/// One certificate of `tls.certificates`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsCertificate {
    pub cert: String,
    pub key: String,
    /// Names it serves (`example.com`, `*.example.com`); default: the names in the certificate.
    pub sni: Option<Vec<String>>,
}

/// `tls.clientAuth`: client certificates verified against `ca`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientAuth {
    /// PEM file of the CA(s) client certificates must chain to.
    pub ca: String,
    /// Accept clients without a certificate (a presented one must still be valid).
    pub optional: Option<bool>,
}

/// `securityHeaders`: `true` for the defaults, or per-header options.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecurityHeaders {
    Enabled(bool),
    Options(SecurityHeadersOptions),
}

/// Security headers; each is added to responses that do not carry it already.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityHeadersOptions {
    /// `Strict-Transport-Security` on TLS sites: `true`/`false` or options (default on).
    pub hsts: Option<Hsts>,
    /// `X-Frame-Options`: `DENY` or `SAMEORIGIN` (default `SAMEORIGIN`); `false` leaves it out.
    pub frame_options: Option<StringOrOff>,
    /// `X-Content-Type-Options: nosniff` (default true).
    pub content_type_options: Option<bool>,
    /// `Referrer-Policy` (default `strict-origin-when-cross-origin`); `false` leaves it out.
    pub referrer_policy: Option<StringOrOff>,
    /// `Content-Security-Policy` (default none).
    pub content_security_policy: Option<String>,
    /// `Permissions-Policy` (default none).
    pub permissions_policy: Option<String>,
}

/// A header value, or `false` to leave the header out.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrOff {
    Off(bool),
    Value(String),
}

/// `hsts`: on/off or its options.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Hsts {
    Enabled(bool),
    Options(HstsOptions),
}

/// `Strict-Transport-Security` options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HstsOptions {
    /// `max-age` (default 31536000, one year).
    pub max_age_secs: Option<u64>,
    /// `includeSubDomains` (default false).
    pub include_subdomains: Option<bool>,
    /// `preload` (default false; needs includeSubdomains and a max-age of at least a year).
    pub preload: Option<bool>,
}

/// `ipFilter`: which client addresses may use the site.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpFilter {
    /// Addresses or CIDRs allowed (when set, everything else is denied).
    pub allow: Option<Vec<String>>,
    /// Addresses or CIDRs denied (checked first).
    pub deny: Option<Vec<String>>,
    /// Take the client address from `X-Forwarded-For` when the peer is in `trustedProxies`.
    pub trust_proxy: Option<bool>,
    /// Only log what would be denied.
    pub dry_run: Option<bool>,
}

/// `basicAuth`: users and their passwords (plain, or bcrypt/argon2 hashes).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name → password, or a bcrypt (`$2b$...`) or argon2 (`$argon2id$...`) hash.
    pub users: BTreeMap<String, String>,
    /// Realm named in the challenge (default `Restricted`).
    pub realm: Option<String>,
    /// Send `WWW-Authenticate` with 401 so browsers prompt (default true).
    pub challenge: Option<bool>,
    /// Paths (globs) that need no credentials.
    pub skip_paths: Option<Vec<String>>,
    /// Forward the `Authorization` header upstream (default false: removed).
    pub forward_credentials: Option<bool>,
}

/// `apiKey`: requests must carry one of `keys`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKey {
    /// Accepted keys.
    pub keys: Vec<String>,
    /// Header carrying the key (default `X-API-Key`); `?api_key=` is accepted too.
    pub header: Option<String>,
    /// Paths (globs) that need no key.
    pub skip_paths: Option<Vec<String>>,
    /// Forward the key upstream (default false: the header and the query parameter are removed).
    pub forward_credentials: Option<bool>,
}

/// One string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a slice-like list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `jwtAuth`: `Authorization: Bearer <JWT>` verified with a secret, a public key or a JWKS.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuth {
    /// Shared secret for HS256/384/512.
    pub secret: Option<String>,
    /// PEM public key (RSA, EC or Ed25519), or a path to a PEM file.
    pub public_key: Option<String>,
    /// URL of a JSON Web Key Set, fetched in the background.
    pub jwks_url: Option<String>,
    /// Accepted `alg` values (default: the family of the key: HS256 for a secret, RS256 for RSA...).
    pub algorithms: Option<Vec<String>>,
    /// How often the JWKS is re-fetched (default 3600).
    pub jwks_refresh_secs: Option<u64>,
    /// Required `aud` (any of).
    pub audience: Option<OneOrMany>,
    /// Required `iss` (any of).
    pub issuer: Option<OneOrMany>,
    /// Clock skew allowed for `exp`, `nbf` and `iat` (default 60).
    pub leeway_secs: Option<u64>,
    /// Paths (globs) that need no token.
    pub skip_paths: Option<Vec<String>>,
    /// Forward the `Authorization` header upstream (default true: upstreams often read the token).
    pub forward_credentials: Option<bool>,
}

/// `forwardAuth`: an external service decides about each request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardAuth {
    /// `http://` or `https://` URL of the auth service.
    pub url: String,
    /// Request headers copied to the auth request (default: Authorization and Cookie).
    pub request_headers: Option<Vec<String>>,
    /// Headers of a 2xx auth response copied onto the forwarded request.
    pub response_headers: Option<Vec<String>>,
    /// Deadline for the auth service's answer (default 5000); a miss is 503.
    pub timeout_ms: Option<u64>,
    /// Paths (globs) not sent to the auth service.
    pub skip_paths: Option<Vec<String>>,
    /// How an `https://` url is verified (same fields as a route's `upstreamTls`).
    pub tls: Option<UpstreamTls>,
}

/// `consumers`: named API clients.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Consumers {
    /// The clients.
    pub consumers: Vec<Consumer>,
    /// Header carrying the identified consumer's name upstream (default `X-Consumer-ID`).
    pub id_header: Option<String>,
    /// Header carrying a consumer's API key (default `X-API-Key`; `?api_key=` is accepted too).
    pub api_key_header: Option<String>,
    /// Claim of a token verified by the site's `jwtAuth` that names the consumer (e.g. `sub`).
    pub shared_jwt: Option<String>,
    /// Paths (globs) that need no consumer.
    pub skip_paths: Option<Vec<String>>,
}

/// One consumer and its credentials.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Consumer {
    /// Unique name, sent upstream in `idHeader`.
    pub username: String,
    /// The consumer's API key(s).
    pub api_key: Option<OneOrMany>,
    /// Password (plain, bcrypt or argon2 hash) for Basic authentication as `username`.
    pub basic_auth: Option<String>,
    /// Tokens signed for this consumer.
    pub jwt: Option<ConsumerJwt>,
    /// Rate limit for this consumer's requests (keyed by the consumer).
    pub rate_limit: Option<RateLimit>,
    /// Headers added to this consumer's forwarded requests.
    pub headers: Option<BTreeMap<String, String>>,
}

/// A consumer's JWT credential: tokens whose `iss` claim is `key` are verified with its key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumerJwt {
    /// Value of the token's `iss` claim that selects this consumer (default: the username).
    pub key: Option<String>,
    /// Shared secret (HS256/384/512).
    pub secret: Option<String>,
    /// PEM public key, or a path to one.
    pub public_key: Option<String>,
    /// Accepted `alg` values (default: the family of the key).
    pub algorithms: Option<Vec<String>>,
}

/// `rateLimit`: requests per window per key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    /// Length of the window in seconds (default 60).
    pub window_secs: Option<u64>,
    /// Requests allowed per window.
    pub limit: u64,
    /// Extra requests allowed at once above the steady rate (default 0).
    pub burst: Option<u64>,
    /// What is limited: `ip` (default), `header:<Name>` or `consumer`.
    pub key_by: Option<String>,
    /// `memory` (default), `redis` (the `global.redis` URL) or a `redis://` / `rediss://` URL.
    pub store: Option<String>,
    /// Paths (globs) not limited.
    pub skip_paths: Option<Vec<String>>,
    /// Only log and count what would be limited.
    pub dry_run: Option<bool>,
    /// Send `RateLimit-*` headers on allowed responses too (default true; a 429 always has them).
    pub headers: Option<bool>,
}

/// `global.redis`: the shared Redis server.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Redis {
    /// `redis://` or `rediss://` URL.
    pub url: String,
    /// Deadline for one Redis decision before the local fallback answers (default 50).
    pub timeout_ms: Option<u64>,
}

/// `requestTransform` / `responseTransform`: header edits, with `{{ ... }}` templates.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Transform {
    /// Header → value; the value may use `{{ jwt.<claim> }}`, `{{ consumer }}`, `{{ request_id }}`.
    pub set_headers: Option<BTreeMap<String, String>>,
    /// Headers removed.
    pub remove_headers: Option<Vec<String>>,
}

/// `http2`: HTTP/2 on the site's port.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Http2 {
    /// Offer HTTP/2 by ALPN on TLS (default true).
    pub enabled: Option<bool>,
    /// Streams per connection (default 100).
    pub max_concurrent_streams: Option<u32>,
    /// Initial flow-control window per stream in bytes (default 65535).
    pub initial_window_size: Option<u32>,
    /// Accept prior-knowledge HTTP/2 on a plain port (default false).
    pub h2c: Option<bool>,
}

/// `retry`: how failed attempts are retried.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// Total attempts including the first (default 2 when `retry` is set).
    pub attempts: Option<u32>,
    /// When to retry: `connection_error`, `5xx`, `timeout` (default all three).
    pub conditions: Option<Vec<String>>,
    /// Base delay before a retry, doubled for each further retry (default 0).
    pub backoff_ms: Option<u64>,
    /// Randomise each delay between half and all of it (default true).
    pub backoff_jitter: Option<bool>,
    /// Retries may be at most this share of the route's recent requests (default 20).
    pub budget_percent: Option<u32>,
}

/// Active health checks (per route) and the per-target connection cap.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActiveHealth {
    /// Path requested from each target (default `/`).
    pub path: Option<String>,
    /// Seconds between checks (default 10).
    pub interval_secs: Option<u64>,
    /// Deadline of one check (default 2000).
    pub timeout_ms: Option<u64>,
    /// Failed checks in a row that mark a target down (default 3).
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks in a row that bring it back (default 1).
    pub healthy_threshold: Option<u32>,
    /// Statuses that pass: `200`, `200-399`, or a list such as `200,204` (default `200-399`).
    pub expected_status: Option<String>,
    /// A target back from down receives a linearly growing share over this many seconds.
    pub slow_start_secs: Option<u64>,
    /// Most requests in flight to one target; beyond it the target is skipped (503 when all are full).
    pub max_connections_per_upstream: Option<usize>,
}

/// A named group of targets.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub targets: Vec<Target>,
    /// Strategy inside the group (default: the route's).
    pub strategy: Option<String>,
}

/// `sticky`: cookie-based affinity.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sticky {
    /// Cookie name (default `conduit_sticky`).
    pub cookie: Option<String>,
    /// HMAC key signing the cookie (at least 16 characters).
    pub secret: String,
    /// When the pinned target is down: `true` answers 503, `false` (default) picks another.
    pub strict: Option<bool>,
    /// Cookie lifetime in seconds (default: a session cookie).
    pub max_age_secs: Option<u64>,
}

/// `canary`: a share of traffic to new targets.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Canary {
    pub targets: Vec<Target>,
    /// Percent of requests outside the cohort sent to the canary (0–100, default 0).
    pub weight: Option<u32>,
    /// Requests whose header or cookie has one of these values always go to the canary.
    pub cohort: Option<Cohort>,
    /// Roll back when the canary's error rate exceeds the stable targets' by this many
    /// percentage points (default 10).
    pub rollback_threshold_percent: Option<u32>,
    /// Requests each side must have seen in the window before comparing (default 20).
    pub min_requests: Option<u32>,
}

/// Who belongs to the canary cohort.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cohort {
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub values: Vec<String>,
}

/// `hedge`: a second attempt for slow idempotent reads.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hedge {
    /// Wait this long for a response head before sending another attempt.
    pub delay_ms: u64,
    /// Extra attempts at most (default 1).
    pub max_extra: Option<u32>,
}

/// `circuitBreaker`: per-target error-rate breaker.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Error share (5xx, connection errors, timeouts) that opens the breaker (default 50).
    pub error_threshold_percent: Option<u32>,
    /// Requests in the window before the rate counts (default 20).
    pub min_requests: Option<u32>,
    /// How long the breaker stays open before a single trial request (default 30).
    pub open_secs: Option<u64>,
}

/// `outlierDetection`: passive ejection of failing targets.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    /// 5xx answers (or connection failures) in a row that eject a target (default 5).
    pub consecutive5xx: Option<u32>,
    /// First ejection time, doubled on each further ejection (default 30).
    pub base_ejection_time_secs: Option<u64>,
    /// Longest ejection (default 300).
    pub max_ejection_time_secs: Option<u64>,
    /// Most of a pool's targets ejected at once, in percent (default 10; at least one).
    pub max_ejection_percent: Option<u32>,
}

/// `limits.queue`: bounded waiting when `maxInflightRequests` is reached.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Queue {
    /// Requests that may wait at once (beyond it: 503 at once).
    pub size: usize,
    /// Longest wait for a slot before 503 (default 1000).
    pub timeout_ms: Option<u64>,
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
    /// Read deadline of each attempt when retries are on (bounds waiting for the response head
    /// and each body read); a try that exceeds it is a `timeout` and may be retried.
    pub per_try_ms: Option<u64>,
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

    /// Request bodies up to this size are kept so a retry can replay them (default and
    /// maximum 65536).
    pub max_body_buffer_bytes: Option<usize>,
    /// Most open connections from one client address (429 beyond).
    pub max_connections_per_ip: Option<usize>,
    /// Share of `maxInflightRequests` above which low-priority routes are shed (default 0.8).
    pub priority_threshold: Option<f64>,
    /// Bounded waiting for a slot instead of an instant 503.
    pub queue: Option<Queue>,

    pub timeout_secs: Later,
    pub keepalive_request_limit: Later,
    pub min_upload_rate_bytes_per_sec: Later,
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

/// `true`/`false` or a map, deserialised through the map's own type (so paths stay exact).
macro_rules! bool_or_map {
    ($ty:ident, $opts:ident, $expecting:literal) => {
        impl From<$opts> for $ty {
            fn from(o: $opts) -> Self {
                $ty::Options(o)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_bool<E: de::Error>(self, v: bool) -> Result<$ty, E> {
                        Ok($ty::Enabled(v))
                    }
                    visit_map_into!($opts);
                }
                d.deserialize_any(V)
            }
        }
    };
}

bool_or_map!(
    SecurityHeaders,
    SecurityHeadersOptions,
    "true/false or {hsts, frameOptions, contentTypeOptions, referrerPolicy, contentSecurityPolicy, permissionsPolicy}"
);
bool_or_map!(
    Hsts,
    HstsOptions,
    "true/false or {maxAgeSecs, includeSubdomains, preload}"
);

impl<'de> Deserialize<'de> for StringOrOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = StringOrOff;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a header value, or false to leave the header out")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StringOrOff, E> {
                Ok(StringOrOff::Off(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrOff, E> {
                Ok(StringOrOff::Value(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
