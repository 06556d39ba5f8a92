//! Access control per route through the real binary: a route's own `basicAuth`, `apiKey` or
//! `ipFilter` replaces the site's field of the same name on that route only (the site's other
//! access fields still apply there), other routes keep the site's, and
//! `requestTransform` / `responseTransform` edit headers with `{{ request_id }}` templates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn config(up: &Upstream) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2}}
sites:
  - port: {{port}}
    apiKey: {{keys: [site-key]}}
    proxy:
      /: {url}
      /admin:
        targets: [{url}]
        basicAuth: {{users: {{root: toor}}, realm: Admin}}
      /partners:
        targets: [{url}]
        apiKey: {{keys: [partner-key], header: X-Partner-Key}}
      /internal:
        targets: [{url}]
        ipFilter: {{allow: [10.0.0.0/8]}}
",
        url = up.url()
    )
}

#[test]
fn a_route_setting_replaces_the_sites_on_that_route_only() {
    let up = Upstream::start("up");
    let c = Conduit::start(&config(&up));
    let http = client();
    let status = |req: reqwest::blocking::RequestBuilder| req.send().unwrap().status().as_u16();

    // The site's key guards `/`.
    assert_eq!(status(http.get(c.url("/x"))), 401);
    assert_eq!(
        status(http.get(c.url("/x")).header("x-api-key", "site-key")),
        200
    );

    // `/admin` adds Basic (the site has none) and inherits the site key: both are needed.
    let r = http
        .get(c.url("/admin/users"))
        .header("x-api-key", "site-key")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Admin\", charset=\"UTF-8\""
    );
    assert_eq!(
        status(
            http.get(c.url("/admin/users"))
                .basic_auth("root", Some("toor"))
        ),
        401
    );
    assert_eq!(
        status(
            http.get(c.url("/admin/users"))
                .header("x-api-key", "site-key")
                .basic_auth("root", Some("toor"))
        ),
        200
    );

    // `/partners` has its own key list and header; the site key does not open it.
    assert_eq!(
        status(
            http.get(c.url("/partners/a"))
                .header("x-partner-key", "site-key")
        ),
        401
    );
    assert_eq!(
        status(
            http.get(c.url("/partners/a"))
                .header("x-api-key", "site-key")
        ),
        401
    );
    assert_eq!(
        status(
            http.get(c.url("/partners/a"))
                .header("x-partner-key", "partner-key")
        ),
        200
    );
    assert!(up.last().header("x-partner-key").is_none());

    // `/internal` keeps the site key and adds an address filter (loopback is not allowed).
    assert_eq!(
        status(
            http.get(c.url("/internal/x"))
                .header("x-api-key", "site-key")
        ),
        403
    );
}

#[test]
fn transforms_set_and_remove_headers_both_ways() {
    let up = Upstream::start("up");
    let c = Conduit::start(&format!(
        "{}    requestTransform:
      setHeaders: {{X-Trace: 'conduit-{{{{ request_id }}}}', X-Static: on}}
      removeHeaders: [X-Debug]
    responseTransform:
      setHeaders: {{X-Edge: 'rid={{{{ request_id }}}}'}}
      removeHeaders: [X-Upstream-Secret]
",
        simple(&up)
    ));
    let r = client()
        .get(c.url("/x"))
        .header("x-request-id", "abc123")
        .header("x-debug", "1")
        .header("x-trace", "forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-edge"], "rid=abc123");
    let seen = up.last();
    assert_eq!(seen.header_all("x-trace"), vec!["conduit-abc123"]);
    assert_eq!(seen.header("x-static"), Some("on"));
    assert!(seen.header("x-debug").is_none(), "{seen:?}");
}

#[test]
fn bad_transforms_and_route_auth_are_rejected_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "sites:\n  - proxy:\n      /a:\n        targets: [http://127.0.0.1:9]\n        apiKey: {keys: []}\n        ipFilter: {allow: [nonsense]}\n    responseTransform:\n      setHeaders: {Content-Length: '1', X-A: '{{ whoami }}'}\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "c.yaml"]);
    let err = format!("{out}{err}");
    assert_ne!(code, 0);
    for needle in [
        "sites[0].proxy./a.apiKey.keys: must list at least one key",
        "sites[0].proxy./a.ipFilter.allow[0]",
        "sites[0].responseTransform.setHeaders.Content-Length: `Content-Length` cannot be changed",
        "sites[0].responseTransform.setHeaders.X-A: unknown template variable `whoami`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}
