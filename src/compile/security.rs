//! `securityHeaders`: the response headers a site adds (when the response lacks them) — HSTS on
//! TLS sites, `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy`, and optionally a
//! content security policy and a permissions policy.

use http::{HeaderName, HeaderValue};

use crate::config::raw::{self, Hsts, SecurityHeaders, StringOrOff};

const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// The headers of a site's `securityHeaders` (`tls`: the site terminates TLS, so HSTS applies).
pub(crate) fn compile_security_headers(
    s: Option<&SecurityHeaders>,
    tls: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    match s {
        None | Some(SecurityHeaders::Enabled(false)) => Vec::new(),
        Some(SecurityHeaders::Enabled(true)) => {
            security_headers(&raw::SecurityHeadersOptions::default(), tls).unwrap_or_default()
        }
        Some(SecurityHeaders::Options(o)) => security_headers(o, tls).unwrap_or_default(),
    }
}

/// The headers `o` asks for; `Err((field, why))` names a bad field.
pub fn security_headers(
    o: &raw::SecurityHeadersOptions,
    tls: bool,
) -> Result<Vec<(HeaderName, HeaderValue)>, (String, String)> {
    let mut out = Vec::new();
    let value = |field: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| {
            (
                field.to_string(),
                "not a valid header value (printable ASCII only)".to_string(),
            )
        })
    };
    if tls {
        let hsts = match &o.hsts {
            None | Some(Hsts::Enabled(true)) => Some(raw::HstsOptions::default()),
            Some(Hsts::Enabled(false)) => None,
            Some(Hsts::Options(h)) => Some(h.clone()),
        };
        if let Some(h) = hsts {
            let age = h.max_age_secs.unwrap_or(31_536_000);
            let sub = h.include_subdomains.unwrap_or(false);
            let preload = h.preload.unwrap_or(false);
            if preload && (!sub || age < 31_536_000) {
                return Err((
                    "hsts.preload".into(),
                    "preload needs includeSubdomains: true and maxAgeSecs of at least 31536000"
                        .into(),
                ));
            }
            let mut v = format!("max-age={age}");
            if sub {
                v.push_str("; includeSubDomains");
            }
            if preload {
                v.push_str("; preload");
            }
            out.push((http::header::STRICT_TRANSPORT_SECURITY, value("hsts", &v)?));
        }
    } else if matches!(&o.hsts, Some(Hsts::Options(_))) {
        return Err((
            "hsts".into(),
            "HSTS is only sent on TLS sites: add `tls` or remove `hsts`".into(),
        ));
    }
    if o.content_type_options.unwrap_or(true) {
        out.push((
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    }
    match &o.frame_options {
        None => out.push((
            http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        )),
        Some(StringOrOff::Off(false)) => {}
        Some(StringOrOff::Off(true)) => {
            return Err((
                "frameOptions".into(),
                "use DENY or SAMEORIGIN, or false to leave it out".into(),
            ))
        }
        Some(StringOrOff::Value(v)) => {
            let v = v.to_ascii_uppercase();
            if v != "DENY" && v != "SAMEORIGIN" {
                return Err((
                    "frameOptions".into(),
                    "must be DENY or SAMEORIGIN (or false)".into(),
                ));
            }
            out.push((http::header::X_FRAME_OPTIONS, value("frameOptions", &v)?));
        }
    }
    match &o.referrer_policy {
        None => out.push((
            http::header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        )),
        Some(StringOrOff::Off(false)) => {}
        Some(StringOrOff::Off(true)) => {
            return Err((
                "referrerPolicy".into(),
                "use a policy name, or false to leave it out".into(),
            ))
        }
        Some(StringOrOff::Value(v)) => {
            if !REFERRER_POLICIES.contains(&v.as_str()) {
                return Err((
                    "referrerPolicy".into(),
                    format!(
                        "unknown policy `{v}`; expected one of {}",
                        REFERRER_POLICIES.join(", ")
                    ),
                ));
            }
            out.push((http::header::REFERRER_POLICY, value("referrerPolicy", v)?));
        }
    }
    if let Some(csp) = &o.content_security_policy {
        out.push((
            http::header::CONTENT_SECURITY_POLICY,
            value("contentSecurityPolicy", csp)?,
        ));
    }
    if let Some(pp) = &o.permissions_policy {
        out.push((
            HeaderName::from_static("permissions-policy"),
            value("permissionsPolicy", pp)?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(h: &[(HeaderName, HeaderValue)]) -> Vec<String> {
        h.iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn defaults_and_options() {
        let d = compile_security_headers(Some(&SecurityHeaders::Enabled(true)), true);
        assert_eq!(
            names(&d),
            [
                "strict-transport-security: max-age=31536000",
                "x-content-type-options: nosniff",
                "x-frame-options: SAMEORIGIN",
                "referrer-policy: strict-origin-when-cross-origin",
            ]
        );
        let plain = compile_security_headers(Some(&SecurityHeaders::Enabled(true)), false);
        assert_eq!(plain.len(), 3, "no HSTS without TLS");
        let o: raw::SecurityHeadersOptions = serde_yaml_ng::from_str(
            "{hsts: {maxAgeSecs: 63072000, includeSubdomains: true, preload: true}, frameOptions: false, contentSecurityPolicy: \"default-src 'self'\"}",
        )
        .unwrap();
        let h = security_headers(&o, true).unwrap();
        assert_eq!(
            names(&h)[0],
            "strict-transport-security: max-age=63072000; includeSubDomains; preload"
        );
        assert!(!names(&h).iter().any(|n| n.starts_with("x-frame-options")));
        assert!(names(&h)
            .iter()
            .any(|n| n == "content-security-policy: default-src 'self'"));
        let bad: raw::SecurityHeadersOptions =
            serde_yaml_ng::from_str("{hsts: {preload: true}}").unwrap();
        assert_eq!(security_headers(&bad, true).unwrap_err().0, "hsts.preload");
        let bad: raw::SecurityHeadersOptions =
            serde_yaml_ng::from_str("{referrerPolicy: sometimes}").unwrap();
        assert_eq!(
            security_headers(&bad, true).unwrap_err().0,
            "referrerPolicy"
        );
    }
}
