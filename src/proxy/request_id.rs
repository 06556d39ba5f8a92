//! `X-Request-ID`: kept when the client sent a valid one, generated otherwise, echoed on the
//! response and in error bodies and logs. Held as a header value so that forwarding and
//! echoing it share one buffer.

use bytes::Bytes;
use http::HeaderValue;

/// The request id header (as written when inserted).
pub const HEADER: &str = "x-request-id";
/// The request id header name, for lookups.
pub const NAME: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// One request's id.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

impl RequestId {
    /// The client's id, when acceptable (shares the request's buffer).
    pub fn from_client(value: &HeaderValue) -> Option<RequestId> {
        is_valid(value.as_bytes()).then(|| RequestId(value.clone()))
    }

    /// A new random id: 32 lower-case hex digits.
    pub fn generate() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut n = fastrand::u128(..);
        let mut buf = [0u8; 32];
        for b in buf.iter_mut().rev() {
            *b = HEX[(n & 0xf) as usize];
            n >>= 4;
        }
        match HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&buf)) {
            Ok(v) => RequestId(v),
            Err(_) => RequestId::default(),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value (a cheap clone).
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a client-sent id is acceptable: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random id as a string.
pub fn generate() -> String {
    RequestId::generate().as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let a = RequestId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), RequestId::generate().as_str());
        assert!(is_valid(b"abc-123_x.y:z"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"a b"));
        assert!(!is_valid(&[b'a'; 129]));
        let v = HeaderValue::from_static("client-1");
        assert_eq!(RequestId::from_client(&v).unwrap().as_str(), "client-1");
        assert!(RequestId::from_client(&HeaderValue::from_static("a b")).is_none());
    }
}
