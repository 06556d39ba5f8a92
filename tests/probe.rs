//! `conduit probe` against real upstreams on loopback port 0: the table, the exit codes, the
//! health-check path it requests, unreachable targets and `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::{dead_port, run_cli, Upstream};

/// Writes `config` as `conduit.yaml` in a new temporary directory.
fn with_config(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("conduit.yaml"), config).unwrap();
    dir
}

/// The table row of `url` (the first line that starts with it).
fn row<'a>(out: &'a str, url: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{url} ")))
        .unwrap_or_else(|| panic!("no row for {url} in:\n{out}"))
}

#[test]
fn all_reachable_prints_the_table_and_exits_0() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let dir = with_config(&format!(
        "sites:\n  - port: 18081\n    proxy:\n      /: {a}\n      /api:\n        targets: [\"{b}\"]\n        healthCheck: {{path: /status/204}}\n",
        a = a.url(),
        b = b.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for col in ["URL", "WHERE", "STATUS", "LATENCY"] {
        assert!(lines[0].contains(col), "{out}");
    }
    let status_col = lines[0].find("STATUS").unwrap();

    let ra = row(&out, &a.url());
    assert!(ra.contains("sites[0].proxy./ "), "{ra}");
    assert_eq!(
        ra.find("200"),
        Some(status_col),
        "columns not aligned:\n{out}"
    );
    assert!(ra.trim_end().ends_with(" ms"), "{ra}");

    let rb = row(&out, &b.url());
    assert!(rb.contains("sites[0].proxy./api"), "{rb}");
    assert_eq!(
        rb.find("204"),
        Some(status_col),
        "columns not aligned:\n{out}"
    );
    assert_eq!(lines[3], "2 targets, 0 unreachable");

    // The request the upstreams saw: the health-check path, Host, Connection and User-Agent.
    let seen = b.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/status/204")
    );
    assert_eq!(seen.header("host"), Some(b.addr.to_string().as_str()));
    assert_eq!(seen.header("connection"), Some("close"));
    assert_eq!(seen.header("user-agent"), Some("conduit-probe"));
    assert_eq!(a.last().target, "/");
}

#[test]
fn a_target_named_twice_is_probed_once_with_both_places() {
    let a = Upstream::start("a");
    let dir = with_config(&format!(
        "sites:\n  - port: 18082\n    proxy:\n      /one: {a}\n      /two: [\"{a}\"]\n    routes:\n      - match: {{path: /r/**}}\n        proxy: {a}\n",
        a = a.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let r = row(&out, &a.url());
    assert!(
        r.contains("sites[0].proxy./one, sites[0].proxy./two, sites[0].routes[0].proxy"),
        "{out}"
    );
    assert!(out.contains("1 target, 0 unreachable"), "{out}");
    assert_eq!(a.count(), 1);
}

#[test]
fn an_unreachable_target_exits_1_with_its_reason() {
    let a = Upstream::start("a");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let dir = with_config(&format!(
        "sites:\n  - port: 18083\n    proxy:\n      /: {a}\n      /gone:\n        targets: [\"{dead}\"]\n",
        a = a.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "1000"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(row(&out, &a.url()).contains("200"), "{out}");
    let r = row(&out, &dead);
    assert!(r.contains("sites[0].proxy./gone"), "{r}");
    assert!(r.contains("unreachable: connection refused"), "{r}");
    assert!(r.trim_end().ends_with('-'), "{r}");
    assert!(out.contains("2 targets, 1 unreachable"), "{out}");
}

#[test]
fn json_output_has_one_object_per_target() {
    let a = Upstream::start("a");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let dir = with_config(&format!(
        "sites:\n  - port: 18084\n    proxy:\n      /:\n        targets: [\"{a}\"]\n        healthCheck: {{path: /status/200}}\n        backup: [\"{dead}\"]\n",
        a = a.url()
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe", "--json"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{out}");

    let up = &rows[0];
    assert_eq!(up["url"], a.url());
    assert_eq!(up["where"], serde_json::json!(["sites[0].proxy./"]));
    assert_eq!(up["reachable"], true);
    assert_eq!(up["status"], 200);
    assert!(up["latency_ms"].is_u64(), "{up}");
    assert!(up["error"].is_null(), "{up}");
    assert_eq!(a.last().target, "/status/200");

    let down = &rows[1];
    assert_eq!(down["url"], dead);
    assert_eq!(
        down["where"],
        serde_json::json!(["sites[0].proxy./.backup"])
    );
    assert_eq!(down["reachable"], false);
    assert!(down["status"].is_null(), "{down}");
    assert!(down["latency_ms"].is_null(), "{down}");
    assert_eq!(down["error"], "connection refused");
}

#[test]
fn a_non_http_answer_is_unreachable() {
    // A listener that answers with something other than HTTP, then closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            // Read the request first so that closing does not reset the connection.
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
        }
    });
    let dir = with_config(&format!(
        "sites:\n  - port: 18085\n    proxy: http://127.0.0.1:{port}\n"
    ));
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("unreachable: not an HTTP response"), "{out}");
}

#[test]
fn a_silent_target_times_out() {
    // Accepts the connection but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = with_config(&format!(
        "sites:\n  - port: 18086\n    proxy: http://127.0.0.1:{port}\n"
    ));
    let started = std::time::Instant::now();
    let (code, out, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "300"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("unreachable: no response within 300 ms"),
        "{out}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(listener);
}

#[test]
fn an_invalid_config_is_reported_like_validate() {
    let dir = with_config("sites:\n  - port: 18087\n    prxy: http://127.0.0.1:1\n");
    let (code, out, err) = run_cli(dir.path(), &["probe"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sites[0].prxy: unknown field")),
        "{out}"
    );
    assert!(err.contains("error(s)"), "{err}");
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let dir = with_config("port: 18088\nproxy: http://127.0.0.1:1\n");
    let (code, _, err) = run_cli(dir.path(), &["probe", "--timeout-ms", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--timeout-ms"), "{err}");
    let (code, _, err) = run_cli(dir.path(), &["probe", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Usage:"), "{err}");
}
