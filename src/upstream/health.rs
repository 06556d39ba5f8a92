//! Active health checks: which statuses pass, and the background service that probes every
//! target of the routes that configure `healthCheck`.

/// The response statuses that count as healthy: `200`, `200-399`, `200,204,301-302`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusSet(Vec<(u16, u16)>);

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl StatusSet {
    /// Parses a comma-separated list of statuses and inclusive ranges.
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let bad = || format!("`{text}` is not a status list such as `200`, `200-399` or `200,204`");
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(bad());
            }
            ranges.push((lo, hi));
        }
        Ok(StatusSet(ranges))
    }

    /// Whether `status` passes.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets() {
        let s = StatusSet::parse("200, 204, 300-302").unwrap();
        assert!(s.contains(200) && s.contains(204) && s.contains(301));
        assert!(!s.contains(201) && !s.contains(500));
        assert!(StatusSet::default().contains(399));
        assert!(StatusSet::parse("abc").is_err());
        assert!(StatusSet::parse("500-400").is_err());
        assert!(StatusSet::parse("99").is_err());
    }
}
