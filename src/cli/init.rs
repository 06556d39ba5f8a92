//! `conduit init`: writes a starter config that runs as is — interactively, or with `--yes`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::fmt::render;
use crate::config::Format;

/// Options of `conduit init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Accept the defaults without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Upstream URL to proxy to.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:3000")]
    pub proxy: String,
    /// Serve static files from this directory (not supported yet).
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Output file (default conduit.yaml, or conduit.json with --format json).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// yaml or json.
    #[arg(long, value_parser = ["yaml", "json"])]
    pub format: Option<String>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Runs `conduit init`; returns the exit code.
pub fn init(args: &InitArgs, cwd: &Path) -> i32 {
    if args.static_dir.is_some() {
        eprintln!("error: --static-dir: static file serving is not supported yet by this version");
        return 1;
    }
    let mut port = args.port;
    let mut proxy = args.proxy.clone();
    let mut format = match (&args.format, &args.output) {
        (Some(f), _) if f == "json" => Format::Json,
        (Some(_), _) => Format::Yaml,
        (None, Some(o)) => Format::from_path(o),
        (None, None) => Format::Yaml,
    };
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("error: standard input is not a terminal; pass --yes to accept the defaults");
            return 1;
        }
        match ask(port, &proxy, format) {
            Ok((p, u, f)) => (port, proxy, format) = (p, u, f),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
    if let Err(why) = crate::upstream::target::TargetUrl::parse(&proxy) {
        eprintln!("error: --proxy: {why}");
        return 1;
    }
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(match format {
            Format::Json => "conduit.json",
            Format::Yaml => "conduit.yaml",
        })
    });
    let output = if output.is_absolute() {
        output
    } else {
        cwd.join(output)
    };
    if output.exists() && !args.force {
        eprintln!(
            "error: {} exists; pass --force to overwrite",
            output.display()
        );
        return 1;
    }
    let doc = starter(port, &proxy);
    let mut text = match render(&doc, format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if format == Format::Yaml {
        text = format!("# Conduit configuration, written by `conduit init`.\n# Check it with `conduit validate`, serve it with `conduit -c {}`.\n{text}", output.display());
    }
    if let Err(e) = std::fs::write(&output, text) {
        eprintln!("error: cannot write {}: {e}", output.display());
        return 1;
    }
    println!("wrote {}", output.display());
    0
}

/// The starter document.
pub fn starter(port: u16, proxy: &str) -> serde_json::Value {
    json!({
        "port": port,
        "logging": "combined",
        "healthCheck": true,
        "proxy": { "/": proxy },
    })
}

fn ask(port: u16, proxy: &str, format: Format) -> Result<(u16, String, Format), dialoguer::Error> {
    let port: u16 = dialoguer::Input::new()
        .with_prompt("Port to listen on")
        .default(port)
        .interact_text()?;
    let proxy: String = dialoguer::Input::new()
        .with_prompt("Upstream URL")
        .default(proxy.to_string())
        .validate_with(|u: &String| crate::upstream::target::TargetUrl::parse(u).map(|_| ()))
        .interact_text()?;
    let formats = ["yaml", "json"];
    let default = usize::from(format == Format::Json);
    let choice = dialoguer::Select::new()
        .with_prompt("File format")
        .items(&formats)
        .default(default)
        .interact()?;
    Ok((
        port,
        proxy,
        if choice == 1 {
            Format::Json
        } else {
            Format::Yaml
        },
    ))
}
