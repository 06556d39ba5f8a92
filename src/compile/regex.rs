//! Regexes from the config: bounded in size, checked on their own, reported on one line.

use regex::Regex;

/// Bound on compiled regex size (bytes of program), so a config cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a bounded-size regex; the error is one line naming the pattern.
pub fn regex_bounded(pattern: &str) -> Result<Regex, String> {
    build_regex(pattern, pattern)
}

/// Compiles an anchored (whole-value) regex of bounded size. The pattern is checked on its own
/// first, so that an unbalanced `)` cannot escape the anchors.
pub fn regex_limited(pattern: &str) -> Result<Regex, String> {
    build_regex(pattern, pattern)?;
    build_regex(&format!("^(?:{pattern})$"), pattern)
}

fn build_regex(source: &str, shown: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let why = match &e {
                regex::Error::Syntax(text) => text
                    .lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with("error:"))
                    .map(|l| {
                        l.trim_start()
                            .trim_start_matches("error:")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_else(|| "syntax error".into()),
                regex::Error::CompiledTooBig(_) => "pattern too large".into(),
                _ => e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("invalid")
                    .to_string(),
            };
            format!("invalid regex `{shown}`: {why}")
        })
}
