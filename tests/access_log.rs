//! The access log of the real binary: JSON lines in a file with their fields, `skipPaths`,
//! `stripQuery`, the text formats on standard output, and failed requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, dead_port, Conduit, Upstream};
use serde_json::Value;

const UA: &str = "conduit-test/1.0 (access log)";

/// Polls `read` until one of its lines satisfies `pred` (the log is written by a background
/// thread); returns all lines read at that moment.
fn wait_for_line(
    read: impl Fn() -> String,
    pred: impl Fn(&str) -> bool,
    what: &str,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = read();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.iter().any(|l| pred(l)) {
            return lines;
        }
        if Instant::now() > deadline {
            panic!("no log line {what} within 3 s; log so far:\n{text}");
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// JSON entries of the file whose `path` is `path`, once at least one is there.
fn json_entries(file: &Path, path: &str) -> Vec<Value> {
    let lines = wait_for_line(
        || read_file(file),
        |l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["path"] == path),
        &format!("for {path}"),
    );
    lines
        .iter()
        .map(|l| parse(l))
        .filter(|v| v["path"] == path)
        .collect()
}

fn json_site(logging: &str, proxy: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 1}}\nsites:\n  - port: {{port}}\n    healthCheck: true\n    logging: {logging}\n    proxy: {proxy}\n"
    )
}

#[test]
fn json_lines_have_every_field() {
    let api = Upstream::start("api-up");
    let web = Upstream::start("web");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let c = Conduit::start(&json_site(
        &format!("{{format: json, file: '{}'}}", file.display()),
        &format!("{{/api: {}, /: {}}}", api.url(), web.url()),
    ));

    let before = chrono::Utc::now();
    let resp = client()
        .get(c.url("/api/items?page=2"))
        .header("user-agent", UA)
        .header("referer", "http://ref.example/")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(resp.text().unwrap(), "api-up");

    let entries = json_entries(&file, "/api/items?page=2");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    // time: RFC 3339, close to now.
    let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
        .unwrap_or_else(|err| panic!("time not RFC 3339 ({err}): {e}"));
    let skew = (time.with_timezone(&chrono::Utc) - before)
        .num_seconds()
        .abs();
    assert!(skew < 60, "time {time} is far from now {before}");
    assert_eq!(e["request_id"], id.as_str(), "{e}");
    assert_eq!(e["method"], "GET", "{e}");
    assert_eq!(e["status"], 200, "{e}");
    assert_eq!(e["bytes"], "api-up".len(), "{e}");
    assert!(e["duration_ms"].as_f64().unwrap() >= 0.0, "{e}");
    assert_eq!(
        e["upstream"],
        format!("127.0.0.1:{}", api.addr.port()),
        "{e}"
    );
    let upstream_ms = e["upstream_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("upstream_ms: {e}"));
    assert!(
        upstream_ms as f64 <= e["duration_ms"].as_f64().unwrap() + 1.0,
        "upstream time exceeds the total: {e}"
    );
    let route = e["route"].as_str().unwrap_or_else(|| panic!("route: {e}"));
    assert!(route.contains("/api"), "{e}");
    assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
    assert_eq!(e["protocol"], "HTTP/1.1", "{e}");
    assert_eq!(e["user_agent"], UA, "{e}");
    assert_eq!(e["referer"], "http://ref.example/", "{e}");

    // A second route, a client-sent request id and a POST with a body.
    let resp = client()
        .post(c.url("/echo"))
        .header("x-request-id", "client-id-42")
        .body("0123456789")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-id-42");
    let e = &json_entries(&file, "/echo")[0];
    assert_eq!(e["request_id"], "client-id-42", "{e}");
    assert_eq!(e["method"], "POST", "{e}");
    assert_eq!(e["bytes"], 10, "{e}");
    assert_eq!(
        e["upstream"],
        format!("127.0.0.1:{}", web.addr.port()),
        "{e}"
    );
    assert_ne!(e["route"], route, "each prefix is its own route: {e}");
    assert!(e["route"].is_string(), "{e}");

    // A chunked response counts its body bytes, not the chunk framing; HEAD sends no body.
    let resp = client().get(c.url("/chunked")).send().unwrap();
    assert_eq!(resp.text().unwrap(), "hello chunked world");
    let e = &json_entries(&file, "/chunked")[0];
    assert_eq!(e["bytes"], "hello chunked world".len(), "{e}");
    let resp = client().head(c.url("/headonly")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let e = &json_entries(&file, "/headonly")[0];
    assert_eq!(e["method"], "HEAD", "{e}");
    assert_eq!(e["bytes"], 0, "{e}");

    // One line per request, every line JSON.
    for _ in 0..5 {
        client().get(c.url("/many")).send().unwrap();
    }
    // Read once per try and judge that same text (a second read could see a later state).
    let deadline = Instant::now() + Duration::from_secs(3);
    let lines: Vec<String> = loop {
        let text = read_file(&file);
        if text.lines().filter(|l| l.contains("\"/many\"")).count() == 5 {
            break text.lines().map(str::to_string).collect();
        }
        assert!(
            Instant::now() < deadline,
            "5 lines for /many not logged within 3 s:\n{text}"
        );
        thread::sleep(Duration::from_millis(25));
    };
    for l in &lines {
        parse(l);
    }
    let ids: std::collections::HashSet<String> = lines
        .iter()
        .map(|l| parse(l))
        .filter(|v| v["path"] == "/many")
        .map(|v| v["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.len(),
        5,
        "generated request ids must differ: {lines:#?}"
    );
}

#[test]
fn health_checks_are_logged_unless_skipped() {
    let up = Upstream::start("up");
    let dir = tempfile::tempdir().unwrap();

    // Without skipPaths, the health endpoint is logged (with no upstream).
    let plain = dir.path().join("plain.log");
    let c = Conduit::start(&json_site(
        &format!("{{format: json, file: '{}'}}", plain.display()),
        &up.url(),
    ));
    let resp = client().get(c.url("/__health__")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let e = &json_entries(&plain, "/__health__")[0];
    assert_eq!(e["status"], 200, "{e}");
    assert!(e["upstream"].is_null(), "{e}");
    drop(c);

    // With it, health checks stay out while other requests are logged.
    let skipped = dir.path().join("skipped.log");
    let c = Conduit::start(&json_site(
        &format!(
            "{{format: json, file: '{}', skipPaths: ['/__health__', '/static/**']}}",
            skipped.display()
        ),
        &up.url(),
    ));
    for path in [
        "/__health__",
        "/static/a/b.css",
        "/__health__?x=1",
        "/after",
    ] {
        assert_eq!(
            client().get(c.url(path)).send().unwrap().status(),
            200,
            "{path}"
        );
    }
    json_entries(&skipped, "/after");
    thread::sleep(Duration::from_millis(300));
    let text = read_file(&skipped);
    assert!(!text.contains("__health__"), "{text}");
    assert!(!text.contains("/static/"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(up.count(), 2, "the static path still went upstream");
}

#[test]
fn strip_query_removes_the_query() {
    let up = Upstream::start("up");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let c = Conduit::start(&json_site(
        &format!(
            "{{format: json, file: '{}', stripQuery: true}}",
            file.display()
        ),
        &up.url(),
    ));
    let resp = client()
        .get(c.url("/search?token=secret&q=1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The upstream still gets the query; only the log drops it.
    assert_eq!(up.last().target, "/search?token=secret&q=1");
    let e = &json_entries(&file, "/search")[0];
    assert_eq!(e["status"], 200);
    let text = read_file(&file);
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains('?'), "{text}");
}

#[test]
fn dead_upstream_is_logged_as_502() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let dead = dead_port();
    let c = Conduit::start(&json_site(
        &format!("{{format: json, file: '{}'}}", file.display()),
        &format!("http://127.0.0.1:{dead}"),
    ));
    let resp = client().get(c.url("/down")).send().unwrap();
    assert_eq!(resp.status(), 502);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let e = &json_entries(&file, "/down")[0];
    assert_eq!(e["status"], 502, "{e}");
    assert_eq!(e["request_id"], id.as_str(), "{e}");
    assert_eq!(e["upstream"], format!("127.0.0.1:{dead}"), "{e}");
    assert!(e["upstream_ms"].is_null(), "no upstream response: {e}");

    // A path with no route is logged as 404.
    let c404 = Conduit::start(&json_site(
        &format!(
            "{{format: json, file: '{}'}}",
            dir.path().join("404.log").display()
        ),
        &format!("{{/only: http://127.0.0.1:{dead}}}"),
    ));
    let resp = client().get(c404.url("/elsewhere")).send().unwrap();
    assert_eq!(resp.status(), 404);
    let e = &json_entries(&dir.path().join("404.log"), "/elsewhere")[0];
    assert_eq!(e["status"], 404, "{e}");
    assert!(e["upstream"].is_null(), "{e}");
}

/// One site per format on the same port, told apart by Host; all log to standard output.
fn formats_conduit(up: &Upstream) -> Conduit {
    let mut yaml = String::from("global: {bind: 127.0.0.1, workers: 1}\nsites:\n");
    for (host, logging) in [
        ("combined.test", "combined"),
        ("common.test", "common"),
        ("short.test", "short"),
        ("dev.test", "dev"),
        ("default.test", "true"),
        ("off.test", "false"),
    ] {
        yaml.push_str(&format!(
            "  - host: {host}\n    port: {{port}}\n    logging: {logging}\n    proxy: {}\n",
            up.url()
        ));
    }
    Conduit::start(&yaml)
}

fn get_as(c: &Conduit, host: &str, path: &str) {
    let resp = client()
        .get(c.url(path))
        .header("host", host)
        .header("user-agent", UA)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{host}{path}");
    assert_eq!(resp.text().unwrap(), "fmt-up");
}

fn stdout_line(c: &Conduit, needle: &str) -> String {
    let lines = wait_for_line(
        || c.stdout(),
        |l| l.contains(needle),
        &format!("with {needle}"),
    );
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn text_formats_on_stdout() {
    let up = Upstream::start("fmt-up");
    let c = formats_conduit(&up);
    let n = "fmt-up".len();
    let ua = regex::escape(UA);
    let stamp = r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]";

    get_as(&c, "combined.test", "/x/combined?a=1");
    let line = stdout_line(&c, "/x/combined");
    let re = regex::Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {stamp} "GET /x/combined\?a=1 HTTP/1\.1" 200 {n} "-" "{ua}"$"#
    ))
    .unwrap();
    assert!(re.is_match(&line), "combined: {line}");

    get_as(&c, "common.test", "/x/common");
    let line = stdout_line(&c, "/x/common");
    let re = regex::Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {stamp} "GET /x/common HTTP/1\.1" 200 {n}$"#
    ))
    .unwrap();
    assert!(re.is_match(&line), "common: {line}");

    get_as(&c, "short.test", "/x/short");
    let line = stdout_line(&c, "/x/short");
    let re = regex::Regex::new(&format!(
        r"^127\.0\.0\.1 GET /x/short HTTP/1\.1 200 {n} - \d+\.\d{{3}} ms$"
    ))
    .unwrap();
    assert!(re.is_match(&line), "short: {line}");

    get_as(&c, "dev.test", "/x/dev");
    let line = stdout_line(&c, "/x/dev");
    let re = regex::Regex::new(&format!(r"^GET /x/dev 200 \d+\.\d{{3}} ms - {n}$")).unwrap();
    assert!(re.is_match(&line), "dev: {line}");

    // `logging: true` is the combined format.
    get_as(&c, "default.test", "/x/default");
    let line = stdout_line(&c, "/x/default");
    let re = regex::Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {stamp} "GET /x/default HTTP/1\.1" 200 {n} "-" "{ua}"$"#
    ))
    .unwrap();
    assert!(re.is_match(&line), "logging: true: {line}");

    // `logging: false` writes nothing.
    get_as(&c, "off.test", "/x/off");
    get_as(&c, "dev.test", "/x/after-off");
    stdout_line(&c, "/x/after-off");
    thread::sleep(Duration::from_millis(300));
    assert!(!c.stdout().contains("/x/off"), "{}", c.stdout());
}

#[test]
fn combined_quotes_referer_and_user_agent() {
    let up = Upstream::start("fmt-up");
    let c = formats_conduit(&up);
    let resp = client()
        .get(c.url("/x/quoted"))
        .header("host", "combined.test")
        .header("referer", "http://ref.example/page")
        .header("user-agent", "agent \"quoted\"")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let line = stdout_line(&c, "/x/quoted");
    assert!(
        line.ends_with(r#" "http://ref.example/page" "agent \"quoted\"""#),
        "{line}"
    );
}

#[test]
fn no_logging_section_writes_nothing() {
    let up = Upstream::start("quiet");
    let c = Conduit::start(&common::simple(&up));
    for _ in 0..3 {
        assert_eq!(client().get(c.url("/quiet")).send().unwrap().status(), 200);
    }
    thread::sleep(Duration::from_millis(500));
    assert!(!c.stdout().contains("/quiet"), "{}", c.stdout());
}

#[test]
fn unopenable_log_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-such-dir").join("access.log");
    let up = Upstream::start("up");
    let mut c = Conduit::start_on(
        &json_site(
            &format!("{{format: json, file: '{}'}}", file.display()),
            &up.url(),
        ),
        common::free_port(),
    );
    let code = c.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1), "stderr: {}", c.stderr());
    assert!(
        c.stderr().contains("sites[0].logging.file"),
        "{}",
        c.stderr()
    );
    assert!(
        c.stderr().contains("cannot open access log"),
        "{}",
        c.stderr()
    );
}
