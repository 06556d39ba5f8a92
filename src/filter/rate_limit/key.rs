//! What a limit counts by (`keyBy`), and a request's key: a hash for the in-memory store and a
//! bounded byte string for Redis.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;

use http::HeaderName;

/// `keyBy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBy {
    /// The client address (after `trustedProxies`).
    Ip,
    /// The value of a request header; the client address when the header is absent.
    Header(HeaderName),
    /// The identified consumer; the client address when no consumer was identified.
    Consumer,
}

impl KeyBy {
    /// Parses `ip`, `header:<Name>` or `consumer`.
    pub fn parse(s: &str) -> Result<KeyBy, String> {
        match s {
            "ip" => Ok(KeyBy::Ip),
            "consumer" => Ok(KeyBy::Consumer),
            _ => match s.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                    .map(KeyBy::Header)
                    .map_err(|_| format!("`{name}` is not a valid header name")),
                None => Err(format!(
                    "unknown key `{s}`: use `ip`, `header:<Name>` or `consumer`"
                )),
            },
        }
    }

    /// The form written in the config.
    pub fn as_config(&self) -> String {
        match self {
            KeyBy::Ip => "ip".into(),
            KeyBy::Header(h) => format!("header:{h}"),
            KeyBy::Consumer => "consumer".into(),
        }
    }

    /// The key of a request.
    pub fn key<'a>(
        &self,
        headers: &'a http::HeaderMap,
        client: Option<IpAddr>,
        consumer: Option<&'a str>,
    ) -> Key<'a> {
        let by_ip = || client.map_or(Key::Unknown, |ip| Key::Ip(client_block(ip)));
        match self {
            KeyBy::Ip => by_ip(),
            KeyBy::Header(name) => headers
                .get(name)
                .map_or_else(by_ip, |v| Key::Header(v.as_bytes())),
            KeyBy::Consumer => consumer.map_or_else(by_ip, Key::Consumer),
        }
    }
}

/// The address a client is counted under: an IPv4 address as it is (IPv4-mapped IPv6 too), an
/// IPv6 address by its /64 (one host or site usually holds a whole /64, so counting each address
/// apart would let one client take fresh buckets at will and crowd others out of the store).
pub fn client_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// One request's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    Ip(IpAddr),
    Header(&'a [u8]),
    Consumer(&'a str),
    /// No address known (not expected on TCP listeners): one shared bucket.
    Unknown,
}

/// Longest key part written into a Redis key as is; longer ones are replaced by a digest.
const MAX_REDIS_PART: usize = 128;

impl Key<'_> {
    /// A 64-bit hash, keyed per process (so clients cannot aim at collisions).
    pub fn hash(&self) -> u64 {
        static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut h = STATE
            .get_or_init(std::collections::hash_map::RandomState::new)
            .build_hasher();
        match self {
            Key::Ip(IpAddr::V4(a)) => {
                h.write_u8(4);
                h.write(&a.octets());
            }
            Key::Ip(IpAddr::V6(a)) => {
                h.write_u8(6);
                h.write(&a.octets());
            }
            Key::Header(v) => {
                h.write_u8(b'h');
                h.write(v);
            }
            Key::Consumer(c) => {
                h.write_u8(b'c');
                h.write(c.as_bytes());
            }
            Key::Unknown => h.write_u8(0),
        }
        h.finish()
    }

    /// The part of the Redis key after the limit's prefix: `ip:<addr>`, `h:<value>`,
    /// `c:<name>` (a value longer than 128 bytes becomes `h#<sha-256 hex>`).
    pub fn redis_part(&self) -> Vec<u8> {
        let (tag, value): (&str, &[u8]) = match self {
            Key::Ip(ip) => return format!("ip:{ip}").into_bytes(),
            Key::Header(v) => ("h", v),
            Key::Consumer(c) => ("c", c.as_bytes()),
            Key::Unknown => return b"unknown".to_vec(),
        };
        if value.len() > MAX_REDIS_PART {
            return format!("{tag}#{}", super::hex_digest(value)).into_bytes();
        }
        let mut out = Vec::with_capacity(tag.len() + 1 + value.len());
        out.extend_from_slice(tag.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_block(a), client_block(b));
        assert_ne!(client_block(a), client_block(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_block(v4), v4);
        assert_eq!(client_block(mapped), v4);
    }

    #[test]
    fn parses_and_extracts_with_fallbacks() {
        let ip: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-client", "alpha".parse().unwrap());
        let by_header = KeyBy::parse("header:X-Client").unwrap();
        assert_eq!(by_header.as_config(), "header:x-client");
        assert_eq!(
            by_header.key(&headers, Some(ip), None),
            Key::Header(b"alpha")
        );
        let absent = KeyBy::parse("header:X-Other").unwrap();
        // A mapped IPv4 address counts as its IPv4 form.
        assert_eq!(
            absent.key(&headers, Some(ip), None),
            Key::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            KeyBy::Consumer.key(&headers, Some(ip), Some("acme")),
            Key::Consumer("acme")
        );
        assert_eq!(KeyBy::Consumer.key(&headers, None, None), Key::Unknown);
        assert!(KeyBy::parse("cookie:x").is_err());
        assert!(KeyBy::parse("header:bad name").is_err());
    }

    #[test]
    fn hashes_and_redis_parts_differ_by_kind() {
        let a = Key::Header(b"1.2.3.4");
        let b = Key::Ip("1.2.3.4".parse().unwrap());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), Key::Header(b"1.2.3.4").hash());
        assert_eq!(a.redis_part(), b"h:1.2.3.4");
        assert_eq!(b.redis_part(), b"ip:1.2.3.4");
        let long = vec![b'x'; 500];
        let part = Key::Header(&long).redis_part();
        assert!(part.starts_with(b"h#") && part.len() < 40);
    }
}
