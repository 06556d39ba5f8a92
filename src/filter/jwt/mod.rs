//! `jwtAuth`: requests must carry `Authorization: Bearer <JWT>`, a JWS compact token verified
//! with a shared secret (HS256/384/512), a PEM public key (RSA: RS*/PS*, EC P-256: ES256,
//! P-384: ES384, Ed25519: EdDSA) or the keys of a JSON Web Key Set fetched in the background
//! ([`jwks`]). A key only verifies the algorithms of its own family and the configured
//! allow-list, so an HMAC token is never checked against a public key (algorithm confusion) and
//! `alg: none` is never accepted. `exp` is required; `exp`, `nbf` and `iat` are checked with
//! `leewaySecs` of clock skew; `issuer` and `audience`, when set, must match (any of).
//!
//! Keys are parsed and validations built once, at compile time (JWKS keys when fetched), so a
//! request costs one signature verification and one claims parse. Refusals are 401 with an
//! RFC 6750 `WWW-Authenticate: Bearer` challenge; tokens are never logged. The verified claims
//! become part of the request's identity (for `consumers.sharedJwt` and transforms).
//!
//! [`Verifier`], [`bearer_token`] and [`unverified_claim`] serve per-consumer JWT credentials.

mod cache;
mod jwks;
mod keys;
mod verify;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use pingora::http::RequestHeader;

pub use jwks::JwksRefresher;
pub use verify::{Reason, REALM};

use super::Claims;
use crate::compile::glob::Glob;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;
use keys::{is_hmac, parse_algorithms, static_key, AlgSet, Problem, StaticKey, ALGORITHMS};
use verify::Policy;

/// `leewaySecs` when not set.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Largest `leewaySecs`.
pub const MAX_LEEWAY_SECS: u64 = 3600;
pub use jwks::{DEFAULT_REFRESH_SECS, REFRESH_SECS};

/// Every public-key algorithm (what a JWKS may verify).
fn public_key_algorithms() -> AlgSet {
    let algs: Vec<Algorithm> = ALGORITHMS.into_iter().filter(|a| !is_hmac(*a)).collect();
    AlgSet::of(&algs)
}

/// A compiled `jwtAuth`.
pub struct JwtAuth {
    /// The site or route it belongs to (for logs).
    id: Arc<str>,
    source: Source,
    skip: Vec<Glob>,
    forward: bool,
    /// Tokens verified before (a repeated token skips the signature check).
    cache: cache::TokenCache,
}

enum Source {
    /// A secret or a public key.
    Static(Box<Verifier>),
    /// The keys of a JWKS.
    Jwks(JwksAuth),
}

/// Verification against a JWKS.
struct JwksAuth {
    lease: jwks::Lease,
    /// Algorithms the config accepts (`algorithms`, else every public-key algorithm).
    allowed: AlgSet,
    /// Whether `algorithms` was set (then keys without their own `alg` verify any of them that
    /// fits the key; else only the key family's default).
    explicit: bool,
    /// One prepared validation per allowed algorithm.
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
}

impl std::fmt::Debug for JwtAuth {
    // Shows no key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Static(v) => format!("{v:?}"),
            Source::Jwks(j) => format!(
                "Jwks {{ url: {:?}, algorithms: {:?} }}",
                j.lease.set().url(),
                j.allowed.names()
            ),
        };
        f.debug_struct("JwtAuth")
            .field("id", &self.id)
            .field("source", &source)
            .field(
                "skip",
                &self.skip.iter().map(Glob::as_str).collect::<Vec<_>>(),
            )
            .field("forward", &self.forward)
            .finish()
    }
}

/// Turns key problems into errors under `path`.
fn errors_at(path: &str, problems: Vec<Problem>) -> Vec<ConfigError> {
    problems
        .into_iter()
        .map(|(field, msg)| ConfigError::new(join(path, &field), msg))
        .collect()
}

/// Checks a `jwtAuth` (site or route level); every error carries its field path. Reads a
/// `publicKey` file; never touches the network.
pub fn validate(raw: &raw::JwtAuth, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let sources: Vec<&str> = [
        ("secret", raw.secret.is_some()),
        ("publicKey", raw.public_key.is_some()),
        ("jwksUrl", raw.jwks_url.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match (sources.as_slice(), &raw.jwks_url) {
        ([], _) => {
            errors.push(ConfigError::new(
                path,
                "needs a key: set one of `secret` (HS256/384/512), `publicKey` (PEM text or file) \
                 and `jwksUrl`",
            ));
            let mut problems = Vec::new();
            parse_algorithms(raw.algorithms.as_deref(), &mut problems);
            errors.extend(errors_at(path, problems));
        }
        ([_], Some(url)) => {
            if let Err(e) = jwks::JwksUrl::parse(url) {
                errors.push(ConfigError::new(join(path, "jwksUrl"), e));
            }
            let mut problems = Vec::new();
            let listed = parse_algorithms(raw.algorithms.as_deref(), &mut problems);
            errors.extend(errors_at(path, problems));
            if let Some(hmac) = listed.map(|l| l.and(keys::Family::Hmac.algorithms())) {
                if !hmac.is_empty() {
                    errors.push(ConfigError::new(
                        join(path, "algorithms"),
                        format!(
                            "{} needs a shared secret; the keys of a JWKS verify public-key \
                             algorithms only ({})",
                            hmac.names(),
                            public_key_algorithms().names()
                        ),
                    ));
                }
            }
        }
        ([_], None) => {
            if let Err(problems) = static_key(
                raw.secret.as_deref(),
                raw.public_key.as_deref(),
                raw.algorithms.as_deref(),
            ) {
                errors.extend(errors_at(path, problems));
            }
        }
        (many, _) => errors.push(ConfigError::new(
            path,
            format!(
                "set exactly one of `secret`, `publicKey` and `jwksUrl`; found {}",
                many.iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )),
    }
    if let Some(secs) = raw.jwks_refresh_secs {
        let p = join(path, "jwksRefreshSecs");
        if raw.jwks_url.is_none() {
            errors.push(ConfigError::new(p, "only applies with `jwksUrl`"));
        } else if !REFRESH_SECS.contains(&secs) {
            errors.push(ConfigError::new(
                p,
                format!(
                    "must be between {} and {} (seconds)",
                    REFRESH_SECS.start(),
                    REFRESH_SECS.end()
                ),
            ));
        }
    }
    if raw.leeway_secs.is_some_and(|s| s > MAX_LEEWAY_SECS) {
        errors.push(ConfigError::new(
            join(path, "leewaySecs"),
            format!("must be at most {MAX_LEEWAY_SECS} (seconds)"),
        ));
    }
    for (field, value) in [("issuer", &raw.issuer), ("audience", &raw.audience)] {
        let Some(value) = value else { continue };
        let p = join(path, field);
        let list = value.to_vec();
        if list.is_empty() {
            errors.push(ConfigError::new(p, "must name at least one value"));
        } else if list.iter().any(String::is_empty) {
            errors.push(ConfigError::new(p, "values must not be empty"));
        }
    }
    for (i, pattern) in raw.skip_paths.iter().flatten().enumerate() {
        if let Err(e) = Glob::parse(pattern) {
            errors.push(ConfigError::new(join(path, &format!("skipPaths[{i}]")), e));
        }
    }
    errors
}

/// Compiles a validated `jwtAuth`. `id` is the stable id of its site or route. Parses the key
/// (reading a `publicKey` file) and, for `jwksUrl`, registers the URL with the process-wide
/// key sets (keys already fetched for it are kept); never touches the network.
pub fn compile(raw: &raw::JwtAuth, id: &str) -> Result<JwtAuth, ConfigError> {
    let path = "jwtAuth";
    let leeway = raw.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
    let policy = Policy {
        leeway,
        issuer: raw.issuer.as_ref().map(raw::OneOrMany::to_vec),
        audience: raw.audience.as_ref().map(raw::OneOrMany::to_vec),
    };
    let first = |errors: Vec<ConfigError>| {
        errors
            .into_iter()
            .next()
            .unwrap_or_else(|| ConfigError::new(path, "is invalid"))
    };
    let source = match &raw.jwks_url {
        Some(url) => {
            let errors = validate(raw, path);
            if !errors.is_empty() {
                return Err(first(errors));
            }
            let mut problems = Vec::new();
            let listed = parse_algorithms(raw.algorithms.as_deref(), &mut problems);
            let allowed = listed
                .unwrap_or_else(public_key_algorithms)
                .and(public_key_algorithms());
            if !problems.is_empty() || allowed.is_empty() {
                return Err(first(errors_at(path, problems)));
            }
            let lease = jwks::lease(
                url,
                raw.jwks_refresh_secs.unwrap_or(jwks::DEFAULT_REFRESH_SECS),
            );
            Source::Jwks(JwksAuth {
                lease,
                allowed,
                explicit: listed.is_some(),
                validations: allowed
                    .iter()
                    .map(|a| (a, verify::validation(AlgSet::of(&[a]), &policy)))
                    .collect(),
                leeway,
            })
        }
        None => {
            let key = static_key(
                raw.secret.as_deref(),
                raw.public_key.as_deref(),
                raw.algorithms.as_deref(),
            )
            .map_err(|p| first(errors_at(path, p)))?;
            Source::Static(Box::new(Verifier::from_static(key, &policy)))
        }
    };
    Ok(JwtAuth {
        id: Arc::from(id),
        source,
        skip: raw
            .skip_paths
            .iter()
            .flatten()
            .filter_map(|p| Glob::parse(p).ok())
            .collect(),
        forward: raw.forward_credentials.unwrap_or(true),
        cache: cache::TokenCache::new(leeway),
    })
}

impl JwtAuth {
    /// The verified claims of the request's bearer token, or `None` when `path` (the normalised
    /// request path) matches `skipPaths`. A 401 with a `WWW-Authenticate: Bearer` challenge
    /// when the token is missing or does not verify. Removes `Authorization` unless
    /// `forwardCredentials`. With a JWKS, a token naming an unknown `kid` may wait (briefly)
    /// for a refetch of the set.
    pub async fn check(
        &self,
        req: &mut RequestHeader,
        path: &str,
    ) -> Result<Option<Claims>, Refusal> {
        if self.skip.iter().any(|g| g.matches(path)) {
            if !self.forward {
                req.remove_header(&http::header::AUTHORIZATION);
            }
            return Ok(None);
        }
        let verified = match presented(req) {
            Presented::Nothing => Err(Reason::Missing),
            Presented::Invalid => Err(Reason::Malformed),
            Presented::Bearer(token) => {
                let slot = self.cache.slot(token);
                let keys = self.key_set();
                match self.cache.get(slot, token, keys) {
                    Some(claims) => Ok(claims),
                    None => {
                        let verified = match &self.source {
                            Source::Static(v) => v.check(token),
                            Source::Jwks(j) => j.verify(token).await,
                        };
                        if let Ok(claims) = &verified {
                            // Stamped with the set current before verifying: a refresh that
                            // lands meanwhile (and may drop the key) makes this entry stale
                            // rather than lending it the new set's trust.
                            self.cache.insert(slot, token, claims, keys);
                        }
                        verified
                    }
                }
            }
        };
        match verified {
            Ok(claims) => {
                if !self.forward {
                    req.remove_header(&http::header::AUTHORIZATION);
                }
                Ok(Some(claims))
            }
            Err(reason) => {
                tracing::debug!(auth = %self.id, reason = reason.text(), "bearer token refused");
                Err(reason.refusal())
            }
        }
    }

    /// Which key set verifies tokens now: 0 for a static key, else the generation of the JWKS's
    /// current set (every refresh installs a new one).
    fn key_set(&self) -> usize {
        match &self.source {
            Source::Static(_) => 0,
            Source::Jwks(j) => j.lease.set().keys().generation as usize,
        }
    }

    /// The JWKS key set this filter verifies with, if any: (fetch attempts, successful fetches).
    pub fn jwks_stats(&self) -> Option<(u64, u64)> {
        match &self.source {
            Source::Jwks(j) => Some(j.lease.set().stats()),
            Source::Static(_) => None,
        }
    }
}

/// Which key(s) of a set may verify a token.
enum Lookup {
    /// The key with the token's `kid`.
    Key(Arc<jwks::Jwk>),
    /// A token without `kid`: every key that verifies its `alg`.
    Candidates(Vec<Arc<jwks::Jwk>>),
    /// No such key (yet).
    Miss,
    /// The key exists but does not verify the token's `alg`.
    WrongAlgorithm,
}

impl JwksAuth {
    /// Whether `key` may verify a token signed with `alg` under this config.
    fn fits(&self, key: &jwks::Jwk, alg: Algorithm) -> bool {
        self.allowed.contains(alg)
            && if key.declared || self.explicit {
                key.algorithms.contains(alg)
            } else {
                alg == key.default
            }
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let keys = self.lease.set().keys();
        match kid {
            Some(kid) => match keys.get(kid) {
                Some(k) if self.fits(k, alg) => Lookup::Key(k.clone()),
                Some(_) => Lookup::WrongAlgorithm,
                None => Lookup::Miss,
            },
            None => {
                let found: Vec<_> = keys
                    .keys()
                    .iter()
                    .filter(|k| self.fits(k, alg))
                    .cloned()
                    .collect();
                if found.is_empty() {
                    Lookup::Miss
                } else {
                    Lookup::Candidates(found)
                }
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<Claims, Reason> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| match verify::header_alg(token) {
                Some(alg) if keys::parse_alg(&alg).is_none() => Reason::Algorithm,
                _ => Reason::Malformed,
            })?;
        let alg = header.alg;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == alg) else {
            return Err(Reason::Algorithm);
        };
        let kid = header.kid.as_deref();
        let found = match self.lookup(kid, alg) {
            Lookup::Miss => {
                self.lease.set().refetch_for_unknown_key().await;
                self.lookup(kid, alg)
            }
            found => found,
        };
        match found {
            Lookup::Key(k) => verify::decode(token, &k.key, validation, self.leeway),
            Lookup::Candidates(keys) => {
                for k in keys {
                    match verify::decode(token, &k.key, validation, self.leeway) {
                        Err(Reason::BadSignature) => continue,
                        other => return other,
                    }
                }
                Err(Reason::BadSignature)
            }
            Lookup::Miss => Err(Reason::UnknownKey),
            Lookup::WrongAlgorithm => Err(Reason::Algorithm),
        }
    }
}

/// What a request presents in `Authorization`.
enum Presented<'a> {
    /// No `Authorization`, or another scheme.
    Nothing,
    /// Two `Authorization` headers, or an empty or non-ASCII bearer token.
    Invalid,
    Bearer(&'a str),
}

fn presented(req: &RequestHeader) -> Presented<'_> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Presented::Nothing,
        (Some(_), Some(_)) => return Presented::Invalid,
        (Some(v), None) => v,
    };
    let Ok(value) = value.to_str() else {
        return Presented::Invalid;
    };
    let value = value.trim();
    let (scheme, token) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], value[i..].trim()),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Nothing;
    }
    if token.is_empty() || token.contains([' ', '\t']) {
        return Presented::Invalid;
    }
    Presented::Bearer(token)
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive), if the request has
/// exactly one `Authorization` header and it is a bearer token.
pub fn bearer_token(req: &RequestHeader) -> Option<&str> {
    match presented(req) {
        Presented::Bearer(t) => Some(t),
        _ => None,
    }
}

/// A string claim of `token`'s payload, read WITHOUT verifying the token: only for choosing
/// which key to verify it with.
pub fn unverified_claim(token: &str, claim: &str) -> Option<String> {
    verify::payload_claim(token, claim)
}

/// Checks a per-consumer JWT key: exactly one of `secret` and `publicKey`, and `algorithms`
/// that fit it (errors at `path.secret`, `path.publicKey`, `path.algorithms[i]`, or `path`).
pub fn validate_key(
    secret: Option<&str>,
    public_key: Option<&str>,
    algorithms: Option<&[String]>,
    path: &str,
) -> Vec<ConfigError> {
    match static_key(secret, public_key, algorithms) {
        Ok(_) => Vec::new(),
        Err(problems) => errors_at(path, problems),
    }
}

/// Verifies tokens with one secret or public key: signature, the algorithm allow-list, `exp`
/// (required), `nbf` and `iat` with leeway. Used for per-consumer credentials (no `iss`/`aud`
/// check) and, with `issuer`/`audience`, by `jwtAuth` itself.
pub struct Verifier {
    key: keys::Key,
    algorithms: AlgSet,
    validation: Validation,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    // Shows the kind of key, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &self.key.family)
            .field("algorithms", &self.algorithms.names())
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl Verifier {
    /// A verifier for a secret or a public key (PEM text or a PEM file's path) with the
    /// `algorithms` it accepts (default: the key family's usual one), allowing `leeway_secs` of
    /// clock skew. The error names the field at fault.
    pub fn new(
        secret: Option<&str>,
        public_key: Option<&str>,
        algorithms: Option<&[String]>,
        leeway_secs: u64,
    ) -> Result<Verifier, String> {
        let key = static_key(secret, public_key, algorithms).map_err(|problems| {
            problems
                .into_iter()
                .map(|(field, msg)| {
                    if field.is_empty() {
                        msg
                    } else {
                        format!("{field}: {msg}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Verifier::from_static(
            key,
            &Policy {
                leeway: leeway_secs,
                issuer: None,
                audience: None,
            },
        ))
    }

    fn from_static(key: StaticKey, policy: &Policy) -> Verifier {
        Verifier {
            validation: verify::validation(key.algorithms, policy),
            algorithms: key.algorithms,
            key: key.key,
            leeway: policy.leeway,
        }
    }

    /// The token's claims if it verifies; else a 401 refusal with its `Bearer` challenge.
    pub fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        self.check(token).map_err(Reason::refusal)
    }

    fn check(&self, token: &str) -> Result<Claims, Reason> {
        verify::decode(token, &self.key.key, &self.validation, self.leeway)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{encode, DecodingKey, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs256(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn auth(yaml: &str) -> JwtAuth {
        let raw: raw::JwtAuth = serde_yaml_ng::from_str(yaml).unwrap();
        let errors = validate(&raw, "jwtAuth");
        assert!(errors.is_empty(), "{errors:?}");
        compile(&raw, "site-0").unwrap()
    }

    fn req(auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        if let Some(a) = auth {
            r.insert_header("authorization", a).unwrap();
        }
        r
    }

    async fn run(a: &JwtAuth, token: &str) -> Result<Option<Claims>, Refusal> {
        a.check(&mut req(Some(&format!("Bearer {token}"))), "/x")
            .await
    }

    async fn reason(a: &JwtAuth, token: &str) -> &'static str {
        run(a, token).await.unwrap_err().reason
    }

    // RFC 7515, Appendix A: the payload shared by A.1-A.3 ({"iss":"joe", "exp":1300819380,
    // "http://example.com/is_root":true}), then each example's header and signature.
    const RFC_PAYLOAD: &str =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const A1_TOKEN_HEADER: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
    const A1_SIG: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const A1_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const A2_HEADER: &str = "eyJhbGciOiJSUzI1NiJ9";
    const A2_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const A3_HEADER: &str = "eyJhbGciOiJFUzI1NiJ9";
    const A3_SIG: &str =
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    /// Verifies an RFC example: with the normal policy only the (long past) expiry fails; with
    /// the expiry check off it verifies and yields the example's claims; a flipped signature
    /// fails as a signature.
    fn rfc_vector(family: keys::Family, key: DecodingKey, alg: Algorithm, header: &str, sig: &str) {
        let token = format!("{header}.{RFC_PAYLOAD}.{sig}");
        let v = Verifier::from_static(
            StaticKey {
                key: keys::Key { family, key },
                algorithms: AlgSet::of(&[alg]),
            },
            &Policy {
                leeway: 60,
                issuer: Some(vec!["joe".into()]),
                audience: None,
            },
        );
        assert_eq!(v.check(&token).unwrap_err(), Reason::Expired);
        let mut no_exp = v.validation.clone();
        no_exp.validate_exp = false;
        no_exp.required_spec_claims.clear();
        let claims = verify::decode(&token, &v.key.key, &no_exp, 60).unwrap();
        assert_eq!(claims["iss"], "joe");
        assert_eq!(claims["exp"], 1300819380);
        assert_eq!(claims["http://example.com/is_root"], true);
        // The last signature character changed: the signature no longer verifies (checked
        // before any claim).
        let last = if sig.ends_with('A') { "Q" } else { "A" };
        let forged = format!("{header}.{RFC_PAYLOAD}.{}{last}", &sig[..sig.len() - 1]);
        assert_eq!(v.check(&forged).unwrap_err(), Reason::BadSignature);
        assert_eq!(
            verify::decode(&forged, &v.key.key, &no_exp, 60).unwrap_err(),
            Reason::BadSignature
        );
    }

    #[test]
    fn rfc7515_a1_hs256() {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(A1_KEY)
            .unwrap();
        rfc_vector(
            keys::Family::Hmac,
            DecodingKey::from_secret(&key),
            Algorithm::HS256,
            A1_TOKEN_HEADER,
            A1_SIG,
        );
    }

    #[test]
    fn rfc7515_a2_rs256() {
        rfc_vector(
            keys::Family::Rsa,
            DecodingKey::from_rsa_components(A2_N, "AQAB").unwrap(),
            Algorithm::RS256,
            A2_HEADER,
            A2_SIG,
        );
    }

    #[test]
    fn rfc7515_a3_es256() {
        rfc_vector(
            keys::Family::EcP256,
            DecodingKey::from_ec_components(A3_X, A3_Y).unwrap(),
            Algorithm::ES256,
            A3_HEADER,
            A3_SIG,
        );
    }

    #[tokio::test]
    async fn hs256_claims_and_time_checks() {
        let a = auth(&format!("{{secret: '{SECRET}'}}"));
        let t = now();
        let claims = run(&a, &hs256(json!({"sub": "ann", "exp": t + 300})))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claims["sub"], "ann");
        let cases = [
            (json!({"exp": t - 120}), "token expired"),
            (
                json!({"exp": t + 300, "nbf": t + 600}),
                "token not yet valid",
            ),
            (
                json!({"exp": t + 300, "iat": t + 600}),
                "token issued in the future",
            ),
            (
                json!({"exp": t + 300, "iat": "yesterday"}),
                "malformed token",
            ),
            (json!({"exp": t + 300, "nbf": "soon"}), "malformed token"),
            (json!({"sub": "no exp"}), "token has no expiry"),
            (json!({"exp": "never"}), "token has no expiry"),
        ];
        for (claims, want) in cases {
            assert_eq!(reason(&a, &hs256(claims.clone())).await, want, "{claims}");
        }
        // Within the leeway (60 s).
        for claims in [
            json!({"exp": t - 30}),
            json!({"exp": t + 300, "nbf": t + 30, "iat": t + 30}),
        ] {
            assert!(run(&a, &hs256(claims.clone())).await.is_ok(), "{claims}");
        }
        let a = auth(&format!("{{secret: '{SECRET}', leewaySecs: 0}}"));
        assert_eq!(
            reason(&a, &hs256(json!({"exp": t - 30}))).await,
            "token expired"
        );
    }

    #[tokio::test]
    async fn issuer_and_audience() {
        let a = auth(&format!(
            "{{secret: '{SECRET}', issuer: 'https://idp', audience: [api, admin]}}"
        ));
        let exp = now() + 300;
        for (claims, ok) in [
            (
                json!({"exp": exp, "iss": "https://idp", "aud": "api"}),
                None,
            ),
            (
                json!({"exp": exp, "iss": "https://idp", "aud": ["x", "admin"]}),
                None,
            ),
            (
                json!({"exp": exp, "iss": "https://evil", "aud": "api"}),
                Some("token issuer not accepted"),
            ),
            (
                json!({"exp": exp, "aud": "api"}),
                Some("token issuer not accepted"),
            ),
            (
                json!({"exp": exp, "iss": "https://idp", "aud": "web"}),
                Some("token audience not accepted"),
            ),
            (
                json!({"exp": exp, "iss": "https://idp"}),
                Some("token audience not accepted"),
            ),
        ] {
            let got = run(&a, &hs256(claims.clone()))
                .await
                .err()
                .map(|r| r.reason);
            assert_eq!(got, ok, "{claims}");
        }
        // Without `audience`, a token's `aud` is not checked.
        let a = auth(&format!("{{secret: '{SECRET}'}}"));
        assert!(run(&a, &hs256(json!({"exp": exp, "aud": "any"})))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn algorithms_are_enforced() {
        let exp = now() + 300;
        let a = auth(&format!("{{secret: '{SECRET}'}}"));
        // alg: none, unsigned.
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"exp": exp}))
        );
        assert_eq!(reason(&a, &none).await, "token algorithm not allowed");
        // HS512 is not in the (default) allow-list.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": exp}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(reason(&a, &hs512).await, "token algorithm not allowed");
        // Another secret.
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": exp}),
            &EncodingKey::from_secret(b"another-secret-another-secret-another"),
        )
        .unwrap();
        assert_eq!(reason(&a, &other).await, "invalid token signature");

        // An RSA public key: an HS256 token made with the key's PEM as the secret is refused.
        let pem = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
        let a = auth(&format!("{{publicKey: {}}}", fixture("rsa_public.pem")));
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": exp}),
            &EncodingKey::from_secret(pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(reason(&a, &confused).await, "token algorithm not allowed");
        let private = std::fs::read(fixture("rsa_private.pem")).unwrap();
        let rs = |alg| {
            encode(
                &Header::new(alg),
                &json!({"exp": exp}),
                &EncodingKey::from_rsa_pem(&private).unwrap(),
            )
            .unwrap()
        };
        assert!(run(&a, &rs(Algorithm::RS256)).await.is_ok());
        assert_eq!(
            reason(&a, &rs(Algorithm::PS256)).await,
            "token algorithm not allowed"
        );
        let a = auth(&format!(
            "{{publicKey: {}, algorithms: [PS256]}}",
            fixture("rsa_public.pem")
        ));
        assert!(run(&a, &rs(Algorithm::PS256)).await.is_ok());
        assert_eq!(
            reason(&a, &rs(Algorithm::RS256)).await,
            "token algorithm not allowed"
        );
        for junk in ["abc", "a.b.c", "", "....", "eyJhbGciOiJQUzI1NiJ9.!!.x"] {
            assert_eq!(reason(&a, junk).await, "malformed token", "{junk:?}");
        }
    }

    #[tokio::test]
    async fn ed25519_and_ec_public_keys() {
        let exp = now() + 300;
        for (alg, kind) in [
            (Algorithm::EdDSA, &rcgen::PKCS_ED25519),
            (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384),
        ] {
            let pair = rcgen::KeyPair::generate_for(kind).unwrap();
            let key = match alg {
                Algorithm::EdDSA => EncodingKey::from_ed_der(&pair.serialize_der()),
                _ => EncodingKey::from_ec_der(&pair.serialize_der()),
            };
            let token = encode(&Header::new(alg), &json!({"exp": exp}), &key).unwrap();
            let pem = pair.public_key_pem().replace('\n', "\\n");
            let a = auth(&format!("{{publicKey: \"{pem}\"}}"));
            assert!(run(&a, &token).await.is_ok(), "{alg:?}");
            let v = Verifier::new(None, Some(&pair.public_key_pem()), None, 0).unwrap();
            assert!(v.verify(&token).is_ok());
        }
    }

    #[tokio::test]
    async fn headers_skip_paths_and_forwarding() {
        let a = auth(&format!(
            "{{secret: '{SECRET}', skipPaths: [/public/**], forwardCredentials: false}}"
        ));
        let token = hs256(json!({"exp": now() + 300}));
        let e = a.check(&mut req(None), "/x").await.unwrap_err();
        assert_eq!((e.status, e.reason), (401, "bearer token required"));
        assert_eq!(e.challenge.as_deref(), Some("Bearer realm=\"conduit\""));
        let e = a
            .check(&mut req(Some("Basic YTpi")), "/x")
            .await
            .unwrap_err();
        assert_eq!(e.reason, "bearer token required");
        for bad in ["Bearer", "Bearer  ", "Bearer a b"] {
            let e = a.check(&mut req(Some(bad)), "/x").await.unwrap_err();
            assert_eq!(e.reason, "malformed token", "{bad:?}");
        }
        let mut two = req(Some(&format!("Bearer {token}")));
        two.append_header("authorization", format!("Bearer {token}"))
            .unwrap();
        assert_eq!(
            a.check(&mut two, "/x").await.unwrap_err().reason,
            "malformed token"
        );

        let mut r = req(Some(&format!("bearer   {token} ")));
        assert!(a.check(&mut r, "/x").await.unwrap().is_some());
        assert!(r.headers.get("authorization").is_none());
        let mut r = req(Some("Bearer junk"));
        assert!(a.check(&mut r, "/public/a").await.unwrap().is_none());
        assert!(r.headers.get("authorization").is_none());

        let a = auth(&format!("{{secret: '{SECRET}'}}"));
        let mut r = req(Some(&format!("Bearer {token}")));
        assert!(a.check(&mut r, "/x").await.unwrap().is_some());
        assert!(r.headers.get("authorization").is_some());
        let e = a
            .check(&mut req(Some("Bearer x.y.z")), "/x")
            .await
            .unwrap_err();
        assert_eq!(
            e.challenge.as_deref(),
            Some(
                "Bearer realm=\"conduit\", error=\"invalid_token\", \
                 error_description=\"malformed token\""
            )
        );
    }

    #[test]
    fn consumer_helpers() {
        let token = hs256(json!({"iss": "acme", "exp": now() + 60}));
        let r = req(Some(&format!("Bearer {token}")));
        assert_eq!(bearer_token(&r), Some(token.as_str()));
        assert_eq!(bearer_token(&req(Some("Basic YTpi"))), None);
        assert_eq!(bearer_token(&req(None)), None);
        assert_eq!(unverified_claim(&token, "iss").as_deref(), Some("acme"));
        assert_eq!(unverified_claim(&token, "exp"), None);

        let v = Verifier::new(Some(SECRET), None, None, 60).unwrap();
        assert_eq!(v.verify(&token).unwrap()["iss"], "acme");
        let e = v.verify(&hs256(json!({"exp": now() - 600}))).unwrap_err();
        assert_eq!((e.status, e.reason), (401, "token expired"));
        let e = Verifier::new(Some("short"), None, None, 60).unwrap_err();
        assert!(e.starts_with("secret: is 5 bytes"), "{e}");
        let e = Verifier::new(None, None, None, 60).unwrap_err();
        assert!(e.starts_with("needs a key"), "{e}");

        let paths = |e: Vec<ConfigError>| e.into_iter().map(|e| e.path).collect::<Vec<_>>();
        assert!(validate_key(Some(SECRET), None, None, "c.jwt").is_empty());
        assert_eq!(
            paths(validate_key(
                Some("x"),
                None,
                Some(&["none".into()]),
                "c.jwt"
            )),
            ["c.jwt.algorithms[0]", "c.jwt.secret"]
        );
        assert_eq!(
            paths(validate_key(Some(SECRET), Some("k.pem"), None, "c.jwt")),
            ["c.jwt"]
        );
    }

    fn error_paths(yaml: &str) -> Vec<String> {
        let raw: raw::JwtAuth = serde_yaml_ng::from_str(yaml).unwrap();
        validate(&raw, "sites[0].jwtAuth")
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn validation_errors_name_fields() {
        let rsa = fixture("rsa_public.pem");
        assert!(error_paths(&format!("{{secret: '{SECRET}'}}")).is_empty());
        assert!(error_paths(&format!("{{publicKey: {rsa}}}")).is_empty());
        assert!(error_paths("{jwksUrl: 'https://idp.example.com/jwks', jwksRefreshSecs: 300, algorithms: [RS256, ES256, EdDSA]}").is_empty());
        for (yaml, want) in [
            ("{}", vec!["sites[0].jwtAuth"]),
            (
                &format!("{{secret: '{SECRET}', jwksUrl: 'http://x/k'}}"),
                vec!["sites[0].jwtAuth"],
            ),
            ("{secret: short}", vec!["sites[0].jwtAuth.secret"]),
            (
                &format!("{{secret: '{SECRET}', algorithms: [HS256, RS256, nope]}}"),
                vec![
                    "sites[0].jwtAuth.algorithms[2]",
                    "sites[0].jwtAuth.algorithms",
                    "sites[0].jwtAuth.algorithms",
                ],
            ),
            (
                &format!("{{publicKey: {rsa}, algorithms: [HS256]}}"),
                vec!["sites[0].jwtAuth.algorithms"],
            ),
            (
                "{publicKey: /no/such.pem}",
                vec!["sites[0].jwtAuth.publicKey"],
            ),
            (
                "{jwksUrl: 'ftp://x/keys'}",
                vec!["sites[0].jwtAuth.jwksUrl"],
            ),
            (
                "{jwksUrl: 'https://x/keys', algorithms: [HS256]}",
                vec!["sites[0].jwtAuth.algorithms"],
            ),
            (
                "{jwksUrl: 'https://x/keys', algorithms: [none]}",
                vec!["sites[0].jwtAuth.algorithms[0]"],
            ),
            (
                "{jwksUrl: 'https://x/keys', jwksRefreshSecs: 1}",
                vec!["sites[0].jwtAuth.jwksRefreshSecs"],
            ),
            (
                &format!("{{secret: '{SECRET}', jwksRefreshSecs: 60}}"),
                vec!["sites[0].jwtAuth.jwksRefreshSecs"],
            ),
            (
                &format!(
                    "{{secret: '{SECRET}', leewaySecs: 99999, issuer: [], audience: [''], \
                     skipPaths: [/ok, nope]}}"
                ),
                vec![
                    "sites[0].jwtAuth.leewaySecs",
                    "sites[0].jwtAuth.issuer",
                    "sites[0].jwtAuth.audience",
                    "sites[0].jwtAuth.skipPaths[1]",
                ],
            ),
        ] {
            assert_eq!(error_paths(yaml), want, "{yaml}");
        }
        // Messages name the fields and never echo the secret.
        let raw: raw::JwtAuth = serde_yaml_ng::from_str("{secret: tooshort}").unwrap();
        let e = validate(&raw, "jwtAuth").remove(0).to_string();
        assert!(e.contains("32 bytes") && !e.contains("tooshort"), "{e}");
        let raw: raw::JwtAuth = serde_yaml_ng::from_str("{secret: abc, publicKey: k.pem}").unwrap();
        let e = validate(&raw, "jwtAuth").remove(0).to_string();
        assert!(e.contains("`secret` and `publicKey`"), "{e}");
    }

    #[test]
    fn compile_keeps_jwks_sets_across_reloads_without_io() {
        let yaml = "{jwksUrl: 'http://127.0.0.1:9/unit-test-jwks.json', jwksRefreshSecs: 60}";
        let a = auth(yaml);
        let b = auth(yaml);
        match (&a.source, &b.source) {
            (Source::Jwks(x), Source::Jwks(y)) => {
                assert!(Arc::ptr_eq(x.lease.set(), y.lease.set()));
                assert_eq!(x.allowed, public_key_algorithms());
                assert!(!x.explicit);
            }
            _ => panic!("not a JWKS source"),
        }
        // Nothing was fetched.
        assert_eq!(a.jwks_stats(), Some((0, 0)));
        assert!(format!("{a:?}").contains("unit-test-jwks"));
    }
}
