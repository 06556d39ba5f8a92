//! Validation of `tls.acme`: the host is one exact DNS name, the fields are well formed, and an
//! `http-01` challenge has a plain-HTTP listener to be answered on.

use crate::compile::host::HostPattern;
use crate::config::load::{join, LoadedConfig};
use crate::config::raw::{Acme, Site};
use crate::config::validate::effective_port;
use crate::config::ConfigError;

use super::ChallengeKind;

/// Every problem of every site's `tls.acme`.
pub fn validate(cfg: &LoadedConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, site) in cfg.raw.sites.iter().enumerate() {
        let Some(t) = &site.tls else { continue };
        let Some(a) = &t.acme else { continue };
        let tls_path = cfg.site_field(i, "tls");
        let p = join(&tls_path, "acme");
        let mut err = |field: &str, message: String| {
            let path = if field.is_empty() {
                p.clone()
            } else {
                join(&p, field)
            };
            errors.push(ConfigError::new(path, message));
        };
        check_host(site.host.as_deref(), &mut err);
        if t.cert.is_some() || t.key.is_some() {
            err(
                "",
                "`acme` and `cert`/`key` both give the host's certificate: keep one of them".into(),
            );
        }
        check_fields(a, &mut err);
        if ChallengeKind::parse(a.challenge.as_deref()) == Some(ChallengeKind::Http01)
            && t.http_redirect_port.is_none()
            && !has_plain_port_80(&cfg.raw.sites)
        {
            err(
                "challenge",
                "http-01 is answered over plain HTTP, which the CA sends to port 80: set \
                 `httpRedirectPort: 80` (or add a site without `tls` on port 80), or use \
                 `challenge: tls-alpn-01`"
                    .into(),
            );
        }
    }
    errors
}

fn check_host(host: Option<&str>, err: &mut impl FnMut(&str, String)) {
    let exact = match HostPattern::parse(host.unwrap_or("*")) {
        Ok(HostPattern::Exact(h)) => {
            !h.starts_with('[') && h.parse::<std::net::Ipv4Addr>().is_err()
        }
        _ => false,
    };
    if !exact {
        err(
            "",
            format!(
                "needs the site's `host` to be one exact DNS name (not `{}`): ACME certificates \
                 are issued per name, without wildcards or addresses",
                host.unwrap_or("*")
            ),
        );
    }
}

fn check_fields(a: &Acme, err: &mut impl FnMut(&str, String)) {
    if let Some(email) = &a.email {
        if !looks_like_email(email) {
            err(
                "email",
                format!("`{email}` is not an email address (like ops@example.com)"),
            );
        }
    }
    if let Some(dir) = &a.directory {
        let ok = dir
            .parse::<http::Uri>()
            .ok()
            .is_some_and(|u| u.scheme_str() == Some("https") && u.authority().is_some());
        if !ok {
            err(
                "directory",
                format!("`{dir}` is not an https:// URL of an ACME directory"),
            );
        }
    }
    if a.storage.as_deref().is_some_and(|s| s.trim().is_empty()) {
        err(
            "storage",
            "must be a directory path (default ./acme)".into(),
        );
    }
    if ChallengeKind::parse(a.challenge.as_deref()).is_none() {
        err(
            "challenge",
            format!(
                "unknown challenge `{}`: use `http-01` or `tls-alpn-01`",
                a.challenge.as_deref().unwrap_or_default()
            ),
        );
    }
    if let Some(root) = &a.ca_root {
        if let Err(e) = crate::tls::certs::read_certs(root) {
            err("caRoot", e);
        }
    }
    if a.renew_before_days.is_some_and(|d| d == 0 || d > 365) {
        err("renewBeforeDays", "must be between 1 and 365".into());
    }
}

/// `local@domain.tld`, without spaces or a `mailto:` prefix.
fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(':')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether some listener answers plain HTTP on port 80: a site without `tls` there, or a TLS
/// site redirecting from it.
fn has_plain_port_80(sites: &[Site]) -> bool {
    sites.iter().any(|s| match &s.tls {
        None => effective_port(s) == 80,
        Some(t) => t.http_redirect_port == Some(80),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let loaded =
            crate::config::load::load_str(yaml, crate::config::load::Format::Yaml, "t", &|_| None)
                .unwrap();
        validate(&loaded).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_good_config_passes() {
        let e = errors(
            "host: a.example.com\ntls:\n  httpRedirectPort: 80\n  acme: {email: ops@example.com}\nproxy: http://127.0.0.1:1\n",
        );
        assert!(e.is_empty(), "{e:?}");
        let e = errors(
            "host: a.example.com\ntls:\n  acme: {challenge: tls-alpn-01, directory: 'https://ca.test/dir', renewBeforeDays: 10}\nproxy: http://127.0.0.1:1\n",
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn each_field_is_checked() {
        let e = errors(
            "host: '*.example.com'\ntls:\n  cert: c.pem\n  key: k.pem\n  acme: {email: nobody, directory: 'http://ca.test/dir', challenge: dns-01, renewBeforeDays: 0, storage: ' '}\nproxy: http://127.0.0.1:1\n",
        );
        for want in [
            "tls.acme: needs the site's `host` to be one exact DNS name",
            "tls.acme: `acme` and `cert`/`key`",
            "tls.acme.email: ",
            "tls.acme.directory: ",
            "tls.acme.challenge: unknown challenge `dns-01`",
            "tls.acme.renewBeforeDays: ",
            "tls.acme.storage: ",
        ] {
            assert!(e.iter().any(|m| m.starts_with(want)), "{want} in {e:?}");
        }
    }

    #[test]
    fn http01_needs_a_plain_listener() {
        let e = errors("host: a.example.com\ntls:\n  acme: {}\nproxy: http://127.0.0.1:1\n");
        assert!(
            e.iter()
                .any(|m| m.starts_with("tls.acme.challenge: http-01 is answered")),
            "{e:?}"
        );
        let e = errors(
            "sites:\n  - host: a.example.com\n    tls: {acme: {}}\n    proxy: http://127.0.0.1:1\n  - host: b.example.com\n    proxy: http://127.0.0.1:1\n",
        );
        assert!(e.is_empty(), "a plain site on port 80 answers: {e:?}");
    }

    #[test]
    fn addresses_and_wildcards_are_not_acme_hosts() {
        for host in ["'*'", "10.0.0.1", "'[::1]'", "'*.example.com'"] {
            let e = errors(&format!(
                "host: {host}\ntls:\n  httpRedirectPort: 80\n  acme: {{}}\nproxy: http://127.0.0.1:1\n"
            ));
            assert!(
                e.iter().any(|m| m.contains("one exact DNS name")),
                "{host}: {e:?}"
            );
        }
    }
}
