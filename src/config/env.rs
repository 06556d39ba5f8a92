//! `$VAR` / `${VAR}` substitution in every string of a config document.
//!
//! `$$` is a literal `$`. A `$` not followed by a name or `{` stays as it is. An unset variable is
//! an error naming the field, so that a secret is never silently empty.

use serde_json::Value;

use super::ConfigError;

/// Substitutes variables in every string value of `doc`, in place. `lookup` answers a name.
pub fn substitute(
    doc: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match doc {
        Value::String(s) if s.contains('$') => match expand(s, lookup) {
            Ok(v) => {
                // `port: ${PORT}`: a value that is one variable and reads as a number or a
                // boolean takes that type, as if it had been written in place.
                let whole = is_single_reference(s);
                *doc = match v.as_str() {
                    "true" if whole => Value::Bool(true),
                    "false" if whole => Value::Bool(false),
                    n if whole && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                        .parse::<u64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(v)),
                    _ => Value::String(v),
                };
            }
            Err(message) => errors.push(ConfigError::new(path, message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{path}[{i}]"), lookup, errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                substitute(item, &child, lookup, errors);
            }
        }
        _ => {}
    }
}

/// Expands the variables of one string.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(braced) = after.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                return Err("unterminated `${`: add the closing `}`".to_string());
            };
            let name = &braced[..end];
            if !is_name(name) {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            out.push_str(&resolve(name, lookup)?);
            rest = &braced[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphanumeric()) || (i == 0 && c.is_ascii_digit())
                })
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(&resolve(&after[..len], lookup)?);
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `s` is exactly one `$NAME` or `${NAME}`.
pub fn is_single_reference(s: &str) -> bool {
    match s.strip_prefix('$') {
        Some(rest) => match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(name) => is_name(name),
            None => is_name(rest),
        },
        None => false,
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn resolve(name: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("up".into()),
            "PORT" => Some("4000".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_both_forms_and_escapes() {
        assert_eq!(
            expand("http://$HOST:${PORT}/", &env).unwrap(),
            "http://up:4000/"
        );
        assert_eq!(expand("cost $$5", &env).unwrap(), "cost $5");
        assert_eq!(expand("a $ b", &env).unwrap(), "a $ b");
        assert_eq!(expand("$1", &env).unwrap(), "$1");
    }

    #[test]
    fn a_whole_variable_takes_number_or_bool_type() {
        let mut doc =
            serde_json::json!({"port": "${PORT}", "url": "http://$HOST:$PORT", "x": "$HOST"});
        let mut errors = Vec::new();
        substitute(&mut doc, "", &env, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(doc["port"], serde_json::json!(4000));
        assert_eq!(doc["url"], "http://up:4000");
        assert_eq!(doc["x"], "up");
    }

    #[test]
    fn unset_is_an_error_with_the_path() {
        let mut doc = serde_json::json!({"proxy": {"/a": "$NOPE"}});
        let mut errors = Vec::new();
        substitute(&mut doc, "", &env, &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "proxy./a");
        assert!(errors[0].message.contains("NOPE"));
    }
}
