//! Compiled routes: how a request is matched to one, and how its upstream path is derived.

use std::sync::Arc;

use regex::Regex;

use super::glob::Glob;
use crate::upstream::Pool;

/// A compiled route (from a `proxy` prefix or a `routes[]` rule).
#[derive(Debug)]
pub struct Route {
    /// Stable id: `<site id>|<prefix>` or `<site id>|routes[<id or index>]`.
    pub id: Arc<str>,
    pub matcher: Matcher,
    pub strip_prefix: bool,
    pub rewrites: Vec<(Regex, String)>,
    pub pool: Arc<Pool>,
    /// WebSocket upgrades are proxied (`websocket: true`); otherwise refused with 403.
    pub websocket: bool,
    /// Importance under load (0–100); see `limits.priorityThreshold`.
    pub priority: u8,
    /// Where a copy of every request goes (`mirror`).
    pub mirror: Option<Box<pingora::upstreams::peer::HttpPeer>>,
    /// `hedge`: delay before another attempt, and extra attempts at most.
    pub hedge: Option<(std::time::Duration, u32)>,
    /// Access filters for this route: the site's, with the route's own replacing them.
    pub access: Arc<crate::filter::Access>,
    /// This route's own `rateLimit` (the site's applies too).
    pub rate_limit: Option<Arc<crate::filter::rate_limit::Limiter>>,
}

/// How a route matches a request.
#[derive(Debug)]
pub enum Matcher {
    /// Segment-aware prefix: `/api` matches `/api` and `/api/...`, not `/apix`.
    Prefix(String),
    /// A `routes[]` rule.
    Rule(RuleMatch),
}

/// The conditions of a `routes[]` rule; all must hold.
#[derive(Debug, Default)]
pub struct RuleMatch {
    pub path: Option<Glob>,
    /// Upper-case method names; empty = any.
    pub methods: Vec<String>,
    pub headers: Vec<(http::HeaderName, Regex)>,
    pub query: Vec<(String, Regex)>,
    pub cookies: Vec<(String, Regex)>,
}

/// The parts of a request that routing looks at.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

/// Whether `path` falls under `prefix`, segment-aware.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

impl RuleMatch {
    /// Whether the request satisfies every condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(glob) = &self.path {
            if !glob.matches(req.path) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return false;
        }
        for (name, re) in &self.headers {
            let ok = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| re.is_match(v)));
            if !ok {
                return false;
            }
        }
        for (name, re) in &self.query {
            let ok = req.query.is_some_and(|q| {
                q.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    k == name
                        && re.is_match(&percent_encoding::percent_decode_str(v).decode_utf8_lossy())
                })
            });
            if !ok {
                return false;
            }
        }
        for (name, re) in &self.cookies {
            let ok = req.headers.get_all(http::header::COOKIE).iter().any(|h| {
                h.to_str().is_ok_and(|h| {
                    h.split(';').any(|c| {
                        let (k, v) = c.trim().split_once('=').unwrap_or((c.trim(), ""));
                        k == name && re.is_match(v)
                    })
                })
            });
            if !ok {
                return false;
            }
        }
        true
    }
}

impl Route {
    /// Whether this route takes the request.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match &self.matcher {
            Matcher::Prefix(p) => prefix_matches(p, req.path),
            Matcher::Rule(rule) => rule.matches(req),
        }
    }

    /// The path to send upstream for `path` (normalised, without query): strip, then rewrite.
    /// `None` when nothing changes.
    pub fn upstream_path(&self, path: &str) -> Option<String> {
        let mut out: Option<String> = None;
        if self.strip_prefix {
            if let Matcher::Prefix(p) = &self.matcher {
                let rest = path.strip_prefix(p.trim_end_matches('/')).unwrap_or(path);
                out = Some(if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("/{rest}")
                });
            }
        }
        for (re, to) in &self.rewrites {
            let current = out.as_deref().unwrap_or(path);
            if re.is_match(current) {
                let replaced = re.replace(current, to.as_str()).into_owned();
                out = Some(if replaced.starts_with('/') {
                    replaced
                } else {
                    format!("/{replaced}")
                });
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_segment_aware() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(prefix_matches("/", "/anything"));
    }
}
