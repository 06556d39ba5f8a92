//! Path globs: `*` matches within one path segment, `**` across segments, `?` one character.

use regex::Regex;

/// A compiled path glob.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    regex: Regex,
}

impl Glob {
    /// Compiles `pattern`, which must start with `/`.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern `{pattern}` must start with `/`"));
        }
        if pattern.len() > 1024 {
            return Err("path pattern is longer than 1024 characters".into());
        }
        let mut re = String::with_capacity(pattern.len() * 2 + 2);
        re.push('^');
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    // `/**` at the end also matches the bare prefix.
                    if re.ends_with('/') && chars.peek().is_none() {
                        re.pop();
                        re.push_str("(?:/.*)?");
                    } else {
                        re.push_str(".*");
                    }
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| e.to_string())?;
        Ok(Glob {
            source: pattern.to_string(),
            regex,
        })
    }

    /// Whether `path` (without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn star_and_double_star() {
        let g = Glob::parse("/api/*/items").unwrap();
        assert!(g.matches("/api/v1/items"));
        assert!(!g.matches("/api/v1/x/items"));
        let g = Glob::parse("/static/**").unwrap();
        assert!(g.matches("/static"));
        assert!(g.matches("/static/a/b.css"));
        assert!(!g.matches("/staticx"));
        let g = Glob::parse("/a.b").unwrap();
        assert!(!g.matches("/aXb"));
        assert!(Glob::parse("nope").is_err());
    }
}
