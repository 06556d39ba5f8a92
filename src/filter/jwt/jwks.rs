//! JSON Web Key Sets (`jwksUrl`): the key sets, one per URL for the whole process, kept in a
//! registry so that a reload (which compiles the config again) finds the keys already fetched;
//! the background service that fetches and refreshes them; the refetch a request may trigger
//! when it meets an unknown `kid`; and the small HTTP client that fetches them.
//!
//! Compiling a config never fetches anything: it only registers the URL. [`JwksRefresher`]
//! (registered in the server next to the health checker) fetches every registered set at once,
//! then every `jwksRefreshSecs` (the shortest any config using the URL asks for), retrying
//! failures sooner. A request whose token names a `kid` the set does not hold may trigger one
//! refetch of that URL, at most once per [`REFETCH_GAP`], and waits for it at most
//! [`REFETCH_WAIT`]. A fetch that fails, answers anything but 200, is larger than
//! [`MAX_BYTES`] or holds no usable key changes nothing: the last good keys stay. Keys whose
//! `kty`, `crv`, `alg` or `use` Conduit cannot verify with are skipped. Lookups on the request
//! path read the current set through an `ArcSwap` without locking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Deserialize;
use tokio::sync::watch;

use super::keys::{bit_len, parse_alg, AlgSet, Family, RSA_BITS};
use crate::upstream::target::{build_peer, TargetUrl, TlsSpec};

/// Largest JWKS document read.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Longest a fetch may take (connect, TLS, request, whole answer).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request waits for the refetch its unknown `kid` triggered.
pub const REFETCH_WAIT: Duration = Duration::from_secs(2);
/// Smallest gap between two refetches triggered by unknown `kid`s, per URL.
pub const REFETCH_GAP: Duration = Duration::from_secs(60);
/// Default and bounds of `jwksRefreshSecs`.
pub const DEFAULT_REFRESH_SECS: u64 = 3600;
pub const REFRESH_SECS: std::ops::RangeInclusive<u64> = 5..=7 * 24 * 3600;
/// First retry after a failed fetch; doubled per failure, capped by the refresh interval and
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// How often the refresher looks for due fetches.
const TICK: Duration = Duration::from_millis(500);

/// One usable key of a set.
pub struct Jwk {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// The algorithms this key verifies: its own `alg` when it declares one, else its family's.
    pub algorithms: AlgSet,
    /// Whether the key declared its `alg`.
    pub declared: bool,
    /// The algorithm of its family accepted when neither the key nor the config names one.
    pub default: Algorithm,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms.names())
            .finish()
    }
}

/// The usable keys of one fetched document.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Jwk>>,
    keys: Vec<Arc<Jwk>>,
    /// Unique per installed set in this process (0: the empty set before the first fetch), so
    /// verifications can be tied to the set that made them.
    pub generation: u64,
}

/// The last set generation handed out.
static GENERATION: AtomicU64 = AtomicU64::new(0);

impl KeySet {
    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<Jwk>> {
        self.by_kid.get(kid)
    }

    /// Every key, in document order.
    pub fn keys(&self) -> &[Arc<Jwk>] {
        &self.keys
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A JWK as documents carry it (only what verification needs).
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// One JWK as a usable key, or why it is skipped.
fn jwk(raw: &RawJwk) -> Result<Jwk, String> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("its `use` is not `sig`".into());
    }
    let (family, key) = match raw.kty.as_deref() {
        Some("RSA") => {
            let (Some(n), Some(e)) = (&raw.n, &raw.e) else {
                return Err("an RSA key needs `n` and `e`".into());
            };
            let bits = b64url(n).map(|n| bit_len(&n)).unwrap_or(0);
            if !RSA_BITS.contains(&bits) || b64url(e).is_none_or(|e| e.is_empty()) {
                return Err(format!(
                    "RSA modulus of {bits} bits (needs {} to {})",
                    RSA_BITS.start(),
                    RSA_BITS.end()
                ));
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
            (Family::Rsa, key)
        }
        Some("EC") => {
            let (family, len) = match raw.crv.as_deref() {
                Some("P-256") => (Family::EcP256, 32),
                Some("P-384") => (Family::EcP384, 48),
                other => return Err(format!("EC curve {other:?} is not P-256 or P-384")),
            };
            let (Some(x), Some(y)) = (&raw.x, &raw.y) else {
                return Err("an EC key needs `x` and `y`".into());
            };
            let ok = |c: &str| b64url(c).is_some_and(|c| c.len() == len);
            if !ok(x) || !ok(y) {
                return Err("EC coordinates of the wrong length".into());
            }
            let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
            (family, key)
        }
        Some("OKP") => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Err(format!("OKP curve {:?} is not Ed25519", raw.crv));
            }
            let x = raw.x.as_deref().ok_or("an OKP key needs `x`")?;
            if b64url(x).is_none_or(|x| x.len() != 32) {
                return Err("an Ed25519 key of the wrong length".into());
            }
            let key = DecodingKey::from_ed_components(x).map_err(|e| e.to_string())?;
            (Family::Ed25519, key)
        }
        other => return Err(format!("key type {other:?} is not RSA, EC or OKP")),
    };
    let (algorithms, declared) = match raw.alg.as_deref() {
        None => (family.algorithms(), false),
        Some(name) => match parse_alg(name) {
            Some(a) if family.algorithms().contains(a) => (AlgSet::of(&[a]), true),
            _ => return Err(format!("`alg` {name} does not fit the key")),
        },
    };
    Ok(Jwk {
        kid: raw.kid.clone(),
        key,
        algorithms,
        declared,
        default: family.default_alg(),
    })
}

/// Parses a JWKS document; keys that cannot be used are skipped (logged at debug level). A
/// document with no usable key is an error.
pub fn parse(body: &[u8]) -> Result<KeySet, String> {
    let raw: RawSet = serde_json::from_slice(body)
        .map_err(|e| format!("not a JWKS document (a JSON object with `keys`): {e}"))?;
    let mut set = KeySet::default();
    for (i, value) in raw.keys.into_iter().enumerate() {
        let key = serde_json::from_value::<RawJwk>(value)
            .map_err(|e| e.to_string())
            .and_then(|r| jwk(&r));
        match key {
            Ok(k) => {
                let k = Arc::new(k);
                if let Some(kid) = &k.kid {
                    if set.by_kid.contains_key(kid) {
                        tracing::debug!(index = i, kid = %kid, "JWKS key skipped: duplicate kid");
                        continue;
                    }
                    set.by_kid.insert(kid.clone(), k.clone());
                }
                set.keys.push(k);
            }
            Err(why) => tracing::debug!(index = i, "JWKS key skipped: {why}"),
        }
    }
    if set.keys.is_empty() {
        return Err("the document holds no usable signing key".into());
    }
    Ok(set)
}

/// A parsed `jwksUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl {
    /// `http[s]://host[:port]`.
    pub origin: String,
    pub target: TargetUrl,
    /// The authority as sent in `Host`.
    pub authority: String,
    /// Path and query (`/` when empty).
    pub path: String,
}

impl JwksUrl {
    /// Parses an `http://` or `https://` URL with a host, optional port, path and query.
    pub fn parse(url: &str) -> Result<JwksUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        }
        if url.contains('#')
            || url
                .chars()
                .any(|c| c.is_ascii_whitespace() || c.is_control())
        {
            return Err(format!(
                "`{url}` must not contain a fragment, spaces or control characters"
            ));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let origin = format!("{scheme}://{authority}");
        let target = TargetUrl::parse(&origin).map_err(|e| e.replace("upstream URL", "URL"))?;
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(JwksUrl {
            origin,
            target,
            authority: authority.to_string(),
            path,
        })
    }
}

/// The key set of one URL, shared by every config that uses the URL.
pub struct JwksSet {
    url: String,
    parsed: Result<JwksUrl, String>,
    keys: ArcSwap<KeySet>,
    /// Bumped after each fetch attempt ends; requests waiting for a refetch watch it.
    done: watch::Sender<u64>,
    fetching: AtomicBool,
    /// When the next background fetch is due (ms since [`epoch`]; 0: at once).
    next_due: AtomicU64,
    failures: AtomicU32,
    /// When a request last triggered a refetch.
    last_triggered: Mutex<Option<Instant>>,
    /// The refresh interval each live config asks for.
    leases: Mutex<Vec<(Weak<()>, u64)>>,
    /// Fetch attempts, successful fetches (for tests and diagnostics).
    attempts: AtomicU64,
    successes: AtomicU64,
}

impl std::fmt::Debug for JwksSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSet")
            .field("url", &self.url)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

/// A config's hold on a set: keeps the set registered and states the refresh interval the
/// config asks for.
#[derive(Debug)]
pub struct Lease {
    set: Arc<JwksSet>,
    _token: Arc<()>,
}

impl Lease {
    /// The leased set.
    pub fn set(&self) -> &Arc<JwksSet> {
        &self.set
    }
}

fn registry() -> &'static Mutex<HashMap<String, Weak<JwksSet>>> {
    static SETS: OnceLock<Mutex<HashMap<String, Weak<JwksSet>>>> = OnceLock::new();
    SETS.get_or_init(Mutex::default)
}

/// Milliseconds since the first call (a monotonic clock).
fn epoch_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The set for `url`, shared with every other live config that uses it (created, empty and
/// due for a fetch, when none does); the lease asks for a refresh every `refresh_secs`.
/// Never does I/O.
pub fn lease(url: &str, refresh_secs: u64) -> Lease {
    let mut sets = registry().lock().unwrap_or_else(|e| e.into_inner());
    sets.retain(|_, w| w.strong_count() > 0);
    let set = match sets.get(url).and_then(Weak::upgrade) {
        Some(s) => s,
        None => {
            let s = Arc::new(JwksSet::new(url));
            sets.insert(url.to_string(), Arc::downgrade(&s));
            s
        }
    };
    drop(sets);
    let token = Arc::new(());
    set.leases
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Arc::downgrade(&token), refresh_secs));
    Lease { set, _token: token }
}

/// Every set some live config uses.
pub fn live_sets() -> Vec<Arc<JwksSet>> {
    let mut sets = registry().lock().unwrap_or_else(|e| e.into_inner());
    sets.retain(|_, w| w.strong_count() > 0);
    sets.values().filter_map(Weak::upgrade).collect()
}

/// Clears the flag of a fetch and wakes its waiters when the fetch ends, even if its task is
/// dropped half-way.
struct FetchGuard(Arc<JwksSet>);

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.0.fetching.store(false, Ordering::Release);
        self.0.done.send_modify(|g| *g = g.wrapping_add(1));
    }
}

impl JwksSet {
    fn new(url: &str) -> JwksSet {
        JwksSet {
            url: url.to_string(),
            parsed: JwksUrl::parse(url),
            keys: ArcSwap::from_pointee(KeySet::default()),
            done: watch::channel(0).0,
            fetching: AtomicBool::new(false),
            next_due: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            last_triggered: Mutex::new(None),
            leases: Mutex::default(),
            attempts: AtomicU64::new(0),
            successes: AtomicU64::new(0),
        }
    }

    /// The URL the set is fetched from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current keys.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// (fetch attempts, successful fetches) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.attempts.load(Ordering::Relaxed),
            self.successes.load(Ordering::Relaxed),
        )
    }

    /// The refresh interval: the shortest any live config asks for.
    fn interval(&self) -> Duration {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.retain(|(w, _)| w.strong_count() > 0);
        let secs = leases
            .iter()
            .map(|(_, s)| *s)
            .min()
            .unwrap_or(DEFAULT_REFRESH_SECS);
        Duration::from_secs(secs.max(1))
    }

    /// Starts a fetch on the current tokio runtime unless one runs; whether it started.
    pub fn start_fetch(self: &Arc<Self>) -> bool {
        if self
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let guard = FetchGuard(self.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        runtime.spawn(async move {
            guard.0.fetch().await;
            drop(guard);
        });
        true
    }

    /// Fetches now and installs the keys on success; schedules the next background fetch.
    pub async fn fetch(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let result = match &self.parsed {
            Ok(url) => match tokio::time::timeout(FETCH_TIMEOUT, get(url)).await {
                Ok(r) => r.and_then(|body| parse(&body)),
                Err(_) => Err(format!(
                    "no complete answer within {} s",
                    FETCH_TIMEOUT.as_secs()
                )),
            },
            Err(e) => Err(e.clone()),
        };
        let interval = self.interval();
        match result {
            Ok(mut set) => {
                set.generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
                self.successes.fetch_add(1, Ordering::Relaxed);
                let before = self.keys.load();
                if before.len() != set.len()
                    || set
                        .keys()
                        .iter()
                        .any(|k| k.kid.as_ref().is_none_or(|kid| before.get(kid).is_none()))
                {
                    tracing::info!(url = %self.url, keys = set.len(), "JWKS keys loaded");
                }
                self.keys.store(Arc::new(set));
                self.failures.store(0, Ordering::Relaxed);
                self.schedule(interval);
            }
            Err(why) => {
                let failures = self
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let retry = FIRST_RETRY
                    .saturating_mul(1u32 << (failures - 1).min(8))
                    .min(MAX_RETRY)
                    .min(interval);
                tracing::warn!(
                    url = %self.url,
                    reason = %why,
                    keys_kept = self.keys.load().len(),
                    retry_secs = retry.as_secs(),
                    "JWKS fetch failed; the last good keys stay in use"
                );
                self.schedule(retry);
            }
        }
    }

    fn schedule(&self, after: Duration) {
        let at = epoch_ms().saturating_add(after.as_millis() as u64);
        self.next_due.store(at.max(1), Ordering::Release);
    }

    /// Whether the background fetch is due at `now` (ms since [`epoch_ms`]'s start).
    fn due(&self, now: u64) -> bool {
        !self.fetching.load(Ordering::Acquire) && self.next_due.load(Ordering::Acquire) <= now
    }

    /// Called by a request that met an unknown key: waits (at most [`REFETCH_WAIT`]) for the
    /// fetch in progress, or starts one if none ran for this reason in the last
    /// [`REFETCH_GAP`]. Returns at once when neither applies.
    pub async fn refetch_for_unknown_key(self: &Arc<Self>) {
        let mut done = self.done.subscribe();
        if !self.fetching.load(Ordering::Acquire) {
            {
                let mut last = self
                    .last_triggered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|t| t.elapsed() < REFETCH_GAP) {
                    return;
                }
                *last = Some(Instant::now());
            }
            tracing::debug!(url = %self.url, "unknown signing key: refetching the JWKS");
            self.start_fetch();
        }
        let _ = tokio::time::timeout(REFETCH_WAIT, done.changed()).await;
    }
}

/// Fetches `url` with the shared client connector: `GET`, HTTP/1.1, status 200 required, body
/// at most [`MAX_BYTES`].
async fn get(url: &JwksUrl) -> Result<Vec<u8>, String> {
    let addr = tokio::net::lookup_host((url.target.host.as_str(), url.target.port))
        .await
        .map_err(|e| format!("cannot resolve `{}`: {e}", url.target.host))?
        .next()
        .ok_or_else(|| format!("`{}` resolves to no address", url.target.host))?;
    let mut peer = build_peer(addr, &url.origin, &TlsSpec::default(), false)?;
    peer.options.connection_timeout = Some(FETCH_TIMEOUT);
    peer.options.total_connection_timeout = Some(FETCH_TIMEOUT);
    peer.options.read_timeout = Some(FETCH_TIMEOUT);
    peer.options.write_timeout = Some(FETCH_TIMEOUT);
    let connector = crate::proxy::client::connector()
        .await
        .ok_or("the client connector could not be built")?;
    let (mut http, _) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| e.to_string())?;
    let bad = |e: Box<pingora::Error>| e.to_string();
    let mut req = RequestHeader::build("GET", url.path.as_bytes(), None).map_err(bad)?;
    req.insert_header("Host", url.authority.as_str())
        .map_err(bad)?;
    req.insert_header("Accept", "application/json, application/jwk-set+json")
        .map_err(bad)?;
    req.insert_header("User-Agent", "conduit-jwks")
        .map_err(bad)?;
    req.insert_header("Connection", "close").map_err(bad)?;
    http.write_request_header(Box::new(req))
        .await
        .map_err(bad)?;
    http.finish_request_body().await.map_err(bad)?;
    http.read_response_header().await.map_err(bad)?;
    let status = http.response_header().map(|h| h.status.as_u16());
    if status != Some(200) {
        return Err(format!("answered status {}", status.unwrap_or(0)));
    }
    let declared = http
        .response_header()
        .and_then(|h| h.headers.get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BYTES) {
        return Err(format!("the document is larger than {MAX_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = http.read_response_body().await.map_err(bad)? {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(format!("the document is larger than {MAX_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    http.shutdown().await;
    Ok(body)
}

/// The background service that fetches every registered key set when due. Registered once at
/// server start; it runs until shutdown.
#[derive(Debug, Default)]
pub struct JwksRefresher;

impl JwksRefresher {
    /// One pass: starts the fetches that are due; returns how many it started.
    pub fn tick(&self) -> usize {
        let now = epoch_ms();
        live_sets()
            .iter()
            .filter(|s| s.due(now) && s.start_fetch())
            .count()
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = ticks.tick() => {
                    self.tick();
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn doc(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn usable_keys_are_kept_and_others_skipped() {
        use serde_json::json;
        let set = parse(&doc(&[
            json!({"kty": "RSA", "kid": "r", "n": RSA_N, "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "ps", "alg": "PS384", "n": RSA_N, "e": "AQAB"}),
            json!({"kty": "EC", "kid": "e", "crv": "P-256", "x": EC_X, "y": EC_Y, "use": "sig"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            // Skipped: symmetric, encryption, wrong alg, bad curve, short RSA, missing parts,
            // not an object, duplicate kid.
            json!({"kty": "oct", "kid": "o", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "wrong", "alg": "ES256", "n": RSA_N, "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "none", "alg": "none", "n": RSA_N, "e": "AQAB"}),
            json!({"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": EC_X, "y": EC_Y}),
            json!({"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "EC", "kid": "noy", "crv": "P-256", "x": EC_X}),
            json!("junk"),
            json!({"kty": "RSA", "kid": "r", "n": RSA_N, "e": "AQAB", "alg": "RS512"}),
        ]))
        .unwrap();
        assert_eq!(set.len(), 4);
        let r = set.get("r").unwrap();
        assert!(!r.declared && r.default == Algorithm::RS256);
        assert_eq!(r.algorithms, Family::Rsa.algorithms());
        let ps = set.get("ps").unwrap();
        assert!(ps.declared && ps.algorithms == AlgSet::of(&[Algorithm::PS384]));
        assert_eq!(set.get("e").unwrap().default, Algorithm::ES256);
        assert!(set.keys()[3].kid.is_none());
        assert_eq!(set.keys()[3].default, Algorithm::EdDSA);
        for kid in ["o", "enc", "wrong", "none", "k1", "small", "noy"] {
            assert!(set.get(kid).is_none(), "{kid}");
        }
    }

    #[test]
    fn unusable_documents_are_errors() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"{\"keys\": []}").is_err());
        assert!(parse(b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"AA\"}]}").is_err());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn urls() {
        let u = JwksUrl::parse("https://idp.example.com/.well-known/jwks.json?v=1").unwrap();
        assert_eq!(u.origin, "https://idp.example.com");
        assert_eq!(u.target.port, 443);
        assert_eq!(u.authority, "idp.example.com");
        assert_eq!(u.path, "/.well-known/jwks.json?v=1");
        let u = JwksUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.path.as_str(), u.target.port), ("/", 8080));
        assert_eq!(JwksUrl::parse("http://[::1]:9?x").unwrap().path, "/?x");
        for bad in [
            "ftp://x/keys",
            "idp/keys",
            "https:///keys",
            "http://u@x/keys",
            "http://x:0/keys",
            "http://x/keys#frag",
            "http://x/a b",
        ] {
            assert!(JwksUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// A JWKS server on loopback answering each request with the current (status, body).
    async fn server(answer: Arc<Mutex<(u16, Vec<u8>)>>, hits: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (answer, hits) = (answer.clone(), hits.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = answer.lock().unwrap().clone();
                    let out = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(out.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                });
            }
        });
        format!("http://{addr}/jwks.json")
    }

    #[tokio::test]
    async fn fetches_keep_the_last_good_keys_and_refetches_are_rate_limited() {
        use serde_json::json;
        let good = doc(&[json!({"kty": "EC", "kid": "a", "crv": "P-256", "x": EC_X, "y": EC_Y})]);
        let answer = Arc::new(Mutex::new((200, good)));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = server(answer.clone(), hits.clone()).await;

        let lease = lease(&url, 60);
        let set = lease.set().clone();
        // Compiling again finds the same set.
        let again = super::lease(&url, 30);
        assert!(Arc::ptr_eq(&set, again.set()));
        assert_eq!(set.interval(), Duration::from_secs(30));
        drop(again);
        assert_eq!(set.interval(), Duration::from_secs(60));
        assert!(live_sets().iter().any(|s| Arc::ptr_eq(s, &set)));
        assert_eq!(set.keys().len(), 0);
        assert!(set.due(epoch_ms()));

        set.fetch().await;
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.stats(), (1, 1));
        assert!(!set.due(epoch_ms()), "next fetch in an interval");

        // Failures keep the keys: an error status, garbage, an oversized body, a dead server.
        for (status, body) in [
            (500, b"oops".to_vec()),
            (200, b"<html>".to_vec()),
            (200, b"{\"keys\": []}".to_vec()),
            (200, vec![b' '; MAX_BYTES + 1]),
        ] {
            *answer.lock().unwrap() = (status, body);
            set.fetch().await;
            assert_eq!(set.keys().len(), 1, "{status}");
            assert!(set.keys().get("a").is_some());
        }
        assert_eq!(set.stats(), (5, 1));
        assert_eq!(hits.load(Ordering::SeqCst), 5);

        // An unknown kid triggers one refetch, then none for a while.
        *answer.lock().unwrap() = (
            200,
            doc(&[
                json!({"kty": "EC", "kid": "a", "crv": "P-256", "x": EC_X, "y": EC_Y}),
                json!({"kty": "EC", "kid": "b", "crv": "P-256", "x": EC_X, "y": EC_Y}),
            ]),
        );
        set.refetch_for_unknown_key().await;
        assert!(set.keys().get("b").is_some());
        assert_eq!(hits.load(Ordering::SeqCst), 6);
        set.refetch_for_unknown_key().await;
        assert_eq!(hits.load(Ordering::SeqCst), 6);
        drop((lease, set));
        assert!(live_sets().iter().all(|s| s.url() != url));
    }
}
