//! The command line of the real binary: version, usage errors, `validate`, default discovery,
//! `fmt`, `init`, `completions`, `man` and `schema`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::run_cli;

const GOOD: &str = "port: 18080\nproxy: http://127.0.0.1:3000\n";

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---- version and usage errors ----

#[test]
fn version_prints_the_package_version() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["--version"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.starts_with("conduit "), "{out:?}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out:?}");
    // The allocator is a build choice an operator can read back.
    assert_eq!(
        out.contains("mimalloc"),
        cfg!(feature = "mimalloc"),
        "{out:?}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let dir = tmp();
    let (code, out, _) = run_cli(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    for cmd in ["validate", "fmt", "init", "completions", "man", "schema"] {
        assert!(out.contains(cmd), "`{cmd}` missing from help:\n{out}");
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["frobnicate"]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("frobnicate"), "{err}");
    assert!(err.contains("Usage:"), "{err}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    assert!(err.contains("Usage:"), "{err}");

    // A bad flag of a subcommand, and a bad value, too.
    let (code, _, err) = run_cli(dir.path(), &["validate", "--bogus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Usage:"), "{err}");
    let (code, _, err) = run_cli(dir.path(), &["init", "--yes", "--port", "notaport"]);
    assert_eq!(code, 2, "{err}");
    assert!(!dir.path().join("conduit.yaml").exists());
}

// ---- validate and discovery ----

#[test]
fn validate_good_file_says_ok() {
    let dir = tmp();
    fs::write(dir.path().join("site.yaml"), GOOD).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "site.yaml"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ok"), "{out}");
    assert!(out.contains("site.yaml"), "{out}");
    assert!(out.contains("18080"), "{out}");
}

#[test]
fn validate_config_flag_after_subcommand_and_long_form() {
    let dir = tmp();
    fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
    let (code, out, _) = run_cli(dir.path(), &["--config", "a.yaml", "validate"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn validate_missing_file_fails() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "nope.yaml"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("nope.yaml"), "{err}");
    assert!(!out.contains("ok"), "{out}");
}

#[test]
fn validate_without_any_file_fails_and_names_the_defaults() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1);
    assert!(err.contains("conduit.yaml"), "{err}");
    assert!(err.contains("conduit.json"), "{err}");
}

#[test]
fn discovers_conduit_yaml() {
    let dir = tmp();
    fs::write(dir.path().join("conduit.yaml"), GOOD).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("conduit.yaml: ok"), "{out}");
}

#[test]
fn discovers_conduit_yml() {
    let dir = tmp();
    fs::write(dir.path().join("conduit.yml"), GOOD).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("conduit.yml: ok"), "{out}");
}

#[test]
fn discovers_conduit_json() {
    let dir = tmp();
    fs::write(
        dir.path().join("conduit.json"),
        r#"{"port": 18081, "proxy": "http://127.0.0.1:3000"}"#,
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("conduit.json: ok"), "{out}");
    assert!(out.contains("18081"), "{out}");
}

#[test]
fn discovery_prefers_yaml_then_yml_then_json() {
    let dir = tmp();
    // Only the first file found is read: the broken ones after it must not matter.
    fs::write(dir.path().join("conduit.yaml"), GOOD).unwrap();
    fs::write(dir.path().join("conduit.yml"), "prxy: nope\n").unwrap();
    fs::write(dir.path().join("conduit.json"), "{not json").unwrap();
    let (code, out, _) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("conduit.yaml: ok"), "{out}");

    fs::remove_file(dir.path().join("conduit.yaml")).unwrap();
    let (code, out, _) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("prxy"),
        "conduit.yml should be read next: {out}"
    );

    fs::remove_file(dir.path().join("conduit.yml")).unwrap();
    let (code, _, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("conduit.json"),
        "conduit.json should be read last: {err}"
    );
}

// ---- fmt ----

const MESSY_YAML: &str = "global:   {workers: 2, bind: 127.0.0.1}\nsites:\n  - proxy:   {'/zeta': 'http://127.0.0.1:3001', '/alpha': \"http://127.0.0.1:3002\"}\n    port:    18082\n    logging: json\n";

#[test]
fn fmt_prints_yaml_for_yaml_and_keeps_key_order() {
    let dir = tmp();
    fs::write(dir.path().join("conduit.yaml"), MESSY_YAML).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["fmt"]);
    assert_eq!(code, 0, "{err}");
    // Block-style YAML, not JSON.
    assert!(!out.trim_start().starts_with('{'), "{out}");
    assert!(out.contains("workers: 2"), "{out}");
    let doc: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    let original: serde_json::Value = serde_yaml_ng::from_str(MESSY_YAML).unwrap();
    assert_eq!(doc, original, "fmt changed the content");
    // Key order as written, not sorted.
    let pos = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {out}"))
    };
    assert!(pos("workers") < pos("bind"), "{out}");
    assert!(pos("/zeta") < pos("/alpha"), "{out}");
    assert!(pos("proxy") < pos("port:"), "{out}");
    assert!(pos("port:") < pos("logging"), "{out}");
    // Printing does not touch the file.
    assert_eq!(
        fs::read_to_string(dir.path().join("conduit.yaml")).unwrap(),
        MESSY_YAML
    );
}

#[test]
fn fmt_prints_json_for_json_and_keeps_key_order() {
    let dir = tmp();
    let text = r#"{"sites":[{"proxy":{"/zeta":"http://127.0.0.1:3001","/alpha":"http://127.0.0.1:3002"},"port":18083}],"global":{"workers":2}}"#;
    fs::write(dir.path().join("gw.json"), text).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["fmt", "-c", "gw.json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&out).expect("fmt output of a JSON file is JSON");
    let original: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(doc, original);
    assert!(out.lines().count() > 5, "expected pretty JSON: {out}");
    let pos = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {out}"))
    };
    assert!(pos("\"sites\"") < pos("\"global\""), "{out}");
    assert!(pos("/zeta") < pos("/alpha"), "{out}");
    assert!(pos("\"proxy\"") < pos("\"port\""), "{out}");
}

#[test]
fn fmt_write_rewrites_the_file_and_it_still_validates() {
    let dir = tmp();
    let path = dir.path().join("conduit.yaml");
    fs::write(&path, MESSY_YAML).unwrap();
    let (_, printed, _) = run_cli(dir.path(), &["fmt"]);
    let (code, out, err) = run_cli(dir.path(), &["fmt", "--write"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.is_empty(), "--write prints nothing on stdout: {out}");
    let written = fs::read_to_string(&path).unwrap();
    assert_ne!(written, MESSY_YAML, "file was not rewritten");
    assert_eq!(written, printed, "--write and printing disagree");
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
    // Formatting is idempotent.
    let (code, _, _) = run_cli(dir.path(), &["fmt", "--write"]);
    assert_eq!(code, 0);
    assert_eq!(fs::read_to_string(&path).unwrap(), written);
}

#[test]
fn fmt_write_keeps_json_as_json() {
    let dir = tmp();
    let path = dir.path().join("conduit.json");
    fs::write(&path, r#"{"port":18084,"proxy":"http://127.0.0.1:3000"}"#).unwrap();
    let (code, _, err) = run_cli(dir.path(), &["fmt", "--write"]);
    assert_eq!(code, 0, "{err}");
    let written = fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(doc["port"], 18084);
    assert!(written.contains('\n'), "{written}");
    let (code, out, _) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn fmt_invalid_file_fails_with_the_error_path() {
    let dir = tmp();
    let path = dir.path().join("conduit.yaml");
    let text = "sites:\n  - port: 18085\n    prxy: http://127.0.0.1:3000\n";
    fs::write(&path, text).unwrap();
    let (code, out, err) = run_cli(dir.path(), &["fmt", "--write"]);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("sites[0].prxy: unknown field")),
        "{all}"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        text,
        "invalid file was rewritten"
    );
}

#[test]
fn fmt_syntax_error_fails() {
    let dir = tmp();
    fs::write(dir.path().join("conduit.yaml"), "proxy: [\n").unwrap();
    let (code, _, err) = run_cli(dir.path(), &["fmt"]);
    assert_eq!(code, 1);
    assert!(err.contains("syntax error"), "{err}");
}

// ---- init ----

#[test]
fn init_yes_writes_a_valid_conduit_yaml() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["init", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let path = dir.path().join("conduit.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(doc["port"], 8080, "{text}");
    assert_eq!(doc["proxy"]["/"], "http://127.0.0.1:3000", "{text}");
    let (code, out, err) = run_cli(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("conduit.yaml: ok"), "{out}");
}

#[test]
fn init_json_with_options() {
    let dir = tmp();
    let (code, out, err) = run_cli(
        dir.path(),
        &[
            "init",
            "--yes",
            "--format",
            "json",
            "-o",
            "x.json",
            "--port",
            "9999",
            "--proxy",
            "http://127.0.0.1:4000",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!dir.path().join("conduit.yaml").exists());
    let text = fs::read_to_string(dir.path().join("x.json")).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&text).expect("init --format json writes JSON");
    assert_eq!(doc["port"], 9999, "{text}");
    assert_eq!(doc["proxy"]["/"], "http://127.0.0.1:4000", "{text}");
    let (code, out, err) = run_cli(dir.path(), &["validate", "-c", "x.json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("9999"), "{out}");
}

#[test]
fn init_picks_json_from_the_output_extension() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["init", "--yes", "-o", "gw.json"]);
    assert_eq!(code, 0, "{err}");
    let text = fs::read_to_string(dir.path().join("gw.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).expect("JSON from the .json extension");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tmp();
    let path = dir.path().join("conduit.yaml");
    fs::write(&path, "# mine\n").unwrap();
    let (code, _, err) = run_cli(dir.path(), &["init", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "# mine\n");

    let (code, _, err) = run_cli(dir.path(), &["init", "--yes", "--force", "--port", "18086"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["port"], 18086);
}

#[test]
fn init_without_yes_and_without_a_tty_fails() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["init"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(!dir.path().join("conduit.yaml").exists());
}

#[test]
fn init_static_dir_is_not_supported_yet() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["init", "--yes", "--static-dir", "d"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not supported yet"), "{err}");
    assert!(!dir.path().join("conduit.yaml").exists());
}

#[test]
fn init_rejects_a_bad_proxy_url() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["init", "--yes", "--proxy", "ftp://x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--proxy"), "{err}");
    assert!(!dir.path().join("conduit.yaml").exists());
}

// ---- completions, man, schema ----

#[test]
fn completions_bash() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("conduit"), "{out}");
    assert!(out.contains("complete"), "{out}");
    assert!(out.contains("validate"), "{out}");
}

#[test]
fn completions_unknown_shell_is_a_usage_error() {
    let dir = tmp();
    let (code, _, err) = run_cli(dir.path(), &["completions", "cmd.exe"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn man_prints_roff() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".TH"), "{out}");
    assert!(out.to_lowercase().contains("conduit"), "{out}");
}

#[test]
fn schema_is_json_and_describes_sites() {
    let dir = tmp();
    let (code, out, err) = run_cli(dir.path(), &["schema"]);
    assert_eq!(code, 0, "{err}");
    let schema: serde_json::Value = serde_json::from_str(&out).expect("schema is JSON");
    assert!(schema.is_object());
    assert!(schema["properties"]["sites"].is_object(), "{out}");
    assert!(out.contains("\"sites\""));
}

#[test]
fn fmt_keeps_variable_references_in_typed_fields() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("conduit.yaml"),
        "port: ${PORT}\nhotReload: $HOT\nproxy: http://$UP_HOST:80\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(dir.path(), &["fmt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("port: ${PORT}"), "{out}");
    assert!(out.contains("proxy: http://$UP_HOST:80"), "{out}");
}
