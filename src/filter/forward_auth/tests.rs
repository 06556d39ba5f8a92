use std::net::IpAddr;

use super::*;

fn parse(yaml: &str) -> raw::ForwardAuth {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn auth(yaml: &str) -> ForwardAuth {
    let raw = parse(yaml);
    assert!(validate(&raw, "forwardAuth").is_empty(), "{yaml}");
    compile(&raw).unwrap()
}

fn errors(yaml: &str) -> Vec<(String, String)> {
    validate(&parse(yaml), "sites[0].forwardAuth")
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

fn peer(client: Option<&str>, tls: bool) -> Peer {
    Peer {
        peer: None,
        client: client.map(|c| c.parse::<IpAddr>().unwrap()),
        trusted: false,
        tls,
    }
}

fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

fn values<'a>(r: &'a RequestHeader, name: &str) -> Vec<&'a str> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn validation_errors_name_fields() {
    let e = errors(
        "{url: 'ftp://auth/verify', requestHeaders: [Authorization, 'bad header', Host, \
         X-Forwarded-For, authorization], responseHeaders: [X-User, 'x:y', Transfer-Encoding], \
         timeoutMs: 0, skipPaths: ['/ok/**', 'nope']}",
    );
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "sites[0].forwardAuth.url",
            "sites[0].forwardAuth.requestHeaders[1]",
            "sites[0].forwardAuth.requestHeaders[2]",
            "sites[0].forwardAuth.requestHeaders[3]",
            "sites[0].forwardAuth.requestHeaders[4]",
            "sites[0].forwardAuth.responseHeaders[1]",
            "sites[0].forwardAuth.responseHeaders[2]",
            "sites[0].forwardAuth.timeoutMs",
            "sites[0].forwardAuth.skipPaths[1]",
        ]
    );
    let msg = |i: usize| e[i].1.as_str();
    assert!(msg(0).contains("not an auth service URL"), "{}", msg(0));
    assert!(msg(1).contains("not a valid header name"), "{}", msg(1));
    assert!(msg(2).contains("framing"), "{}", msg(2));
    assert!(msg(3).contains("always set by forwardAuth"), "{}", msg(3));
    assert!(msg(4).contains("listed twice"), "{}", msg(4));
    assert!(msg(7).contains("between 1 and 60000"), "{}", msg(7));

    assert_eq!(
        errors("{url: 'http://auth/verify', timeoutMs: 60001}").len(),
        1
    );
    assert!(errors("{url: 'http://auth/verify', timeoutMs: 60000}").is_empty());
    assert!(errors("{url: 'http://auth/verify', timeoutMs: 1, requestHeaders: []}").is_empty());
    // X-Forwarded-* may come back from the service (they are not set on the forwarded request).
    assert!(errors("{url: 'http://a/v', responseHeaders: [X-Forwarded-User]}").is_empty());
}

#[test]
fn bad_urls_are_reported_at_url() {
    for url in [
        "",
        "auth:9091",
        "http://user:secret@auth/verify",
        "http://auth/verify#frag",
        "http://auth:0/",
        "https://",
    ] {
        let e = errors(&format!("{{url: '{url}'}}"));
        assert_eq!(e.len(), 1, "{url}: {e:?}");
        assert_eq!(e[0].0, "sites[0].forwardAuth.url");
        assert!(!e[0].1.contains("secret") || url.contains("secret"));
    }
}

#[test]
fn tls_options_are_checked() {
    let e = errors("{url: 'http://auth/verify', tls: {verify: false}}");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "sites[0].forwardAuth.tls");
    let e = errors(
        "{url: 'https://auth/verify', tls: {serverName: '127.0.0.1', ca: /nonexistent/ca.pem}}",
    );
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "sites[0].forwardAuth.tls.serverName",
            "sites[0].forwardAuth.tls.ca"
        ]
    );
    assert!(errors("{url: 'https://auth/verify', tls: {serverName: auth.internal}}").is_empty());
}

#[test]
fn compile_defaults_and_peer() {
    let f = auth("{url: 'http://127.0.0.1:9/verify?x=1'}");
    assert_eq!(f.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    assert_eq!(f.request_headers, ["authorization", "cookie"]);
    assert!(f.response_headers.is_empty());
    assert_eq!(f.url.path.as_str(), "/verify?x=1");
    assert_eq!(
        f.peer.options.connection_timeout,
        Some(Duration::from_millis(DEFAULT_TIMEOUT_MS))
    );
    let f = auth("{url: 'https://127.0.0.1:9443', timeoutMs: 250, tls: {serverName: auth.test}}");
    assert_eq!(f.timeout, Duration::from_millis(250));
    assert_eq!(pingora::upstreams::peer::Peer::sni(&f.peer), "auth.test");
    assert!(pingora::upstreams::peer::Peer::tls(&f.peer));
    // A host that does not resolve fails at compile (as proxy targets do), naming the field.
    let e = compile(&parse("{url: 'http://no-such-host.invalid/verify'}")).unwrap_err();
    assert_eq!(e.path, "forwardAuth.url");
    // The Debug text leaves out the URL's path and query.
    let f = auth("{url: 'http://127.0.0.1:9/verify?token=s3cr3t'}");
    assert!(!format!("{f:?}").contains("s3cr3t"));
}

#[test]
fn auth_request_carries_the_listed_headers_and_forwarding_headers() {
    let f = auth("{url: 'http://127.0.0.1:9/auth/check?rd=1', requestHeaders: [Authorization, Cookie, X-Api-Token]}");
    let r = req(
        "POST",
        "/api/items?a=1&b=2",
        &[
            ("host", "shop.example"),
            ("authorization", "Bearer t"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-api-token", "one"),
            ("x-api-token", "two"),
            ("x-other", "no"),
            ("x-forwarded-for", "10.9.9.9"),
            ("content-length", "5"),
        ],
    );
    let q = f
        .auth_request(&r, "/api/items", peer(Some("192.0.2.7"), true))
        .unwrap();
    assert_eq!(q.method, Method::POST);
    assert_eq!(q.uri.path_and_query().unwrap().as_str(), "/auth/check?rd=1");
    assert_eq!(values(&q, "host"), ["127.0.0.1:9"]);
    assert_eq!(values(&q, "authorization"), ["Bearer t"]);
    assert_eq!(values(&q, "cookie"), ["a=1; b=2"]);
    assert_eq!(values(&q, "x-api-token"), ["one", "two"]);
    assert!(values(&q, "x-other").is_empty());
    assert_eq!(values(&q, "x-forwarded-method"), ["POST"]);
    assert_eq!(values(&q, "x-forwarded-uri"), ["/api/items?a=1&b=2"]);
    assert_eq!(values(&q, "x-forwarded-for"), ["192.0.2.7"]);
    assert_eq!(values(&q, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&q, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(values(&q, "content-length"), ["0"]);

    let r = req("GET", "/", &[]);
    let q = f.auth_request(&r, "/", peer(None, false)).unwrap();
    assert!(values(&q, "content-length").is_empty());
    assert!(values(&q, "x-forwarded-for").is_empty());
    assert!(values(&q, "x-forwarded-host").is_empty());
    assert!(values(&q, "cookie").is_empty());
    assert_eq!(values(&q, "x-forwarded-proto"), ["http"]);

    // An absolute-form target (HTTP/2's :authority): the host comes from the URI.
    let mut r = req("DELETE", "/x", &[]);
    r.set_uri("http://api.example:8443/x".parse().unwrap());
    let q = f.auth_request(&r, "/x", peer(None, false)).unwrap();
    assert_eq!(values(&q, "x-forwarded-host"), ["api.example:8443"]);
    assert_eq!(values(&q, "x-forwarded-uri"), ["/x"]);

    // The service judges the normalised path Conduit routes and forwards, not the raw one.
    let r = req("GET", "/public/%2e%2e/admin?q=1", &[]);
    let q = f.auth_request(&r, "/admin", peer(None, false)).unwrap();
    assert_eq!(values(&q, "x-forwarded-uri"), ["/admin?q=1"]);
}

#[test]
fn copy_back_replaces_and_removes() {
    let f = auth("{url: 'http://127.0.0.1:9/', responseHeaders: [X-User, X-Groups, X-Tenant]}");
    let mut r = req(
        "GET",
        "/",
        &[
            ("x-user", "mallory"),
            ("x-tenant", "evil"),
            ("x-kept", "yes"),
        ],
    );
    let mut answer = HeaderMap::new();
    answer.insert("x-user", HeaderValue::from_static("alice"));
    answer.append("x-groups", HeaderValue::from_static("admin"));
    answer.append("x-groups", HeaderValue::from_static("dev"));
    answer.insert("x-secret", HeaderValue::from_static("not listed"));
    f.copy_back(&mut r, &answer).unwrap();
    assert_eq!(values(&r, "x-user"), ["alice"]);
    assert_eq!(values(&r, "x-groups"), ["admin", "dev"]);
    assert!(values(&r, "x-tenant").is_empty());
    assert!(values(&r, "x-secret").is_empty());
    assert_eq!(values(&r, "x-kept"), ["yes"]);
}

#[test]
fn denials_pass_back_only_their_own_headers() {
    let mut answer = HeaderMap::new();
    answer.insert("content-type", HeaderValue::from_static("text/html"));
    answer.insert("www-authenticate", HeaderValue::from_static("Bearer"));
    answer.insert("location", HeaderValue::from_static("https://login/"));
    answer.append("set-cookie", HeaderValue::from_static("a=1"));
    answer.append("set-cookie", HeaderValue::from_static("b=2"));
    answer.insert("x-internal", HeaderValue::from_static("secret"));
    answer.insert("content-length", HeaderValue::from_static("12"));
    let passed: Vec<(String, String)> = passed_back(&answer)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("content-type", "text/html"),
        ("www-authenticate", "Bearer"),
        ("location", "https://login/"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(passed, expected);
}

#[test]
fn methods_with_a_body() {
    for m in ["POST", "PUT", "PATCH", "PROPFIND"] {
        assert!(
            expects_body(&Method::from_bytes(m.as_bytes()).unwrap()),
            "{m}"
        );
    }
    for m in [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS] {
        assert!(!expects_body(&m), "{m}");
    }
}

#[tokio::test]
async fn skipped_paths_never_call_the_service() {
    // Port 9 (discard) has nothing listening: a call would be a 503.
    let f = auth("{url: 'http://127.0.0.1:9/', skipPaths: ['/public/**'], timeoutMs: 500}");
    let mut r = req("GET", "/public/a", &[]);
    assert!(f
        .check(&mut r, "/public/a", peer(None, false))
        .await
        .is_ok());
    let mut r = req("GET", "/private", &[]);
    match f.check(&mut r, "/private", peer(None, false)).await {
        Err(Denial::Refused(r)) => assert_eq!(
            (r.status, r.reason),
            (503, "authentication service unavailable")
        ),
        other => panic!("{other:?}"),
    }
}
