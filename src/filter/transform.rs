//! `requestTransform` / `responseTransform`: headers set on or removed from the forwarded request
//! and from the response. Values are templates: literal text with `{{ jwt.<claim> }}`,
//! `{{ consumer }}` and `{{ request_id }}` filled in per request. A set header always replaces
//! what the client (or the upstream) sent under that name; when a variable of its template has no
//! value (an absent or empty claim, no consumer on a skipped path) the header is removed instead,
//! so a client can never supply a value Conduit is meant to vouch for.

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use super::Identity;
use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;

/// The longest template accepted, in bytes.
const MAX_TEMPLATE: usize = 4096;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Claim(String),
    Consumer,
    RequestId,
}

/// A parsed header value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

/// What a template may refer to, so validation can ask whether the site can provide it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    pub jwt: bool,
    pub consumer: bool,
}

impl Template {
    /// Parses `text {{ var }} text`; `var` is `jwt.<claim>`, `consumer` or `request_id`.
    pub fn parse(s: &str) -> Result<Template, String> {
        if s.len() > MAX_TEMPLATE {
            return Err(format!("is longer than {MAX_TEMPLATE} bytes"));
        }
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "has `{{` without a closing `}}`".to_string())?;
            let var = after[..close].trim();
            parts.push(match var {
                "consumer" => Part::Consumer,
                "request_id" => Part::RequestId,
                v => match v.strip_prefix("jwt.") {
                    Some(claim)
                        if !claim.is_empty()
                            && claim
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) =>
                    {
                        Part::Claim(claim.to_string())
                    }
                    _ => {
                        return Err(format!(
                            "unknown template variable `{var}`; expected `jwt.<claim>`, \
                             `consumer` or `request_id`"
                        ))
                    }
                },
            });
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err("has `}}` without an opening `{{`".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        for p in &parts {
            if let Part::Text(t) = p {
                if HeaderValue::from_str(t).is_err() {
                    return Err("text must be visible ASCII (no control characters)".into());
                }
            }
        }
        Ok(Template(parts))
    }

    /// What the template refers to.
    pub fn uses(&self) -> Uses {
        let mut u = Uses::default();
        for p in &self.0 {
            match p {
                Part::Claim(_) => u.jwt = true,
                Part::Consumer => u.consumer = true,
                _ => {}
            }
        }
        u
    }

    /// The rendered value; `None` when a variable has no value or the result is not a valid
    /// header value.
    pub fn render(&self, identity: &Identity, request_id: &str) -> Option<HeaderValue> {
        if let [Part::Text(t)] = self.0.as_slice() {
            return HeaderValue::from_str(t).ok();
        }
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::RequestId => out.push_str(request_id),
                Part::Consumer => out.push_str(&identity.consumer.as_ref()?.name),
                Part::Claim(name) => match identity.claims.as_ref()?.get(name)? {
                    serde_json::Value::Null => return None,
                    serde_json::Value::String(s) if s.is_empty() => return None,
                    serde_json::Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        // A claim carrying control characters does not become a header.
        HeaderValue::from_str(&out).ok()
    }
}

/// A compiled transform.
#[derive(Debug, Default)]
pub struct Transform {
    set: Vec<(HeaderName, Template)>,
    remove: Vec<HeaderName>,
}

/// Checks a transform; `path` is the transform's own path. Returns what its templates use, so
/// the caller can check the site provides it.
pub fn validate(raw: &raw::Transform, path: &str) -> (Vec<ConfigError>, Uses) {
    let mut errors = Vec::new();
    let mut uses = Uses::default();
    let name_error = |name: &str| -> Option<String> {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            Some(format!("`{name}` is not a valid header name"))
        } else if crate::proxy::hop::is_proxy_managed(name) {
            Some(format!(
                "`{name}` cannot be changed by a transform (the proxy manages it)"
            ))
        } else {
            None
        }
    };
    for (name, value) in raw.set_headers.iter().flatten() {
        let p = join(&join(path, "setHeaders"), name);
        if let Some(why) = name_error(name) {
            errors.push(ConfigError::new(p, why));
            continue;
        }
        match Template::parse(value) {
            Ok(t) => {
                let u = t.uses();
                uses.jwt |= u.jwt;
                uses.consumer |= u.consumer;
            }
            Err(why) => errors.push(ConfigError::new(p, why)),
        }
    }
    for (i, name) in raw.remove_headers.iter().flatten().enumerate() {
        if let Some(why) = name_error(name) {
            errors.push(ConfigError::new(
                format!("{}[{i}]", join(path, "removeHeaders")),
                why,
            ));
        }
    }
    (errors, uses)
}

/// Compiles a validated transform (anything invalid that slipped through is left out).
pub fn compile(raw: &raw::Transform) -> Transform {
    Transform {
        set: raw
            .set_headers
            .iter()
            .flatten()
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    Template::parse(v).ok()?,
                ))
            })
            .collect(),
        remove: raw
            .remove_headers
            .iter()
            .flatten()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect(),
    }
}

impl Transform {
    /// Applies the transform to the request sent upstream.
    pub fn apply_request(&self, req: &mut RequestHeader, identity: &Identity, request_id: &str) {
        for name in &self.remove {
            req.remove_header(name);
        }
        for (name, template) in &self.set {
            match template.render(identity, request_id) {
                Some(v) => {
                    let _ = req.insert_header(name.clone(), v);
                }
                None => {
                    req.remove_header(name);
                }
            }
        }
    }

    /// Applies the transform to the response sent to the client.
    pub fn apply_response(
        &self,
        headers: &mut http::HeaderMap,
        identity: &Identity,
        request_id: &str,
    ) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, template) in &self.set {
            match template.render(identity, request_id) {
                Some(v) => {
                    let _ = headers.try_insert(name.clone(), v);
                }
                None => {
                    headers.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn identity() -> Identity {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "user-7".into());
        claims.insert("admin".into(), true.into());
        claims.insert("bad".into(), "a\nb".into());
        Identity {
            consumer: Some(Arc::new(super::super::Consumer {
                name: Arc::from("acme"),
                headers: Vec::new(),
            })),
            claims: Some(Arc::new(claims)),
        }
    }

    #[test]
    fn templates_render() {
        let id = identity();
        let t =
            Template::parse("u={{ jwt.sub }};c={{consumer}};r={{ request_id }};a={{jwt.admin}}")
                .unwrap();
        assert_eq!(
            t.render(&id, "rid1").unwrap(),
            "u=user-7;c=acme;r=rid1;a=true"
        );
        assert_eq!(
            t.uses(),
            Uses {
                jwt: true,
                consumer: true
            }
        );
        // Absent claim → empty → no header; control characters → no header.
        assert!(Template::parse("{{ jwt.missing }}")
            .unwrap()
            .render(&id, "r")
            .is_none());
        assert!(Template::parse("{{ jwt.bad }}")
            .unwrap()
            .render(&id, "r")
            .is_none());
        assert!(Template::parse("{{ jwt.sub }}")
            .unwrap()
            .render(&Identity::default(), "r")
            .is_none());
    }

    #[test]
    fn template_errors() {
        assert!(Template::parse("{{ env.HOME }}")
            .unwrap_err()
            .contains("unknown template variable"));
        assert!(Template::parse("{{ jwt.sub")
            .unwrap_err()
            .contains("closing"));
        assert!(Template::parse("a }}").unwrap_err().contains("opening"));
        assert!(Template::parse("{{ jwt. }}").is_err());
    }

    #[test]
    fn set_replaces_and_empty_removes() {
        let raw: raw::Transform = serde_yaml_ng::from_str(
            "setHeaders: {X-User: '{{ jwt.sub }}', X-Role: '{{ jwt.role }}', X-Static: yes}\nremoveHeaders: [X-Debug]",
        )
        .unwrap();
        let t = compile(&raw);
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("x-user", "spoofed").unwrap();
        r.insert_header("x-role", "admin").unwrap();
        r.insert_header("x-debug", "1").unwrap();
        t.apply_request(&mut r, &identity(), "rid");
        assert_eq!(r.headers.get("x-user").unwrap(), "user-7");
        assert!(r.headers.get("x-role").is_none());
        assert!(r.headers.get("x-debug").is_none());
        assert_eq!(r.headers.get("x-static").unwrap(), "yes");
    }

    #[test]
    fn validation_names_fields() {
        let raw: raw::Transform = serde_yaml_ng::from_str(
            "setHeaders: {Host: x, 'bad name': y, X-A: '{{ nope }}'}\nremoveHeaders: [Content-Length]",
        )
        .unwrap();
        let (errs, _) = validate(&raw, "requestTransform");
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let has = |n: &str| errs.iter().any(|e| e.contains(n));
        assert!(
            has("requestTransform.setHeaders.Host: `Host` cannot be changed"),
            "{errs:?}"
        );
        assert!(has("requestTransform.setHeaders.bad name"), "{errs:?}");
        assert!(
            has("requestTransform.setHeaders.X-A: unknown template variable"),
            "{errs:?}"
        );
        assert!(has("requestTransform.removeHeaders[0]"), "{errs:?}");
    }
}
