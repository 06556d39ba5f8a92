//! `X-Request-ID`: kept when the client sent a valid one, generated otherwise, echoed on the
//! response and in error bodies and logs.

/// The request id header.
pub const HEADER: &str = "x-request-id";

/// Whether a client-sent id is acceptable: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random id: 32 lower-case hex digits.
pub fn generate() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
        assert!(is_valid(b"abc-123_x.y:z"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"a b"));
        assert!(!is_valid(&[b'a'; 129]));
    }
}
