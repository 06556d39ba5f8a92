//! The command line: `conduit [run]`, `validate`, `fmt`, `init`, `probe`, `schema`,
//! `completions`, `man`.
//!
//! Exit codes: 0 success, 1 a failed command (invalid config, start error), 2 a usage error.

pub mod fmt;
pub mod init;
pub mod probe;

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::compile::{compile, Mode, Registries};
use crate::config::{self, LoadError};

/// Conduit: a reverse proxy and API gateway driven by one YAML/JSON file.
#[derive(Debug, Parser)]
#[command(name = "conduit", version = version(), about, long_about = None)]
pub struct Cli {
    /// Config file (default: conduit.yaml, conduit.yml or conduit.json in the working directory).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands; none means `run`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the configuration (the default).
    Run,
    /// Check a config file: exit 0 when valid, 1 with one line per error otherwise.
    Validate,
    /// Reformat a config file, keeping YAML as YAML and JSON as JSON.
    Fmt {
        /// Rewrite the file instead of printing the result.
        #[arg(long)]
        write: bool,
    },
    /// Write a starter config (asks questions unless --yes).
    Init(init::InitArgs),
    /// Check that every upstream target answers HTTP: exit 0 when all do, 1 otherwise.
    Probe(probe::ProbeArgs),
    /// Print the JSON Schema of the config file.
    Schema,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
}

fn version() -> String {
    let features = crate::ext::compiled_features();
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };
    format!("{} (features: {features})", env!("CARGO_PKG_VERSION"))
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config.as_deref(), &cwd),
        Command::Validate => validate(cli.config.as_deref(), &cwd),
        Command::Fmt { write } => fmt::fmt(cli.config.as_deref(), &cwd, write),
        Command::Init(args) => init::init(&args, &cwd),
        Command::Probe(args) => probe::probe(cli.config.as_deref(), &cwd, &args),
        Command::Schema => {
            println!("{}", crate::schema::json_schema());
            0
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "conduit",
                &mut std::io::stdout(),
            );
            0
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    }
}

fn run(explicit: Option<&Path>, cwd: &Path) -> i32 {
    crate::observe::logging::init("info,pingora_core=warn,pingora_proxy=warn");
    let path = match config::discover(explicit, cwd) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match crate::server::run(&path) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            1
        }
    }
}

/// `conduit validate`: prints `ok` or one line per error.
pub fn validate(explicit: Option<&Path>, cwd: &Path) -> i32 {
    let path = match config::discover(explicit, cwd) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let loaded = match config::load_checked(&path) {
        Ok(l) => l,
        Err(LoadError::Invalid(errors)) => return report(&path, &errors),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match compile(&loaded, &Registries::default(), 1, Mode::Check) {
        Ok(snapshot) => {
            let ports: Vec<u16> = snapshot.ports.keys().copied().collect();
            println!(
                "{}: ok ({} site(s) on port(s) {ports:?})",
                path.display(),
                loaded.raw.sites.len()
            );
            0
        }
        Err(errors) => report(&path, &errors),
    }
}

fn report(path: &Path, errors: &[config::ConfigError]) -> i32 {
    for e in errors {
        println!("{e}");
    }
    eprintln!("{}: {} error(s)", path.display(), errors.len());
    1
}
