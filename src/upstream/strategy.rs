//! Load-balancing strategies: how one target is picked among the usable ones.
//!
//! A strategy sees the targets through a `usable` function that answers, per index, whether the
//! target may take this request and with what effective weight (its configured weight scaled by
//! slow start, in thousandths). Targets that are down, ejected, open, full or already tried are
//! not usable; the strategy never allocates on the request path.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::endpoint::{mix, Endpoint};

/// What a hashing strategy hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashKey {
    Ip,
    Url,
    Header(http::HeaderName),
    Cookie(String),
}

impl HashKey {
    /// Parses `ip`, `url`, `header:<Name>`, `cookie:<Name>`.
    pub fn parse(text: &str) -> Option<HashKey> {
        match text.split_once(':') {
            None if text == "ip" => Some(HashKey::Ip),
            None if text == "url" => Some(HashKey::Url),
            Some(("header", n)) => http::HeaderName::from_bytes(n.as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", n)) if !n.is_empty() => Some(HashKey::Cookie(n.to_string())),
            _ => None,
        }
    }
}

/// A strategy and its selection state.
#[derive(Debug)]
pub enum Strategy {
    /// Smooth weighted round robin over a precomputed schedule.
    RoundRobin {
        schedule: Vec<u16>,
        next: AtomicUsize,
    },
    /// Weighted random.
    Random,
    /// Fewest requests in flight per unit of weight.
    LeastConn,
    /// Lowest peak-EWMA latency times requests in flight, per unit of weight.
    LeastTime,
    /// Rendezvous (highest random weight) hashing of the request key.
    Hash(HashKey),
    /// Power of two choices: two random targets, the one with fewer requests in flight.
    P2c,
}

/// Inputs of one pick besides the targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickInput {
    /// Hash of the request key (hash strategies).
    pub hash: u64,
    /// Current time in ms (latency decay).
    pub now: u64,
    /// A retry: round robin does not advance its position, so retries do not skew the rotation.
    pub retry: bool,
}

/// The longest round-robin schedule; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 16_384;

impl Strategy {
    /// The strategy named `name` over targets with `weights` (`hash_key` for hash strategies).
    pub fn new(name: &str, weights: &[u32], hash_key: Option<HashKey>) -> Strategy {
        match name {
            "random" => Strategy::Random,
            "least-conn" => Strategy::LeastConn,
            "least-response-time" => Strategy::LeastTime,
            "ip-hash" => Strategy::Hash(HashKey::Ip),
            "consistent-hash" => Strategy::Hash(hash_key.unwrap_or(HashKey::Ip)),
            "p2c" => Strategy::P2c,
            _ => Strategy::RoundRobin {
                schedule: schedule(weights),
                next: AtomicUsize::new(0),
            },
        }
    }

    /// The hash key this strategy needs, if any.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            Strategy::Hash(k) => Some(k),
            _ => None,
        }
    }

    /// Picks one of `eps`; `usable(i)` is the effective weight of target `i` (thousandths of its
    /// weight units) or `None` when it cannot take this request.
    pub fn pick(
        &self,
        eps: &[Endpoint],
        input: PickInput,
        usable: &dyn Fn(usize) -> Option<u64>,
    ) -> Option<usize> {
        let n = eps.len();
        match self {
            Strategy::RoundRobin { schedule, next } => {
                let len = schedule.len();
                if len == 0 {
                    return None;
                }
                let start = if input.retry {
                    next.load(Ordering::Relaxed)
                } else {
                    next.fetch_add(1, Ordering::Relaxed)
                };
                let mut fallback = None;
                for step in 0..len {
                    let i = usize::from(schedule[(start + step) % len]);
                    let Some(w) = usable(i) else { continue };
                    let full = u64::from(eps[i].weight) * 1000;
                    // A target ramping up (slow start) takes its share with probability w/full.
                    if w >= full || fastrand::u64(0..full.max(1)) < w {
                        return Some(i);
                    }
                    fallback.get_or_insert(i);
                }
                fallback
            }
            Strategy::Random => {
                let total: u64 = (0..n).filter_map(usable).sum();
                if total == 0 {
                    return None;
                }
                let mut r = fastrand::u64(0..total);
                for i in 0..n {
                    if let Some(w) = usable(i) {
                        if r < w {
                            return Some(i);
                        }
                        r -= w;
                    }
                }
                None
            }
            Strategy::LeastConn | Strategy::LeastTime => {
                let offset = if n > 1 { fastrand::usize(0..n) } else { 0 };
                let mut best: Option<(usize, f64)> = None;
                for k in 0..n {
                    let i = (offset + k) % n;
                    let Some(w) = usable(i) else { continue };
                    let load = (eps[i].state.inflight() + 1) as f64;
                    let cost = match self {
                        Strategy::LeastTime => {
                            // Unknown latency counts as 1 µs so that load still matters.
                            eps[i].state.latency_us(input.now).max(1.0) * load
                        }
                        _ => load,
                    } / (w.max(1) as f64);
                    if best.is_none_or(|(_, c)| cost < c) {
                        best = Some((i, cost));
                    }
                }
                best.map(|(i, _)| i)
            }
            Strategy::Hash(_) => {
                let mut best: Option<(usize, f64)> = None;
                for (i, e) in eps.iter().enumerate() {
                    let Some(w) = usable(i) else { continue };
                    // Weighted rendezvous: w / -ln(u), u uniform in (0, 1) from hash(key, id).
                    let h = mix(input.hash ^ e.id);
                    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    let score = w as f64 / -u.ln();
                    if best.is_none_or(|(_, s)| score > s) {
                        best = Some((i, score));
                    }
                }
                best.map(|(i, _)| i)
            }
            Strategy::P2c => {
                let count = (0..n).filter(|&i| usable(i).is_some()).count();
                match count {
                    0 => None,
                    1 => (0..n).find(|&i| usable(i).is_some()),
                    _ => {
                        let a = fastrand::usize(0..count);
                        let mut b = fastrand::usize(0..count - 1);
                        if b >= a {
                            b += 1;
                        }
                        let (mut ia, mut ib) = (None, None);
                        let mut rank = 0;
                        for i in 0..n {
                            if usable(i).is_some() {
                                if rank == a {
                                    ia = Some(i);
                                }
                                if rank == b {
                                    ib = Some(i);
                                }
                                rank += 1;
                            }
                        }
                        let (ia, ib) = (ia?, ib?);
                        let cost = |i: usize| {
                            (eps[i].state.inflight() + 1) as f64
                                / usable(i).unwrap_or(1).max(1) as f64
                        };
                        Some(if cost(ib) < cost(ia) { ib } else { ia })
                    }
                }
            }
        }
    }
}

/// A smooth weighted round-robin order (each target spread evenly through the cycle).
fn schedule(weights: &[u32]) -> Vec<u16> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights
        .iter()
        .fold(0u64, |g, &w| gcd(g, u64::from(w.max(1))));
    let mut w: Vec<u64> = weights
        .iter()
        .map(|&x| u64::from(x.max(1)) / g.max(1))
        .collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::endpoint::stable_hash;
    use pingora::upstreams::peer::HttpPeer;
    use std::sync::Arc;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr: std::net::SocketAddr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                let url = format!("http://{addr}");
                Endpoint {
                    addr,
                    id: stable_hash(&[url.as_bytes()]),
                    url: Arc::from(url.as_str()),
                    weight: w,
                    peer: HttpPeer::new(addr, false, String::new()),
                    state: Arc::default(),
                }
            })
            .collect()
    }

    fn all(eps: &[Endpoint]) -> impl Fn(usize) -> Option<u64> + '_ {
        |i| Some(u64::from(eps[i].weight) * 1000)
    }

    #[test]
    fn schedule_is_smooth_and_proportional() {
        assert_eq!(schedule(&[2, 1]), vec![0, 1, 0]);
        let s = schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(schedule(&[3, 3]), vec![0, 1]);
    }

    #[test]
    fn round_robin_skips_unusable() {
        let e = eps(&[1, 1, 1]);
        let s = Strategy::new("round-robin", &[1, 1, 1], None);
        let usable = |i: usize| (i != 1).then_some(1000);
        let picks: Vec<_> = (0..4)
            .map(|_| s.pick(&e, PickInput::default(), &usable).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        assert!(picks.contains(&0) && picks.contains(&2));
    }

    #[test]
    fn least_conn_prefers_idle() {
        let e = eps(&[1, 1]);
        let _busy: Vec<_> = (0..3).map(|_| e[0].state.begin()).collect();
        let s = Strategy::new("least-conn", &[1, 1], None);
        for _ in 0..10 {
            assert_eq!(s.pick(&e, PickInput::default(), &all(&e)), Some(1));
        }
    }

    #[test]
    fn least_time_prefers_fast() {
        let e = eps(&[1, 1]);
        e[0].state
            .observe_latency(std::time::Duration::from_millis(50), 1);
        e[1].state
            .observe_latency(std::time::Duration::from_millis(1), 1);
        let s = Strategy::new("least-response-time", &[1, 1], None);
        let input = PickInput {
            now: 2,
            ..PickInput::default()
        };
        assert_eq!(s.pick(&e, input, &all(&e)), Some(1));
    }

    #[test]
    fn rendezvous_moves_about_one_nth() {
        let four = eps(&[1, 1, 1, 1]);
        let five = eps(&[1, 1, 1, 1, 1]);
        let s = Strategy::new("consistent-hash", &[1; 4], Some(HashKey::Url));
        let mut moved = 0;
        let mut counts = [0usize; 5];
        for k in 0..10_000u64 {
            let input = PickInput {
                hash: stable_hash(&[&k.to_le_bytes()]),
                ..PickInput::default()
            };
            let a = s.pick(&four, input, &all(&four)).unwrap();
            let b = s.pick(&five, input, &all(&five)).unwrap();
            counts[b] += 1;
            if a != b {
                moved += 1;
                assert_eq!(b, 4, "keys only move to the new target");
            }
        }
        assert!((1_500..2_500).contains(&moved), "moved {moved}");
        assert!(counts.iter().all(|&c| c > 1_500), "{counts:?}");
    }

    #[test]
    fn p2c_avoids_the_loaded() {
        let e = eps(&[1, 1, 1]);
        let _busy: Vec<_> = (0..5).map(|_| e[2].state.begin()).collect();
        let s = Strategy::new("p2c", &[1, 1, 1], None);
        for _ in 0..50 {
            assert_ne!(s.pick(&e, PickInput::default(), &all(&e)), Some(2));
        }
    }

    #[test]
    fn random_is_weighted() {
        let e = eps(&[3, 1]);
        let s = Strategy::new("random", &[3, 1], None);
        let n0 = (0..4000)
            .filter(|_| s.pick(&e, PickInput::default(), &all(&e)) == Some(0))
            .count();
        assert!((2700..3300).contains(&n0), "{n0}");
    }
}
