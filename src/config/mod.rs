//! Configuration: the raw serde types, loading (files, shapes, `$VAR`), and validation.
//!
//! The flow is `load` (text → [`raw::RawConfig`], structural errors with paths) → `validate`
//! (semantic errors with paths, all at once) → `crate::compile` (→ immutable snapshot).

pub mod env;
pub mod error;
pub mod load;
pub mod raw;
pub mod validate;

pub use error::{ConfigError, LoadError};
pub use load::{discover, load_checked, load_file, load_str, Format, LoadedConfig};
