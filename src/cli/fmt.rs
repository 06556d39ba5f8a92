//! `conduit fmt`: rewrites a config file in canonical layout, keeping its syntax (YAML or JSON)
//! and key order. Comments are not kept.

use std::path::Path;

use crate::config::{self, load, Format};

/// Formats the config; prints it, or writes it back with `write`.
pub fn fmt(explicit: Option<&Path>, cwd: &Path, write: bool) -> i32 {
    let path = match config::discover(explicit, cwd) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return 1;
        }
    };
    let format = Format::from_path(&path);
    let doc = match load::parse_document(&text, format, &path.display().to_string()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    // Structure only: variables are checked when the file is loaded, not here.
    let errors = load::check_structure(doc.clone());
    if !errors.is_empty() {
        for e in &errors {
            println!("{e}");
        }
        eprintln!(
            "{}: not formatted: {} error(s)",
            path.display(),
            errors.len()
        );
        return 1;
    }
    let out = match render(&doc, format) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if format == Format::Yaml && text.lines().any(|l| l.trim_start().starts_with('#')) {
        eprintln!("note: comments are not kept by `conduit fmt`");
    }
    if write {
        if out == text {
            return 0;
        }
        if let Err(e) = std::fs::write(&path, out) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 1;
        }
        eprintln!("formatted {}", path.display());
    } else {
        print!("{out}");
    }
    0
}

/// Renders a document in `format`, ending with a newline.
pub fn render(doc: &serde_json::Value, format: Format) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(doc)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::to_string(doc).map_err(|e| e.to_string()),
    }
}
