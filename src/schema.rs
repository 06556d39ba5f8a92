//! The JSON Schema of the config file, generated from the raw config types.

use crate::config::raw::{RawConfig, Site};

/// The schema as pretty JSON. Accepts the `{version, global, sites}` shape; a single site and
/// a list of sites use the `Site` definition.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(RawConfig);
    let site = schemars::schema_for!(Site);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "Conduit configuration".into());
        obj.insert("x-site".into(), site.to_value());
    }
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
