//! Token verification: the prepared `jsonwebtoken` validation (algorithms, `exp`/`nbf` with
//! leeway, `iss`, `aud`), the checks it does not make (`iat` in the future, the types of `nbf`
//! and `iat`), and the reasons a token is refused, with their RFC 6750 challenges.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::keys::{parse_alg, AlgSet};
use crate::filter::Claims;
use crate::proxy::checks::Refusal;

/// The realm named in every `WWW-Authenticate: Bearer` challenge.
pub const REALM: &str = "conduit";

/// Why a request's token was refused (all are 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Authorization: Bearer` token.
    Missing,
    /// Not a JWS compact token, or its parts are not base64url JSON.
    Malformed,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    NotYetValid,
    /// `iat` is ahead (beyond the leeway).
    IssuedInFuture,
    /// The token has no (numeric) `exp`.
    NoExpiry,
    /// The signature does not verify.
    BadSignature,
    /// `iss` missing or not one of `issuer`.
    Issuer,
    /// `aud` missing or none of `audience`.
    Audience,
    /// `alg` is `none`, unknown, or not allowed for this key.
    Algorithm,
    /// No key of the JWKS has the token's `kid` (after a refetch).
    UnknownKey,
}

impl Reason {
    const ALL: [Reason; 11] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::NoExpiry,
        Reason::BadSignature,
        Reason::Issuer,
        Reason::Audience,
        Reason::Algorithm,
        Reason::UnknownKey,
    ];

    /// The reason as the JSON error body and the challenge's `error_description` say it.
    pub fn text(self) -> &'static str {
        match self {
            Reason::Missing => "bearer token required",
            Reason::Malformed => "malformed token",
            Reason::Expired => "token expired",
            Reason::NotYetValid => "token not yet valid",
            Reason::IssuedInFuture => "token issued in the future",
            Reason::NoExpiry => "token has no expiry",
            Reason::BadSignature => "invalid token signature",
            Reason::Issuer => "token issuer not accepted",
            Reason::Audience => "token audience not accepted",
            Reason::Algorithm => "token algorithm not allowed",
            Reason::UnknownKey => "unknown signing key",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The `WWW-Authenticate` value for this reason (built once per process).
    fn challenge(self) -> Arc<str> {
        static CHALLENGES: OnceLock<Vec<Arc<str>>> = OnceLock::new();
        let all = CHALLENGES.get_or_init(|| {
            Reason::ALL
                .iter()
                .map(|r| match r {
                    Reason::Missing => Arc::from(format!("Bearer realm=\"{REALM}\"")),
                    r => Arc::from(format!(
                        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                        r.text()
                    )),
                })
                .collect()
        });
        all.get(self.index())
            .cloned()
            .unwrap_or_else(|| Arc::from("Bearer"))
    }

    /// The 401 refusal for this reason, with its challenge.
    pub fn refusal(self) -> Refusal {
        Refusal {
            status: 401,
            reason: self.text(),
            challenge: Some(self.challenge()),
        }
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Seconds of clock skew allowed for `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// Accepted `iss` values (any of); `None`: not checked.
    pub issuer: Option<Vec<String>>,
    /// Accepted `aud` values (any of); `None`: not checked.
    pub audience: Option<Vec<String>>,
}

/// The prepared validation of tokens signed with one of `algs` (one family) under `policy`;
/// `exp` is required.
pub fn validation(algs: AlgSet, policy: &Policy) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.algorithms = algs.iter().collect();
    v.leeway = policy.leeway;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &policy.issuer {
        v.set_issuer(iss.as_slice());
        required.push("iss");
    }
    match &policy.audience {
        Some(aud) => {
            v.set_audience(aud.as_slice());
            v.validate_aud = true;
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

/// Verifies `token` with `key` under `validation` (built by [`validation`] with the same
/// `leeway`), then checks `iat` and the types of `nbf` and `iat`.
pub fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
    leeway: u64,
) -> Result<Claims, Reason> {
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map_err(|e| reason_of(e.kind(), token))?;
    let claims = data.claims;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for name in ["nbf", "iat"] {
        if claims.get(name).is_some_and(|v| !v.is_number()) {
            return Err(Reason::Malformed);
        }
    }
    if let Some(iat) = claims.get("iat").and_then(Value::as_f64) {
        if iat > now.saturating_add(leeway) as f64 {
            return Err(Reason::IssuedInFuture);
        }
    }
    Ok(Arc::new(claims))
}

/// The refusal reason for a `jsonwebtoken` error on `token`.
fn reason_of(kind: &ErrorKind, token: &str) -> Reason {
    match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidIssuer => Reason::Issuer,
        ErrorKind::InvalidAudience => Reason::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Reason::Algorithm,
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => Reason::NoExpiry,
            "iss" => Reason::Issuer,
            "aud" => Reason::Audience,
            _ => Reason::Malformed,
        },
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => Reason::BadSignature,
        // The header did not parse: an `alg` such as `none` is refused as an algorithm.
        _ => match header_alg(token) {
            Some(alg) if parse_alg(&alg).is_none() => Reason::Algorithm,
            _ => Reason::Malformed,
        },
    }
}

/// The `alg` of a token's header, read without verifying anything.
pub fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let v: Map<String, Value> = serde_json::from_slice(&json).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

/// A string claim of a token's payload, read without verifying anything.
pub fn payload_claim(token: &str, claim: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Map<String, Value> = serde_json::from_slice(&json).ok()?;
    v.get(claim)?.as_str().map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750() {
        let r = Reason::Missing.refusal();
        assert_eq!(r.status, 401);
        assert_eq!(r.challenge.as_deref(), Some("Bearer realm=\"conduit\""));
        let r = Reason::Expired.refusal();
        assert_eq!(r.reason, "token expired");
        assert_eq!(
            r.challenge.as_deref(),
            Some(
                "Bearer realm=\"conduit\", error=\"invalid_token\", \
                 error_description=\"token expired\""
            )
        );
        for r in Reason::ALL {
            let c = r.refusal().challenge.unwrap();
            assert!(http::HeaderValue::from_str(&c).is_ok(), "{c}");
            assert!(c.contains(r.text()) || r == Reason::Missing);
        }
    }

    #[test]
    fn unverified_reads() {
        // {"alg":"none"} . {"iss":"joe","n":1} .
        let t = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLCJuIjoxfQ.";
        assert_eq!(header_alg(t).as_deref(), Some("none"));
        assert_eq!(payload_claim(t, "iss").as_deref(), Some("joe"));
        assert_eq!(payload_claim(t, "n"), None);
        assert_eq!(payload_claim(t, "sub"), None);
        assert_eq!(payload_claim("a.b", "iss"), None);
        assert_eq!(payload_claim("a.!!.c", "iss"), None);
        assert_eq!(header_alg("!!"), None);
    }
}
