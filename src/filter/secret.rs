//! Comparing secrets without leaking them through timing: SHA-256 digests compared in constant
//! time. Shared by every credential filter.

use ring::digest;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// Constant-time equality: every byte is compared, no early exit (slices of different lengths
/// are unequal).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into a short-circuiting compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare() {
        let a = sha256(b"secret");
        assert!(ct_eq(&a, &sha256(b"secret")));
        assert!(!ct_eq(&a, &sha256(b"secreT")));
        assert!(!ct_eq(&a[..16], &a));
    }
}
