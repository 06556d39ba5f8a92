//! `apiKey`: requests must present one of the configured keys, in a header (default
//! `X-API-Key`) or, when that header is absent, in the `api_key` query parameter. Keys are
//! compared as SHA-256 digests in constant time; unless `forwardCredentials` is set, the header
//! and the query parameter are removed before the request is forwarded. Keys are never logged.

use super::secret::{ct_eq, sha256, Digest};
use http::uri::{PathAndQuery, Uri};
use http::HeaderName;
use pingora::http::RequestHeader;

use crate::compile::glob::Glob;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// The header read when `header` is not set.
pub const DEFAULT_HEADER: &str = "x-api-key";
/// The query parameter read when the header is absent.
pub const QUERY_PARAM: &str = "api_key";
/// The longest accepted configured key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// A compiled `apiKey`.
pub struct ApiKeyAuth {
    /// SHA-256 digests of the accepted keys (the keys themselves are not kept).
    digests: Vec<Digest>,
    header: HeaderName,
    skip: Vec<Glob>,
    forward: bool,
}

impl std::fmt::Debug for ApiKeyAuth {
    // Deliberately shows neither keys nor digests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("keys", &self.digests.len())
            .field("header", &self.header)
            .field(
                "skip",
                &self.skip.iter().map(Glob::as_str).collect::<Vec<_>>(),
            )
            .field("forward", &self.forward)
            .finish()
    }
}

/// Checks a site's `apiKey`; every error carries its field path.
pub fn validate(raw: &raw::ApiKey, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if raw.keys.is_empty() {
        errors.push(ConfigError::new(
            join(path, "keys"),
            "must list at least one key",
        ));
    }
    for (i, key) in raw.keys.iter().enumerate() {
        let p = join(path, &format!("keys[{i}]"));
        if key.is_empty() {
            errors.push(ConfigError::new(p, "must not be empty"));
        } else if key.len() > MAX_KEY_BYTES {
            errors.push(ConfigError::new(
                p,
                format!("is longer than {MAX_KEY_BYTES} bytes"),
            ));
        }
    }
    if let Some(h) = &raw.header {
        if HeaderName::from_bytes(h.as_bytes()).is_err() {
            errors.push(ConfigError::new(
                join(path, "header"),
                format!("`{h}` is not a valid header name"),
            ));
        }
    }
    for (i, pattern) in raw.skip_paths.iter().flatten().enumerate() {
        if let Err(e) = Glob::parse(pattern) {
            errors.push(ConfigError::new(join(path, &format!("skipPaths[{i}]")), e));
        }
    }
    errors
}

/// Compiles a validated `apiKey` (anything invalid that slipped through is dropped: an invalid
/// header name falls back to the default, an unparsable glob skips nothing).
pub fn compile(raw: &raw::ApiKey) -> ApiKeyAuth {
    ApiKeyAuth {
        digests: raw
            .keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| sha256(k.as_bytes()))
            .collect(),
        header: raw
            .header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .unwrap_or(HeaderName::from_static(DEFAULT_HEADER)),
        skip: raw
            .skip_paths
            .iter()
            .flatten()
            .filter_map(|p| Glob::parse(p).ok())
            .collect(),
        forward: raw.forward_credentials.unwrap_or(false),
    }
}

impl ApiKeyAuth {
    /// Whether the request carries a valid key (401 otherwise); removes it unless forwarded.
    /// `path` is the normalised request path; paths matching `skipPaths` need no key.
    pub fn check(&self, req: &mut RequestHeader, path: &str) -> Result<(), Refusal> {
        if !self.skip.iter().any(|g| g.matches(path)) {
            let presented = presented_key(req, &self.header).map(|k| sha256(&k));
            match presented {
                None => return Err(refusal("missing API key")),
                Some(d) if !self.accepts(&d) => return Err(refusal("invalid API key")),
                Some(_) => {}
            }
        }
        if !self.forward {
            strip_key(req, &self.header)?;
        }
        Ok(())
    }

    /// Whether `presented` equals one of the stored digests; every digest is compared in full.
    fn accepts(&self, presented: &Digest) -> bool {
        let mut found = false;
        for stored in &self.digests {
            found |= ct_eq(presented, stored);
        }
        found
    }
}

/// The key a request presents: the header's value, else the first non-empty `?api_key=`.
pub(crate) fn presented_key(req: &RequestHeader, header: &HeaderName) -> Option<Vec<u8>> {
    match req.headers.get(header) {
        Some(v) => Some(v.as_bytes().to_vec()),
        None => req.uri.query().and_then(query_key),
    }
}

/// Removes the key header and every `api_key` query parameter.
pub(crate) fn strip_key(req: &mut RequestHeader, header: &HeaderName) -> Result<(), Refusal> {
    req.remove_header(header);
    let Some(query) = req.uri.query() else {
        return Ok(());
    };
    let Some(kept) = strip_query(query) else {
        return Ok(());
    };
    let mut target = req.uri.path().to_string();
    if !kept.is_empty() {
        target.push('?');
        target.push_str(&kept);
    }
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(target).map_err(|_| Refusal {
        status: 400,
        reason: "invalid request target",
        challenge: None,
    })?);
    let uri = Uri::from_parts(parts).map_err(|_| Refusal {
        status: 400,
        reason: "invalid request target",
        challenge: None,
    })?;
    req.set_uri(uri);
    Ok(())
}

fn refusal(reason: &'static str) -> Refusal {
    Refusal {
        status: 401,
        reason,
        challenge: None,
    }
}

/// Form-decodes one query component (`+` is a space, `%XX` a byte).
fn decode(component: &str) -> Vec<u8> {
    let plus: Vec<u8> = component
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus).collect()
}

/// Whether a `name=value` query component names the key parameter.
fn is_key_param(component: &str) -> bool {
    let name = component.split_once('=').map_or(component, |(n, _)| n);
    decode(name) == QUERY_PARAM.as_bytes()
}

/// The decoded value of the first non-empty `api_key` query parameter.
fn query_key(query: &str) -> Option<Vec<u8>> {
    query
        .split('&')
        .filter(|c| is_key_param(c))
        .map(|c| c.split_once('=').map_or(Vec::new(), |(_, v)| decode(v)))
        .find(|v| !v.is_empty())
}

/// A request target (`/path?query`) without its `api_key` parameters, for logs: keys are never
/// written anywhere. `None` when there was nothing to remove.
pub fn redact_target(target: &str) -> Option<String> {
    let (path, query) = target.split_once('?')?;
    let rest = strip_query(query)?;
    Some(if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{rest}")
    })
}

/// The query without its `api_key` parameters, the others unchanged and in order; `None` when
/// there was nothing to remove.
fn strip_query(query: &str) -> Option<String> {
    if !query.split('&').any(is_key_param) {
        return None;
    }
    Some(
        query
            .split('&')
            .filter(|c| !is_key_param(c))
            .collect::<Vec<_>>()
            .join("&"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn auth(yaml: &str) -> ApiKeyAuth {
        let raw: raw::ApiKey = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(validate(&raw, "apiKey").is_empty());
        compile(&raw)
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn target(r: &RequestHeader) -> String {
        r.uri.path_and_query().unwrap().as_str().to_string()
    }

    #[test]
    fn constant_time_compare() {
        let a = sha256(b"secret");
        assert!(ct_eq(&a, &sha256(b"secret")));
        assert!(!ct_eq(&a, &sha256(b"secreT")));
        let mut b = a;
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!ct_eq(&a, &b));
        let k = auth("keys: [one, two]");
        assert!(k.accepts(&sha256(b"one")));
        assert!(k.accepts(&sha256(b"two")));
        assert!(!k.accepts(&sha256(b"three")));
        assert!(!k.accepts(&sha256(b"")));
    }

    #[test]
    fn query_stripping_keeps_other_params() {
        assert_eq!(
            strip_query("a=1&api_key=s&b=2&api_key=t&c").as_deref(),
            Some("a=1&b=2&c")
        );
        assert_eq!(strip_query("api_key=s").as_deref(), Some(""));
        assert_eq!(strip_query("api%5Fkey=s&x=1").as_deref(), Some("x=1"));
        assert_eq!(strip_query("a=1&api_keys=2"), None);
        assert_eq!(query_key("a=1&api_key=s%20x+y"), Some(b"s x y".to_vec()));
        assert_eq!(query_key("api_key=&api_key=z"), Some(b"z".to_vec()));
        assert_eq!(query_key("api_key"), None);

        let k = auth("keys: [s]");
        let mut r = req("/p/q?z=9&api_key=s&a=1", &[]);
        k.check(&mut r, "/p/q").unwrap();
        assert_eq!(target(&r), "/p/q?z=9&a=1");
        let mut r = req("/p?api_key=s", &[]);
        k.check(&mut r, "/p").unwrap();
        assert_eq!(target(&r), "/p");
    }

    #[test]
    fn header_then_query() {
        let k = auth("{keys: [s], header: X-Token}");
        let mut r = req("/x?api_key=wrong", &[("x-token", "s")]);
        k.check(&mut r, "/x").unwrap();
        assert!(r.headers.get("x-token").is_none());
        assert_eq!(target(&r), "/x");
        // The header wins over the query when present.
        let mut r = req("/x?api_key=s", &[("x-token", "bad")]);
        assert_eq!(k.check(&mut r, "/x").unwrap_err().reason, "invalid API key");
        let mut r = req("/x", &[("x-api-key", "s")]);
        let e = k.check(&mut r, "/x").unwrap_err();
        assert_eq!((e.status, e.reason), (401, "missing API key"));
        let mut r = req("/x?api_key=", &[]);
        assert_eq!(k.check(&mut r, "/x").unwrap_err().reason, "missing API key");
    }

    #[test]
    fn forward_credentials_keeps_them() {
        let k = auth("{keys: [s], forwardCredentials: true}");
        let mut r = req("/x?api_key=s&b=1", &[("x-api-key", "s")]);
        k.check(&mut r, "/x").unwrap();
        assert_eq!(r.headers.get("x-api-key").unwrap(), "s");
        assert_eq!(target(&r), "/x?api_key=s&b=1");
    }

    #[test]
    fn skip_globs() {
        let k = auth("{keys: [s], skipPaths: ['/public/**', '/health', '/v*/docs']}");
        for p in ["/public", "/public/a/b", "/health", "/v1/docs"] {
            let mut r = req(p, &[]);
            assert!(k.check(&mut r, p).is_ok(), "{p}");
        }
        for p in ["/publicx", "/health/x", "/v1/x/docs", "/"] {
            let mut r = req(p, &[]);
            assert!(k.check(&mut r, p).is_err(), "{p}");
        }
        // A skipped path still has a presented key removed.
        let mut r = req("/public/a?api_key=zzz&q=1", &[("x-api-key", "zzz")]);
        k.check(&mut r, "/public/a").unwrap();
        assert!(r.headers.get("x-api-key").is_none());
        assert_eq!(target(&r), "/public/a?q=1");
    }

    #[test]
    fn validation_errors_name_fields() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let raw = raw::ApiKey {
            keys: vec!["ok".into(), String::new(), long],
            header: Some("bad header".into()),
            skip_paths: Some(vec!["/ok/**".into(), "nope".into()]),
            forward_credentials: None,
        };
        let paths: Vec<String> = validate(&raw, "sites[0].apiKey")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "sites[0].apiKey.keys[1]",
                "sites[0].apiKey.keys[2]",
                "sites[0].apiKey.header",
                "sites[0].apiKey.skipPaths[1]",
            ]
        );
        let empty = raw::ApiKey::default();
        assert_eq!(validate(&empty, "apiKey")[0].path, "apiKey.keys");
        let max = raw::ApiKey {
            keys: vec!["k".repeat(MAX_KEY_BYTES)],
            ..Default::default()
        };
        assert!(validate(&max, "apiKey").is_empty());
    }
}
