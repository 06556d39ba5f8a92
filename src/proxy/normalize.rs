//! Request path normalisation, done before routing and access rules; the normalised path is the
//! one forwarded upstream.
//!
//! Percent-encoded unreserved characters are decoded once (`%2e` → `.`, `%41` → `A`), other
//! escapes are kept (upper-cased), dot segments are resolved (never above the root), repeated
//! slashes are merged when configured. A backslash, NUL (raw or `%00`), a control character or a
//! broken escape is refused.

use std::borrow::Cow;

/// Why a path was refused (the request gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with /")]
    NotOriginForm,
    #[error("backslash in path")]
    Backslash,
    #[error("NUL in path")]
    Nul,
    #[error("invalid character in path")]
    InvalidChar,
    #[error("invalid percent-encoding in path")]
    BadEscape,
}

/// Normalises `path` (no query). Borrowed when already normal.
pub fn normalize_path(path: &str, merge_slashes: bool) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut needs_work = false;
    let mut prev = 0u8;
    for &b in bytes {
        match b {
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            b if b < 0x21 || b == 0x7f => return Err(PathError::InvalidChar),
            b'%' => needs_work = true,
            b'.' if prev == b'/' => needs_work = true,
            b'/' if prev == b'/' && merge_slashes => needs_work = true,
            _ => {}
        }
        prev = b;
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }

    // Pass 1: decode unreserved escapes, upper-case the others.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let v = hex_val(hex[0])
                .zip(hex_val(hex[1]))
                .map(|(h, l)| h << 4 | l)
                .ok_or(PathError::BadEscape)?;
            if v == 0 {
                return Err(PathError::Nul);
            }
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                decoded.push(v as char);
            } else {
                decoded.push('%');
                decoded.push(hex[0].to_ascii_uppercase() as char);
                decoded.push(hex[1].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            // Multi-byte UTF-8 is copied through unchanged.
            let ch_len = utf8_len(b);
            decoded.push_str(path.get(i..i + ch_len).ok_or(PathError::InvalidChar)?);
            i += ch_len;
        }
    }

    // Pass 2: resolve dot segments, merge slashes.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            "" if merge_slashes => {}
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || (trailing && !result.ends_with('/')) {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn utf8_len(b: u8) -> usize {
    match b {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p, true).unwrap().into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize_path("/a/b.c", true),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn dot_segments_and_escapes() {
        assert_eq!(n("/a/../b"), "/b");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/%2e%2e/b"), "/b");
        assert_eq!(n("/a/%2E%2e/%2e/b/"), "/b/");
        assert_eq!(n("/%41%7e"), "/A~");
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("//a///b"), "/a/b");
        assert_eq!(normalize_path("//a//b", false).unwrap(), "//a//b");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/a/b/.."), "/a/");
    }

    #[test]
    fn refusals() {
        assert_eq!(normalize_path("/a\\..\\b", true), Err(PathError::Backslash));
        assert_eq!(normalize_path("/a%00b", true), Err(PathError::Nul));
        assert_eq!(normalize_path("/a%zz", true), Err(PathError::BadEscape));
        assert_eq!(normalize_path("/a%2", true), Err(PathError::BadEscape));
        assert_eq!(
            normalize_path("http://x/", true),
            Err(PathError::NotOriginForm)
        );
        assert_eq!(normalize_path("/a b", true), Err(PathError::InvalidChar));
    }
}
