//! `ipFilter`: allow and deny lists of client addresses (IPv4 and IPv6 CIDRs), checked after
//! routing and before admission. Owns the validation of the lists, their compiled form and the
//! per-request check (which address is judged, deny before allow, dry-run logging).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

use super::Peer;

/// The reason of every refusal (the status is 403).
const DENIED: &str = "client address denied";

/// A compiled `ipFilter`: precompiled networks, matched by a linear scan (no allocation).
#[derive(Debug)]
pub struct IpFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    trust_proxy: bool,
    dry_run: bool,
}

/// Parses one entry (an address or a CIDR); IPv4-mapped IPv6 forms become IPv4.
fn parse_entry(entry: &str) -> Option<IpNet> {
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(entry.parse::<IpAddr>().ok()?),
    };
    Some(canonical_net(net.trunc()))
}

/// `::ffff:a.b.c.d/n` with `n >= 96` is the IPv4 network `a.b.c.d/(n-96)`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

/// Checks a site's `ipFilter`; every error carries its field path. `has_trusted_proxies`: the
/// site lists at least one `trustedProxies` entry (required by `trustProxy: true`).
pub fn validate(raw: &raw::IpFilter, has_trusted_proxies: bool, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (field, list) in [("allow", &raw.allow), ("deny", &raw.deny)] {
        for (i, entry) in list.iter().flatten().enumerate() {
            if parse_entry(entry).is_none() {
                errors.push(ConfigError::new(
                    format!("{path}.{field}[{i}]"),
                    format!(
                        "`{entry}` is not an IP address or a CIDR (such as 10.0.0.0/8 or fd00::/8)"
                    ),
                ));
            }
        }
    }
    let empty = |l: &Option<Vec<String>>| l.as_ref().is_none_or(Vec::is_empty);
    if empty(&raw.allow) && empty(&raw.deny) {
        errors.push(ConfigError::new(
            path,
            "needs at least one entry in `allow` or `deny`",
        ));
    }
    if raw.trust_proxy == Some(true) && !has_trusted_proxies {
        errors.push(ConfigError::new(
            format!("{path}.trustProxy"),
            "needs the site's `trustedProxies`: add trustedProxies (the addresses of the proxies \
             in front of Conduit), otherwise X-Forwarded-For is never believed",
        ));
    }
    errors
}

/// Compiles a validated `ipFilter` (an entry that does not parse is skipped; validation
/// reports it).
pub fn compile(raw: &raw::IpFilter) -> IpFilter {
    let nets = |l: &Option<Vec<String>>| -> Vec<IpNet> {
        l.iter().flatten().filter_map(|e| parse_entry(e)).collect()
    };
    IpFilter {
        allow: nets(&raw.allow),
        deny: nets(&raw.deny),
        trust_proxy: raw.trust_proxy == Some(true),
        dry_run: raw.dry_run == Some(true),
    }
}

/// Why an address would be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// It matches this `deny` entry.
    Denied(IpNet),
    /// `allow` is set and it matches no entry (or there is no address).
    NotAllowed,
}

impl IpFilter {
    /// Whether the request's client may pass (403 otherwise). With `trustProxy` the client
    /// address after `trustedProxies` is judged, else the socket peer. With `dryRun` it always
    /// passes and a would-be refusal is logged.
    pub fn check(&self, peer: Peer) -> Result<(), Refusal> {
        let addr = if self.trust_proxy {
            peer.client
        } else {
            peer.peer
        };
        let verdict = self.judge(addr);
        if verdict == Verdict::Pass {
            return Ok(());
        }
        if self.dry_run {
            // Only the address and the rule: never a header value or credential.
            match (verdict, addr.map(|a| a.to_canonical())) {
                (Verdict::Denied(rule), Some(client)) => tracing::info!(
                    client = %client,
                    rule = %rule,
                    "ipFilter dry run: would deny (matches a deny entry)"
                ),
                (_, Some(client)) => tracing::info!(
                    client = %client,
                    rule = "allow",
                    "ipFilter dry run: would deny (matches no allow entry)"
                ),
                (_, None) => tracing::info!(
                    rule = "allow",
                    "ipFilter dry run: would deny (no client address)"
                ),
            }
            return Ok(());
        }
        Err(Refusal {
            status: 403,
            reason: DENIED,
            challenge: None,
        })
    }

    fn judge(&self, addr: Option<IpAddr>) -> Verdict {
        let Some(addr) = addr.map(|a| a.to_canonical()) else {
            return if self.allow.is_empty() {
                Verdict::Pass
            } else {
                Verdict::NotAllowed
            };
        };
        if let Some(net) = self.deny.iter().find(|n| n.contains(&addr)) {
            return Verdict::Denied(*net);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&addr)) {
            return Verdict::NotAllowed;
        }
        Verdict::Pass
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    fn filter(allow: &[&str], deny: &[&str], trust_proxy: bool, dry_run: bool) -> IpFilter {
        let raw = raw::IpFilter {
            allow: list(allow),
            deny: list(deny),
            trust_proxy: Some(trust_proxy),
            dry_run: Some(dry_run),
        };
        assert!(validate(&raw, true, "ipFilter").is_empty());
        compile(&raw)
    }

    fn at(ip: &str) -> Peer {
        let ip: IpAddr = ip.parse().unwrap();
        Peer {
            peer: Some(ip),
            client: Some(ip),
            trusted: false,
            tls: false,
        }
    }

    fn passes(f: &IpFilter, ip: &str) -> bool {
        f.check(at(ip)).is_ok()
    }

    #[test]
    fn deny_is_checked_first() {
        let f = filter(&["10.0.0.0/8"], &["10.1.0.0/16"], false, false);
        assert!(passes(&f, "10.2.3.4"));
        assert!(!passes(&f, "10.1.2.3"));
        assert!(!passes(&f, "192.168.1.1"));
        let r = f.check(at("10.1.2.3")).unwrap_err();
        assert_eq!((r.status, r.reason), (403, "client address denied"));
    }

    #[test]
    fn deny_only_lets_others_through() {
        let f = filter(&[], &["192.0.2.7", "2001:db8::/32"], false, false);
        assert!(!passes(&f, "192.0.2.7"));
        assert!(passes(&f, "192.0.2.8"));
        assert!(!passes(&f, "2001:db8::1"));
        assert!(passes(&f, "2001:db9::1"));
    }

    #[test]
    fn ipv6_allow_and_deny() {
        let f = filter(&["::1/128", "fd00::/8"], &["fd00:dead::/32"], false, false);
        assert!(passes(&f, "::1"));
        assert!(passes(&f, "fd12::5"));
        assert!(!passes(&f, "fd00:dead::5"));
        assert!(!passes(&f, "::2"));
        assert!(!passes(&f, "127.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let f = filter(&[], &["10.0.0.0/8"], false, false);
        assert!(!passes(&f, "::ffff:10.0.0.1"));
        assert!(passes(&f, "::ffff:11.0.0.1"));
        // A mapped entry matches the plain IPv4 address too.
        let f = filter(&["::ffff:192.168.0.0/112"], &[], false, false);
        assert!(passes(&f, "192.168.4.5"));
        assert!(passes(&f, "::ffff:192.168.4.5"));
        assert!(!passes(&f, "192.169.0.1"));
    }

    #[test]
    fn host_bits_in_a_cidr_are_ignored() {
        let f = filter(&["10.1.2.3/8"], &[], false, false);
        assert!(passes(&f, "10.200.0.1"));
    }

    #[test]
    fn trust_proxy_chooses_the_judged_address() {
        let peer = Peer {
            peer: Some("127.0.0.1".parse().unwrap()),
            client: Some("10.1.2.3".parse().unwrap()),
            trusted: true,
            tls: false,
        };
        assert!(filter(&[], &["10.0.0.0/8"], true, false)
            .check(peer)
            .is_err());
        assert!(filter(&[], &["10.0.0.0/8"], false, false)
            .check(peer)
            .is_ok());
        assert!(filter(&[], &["127.0.0.1"], false, false)
            .check(peer)
            .is_err());
        assert!(filter(&[], &["127.0.0.1"], true, false).check(peer).is_ok());
    }

    #[test]
    fn no_address_fails_only_an_allow_list() {
        let none = Peer {
            peer: None,
            client: None,
            trusted: false,
            tls: false,
        };
        assert!(filter(&["10.0.0.0/8"], &[], false, false)
            .check(none)
            .is_err());
        assert!(filter(&[], &["10.0.0.0/8"], false, false)
            .check(none)
            .is_ok());
    }

    #[test]
    fn dry_run_never_refuses() {
        let f = filter(&["10.0.0.0/8"], &["127.0.0.1"], false, true);
        assert!(passes(&f, "127.0.0.1"));
        assert!(passes(&f, "192.168.0.1"));
        assert_eq!(
            f.judge(Some("127.0.0.1".parse().unwrap())),
            Verdict::Denied("127.0.0.1/32".parse().unwrap())
        );
        assert_eq!(
            f.judge(Some("192.168.0.1".parse().unwrap())),
            Verdict::NotAllowed
        );
    }

    fn errors(raw: &raw::IpFilter, trusted: bool) -> Vec<String> {
        validate(raw, trusted, "sites[0].ipFilter")
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn validation_names_each_bad_entry() {
        let raw = raw::IpFilter {
            allow: list(&["10.0.0.0/8", "::1", "10.0.0.0/33"]),
            deny: list(&["nope"]),
            ..Default::default()
        };
        let e = errors(&raw, false);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("sites[0].ipFilter.allow[2]: "), "{e:?}");
        assert!(e[1].starts_with("sites[0].ipFilter.deny[0]: "), "{e:?}");
    }

    #[test]
    fn validation_needs_an_entry() {
        let e = errors(&raw::IpFilter::default(), false);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("sites[0].ipFilter: "), "{e:?}");
        let raw = raw::IpFilter {
            allow: list(&[]),
            deny: list(&[]),
            ..Default::default()
        };
        assert_eq!(errors(&raw, false).len(), 1);
    }

    #[test]
    fn trust_proxy_needs_trusted_proxies() {
        let raw = raw::IpFilter {
            deny: list(&["10.0.0.0/8"]),
            trust_proxy: Some(true),
            ..Default::default()
        };
        let e = errors(&raw, false);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("sites[0].ipFilter.trustProxy: "), "{e:?}");
        assert!(e[0].contains("trustedProxies"));
        assert!(errors(&raw, true).is_empty());
    }
}
