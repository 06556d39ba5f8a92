//! `basicAuth`: HTTP Basic authentication (`Authorization: Basic base64(user:password)`) against
//! the site's configured users. A configured password is plaintext (compared as SHA-256 digests
//! in constant time) or a bcrypt (`$2a$`/`$2b$`/`$2y$`) or argon2 (`$argon2id$`/`$argon2i$`, PHC
//! string) hash. Missing or wrong credentials get a 401 carrying a `WWW-Authenticate` challenge
//! (unless `challenge: false`); unless `forwardCredentials` is set, `Authorization` is removed
//! before the request is forwarded. Passwords are never logged.
//!
//! Hash verification is slow on purpose, so it runs on Tokio's blocking pool, at most one per CPU
//! at a time (more wait their turn): a flood of wrong passwords delays other password checks but
//! never stalls the workers serving everything else. To keep that cost
//! to the first request of a client, successful verifications of hashed passwords are remembered
//! in a small bounded cache keyed by the SHA-256 digest of the presented `user:password`; only a
//! byte-identical `user:password` hits it, so a wrong password is always verified (and refused).
//! Failures are never cached. The cache belongs to one compiled config and goes with it on reload.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::secret::{ct_eq, sha256, Digest};
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use http::HeaderValue;
use pingora::http::RequestHeader;

use crate::compile::glob::Glob;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// The realm named in the challenge when `realm` is not set.
pub const DEFAULT_REALM: &str = "Restricted";
/// How many verified `user:password` digests the cache holds at most.
pub const CACHE_CAPACITY: usize = 1024;
/// bcrypt costs accepted in configured hashes.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Reason of the 401 when no Basic credentials were presented.
pub const MISSING: &str = "authentication required";
/// Reason of the 401 when the credentials are malformed or wrong.
pub const INVALID: &str = "invalid credentials";

/// Standard base64, padding optional (some clients omit it).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How one user's password is checked.
#[derive(Clone)]
enum Secret {
    /// SHA-256 of a plaintext password.
    Plain(Digest),
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt(String),
    /// An argon2i / argon2id PHC string.
    Argon2(String),
}

struct User {
    /// Position of the user in the configured `users` (name order).
    pos: usize,
    /// SHA-256 of the user name (names are compared as digests, in constant time).
    name: Digest,
    secret: Secret,
}

/// A compiled `basicAuth`.
pub struct BasicAuth {
    users: Vec<User>,
    /// The `WWW-Authenticate` value sent with a 401; `None` with `challenge: false`.
    challenge: Option<Arc<str>>,
    skip: Vec<Glob>,
    forward: bool,
    /// Digests of `user:password` already verified against a hash.
    verified: Mutex<HashSet<Digest>>,
}

impl std::fmt::Debug for BasicAuth {
    // Deliberately shows neither names, passwords nor hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .field("challenge", &self.challenge)
            .field(
                "skip",
                &self.skip.iter().map(Glob::as_str).collect::<Vec<_>>(),
            )
            .field("forward", &self.forward)
            .finish()
    }
}

/// Checks `password` against a stored secret (the slow path for hashes).
fn verify_secret(secret: &Secret, password: &[u8]) -> bool {
    match secret {
        Secret::Plain(stored) => ct_eq(stored, &sha256(password)),
        Secret::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        Secret::Argon2(hash) => PasswordHash::new(hash).is_ok_and(|phc| {
            argon2::Argon2::default()
                .verify_password(password, &phc)
                .is_ok()
        }),
    }
}

/// Verifies a password against a hash off the worker threads, a bounded number at a time.
async fn verify_slow(secret: &Secret, password: &[u8]) -> bool {
    static HASHING: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = HASHING.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let Ok(_turn) = slots.acquire().await else {
        return false;
    };
    let (secret, password) = (secret.clone(), password.to_vec());
    tokio::task::spawn_blocking(move || verify_secret(&secret, &password))
        .await
        .unwrap_or(false)
}

/// What a configured password is, by its prefix.
enum Kind {
    Plain,
    Bcrypt,
    Argon2,
}

fn kind(password: &str) -> Kind {
    if ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| password.starts_with(p))
    {
        Kind::Bcrypt
    } else if password.starts_with("$argon2") {
        Kind::Argon2
    } else {
        Kind::Plain
    }
}

/// Why a bcrypt hash is unusable, if it is.
fn bcrypt_error(hash: &str) -> Option<String> {
    match hash.parse::<bcrypt::HashParts>() {
        Err(_) => Some("is not a valid bcrypt hash (`$2b$<cost>$<53 characters>`)".into()),
        Ok(parts) if !BCRYPT_COSTS.contains(&parts.get_cost()) => Some(format!(
            "bcrypt cost {} is outside 4..=31",
            parts.get_cost()
        )),
        Ok(_) => None,
    }
}

/// Why an argon2 PHC string is unusable, if it is.
fn argon2_error(hash: &str) -> Option<String> {
    let Ok(phc) = PasswordHash::new(hash) else {
        return Some(
            "is not a valid argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>`)"
                .into(),
        );
    };
    match argon2::Algorithm::try_from(phc.algorithm) {
        Ok(argon2::Algorithm::Argon2id | argon2::Algorithm::Argon2i) => {}
        _ => return Some("argon2 hashes must be argon2id or argon2i".into()),
    }
    if let Some(v) = phc.version {
        if argon2::Version::try_from(v).is_err() {
            return Some(format!("argon2 version {v} is not supported"));
        }
    }
    if let Err(e) = argon2::Params::try_from(&phc) {
        return Some(format!("argon2 parameters are invalid: {e}"));
    }
    if phc.salt.is_none() || phc.hash.is_none() {
        return Some("argon2 hash lacks its salt or its hash".into());
    }
    None
}

/// Why a configured password (plain, or a bcrypt / argon2 hash) is unusable, if it is.
pub(crate) fn password_error(password: &str) -> Option<String> {
    if password.is_empty() {
        return Some("password must not be empty".into());
    }
    match kind(password) {
        Kind::Plain => None,
        Kind::Bcrypt => bcrypt_error(password),
        Kind::Argon2 => argon2_error(password),
    }
}

/// Checks a site's `basicAuth`; every error carries its field path (`basicAuth.users.alice`).
/// Error messages never quote a password or a hash.
pub fn validate(raw: &raw::BasicAuth, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let users = join(path, "users");
    if raw.users.is_empty() {
        errors.push(ConfigError::new(&users, "must list at least one user"));
    }
    for (name, password) in &raw.users {
        let p = join(&users, name);
        if name.is_empty() {
            errors.push(ConfigError::new(p, "user names must not be empty"));
            continue;
        }
        if name.contains(':') {
            errors.push(ConfigError::new(p, "user names must not contain `:`"));
            continue;
        }
        if name.chars().any(char::is_control) {
            errors.push(ConfigError::new(
                p,
                "user names must not contain control characters",
            ));
            continue;
        }
        if let Some(msg) = password_error(password) {
            errors.push(ConfigError::new(p, msg));
        }
    }
    if let Some(realm) = &raw.realm {
        if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
            errors.push(ConfigError::new(
                join(path, "realm"),
                "must not contain `\"`, `\\` or control characters",
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

/// Compiles a validated `basicAuth` (anything invalid that slipped through is dropped: a user
/// whose name or hash is unusable is left out, an unusable realm falls back to the default, an
/// unparsable glob skips nothing).
pub fn compile(raw: &raw::BasicAuth) -> BasicAuth {
    let users = raw
        .users
        .iter()
        .enumerate()
        .filter(|(_, (name, pw))| !name.is_empty() && !name.contains(':') && !pw.is_empty())
        .filter_map(|(pos, (name, pw))| {
            let secret = match kind(pw) {
                Kind::Plain => Secret::Plain(sha256(pw.as_bytes())),
                Kind::Bcrypt if bcrypt_error(pw).is_none() => Secret::Bcrypt(pw.clone()),
                Kind::Argon2 if argon2_error(pw).is_none() => Secret::Argon2(pw.clone()),
                _ => return None,
            };
            Some(User {
                pos,
                name: sha256(name.as_bytes()),
                secret,
            })
        })
        .collect();
    let challenge = raw.challenge.unwrap_or(true).then(|| {
        let realm = raw.realm.as_deref().unwrap_or(DEFAULT_REALM);
        let value = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
        if HeaderValue::from_str(&value).is_ok() && !realm.contains(['"', '\\']) {
            Arc::from(value)
        } else {
            Arc::from(format!(
                "Basic realm=\"{DEFAULT_REALM}\", charset=\"UTF-8\""
            ))
        }
    });
    BasicAuth {
        users,
        challenge,
        skip: raw
            .skip_paths
            .iter()
            .flatten()
            .filter_map(|p| Glob::parse(p).ok())
            .collect(),
        forward: raw.forward_credentials.unwrap_or(false),
        verified: Mutex::new(HashSet::new()),
    }
}

impl BasicAuth {
    /// Whether the request carries valid credentials (401 otherwise); removes `Authorization`
    /// unless forwarded. `path` is the normalised request path; paths matching `skipPaths` need
    /// no credentials.
    pub async fn check(&self, req: &mut RequestHeader, path: &str) -> Result<(), Refusal> {
        if !self.skip.iter().any(|g| g.matches(path)) {
            let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
            match (values.next(), values.next()) {
                (None, _) => return Err(self.refusal(MISSING)),
                // Two Authorization headers: ambiguous, refused.
                (Some(_), Some(_)) => return Err(self.refusal(INVALID)),
                (Some(v), None) => match basic_credentials(v.as_bytes()) {
                    Credentials::NotBasic => return Err(self.refusal(MISSING)),
                    Credentials::Malformed => return Err(self.refusal(INVALID)),
                    Credentials::Basic(decoded) => {
                        if !self.accepts(&decoded).await {
                            return Err(self.refusal(INVALID));
                        }
                    }
                },
            }
        }
        if !self.forward {
            req.remove_header(&http::header::AUTHORIZATION);
        }
        Ok(())
    }

    fn refusal(&self, reason: &'static str) -> Refusal {
        Refusal {
            status: 401,
            reason,
            challenge: self.challenge.clone(),
        }
    }

    /// Whether decoded `user:password` bytes name a configured user with that password.
    async fn accepts(&self, decoded: &[u8]) -> bool {
        self.user_index(decoded).await.is_some()
    }

    /// The position (in name order, as the configured `users` map lists them) of the user that decoded
    /// `user:password` bytes name, when the password is right.
    pub(crate) async fn user_index(&self, decoded: &[u8]) -> Option<usize> {
        let colon = decoded.iter().position(|b| *b == b':')?;
        let (name, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let name = sha256(name);
        // Every name is compared in full, so the lookup time does not depend on which matched.
        let mut found = None;
        for (i, u) in self.users.iter().enumerate() {
            if ct_eq(&u.name, &name) {
                found = Some(i);
            }
        }
        let Some(i) = found else {
            // An unknown user costs what a hashed user's first attempt costs, so response time
            // does not tell which user names exist.
            if let Some(decoy) = self
                .users
                .iter()
                .find(|u| !matches!(u.secret, Secret::Plain(_)))
            {
                let _ = verify_slow(&decoy.secret, password).await;
            }
            return None;
        };
        let ok = match &self.users[i].secret {
            Secret::Plain(stored) => ct_eq(stored, &sha256(password)),
            secret => {
                // Only these exact credentials, verified before, skip the hash; failures are
                // never remembered.
                let key = sha256(decoded);
                self.lock().contains(&key) || {
                    let ok = verify_slow(secret, password).await;
                    if ok {
                        self.remember(key);
                    }
                    ok
                }
            }
        };
        ok.then_some(self.users[i].pos)
    }

    /// Remembers credentials that verified (bounded: an arbitrary entry makes room).
    fn remember(&self, key: Digest) {
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            if let Some(old) = cache.iter().next().copied() {
                cache.remove(&old);
            }
        }
        cache.insert(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Digest>> {
        // A poisoned cache still only holds verified digests.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What an `Authorization` value holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Another scheme (`Bearer ...`): no Basic credentials.
    NotBasic,
    /// `Basic` with a token that is not base64 of `user:password`.
    Malformed,
    /// The decoded `user:password` bytes.
    Basic(Vec<u8>),
}

/// Parses `Basic <base64>` (scheme case-insensitive, surrounding spaces tolerated).
pub(crate) fn basic_credentials(value: &[u8]) -> Credentials {
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&value[..i], value[i..].trim_ascii()),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Credentials::NotBasic;
    }
    match B64.decode(rest) {
        Ok(decoded) if decoded.contains(&b':') => Credentials::Basic(decoded),
        _ => Credentials::Malformed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::filter::block_on as block;
    use argon2::password_hash::{PasswordHasher, SaltString};
    use std::collections::BTreeMap;

    fn raw_with(users: &[(&str, &str)]) -> raw::BasicAuth {
        raw::BasicAuth {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }

    fn auth(raw: &raw::BasicAuth) -> BasicAuth {
        assert!(validate(raw, "basicAuth").is_empty());
        compile(raw)
    }

    fn header(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    fn req(target: &str, auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        if let Some(a) = auth {
            r.insert_header("authorization", a).unwrap();
        }
        r
    }

    fn run(a: &BasicAuth, auth: Option<&str>) -> Result<RequestHeader, Refusal> {
        let mut r = req("/x", auth);
        block(a.check(&mut r, "/x")).map(|()| r)
    }

    fn argon2_hash(password: &str) -> String {
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        a.hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn plaintext_users() {
        let a = auth(&raw_with(&[("alice", "wonderland"), ("bob", "pa:ss")]));
        let r = run(&a, Some(&header("alice:wonderland"))).unwrap();
        assert!(r.headers.get("authorization").is_none());
        // The password may contain `:`; only the first one separates.
        assert!(run(&a, Some(&header("bob:pa:ss"))).is_ok());
        for wrong in [
            "alice:wonderlanD",
            "alice:",
            "bob:wonderland",
            "carol:wonderland",
            ":x",
        ] {
            let e = run(&a, Some(&header(wrong))).unwrap_err();
            assert_eq!((e.status, e.reason), (401, INVALID), "{wrong}");
            assert_eq!(
                e.challenge.as_deref(),
                Some("Basic realm=\"Restricted\", charset=\"UTF-8\"")
            );
        }
        let e = run(&a, None).unwrap_err();
        assert_eq!((e.status, e.reason), (401, MISSING));
        // Plaintext users never go through the cache.
        assert!(a.lock().is_empty());
    }

    #[test]
    fn malformed_headers() {
        let a = auth(&raw_with(&[("alice", "pw")]));
        let ok = header("alice:pw");
        assert!(run(&a, Some(&ok.replace("Basic", "bAsIc"))).is_ok());
        assert!(run(&a, Some(&format!("  {}  ", ok.replace(' ', "   ")))).is_ok());
        // Without padding ("alice:pw" is 8 bytes: base64 ends in `=`).
        assert!(ok.ends_with('='));
        assert!(run(&a, Some(ok.trim_end_matches('='))).is_ok());
        for (value, reason) in [
            ("Bearer abc", MISSING),
            ("Basicabc", MISSING),
            ("Basic", INVALID),
            ("Basic ", INVALID),
            ("Basic !!!!", INVALID),
            ("Basic YWxpY2U=", INVALID), // "alice": no colon
            ("Basic YWxpY2U6cHc=x", INVALID),
        ] {
            let e = run(&a, Some(value)).unwrap_err();
            assert_eq!((e.status, e.reason), (401, reason), "{value}");
        }
        // Two Authorization headers are refused even if one is right.
        let mut r = req("/x", Some(&ok));
        r.append_header("authorization", &ok).unwrap();
        assert_eq!(block(a.check(&mut r, "/x")).unwrap_err().reason, INVALID);
        assert_eq!(
            basic_credentials(b"Basic YTpi"),
            Credentials::Basic(b"a:b".to_vec())
        );
    }

    #[test]
    fn bcrypt_users_and_cache() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        assert!(hash.starts_with("$2b$04$"));
        let y = hash.replacen("$2b$", "$2y$", 1);
        let a = auth(&raw_with(&[("alice", &hash), ("yann", &y)]));
        assert!(run(&a, Some(&header("yann:s3cret"))).is_ok());
        assert!(run(&a, Some(&header("alice:s3cret"))).is_ok());
        assert_eq!(a.lock().len(), 2);
        // A wrong password after a cached right one still fails, and is not cached.
        for _ in 0..2 {
            let e = run(&a, Some(&header("alice:s3creT"))).unwrap_err();
            assert_eq!(e.reason, INVALID);
        }
        assert_eq!(a.lock().len(), 2);
        assert!(run(&a, Some(&header("alice:s3cret"))).is_ok());
    }

    #[test]
    fn cache_is_bounded_and_exact() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let a = auth(&raw_with(&[("alice", &hash)]));
        assert!(run(&a, Some(&header("alice:pw"))).is_ok());
        assert!(a.lock().contains(&sha256(b"alice:pw")));
        // A wrong password is not remembered; a cached entry is only for the exact bytes.
        assert!(run(&a, Some(&header("alice:pw "))).is_err());
        assert_eq!(a.lock().len(), 1);
        for i in 0..CACHE_CAPACITY + 10 {
            a.remember(sha256(format!("u:{i}").as_bytes()));
        }
        assert_eq!(a.lock().len(), CACHE_CAPACITY);
    }

    #[test]
    fn a_cached_user_skips_the_hash() {
        // A cached digest is accepted without verifying: prove it with a hash the password
        // does not match, after planting the digest.
        let other = bcrypt::hash("something-else", 4).unwrap();
        let a = auth(&raw_with(&[("alice", &other)]));
        assert!(run(&a, Some(&header("alice:pw"))).is_err());
        a.remember(sha256(b"alice:pw"));
        assert!(run(&a, Some(&header("alice:pw"))).is_ok());
    }

    #[test]
    fn argon2_users() {
        let hash = argon2_hash("hunter2");
        assert!(hash.starts_with("$argon2id$"));
        let a = auth(&raw_with(&[("ann", &hash)]));
        assert!(run(&a, Some(&header("ann:hunter2"))).is_ok());
        assert!(run(&a, Some(&header("ann:hunter2"))).is_ok());
        assert_eq!(
            run(&a, Some(&header("ann:hunter3"))).unwrap_err().reason,
            INVALID
        );
        assert_eq!(a.lock().len(), 1);
        // argon2i hashes are accepted too.
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let i = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
            .hash_password(b"pw", &SaltString::encode_b64(b"saltsaltsalt").unwrap())
            .unwrap()
            .to_string();
        assert!(i.starts_with("$argon2i$"));
        let a = auth(&raw_with(&[("ivan", &i)]));
        assert!(run(&a, Some(&header("ivan:pw"))).is_ok());
        assert!(run(&a, Some(&header("ivan:pW"))).is_err());
    }

    #[test]
    fn challenge_realm_skip_and_forward() {
        let mut raw = raw_with(&[("alice", "pw")]);
        raw.realm = Some("Staff only".into());
        raw.skip_paths = Some(vec!["/public/**".into(), "/health".into()]);
        let a = auth(&raw);
        assert_eq!(
            run(&a, None).unwrap_err().challenge.as_deref(),
            Some("Basic realm=\"Staff only\", charset=\"UTF-8\"")
        );
        for p in ["/public", "/public/a/b", "/health"] {
            let mut r = req(p, Some("Basic garbage"));
            assert!(block(a.check(&mut r, p)).is_ok(), "{p}");
            // Skipped paths still have presented credentials removed.
            assert!(r.headers.get("authorization").is_none());
        }
        for p in ["/publicx", "/health/x", "/"] {
            let mut r = req(p, None);
            assert!(block(a.check(&mut r, p)).is_err(), "{p}");
        }

        raw.challenge = Some(false);
        raw.forward_credentials = Some(true);
        let a = auth(&raw);
        let e = run(&a, Some(&header("alice:nope"))).unwrap_err();
        assert_eq!((e.status, e.challenge), (401, None));
        let ok = header("alice:pw");
        let r = run(&a, Some(&ok)).unwrap();
        assert_eq!(r.headers.get("authorization").unwrap(), ok.as_str());
    }

    #[test]
    fn validation_errors_name_fields() {
        let mut raw = raw_with(&[
            ("ok", "pw"),
            ("a:b", "pw"),
            ("empty", ""),
            ("badbcrypt", "$2b$04$short"),
            (
                "cost",
                "$2b$03$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
            ),
            ("badargon", "$argon2id$v=19$nonsense"),
            (
                "argond",
                "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            ),
        ]);
        raw.realm = Some("say \"hi\"".into());
        raw.skip_paths = Some(vec!["/ok".into(), "nope".into()]);
        let errors = validate(&raw, "sites[0].basicAuth");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sites[0].basicAuth.users.a:b",
                "sites[0].basicAuth.users.argond",
                "sites[0].basicAuth.users.badargon",
                "sites[0].basicAuth.users.badbcrypt",
                "sites[0].basicAuth.users.cost",
                "sites[0].basicAuth.users.empty",
                "sites[0].basicAuth.realm",
                "sites[0].basicAuth.skipPaths[1]",
            ]
        );
        let cost = &errors[4];
        assert!(cost.to_string().contains("cost 3"), "{cost}");
        // Nothing secret is echoed back.
        for e in &errors {
            for secret in ["short", "abcdefghij", "nonsense", "c2FsdHNhbHQ"] {
                assert!(!e.to_string().contains(secret), "{e}");
            }
        }
        assert_eq!(
            validate(&raw::BasicAuth::default(), "basicAuth")[0].path,
            "basicAuth.users"
        );
        // Valid hashes pass.
        let b = bcrypt::hash("x", 4).unwrap();
        assert!(validate(&raw_with(&[("a", &b), ("b", &argon2_hash("y"))]), "b").is_empty());
    }
}
