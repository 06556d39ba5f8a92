//! The `forwardAuth.url`: `http[s]://host[:port][/path][?query]`. Unlike a proxy target, it may
//! carry a path and a query, which become the auth request's target; it may not carry
//! credentials or a fragment.

use http::uri::{PathAndQuery, Uri};
use http::HeaderValue;

use crate::upstream::target::TargetUrl;

/// A parsed auth service URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUrl {
    /// Scheme, host and port.
    pub target: TargetUrl,
    /// `scheme://authority`, the form `build_peer` takes.
    pub base: String,
    /// The `Host` header of the auth request (the URL's authority as written).
    pub host: HeaderValue,
    /// The request target of the auth request (`/` when the URL has no path).
    pub path: PathAndQuery,
}

impl AuthUrl {
    /// Parses `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<AuthUrl, String> {
        Self::parse_inner(url).map_err(|e| e.replace(url, &redacted(url)))
    }

    fn parse_inner(url: &str) -> Result<AuthUrl, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "`{url}` is not an auth service URL: expected http://host[:port]/path or https://…"
            ));
        }
        if url.contains('#') {
            return Err(format!("`{url}`: a fragment (#…) is never sent; remove it"));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!("`{url}`: missing host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{url}`: credentials in the URL are not supported; the auth service receives \
                 the client's own headers (requestHeaders)"
            ));
        }
        let base = format!("{scheme}://{authority}");
        let target = TargetUrl::parse(&base)?;
        let path = match uri.path_and_query() {
            Some(p) if !p.as_str().is_empty() => p.clone(),
            _ => PathAndQuery::from_static("/"),
        };
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("`{url}`: the host is not a valid Host header"))?;
        Ok(AuthUrl {
            target,
            base,
            host,
            path,
        })
    }
}

/// `url` with any `user:password@` replaced by `…@`, for error messages.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://…{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::upstream::target::Scheme;

    #[test]
    fn paths_and_queries_are_kept() {
        let u = AuthUrl::parse("http://auth.internal:9091/api/verify?rd=https%3A%2F%2Fx").unwrap();
        assert_eq!(u.base, "http://auth.internal:9091");
        assert_eq!(u.host, "auth.internal:9091");
        assert_eq!(u.path.as_str(), "/api/verify?rd=https%3A%2F%2Fx");
        assert_eq!(
            (u.target.scheme, u.target.host.as_str(), u.target.port),
            (Scheme::Http, "auth.internal", 9091)
        );
        let u = AuthUrl::parse("https://idp.example.com").unwrap();
        assert_eq!(u.path.as_str(), "/");
        assert_eq!(u.host, "idp.example.com");
        assert_eq!(u.target.port, 443);
        assert!(u.target.is_tls());
        let u = AuthUrl::parse("http://[::1]:8080/check").unwrap();
        assert_eq!(u.target.host, "::1");
        assert_eq!(u.host, "[::1]:8080");
        assert_eq!(u.path.as_str(), "/check");
    }

    #[test]
    fn bad_urls() {
        for (url, needle) in [
            ("ftp://auth/verify", "not an auth service URL"),
            ("auth:9091/verify", "not an auth service URL"),
            ("http:///verify", ""),
            (
                "http://user:pw@auth/verify",
                "`http://…@auth/verify`: credentials",
            ),
            ("ftp://user:pw@auth/verify", "ftp://…@auth"),
            ("http://auth/verify#x", "fragment"),
            ("http://auth:0/verify", "port"),
            ("http://auth:99999/verify", ""),
            ("http://au th/verify", ""),
        ] {
            let e = AuthUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: {e}");
        }
    }
}
