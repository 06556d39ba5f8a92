//! Sticky sessions: a cookie naming the target a client is pinned to, signed with HMAC-SHA256 so
//! that a client can neither forge a pin nor steer itself to a target of its choosing.
//!
//! The value is `<target id, 16 hex>.<signature, 32 hex>`; the signature covers the route id and
//! the target id, so a cookie from one route never pins another.

use ring::hmac;

/// A route's sticky policy and its signing key.
#[derive(Debug)]
pub struct Sticky {
    pub cookie: String,
    pub strict: bool,
    pub max_age: Option<u64>,
    key: hmac::Key,
    route: String,
}

/// What defines a sticky policy (part of the pool spec).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StickySpec {
    pub cookie: String,
    pub secret: String,
    pub strict: bool,
    pub max_age: Option<u64>,
}

impl Sticky {
    /// The policy of `spec` for the route `route`.
    pub fn new(spec: &StickySpec, route: &str) -> Sticky {
        Sticky {
            cookie: spec.cookie.clone(),
            strict: spec.strict,
            max_age: spec.max_age,
            key: hmac::Key::new(hmac::HMAC_SHA256, spec.secret.as_bytes()),
            route: route.to_string(),
        }
    }

    fn tag(&self, id: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(self.route.as_bytes());
        ctx.update(b"\0");
        ctx.update(&id.to_be_bytes());
        ctx.sign()
    }

    /// The cookie value pinning target `id`.
    pub fn value(&self, id: u64) -> String {
        let tag = self.tag(id);
        let mut out = format!("{id:016x}.");
        for b in &tag.as_ref()[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The target id a cookie value pins, when its signature is valid.
    pub fn verify(&self, value: &str) -> Option<u64> {
        let (id, sig) = value.split_once('.')?;
        if id.len() != 16 || sig.len() != 32 {
            return None;
        }
        let id = u64::from_str_radix(id, 16).ok()?;
        let mut given = [0u8; 16];
        for (i, out) in given.iter_mut().enumerate() {
            *out = u8::from_str_radix(sig.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        let expected = self.tag(id);
        // Constant-time comparison of the truncated tags.
        crate::filter::secret::ct_eq(&expected.as_ref()[..16], &given).then_some(id)
    }

    /// The `Set-Cookie` header value pinning target `id`.
    pub fn set_cookie(&self, id: u64) -> String {
        let mut v = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax",
            self.cookie,
            self.value(id)
        );
        if let Some(age) = self.max_age {
            v.push_str(&format!("; Max-Age={age}"));
        }
        v
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky(route: &str) -> Sticky {
        Sticky::new(
            &StickySpec {
                cookie: "pin".into(),
                secret: "0123456789abcdef".into(),
                strict: false,
                max_age: Some(60),
            },
            route,
        )
    }

    #[test]
    fn signed_values_verify_and_forgeries_do_not() {
        let s = sticky("site|/");
        let v = s.value(42);
        assert_eq!(s.verify(&v), Some(42));
        let forged = format!("{:016x}{}", 43, &v[16..]);
        assert_eq!(s.verify(&forged), None);
        assert_eq!(s.verify("garbage"), None);
        assert_eq!(s.verify(&v[..v.len() - 1]), None);
        assert_eq!(sticky("site|/other").verify(&v), None);
        assert!(s.set_cookie(42).contains("Max-Age=60"));
    }

    #[test]
    fn cookie_lookup() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; pin=xyz".parse().unwrap());
        assert_eq!(cookie(&h, "pin"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
