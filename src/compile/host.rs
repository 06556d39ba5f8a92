//! Site host patterns (`*`, `example.com`, `*.example.com`, `[::1]`, `10.0.0.1`) and the
//! normalisation of a request's `Host` header for matching against them.

use std::borrow::Cow;

/// A compiled site host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host.
    Any,
    /// An exact, lower-case name or address.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl HostPattern {
    /// Parses a site's `host` field.
    pub fn parse(host: &str) -> Result<HostPattern, String> {
        let h = host.to_ascii_lowercase();
        if h == "*" || h.is_empty() {
            return Ok(HostPattern::Any);
        }
        if let Some(rest) = h.strip_prefix("*.") {
            return if is_dns_name(rest) {
                Ok(HostPattern::Suffix(format!(".{rest}")))
            } else {
                Err(format!(
                    "`{host}` is not a valid wildcard host (expected *.example.com)"
                ))
            };
        }
        if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return match inner.parse::<std::net::Ipv6Addr>() {
                Ok(addr) => Ok(HostPattern::Exact(format!("[{addr}]"))),
                Err(_) => Err(format!("`{host}` is not a valid bracketed IPv6 address")),
            };
        }
        if h.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(&h) {
            return Ok(HostPattern::Exact(h));
        }
        Err(format!(
            "`{host}` is not a valid host: use `*`, a DNS name, `*.example.com` or `[::1]`"
        ))
    }
}

fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Normalises a request `Host` value for matching: validates it, drops the port, lower-cases.
/// `None` means the value is not a valid host (the request gets 400).
pub fn normalize_host(value: &[u8]) -> Option<Cow<'_, str>> {
    let s = std::str::from_utf8(value).ok()?;
    if s.is_empty() || s.len() > 255 {
        return None;
    }
    let name = if s.starts_with('[') {
        let end = s.find(']')?;
        let (addr, rest) = s.split_at(end + 1);
        if !(rest.is_empty() || valid_port(rest.strip_prefix(':')?)) {
            return None;
        }
        let parsed = addr[1..addr.len() - 1].parse::<std::net::Ipv6Addr>().ok()?;
        let canonical = format!("[{parsed}]");
        if canonical != addr {
            return Some(Cow::Owned(canonical));
        }
        addr
    } else {
        let (name, port) = match s.rfind(':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        if let Some(port) = port {
            if !valid_port(port) {
                return None;
            }
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        if !is_dns_name(name) && name.parse::<std::net::Ipv4Addr>().is_err() {
            return None;
        }
        name
    };
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(HostPattern::parse("*").unwrap(), HostPattern::Any);
        assert_eq!(
            HostPattern::parse("Example.COM").unwrap(),
            HostPattern::Exact("example.com".into())
        );
        assert_eq!(
            HostPattern::parse("*.ex.com").unwrap(),
            HostPattern::Suffix(".ex.com".into())
        );
        assert_eq!(
            HostPattern::parse("[0::1]").unwrap(),
            HostPattern::Exact("[::1]".into())
        );
        assert!(HostPattern::parse("bad host").is_err());
        assert!(HostPattern::parse("a..b").is_err());
    }

    #[test]
    fn host_header() {
        assert_eq!(normalize_host(b"Example.com:8080").unwrap(), "example.com");
        assert_eq!(normalize_host(b"[::1]:80").unwrap(), "[::1]");
        assert_eq!(normalize_host(b"[0:0::1]").unwrap(), "[::1]");
        assert_eq!(normalize_host(b"127.0.0.1").unwrap(), "127.0.0.1");
        assert!(normalize_host(b"").is_none());
        assert!(normalize_host(b"a b").is_none());
        assert!(normalize_host(b"host:99999").is_none());
        assert!(normalize_host(b"host:").is_none());
        assert!(normalize_host(b"evil.com/x").is_none());
    }
}
