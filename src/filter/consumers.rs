//! `consumers`: named API clients. Each consumer owns credentials (API keys, a Basic password,
//! a JWT key); a request is identified as the consumer whose credential it presents, or — with
//! `sharedJwt` — as the consumer a claim of the token verified by the site's `jwtAuth` names.
//! The identified consumer goes upstream in `idHeader` (a client-sent copy is always removed) with
//! the consumer's own `headers`; rate limiting and templates see it through the request identity.
//! Credentials that identified a consumer are removed before the request is forwarded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use super::basic_auth::{self, basic_credentials, BasicAuth, Credentials};
use super::secret::{sha256, Digest};
use super::{api_key, Claims, Consumer};
use crate::compile::glob::Glob;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// The header carrying the consumer's name upstream when `idHeader` is not set.
pub const DEFAULT_ID_HEADER: &str = "x-consumer-id";
/// Headers a consumer's `headers` may not set besides those the proxy manages: the credential
/// and Conduit's own request id.
const RESERVED: [&str; 2] = ["authorization", "x-request-id"];
/// The longest accepted consumer name, in bytes.
const MAX_NAME: usize = 128;

/// Reason of the 401 when a request presents no consumer credential.
pub const MISSING: &str = "consumer credentials required";
/// Reason of the 401 when the presented credential belongs to no consumer.
pub const INVALID: &str = "invalid consumer credentials";
/// Reason of the 403 when a verified token names no configured consumer.
pub const UNKNOWN: &str = "token does not name a known consumer";

/// The consumer a request was identified as, with the claims of the consumer's token (when a
/// consumer JWT identified it).
pub type Identified = (Arc<Consumer>, Option<Claims>);

/// Compiled `consumers`.
pub struct Consumers {
    list: Vec<Arc<Consumer>>,
    /// SHA-256 of each API key → consumer.
    keys: HashMap<Digest, usize>,
    /// Basic passwords of the consumers that have one, as users named by the consumer.
    basic: Option<(BasicAuth, Vec<usize>)>,
    /// Consumer JWT credentials by the `iss` value that selects them.
    #[cfg(feature = "jwt")]
    jwt: HashMap<String, (usize, super::jwt::Verifier)>,
    /// Consumer by name (for `sharedJwt`).
    by_name: HashMap<String, usize>,
    shared_claim: Option<String>,
    id_header: HeaderName,
    key_header: HeaderName,
    /// Every header name some consumer's `headers` sets: removed from every request first, so
    /// a client never passes one off as Conduit's.
    managed: Vec<HeaderName>,
    skip: Vec<Glob>,
}

impl std::fmt::Debug for Consumers {
    // Deliberately shows no credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumers")
            .field(
                "consumers",
                &self.list.iter().map(|c| &*c.name).collect::<Vec<_>>(),
            )
            .field("id_header", &self.id_header)
            .field("shared_claim", &self.shared_claim)
            .finish()
    }
}

fn name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME {
        Some("must be at most 128 bytes")
    } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        Some("must be visible ASCII without spaces or `:` (it is sent as a header value)")
    } else {
        None
    }
}

fn header_error(errors: &mut Vec<ConfigError>, path: String, value: &Option<String>) {
    if let Some(h) = value {
        if HeaderName::from_bytes(h.as_bytes()).is_err() {
            errors.push(ConfigError::new(
                path,
                format!("`{h}` is not a valid header name"),
            ));
        }
    }
}

/// Checks a site's `consumers` (`site` tells whether a `jwtAuth` backs `sharedJwt`); every error
/// carries its field path. Consumer `rateLimit`s are checked with the other rate limits.
pub fn validate(raw: &raw::Consumers, site: &raw::Site, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let list = join(path, "consumers");
    if raw.consumers.is_empty() {
        errors.push(ConfigError::new(&list, "must list at least one consumer"));
    }
    header_error(&mut errors, join(path, "idHeader"), &raw.id_header);
    header_error(&mut errors, join(path, "apiKeyHeader"), &raw.api_key_header);
    if let Some(claim) = &raw.shared_jwt {
        if claim.is_empty() {
            errors.push(ConfigError::new(
                join(path, "sharedJwt"),
                "must name a claim",
            ));
        }
        if site.jwt_auth.is_none() {
            errors.push(ConfigError::new(
                join(path, "sharedJwt"),
                "needs the site's `jwtAuth` to verify the token whose claim names the consumer",
            ));
        }
    }
    for (i, pattern) in raw.skip_paths.iter().flatten().enumerate() {
        if let Err(e) = Glob::parse(pattern) {
            errors.push(ConfigError::new(join(path, &format!("skipPaths[{i}]")), e));
        }
    }
    let mut names = HashSet::new();
    let mut keys: HashMap<String, &str> = HashMap::new();
    let mut issuers = HashSet::new();
    for (i, c) in raw.consumers.iter().enumerate() {
        let cp = format!("{list}[{i}]");
        if let Some(why) = name_error(&c.username) {
            errors.push(ConfigError::new(join(&cp, "username"), why));
        } else if !names.insert(c.username.as_str()) {
            errors.push(ConfigError::new(
                join(&cp, "username"),
                format!("`{}` is used by another consumer", c.username),
            ));
        }
        let has_credential = c.api_key.is_some() || c.basic_auth.is_some() || c.jwt.is_some();
        if !has_credential && raw.shared_jwt.is_none() {
            errors.push(ConfigError::new(
                &cp,
                "has no credential: set `apiKey`, `basicAuth` or `jwt` (or the site's `sharedJwt`)",
            ));
        }
        if let Some(k) = &c.api_key {
            let all = k.to_vec();
            if all.is_empty() {
                errors.push(ConfigError::new(
                    join(&cp, "apiKey"),
                    "must list at least one key",
                ));
            }
            for (j, key) in all.iter().enumerate() {
                let kp = match k {
                    raw::OneOrMany::One(_) => join(&cp, "apiKey"),
                    raw::OneOrMany::Many(_) => format!("{}[{j}]", join(&cp, "apiKey")),
                };
                if key.is_empty() {
                    errors.push(ConfigError::new(kp, "must not be empty"));
                } else if key.len() > api_key::MAX_KEY_BYTES {
                    errors.push(ConfigError::new(
                        kp,
                        format!("is longer than {} bytes", api_key::MAX_KEY_BYTES),
                    ));
                } else if let Some(other) = keys.insert(key.clone(), c.username.as_str()) {
                    errors.push(ConfigError::new(
                        kp,
                        format!("this key is also a key of consumer `{other}`"),
                    ));
                }
            }
        }
        if let Some(pw) = &c.basic_auth {
            if let Some(why) = basic_auth::password_error(pw) {
                errors.push(ConfigError::new(join(&cp, "basicAuth"), why));
            }
        }
        if let Some(j) = &c.jwt {
            let jp = join(&cp, "jwt");
            let key = j.key.clone().unwrap_or_else(|| c.username.clone());
            if key.is_empty() {
                errors.push(ConfigError::new(join(&jp, "key"), "must not be empty"));
            } else if !issuers.insert(key.clone()) {
                errors.push(ConfigError::new(
                    join(&jp, "key"),
                    format!("`{key}` selects another consumer's key too"),
                ));
            }
            #[cfg(feature = "jwt")]
            errors.extend(super::jwt::validate_key(
                j.secret.as_deref(),
                j.public_key.as_deref(),
                j.algorithms.as_deref(),
                &jp,
            ));
            #[cfg(not(feature = "jwt"))]
            errors.push(super::needs_feature(&jp, "jwt"));
        }
        for (name, value) in c.headers.iter().flatten() {
            let hp = join(&join(&cp, "headers"), name);
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(ConfigError::new(hp, "is not a valid header name"));
            } else if crate::proxy::hop::is_proxy_managed(name)
                || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
            {
                errors.push(ConfigError::new(
                    hp,
                    "cannot be set per consumer (the proxy manages it)",
                ));
            } else if HeaderValue::from_str(value).is_err() {
                errors.push(ConfigError::new(
                    hp,
                    "value must be visible ASCII (no control characters)",
                ));
            }
        }
    }
    errors
}

/// Compiles validated `consumers`.
pub fn compile(raw: &raw::Consumers, _site: &raw::Site) -> Result<Consumers, ConfigError> {
    let header = |v: &Option<String>, default: &str| {
        HeaderName::from_bytes(v.as_deref().unwrap_or(default).as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("x-invalid"))
    };
    let mut list = Vec::new();
    let mut keys = HashMap::new();
    let mut by_name = HashMap::new();
    let mut users = std::collections::BTreeMap::new();
    #[cfg(feature = "jwt")]
    let mut jwt = HashMap::new();
    for (i, c) in raw.consumers.iter().enumerate() {
        let headers = c
            .headers
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        list.push(Arc::new(Consumer {
            name: Arc::from(c.username.as_str()),
            headers,
        }));
        by_name.insert(c.username.clone(), i);
        for key in c.api_key.iter().flat_map(raw::OneOrMany::to_vec) {
            keys.insert(sha256(key.as_bytes()), i);
        }
        if let Some(pw) = &c.basic_auth {
            users.insert(c.username.clone(), (pw.clone(), i));
        }
        #[cfg(feature = "jwt")]
        if let Some(j) = &c.jwt {
            let verifier = super::jwt::Verifier::new(
                j.secret.as_deref(),
                j.public_key.as_deref(),
                j.algorithms.as_deref(),
                60,
            )
            .map_err(|e| ConfigError::new("consumers.jwt", e))?;
            let key = j.key.clone().unwrap_or_else(|| c.username.clone());
            jwt.insert(key, (i, verifier));
        }
    }
    let mut managed: Vec<HeaderName> = Vec::new();
    for c in &list {
        for (name, _) in &c.headers {
            if !managed.contains(name) {
                managed.push(name.clone());
            }
        }
    }
    let basic = (!users.is_empty()).then(|| {
        // The users map is in name order, as BasicAuth reports positions.
        let order: Vec<usize> = users.values().map(|(_, i)| *i).collect();
        let auth = basic_auth::compile(&raw::BasicAuth {
            users: users.into_iter().map(|(n, (pw, _))| (n, pw)).collect(),
            ..Default::default()
        });
        (auth, order)
    });
    Ok(Consumers {
        list,
        keys,
        basic,
        #[cfg(feature = "jwt")]
        jwt,
        by_name,
        shared_claim: raw.shared_jwt.clone(),
        id_header: header(&raw.id_header, DEFAULT_ID_HEADER),
        key_header: header(&raw.api_key_header, api_key::DEFAULT_HEADER),
        managed,
        skip: raw
            .skip_paths
            .iter()
            .flatten()
            .filter_map(|p| Glob::parse(p).ok())
            .collect(),
    })
}

fn refusal(status: u16, reason: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        challenge: None,
    }
}

/// A claim's value as a consumer name (strings as they are, numbers in decimal).
fn claim_text(claims: &Claims, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Consumers {
    /// Whether consumers may send API keys (which may arrive in the query string).
    pub fn reads_api_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The consumer the request's credentials belong to (401/403 when none), or `None` on a
    /// skipped path. Removes a client-sent `idHeader` and the credential that identified the
    /// consumer, and adds the consumer's `idHeader` and `headers`.
    pub async fn check(
        &self,
        req: &mut RequestHeader,
        path: &str,
        claims: Option<&Claims>,
    ) -> Result<Option<Identified>, Refusal> {
        // Only Conduit says who the consumer is, and what its headers say.
        req.remove_header(&self.id_header);
        for name in &self.managed {
            req.remove_header(name);
        }
        if self.skip.iter().any(|g| g.matches(path)) {
            return Ok(None);
        }
        let (index, token_claims) = self.identify(req, claims).await?;
        let Some(consumer) = self.list.get(index) else {
            return Err(refusal(401, INVALID));
        };
        if let Ok(v) = HeaderValue::from_str(&consumer.name) {
            let _ = req.insert_header(self.id_header.clone(), v);
        }
        for (name, value) in &consumer.headers {
            let _ = req.insert_header(name.clone(), value.clone());
        }
        Ok(Some((consumer.clone(), token_claims)))
    }

    /// Which consumer the request's credential names (and the claims of a consumer's token).
    async fn identify(
        &self,
        req: &mut RequestHeader,
        claims: Option<&Claims>,
    ) -> Result<(usize, Option<Claims>), Refusal> {
        if let (Some(claim), Some(claims)) = (&self.shared_claim, claims) {
            let name = claim_text(claims, claim).ok_or(refusal(403, UNKNOWN))?;
            let index = self.by_name.get(&name).ok_or(refusal(403, UNKNOWN))?;
            return Ok((*index, None));
        }
        if !self.keys.is_empty() {
            if let Some(key) = api_key::presented_key(req, &self.key_header) {
                let index = self
                    .keys
                    .get(&sha256(&key))
                    .copied()
                    .ok_or(refusal(401, INVALID))?;
                api_key::strip_key(req, &self.key_header)?;
                return Ok((index, None));
            }
        }
        let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => return Err(refusal(401, MISSING)),
            (Some(_), Some(_)) => return Err(refusal(401, INVALID)),
            (Some(v), None) => v.as_bytes().to_vec(),
        };
        if let Some((auth, order)) = &self.basic {
            match basic_credentials(&value) {
                Credentials::Basic(decoded) => {
                    let index = auth
                        .user_index(&decoded)
                        .await
                        .and_then(|pos| order.get(pos).copied())
                        .ok_or(refusal(401, INVALID))?;
                    req.remove_header(&http::header::AUTHORIZATION);
                    return Ok((index, None));
                }
                Credentials::Malformed => return Err(refusal(401, INVALID)),
                Credentials::NotBasic => {}
            }
        }
        #[cfg(feature = "jwt")]
        if !self.jwt.is_empty() {
            if let Some(token) = super::jwt::bearer_token(req) {
                let iss =
                    super::jwt::unverified_claim(token, "iss").ok_or(refusal(401, INVALID))?;
                let (index, verifier) = self.jwt.get(&iss).ok_or(refusal(401, INVALID))?;
                let claims = verifier.verify(token)?;
                req.remove_header(&http::header::AUTHORIZATION);
                return Ok((*index, Some(claims)));
            }
        }
        Err(refusal(401, MISSING))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::filter::block_on as block;

    fn site(yaml: &str) -> raw::Site {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn errors(yaml: &str) -> Vec<String> {
        let s = site(yaml);
        validate(s.consumers.as_ref().unwrap(), &s, "consumers")
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    const TWO: &str = "consumers:\n  consumers:\n    - username: alice\n      apiKey: [k-alice-1, k-alice-2]\n      headers: {X-Plan: gold}\n    - username: bob\n      basicAuth: bobpw\n";

    #[test]
    fn identifies_by_key_or_password_and_strips_them() {
        let s = site(TWO);
        let c = compile(s.consumers.as_ref().unwrap(), &s).unwrap();
        let mut r = req("/x?api_key=k-alice-2&a=1", &[("x-consumer-id", "bob")]);
        let (who, _) = block(c.check(&mut r, "/x", None)).unwrap().unwrap();
        assert_eq!(&*who.name, "alice");
        assert_eq!(r.uri.to_string(), "/x?a=1");
        assert_eq!(r.headers.get("x-consumer-id").unwrap(), "alice");
        assert_eq!(r.headers.get("x-plan").unwrap(), "gold");

        // base64("bob:bobpw")
        let mut r = req("/x", &[("authorization", "Basic Ym9iOmJvYnB3")]);
        let (who, _) = block(c.check(&mut r, "/x", None)).unwrap().unwrap();
        assert_eq!(&*who.name, "bob");
        assert!(r.headers.get("authorization").is_none());

        // A consumer without X-Plan cannot bring its own.
        let mut r = req(
            "/x",
            &[("authorization", "Basic Ym9iOmJvYnB3"), ("x-plan", "gold")],
        );
        let (who, _) = block(c.check(&mut r, "/x", None)).unwrap().unwrap();
        assert_eq!(&*who.name, "bob");
        assert!(r.headers.get("x-plan").is_none());

        let mut r = req("/x", &[("x-api-key", "nope")]);
        assert_eq!(block(c.check(&mut r, "/x", None)).unwrap_err().status, 401);
        // base64("bob:wrong")
        let mut r = req("/x", &[("authorization", "Basic Ym9iOndyb25n")]);
        assert_eq!(
            block(c.check(&mut r, "/x", None)).unwrap_err().reason,
            INVALID
        );
        let mut r = req("/x", &[]);
        assert_eq!(
            block(c.check(&mut r, "/x", None)).unwrap_err().reason,
            MISSING
        );
    }

    #[test]
    fn shared_claim_names_the_consumer() {
        let s = site("jwtAuth: {secret: s}\nconsumers:\n  sharedJwt: sub\n  consumers:\n    - username: carol\n");
        let c = compile(s.consumers.as_ref().unwrap(), &s).unwrap();
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "carol".into());
        let claims: Claims = Arc::new(claims);
        let mut r = req("/", &[]);
        let (who, _) = block(c.check(&mut r, "/", Some(&claims))).unwrap().unwrap();
        assert_eq!(&*who.name, "carol");
        let mut other = serde_json::Map::new();
        other.insert("sub".into(), "mallory".into());
        let other: Claims = Arc::new(other);
        assert_eq!(
            block(c.check(&mut req("/", &[]), "/", Some(&other)))
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn skipped_paths_still_drop_a_spoofed_id() {
        let s = site("consumers:\n  skipPaths: [/public/**]\n  consumers:\n    - username: a\n      apiKey: k\n");
        let c = compile(s.consumers.as_ref().unwrap(), &s).unwrap();
        let mut r = req("/public/x", &[("x-consumer-id", "a")]);
        assert!(block(c.check(&mut r, "/public/x", None)).unwrap().is_none());
        assert!(r.headers.get("x-consumer-id").is_none());
    }

    #[test]
    fn validation_errors_name_fields() {
        let errs = errors("consumers:\n  idHeader: 'bad header'\n  consumers:\n    - username: 'a b'\n      apiKey: k\n    - username: c\n      apiKey: [k]\n    - username: c\n      basicAuth: ''\n    - username: d\n    - username: e\n      apiKey: e\n      headers: {Content-Length: '0'}\n");
        let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
        assert!(has("consumers.idHeader"), "{errs:?}");
        assert!(has("consumers.consumers[0].username"), "{errs:?}");
        assert!(
            has("consumers.consumers[1].apiKey[0]: this key is also a key of consumer `a b`"),
            "{errs:?}"
        );
        assert!(
            has("consumers.consumers[2].username: `c` is used by another consumer"),
            "{errs:?}"
        );
        assert!(
            has("consumers.consumers[2].basicAuth: password must not be empty"),
            "{errs:?}"
        );
        assert!(has("consumers.consumers[3]: has no credential"), "{errs:?}");
        assert!(
            has("consumers.consumers[4].headers.Content-Length: cannot be set per consumer"),
            "{errs:?}"
        );
        let errs = errors("consumers:\n  sharedJwt: sub\n  consumers:\n    - username: a\n");
        assert!(
            errs.iter()
                .any(|e| e.contains("sharedJwt: needs the site's `jwtAuth`")),
            "{errs:?}"
        );
    }
}
