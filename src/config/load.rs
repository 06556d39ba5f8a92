//! Reading a config file: discovery, YAML/JSON parsing, the three shapes, `$VAR` substitution and
//! the structural (serde) check that reports every bad field with its path.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::raw::{RawConfig, Site};
use super::{env, ConfigError, LoadError};

/// File names tried, in order, when no `-c FILE` is given.
pub const DEFAULT_FILES: [&str; 3] = ["conduit.yaml", "conduit.yml", "conduit.json"];

/// How many structural errors one document may report before the rest are dropped.
const MAX_ERRORS: usize = 100;

/// The syntax a config document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON for `.json` files, YAML for everything else.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// The three shapes a document may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Top-level site keys.
    SingleSite,
    /// An array of sites.
    SiteList,
    /// `{version, global, sites}`.
    Full,
}

/// A parsed, structurally valid document.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub raw: RawConfig,
    /// Path prefix of each site as the file spells it (`""`, `[1]` or `sites[1]`).
    pub site_paths: Vec<String>,
    pub shape: Shape,
    pub source: Option<PathBuf>,
}

impl LoadedConfig {
    /// The path of field `field` of site `index`, as the file spells it.
    pub fn site_field(&self, index: usize, field: &str) -> String {
        join(self.site_paths.get(index).map_or("", String::as_str), field)
    }
}

/// Joins a prefix and a field with a dot, leaving out empty parts.
pub fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (_, true) => prefix.to_string(),
        _ if field.starts_with('[') => format!("{prefix}{field}"),
        _ => format!("{prefix}.{field}"),
    }
}

/// Finds the config file: `explicit` when given, else the first default name in `dir`.
pub fn discover(explicit: Option<&Path>, dir: &Path) -> Result<PathBuf, LoadError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    DEFAULT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LoadError::NotFound(dir.to_path_buf()))
}

/// Reads and loads a file, substituting variables from the process environment.
pub fn load_file(path: &Path) -> Result<LoadedConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lookup = |name: &str| std::env::var(name).ok();
    let mut loaded = load_str(
        &text,
        Format::from_path(path),
        &path.display().to_string(),
        &lookup,
    )?;
    loaded.source = Some(path.to_path_buf());
    Ok(loaded)
}

/// Parses a document of `format` into a [`serde_json::Value`] (no substitution, no checks).
pub fn parse_document(text: &str, format: Format, name: &str) -> Result<Value, LoadError> {
    let syntax = |message: String| LoadError::Syntax {
        path: name.to_string(),
        message,
    };
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string())),
        Format::Yaml => {
            if text.trim().is_empty() {
                return Ok(Value::Object(Map::new()));
            }
            serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))
        }
    }
}

/// Loads a document from text. `lookup` resolves `$VAR`s.
pub fn load_str(
    text: &str,
    format: Format,
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, LoadError> {
    let doc = parse_document(text, format, name)?;
    load_value(doc, lookup)
}

/// Checks the structure of a document without its variables: values that are exactly one
/// `$VAR` are left out (their type is only known once the variable is), other variables read
/// as empty. Used by `conduit fmt`, which keeps references as written.
pub fn check_structure(mut doc: Value) -> Vec<ConfigError> {
    fn drop_references(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(
                    |_, item| !matches!(item, Value::String(s) if env::is_single_reference(s)),
                );
                map.values_mut().for_each(drop_references);
            }
            Value::Array(items) => items.iter_mut().for_each(drop_references),
            _ => {}
        }
    }
    drop_references(&mut doc);
    match load_value(doc, &|_| Some(String::new())) {
        Ok(_) => Vec::new(),
        Err(e) => e.field_errors().to_vec(),
    }
}

/// Loads a parsed document: substitution, shape, structure.
pub fn load_value(
    mut doc: Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, LoadError> {
    let mut errors = Vec::new();
    env::substitute(&mut doc, "", lookup, &mut errors);

    let (shape, raw, site_paths) = match doc {
        Value::Array(items) => {
            let mut sites = Vec::with_capacity(items.len());
            let mut paths = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let prefix = format!("[{i}]");
                sites.push(
                    deserialize_collect::<Site>(item, &prefix, &mut errors).unwrap_or_default(),
                );
                paths.push(prefix);
            }
            let raw = RawConfig {
                sites,
                ..RawConfig::default()
            };
            (Shape::SiteList, raw, paths)
        }
        Value::Object(map) if map.contains_key("sites") => {
            let raw = deserialize_collect::<RawConfig>(Value::Object(map), "", &mut errors)
                .unwrap_or_default();
            let paths = (0..raw.sites.len())
                .map(|i| format!("sites[{i}]"))
                .collect();
            (Shape::Full, raw, paths)
        }
        Value::Object(mut map) => {
            for key in ["global", "version"] {
                if map.remove(key).is_some() {
                    errors.push(ConfigError::new(
                        key,
                        format!("`{key}` needs the full shape: {{version, global, sites: [...]}} with this site under `sites`"),
                    ));
                }
            }
            let site = deserialize_collect::<Site>(Value::Object(map), "", &mut errors)
                .unwrap_or_default();
            let raw = RawConfig {
                sites: vec![site],
                ..RawConfig::default()
            };
            (Shape::SingleSite, raw, vec![String::new()])
        }
        _ => {
            return Err(LoadError::Invalid(vec![ConfigError::new(
                "",
                "expected a site (a map), a list of sites, or {version, global, sites}",
            )]))
        }
    };
    let loaded = LoadedConfig {
        raw,
        site_paths,
        shape,
        source: None,
    };
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadError::Structure {
            errors,
            partial: Box::new(loaded),
        })
    }
}

/// Loads a file and validates it: every structural and semantic error at once. Structural errors
/// leave their node out, and the rest of the document is still checked.
pub fn load_checked(path: &Path) -> Result<LoadedConfig, LoadError> {
    let (loaded, mut errors) = match load_file(path) {
        Ok(loaded) => (loaded, Vec::new()),
        Err(LoadError::Structure { errors, partial }) => (*partial, errors),
        Err(e) => return Err(e),
    };
    let structural: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    for e in super::validate::validate(&loaded) {
        // A node removed for a structural error is not reported a second time.
        if !structural
            .iter()
            .any(|p| e.path == *p || e.path.starts_with(&format!("{p}.")))
        {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadError::Invalid(errors))
    }
}

/// Deserialises `value` into `T`, collecting every structural error with its path: after each
/// error the offending node is removed and deserialisation is tried again.
pub fn deserialize_collect<T: DeserializeOwned>(
    mut value: Value,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    for _ in 0..MAX_ERRORS {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Some(t),
            Err(err) => err,
        };
        let mut segments = path_segments(err.path());
        let inner = err.inner().to_string();
        let (message, unknown) = describe(&inner);
        if let Some(key) = &unknown {
            // serde reports an unknown key at the map that holds it.
            if segments.last().map(Segment::as_key) != Some(Some(key.as_str())) {
                segments.push(Segment::Key(key.clone()));
            }
        }
        errors.push(ConfigError::new(join(prefix, &render(&segments)), message));
        if !remove(&mut value, &segments) {
            return None;
        }
    }
    None
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    fn as_key(&self) -> Option<&str> {
        match self {
            Segment::Key(k) => Some(k),
            Segment::Index(_) => None,
        }
    }
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|s| match s {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { variant } => Some(Segment::Key(variant.clone())),
            S::Unknown => None,
        })
        .collect()
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

/// Removes the node at `segments`; false when there is nothing to remove (the root).
fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for s in parents {
        node = match (s, node) {
            (Segment::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        (Segment::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Turns serde's message into ours; for an unknown field, also returns the field's name.
fn describe(inner: &str) -> (String, Option<String>) {
    let Some(rest) = inner.strip_prefix("unknown field `") else {
        return (inner.to_string(), None);
    };
    let Some(end) = rest.find('`') else {
        return (inner.to_string(), None);
    };
    let key = &rest[..end];
    let expected: Vec<&str> = rest[end..].split('`').skip(2).step_by(2).collect();
    let best = expected
        .iter()
        .map(|candidate| (strsim::jaro_winkler(key, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let message = match best {
        Some((_, candidate)) => format!("unknown field `{key}` (did you mean `{candidate}`?)"),
        None => format!("unknown field `{key}`"),
    };
    (message, Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn errors_of(text: &str) -> Vec<String> {
        match load_str(text, Format::Yaml, "t.yaml", &no_env) {
            Ok(_) => Vec::new(),
            Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn three_shapes() {
        let single = load_str("proxy: http://a:1\n", Format::Yaml, "t", &no_env).unwrap();
        assert_eq!(single.shape, Shape::SingleSite);
        let list = load_str(
            "- proxy: http://a:1\n- port: 81\n  proxy: http://b:1\n",
            Format::Yaml,
            "t",
            &no_env,
        )
        .unwrap();
        assert_eq!(list.raw.sites.len(), 2);
        assert_eq!(list.site_field(1, "proxy"), "[1].proxy");
        let full = load_str(
            r#"{"global": {"workers": 2}, "sites": [{"proxy": "http://a:1"}]}"#,
            Format::Json,
            "t",
            &no_env,
        )
        .unwrap();
        assert_eq!(full.raw.global.workers, Some(2));
        assert_eq!(full.site_field(0, "proxy"), "sites[0].proxy");
    }

    #[test]
    fn all_errors_with_paths_and_suggestions() {
        let errs = errors_of(
            "sites:\n  - prxy: http://a:1\n    port: abc\n  - proxy:\n      /api:\n        targets: [http://a:1]\n        timeout: {conectMs: 5}\n",
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e
                    .starts_with("sites[0].prxy: unknown field `prxy` (did you mean `proxy`?)")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("sites[0].port: ")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("sites[1].proxy./api.timeout.conectMs: unknown field")),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_error_is_reported() {
        let err = load_str("proxy: [", Format::Yaml, "t.yaml", &no_env).unwrap_err();
        assert!(matches!(err, LoadError::Syntax { .. }));
    }
}
