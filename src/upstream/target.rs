//! Upstream target URLs (`http://host:port`): parsing and address resolution.

use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed `http://host[:port]` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub host: String,
    pub port: u16,
}

impl TargetUrl {
    /// Parses a target URL. Only `http://` targets without a path are accepted today.
    pub fn parse(url: &str) -> Result<TargetUrl, String> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(format!(
                "`{url}`: https upstreams are not supported yet; use an http:// target"
            ));
        } else {
            return Err(format!(
                "`{url}` is not an upstream URL: expected http://host:port"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{url}`: a target URL must not carry a path, query or credentials; use stripPrefix or rewrite"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("`{url}`: unterminated IPv6 address"))?;
            let host = &v6[..end];
            let port = match &v6[end + 1..] {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{url}`: bad port"))?,
                ),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}`: missing host"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("`{url}`: port must be between 1 and 65535")),
            },
        };
        Ok(TargetUrl { host, port })
    }

    /// Resolves the target to one socket address (the first one DNS returns).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{}`: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("`{}` resolves to no address", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::TargetUrl;

    #[test]
    fn parse_targets() {
        assert_eq!(
            TargetUrl::parse("http://up:4000").unwrap(),
            TargetUrl {
                host: "up".into(),
                port: 4000
            }
        );
        assert_eq!(TargetUrl::parse("http://up/").unwrap().port, 80);
        assert_eq!(TargetUrl::parse("http://[::1]:81").unwrap().host, "::1");
        assert!(TargetUrl::parse("ftp://x").is_err());
        assert!(TargetUrl::parse("http://x/base").is_err());
        assert!(TargetUrl::parse("http://x:0").is_err());
        assert!(TargetUrl::parse("https://x")
            .unwrap_err()
            .contains("not supported yet"));
    }
}
