//! Errors of loading and validating a configuration: each one names its field path.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration, at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path as the file spells it, e.g. `sites[1].proxy./api.timeout.connectMs`.
    pub path: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(top level): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be turned into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no config file found: looked for conduit.yaml, conduit.yml and conduit.json in {0}")]
    NotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("syntax error in {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{}", list(.0))]
    Invalid(Vec<ConfigError>),
    /// Structural errors, with what could be read of the document (the bad nodes left out).
    #[error("{}", list(errors))]
    Structure {
        errors: Vec<ConfigError>,
        partial: Box<crate::config::LoadedConfig>,
    },
}

impl LoadError {
    /// The field errors, when the file parsed but its content is wrong.
    pub fn field_errors(&self) -> &[ConfigError] {
        match self {
            LoadError::Invalid(errors) | LoadError::Structure { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn list(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
