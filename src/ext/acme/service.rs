//! The background service that keeps every ACME certificate issued and fresh.
//!
//! It checks each wanted certificate once at start, then every 12 hours (sooner when a renewal
//! falls due before that), and again whenever a reload changes what `tls.acme` asks for. A
//! certificate that is missing, unusable, or has fewer than `renewBeforeDays` left is ordered;
//! a failed order is retried with exponential backoff. The issued files land in storage, where
//! the certificate watcher turns them into a reload: the hot swap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{order, plan, storage, Wanted};
use crate::snapshot::SnapshotHandle;

/// How often a certificate is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// The first retry after a failed order; each further failure doubles it.
pub const RETRY_FIRST: Duration = Duration::from_secs(15);
/// The longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// How often the service looks for due work and reloads.
const TICK: Duration = Duration::from_millis(500);
/// An order that takes longer than this has failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Issues and renews the certificates of `tls.acme`.
pub struct AcmeService {
    handle: Arc<SnapshotHandle>,
    source: PathBuf,
}

/// Where one certificate stands.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Instant,
    failures: u32,
}

/// What to do with a certificate now.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Good until renewal falls due after this long.
    Fresh(Duration),
    /// Order one: why.
    Order(String),
}

/// Whether the stored certificate of `w` is usable and not yet due for renewal at `now`.
fn verdict(w: &Wanted, now: SystemTime) -> Verdict {
    let (cert, key) = (w.cert_path(), w.key_path());
    if !cert.exists() {
        return Verdict::Order("no certificate yet".into());
    }
    let ck = match storage::load_pair(&cert, &key, &w.host) {
        Ok(ck) => ck,
        Err(e) => return Verdict::Order(format!("stored certificate unusable: {e}")),
    };
    let Some(not_after) = storage::not_after(&ck) else {
        return Verdict::Order("stored certificate has no readable expiry".into());
    };
    let left = not_after.duration_since(now).unwrap_or_default();
    if left < w.renew_before {
        return Verdict::Order(format!("{} days left", left.as_secs() / 86_400));
    }
    Verdict::Fresh(left - w.renew_before)
}

/// The wait after the `failures`-th consecutive failure.
fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    RETRY_FIRST.saturating_mul(factor).min(RETRY_MAX)
}

impl AcmeService {
    /// A service reading the ACME settings of the config at `source` each time `handle` gets a
    /// new generation.
    pub fn new(handle: Arc<SnapshotHandle>, source: PathBuf) -> Self {
        Self { handle, source }
    }

    /// The wanted certificates of the config file as it is now (`None`: it does not load).
    fn read_plan(&self) -> Option<Vec<Wanted>> {
        match crate::config::load_checked(&self.source) {
            Ok(loaded) => Some(plan(&loaded.raw)),
            Err(e) => {
                tracing::warn!("ACME: cannot read the configuration, keeping the previous certificate plan: {e}");
                None
            }
        }
    }

    /// Checks `w` and orders when needed; returns when to look again and the failure count.
    async fn check(&self, w: &Wanted, due: Due) -> Due {
        let why = match verdict(w, SystemTime::now()) {
            Verdict::Fresh(until_renewal) => {
                return Due {
                    at: Instant::now() + until_renewal.min(CHECK_INTERVAL),
                    failures: 0,
                }
            }
            Verdict::Order(why) => why,
        };
        tracing::info!(host = %w.host, directory = %w.directory, "ACME: ordering a certificate ({why})");
        let outcome = match tokio::time::timeout(ORDER_TIMEOUT, order::issue(w)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no certificate after {}s", ORDER_TIMEOUT.as_secs())),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(host = %w.host, "ACME: certificate issued and stored in {}", w.storage.display());
                Due {
                    at: Instant::now() + CHECK_INTERVAL,
                    failures: 0,
                }
            }
            Err(e) => {
                let failures = due.failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::warn!(
                    host = %w.host,
                    failures,
                    retry_in_secs = wait.as_secs(),
                    "ACME: certificate order failed: {e}"
                );
                Due {
                    at: Instant::now() + wait,
                    failures,
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generation = self.handle.load().generation;
        let mut wanted = self.read_plan().unwrap_or_default();
        let mut due: HashMap<(PathBuf, String), Due> = HashMap::new();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = ticks.tick() => {}
            }
            // A reload that changed what `acme` asks for is acted on at once; one that only
            // swapped certificates (ours included) changes nothing here.
            let now_generation = self.handle.load().generation;
            if now_generation != generation {
                generation = now_generation;
                if let Some(next) = self.read_plan() {
                    if next != wanted {
                        wanted = next;
                        due.clear();
                    }
                }
            }
            for w in &wanted {
                let key = (w.storage.clone(), w.host.clone());
                let current = due.get(&key).copied().unwrap_or(Due {
                    at: Instant::now(),
                    failures: 0,
                });
                if current.at > Instant::now() {
                    continue;
                }
                let next = tokio::select! {
                    next = self.check(w, current) => next,
                    _ = shutdown.changed() => return,
                };
                due.insert(key, next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), RETRY_FIRST);
        assert_eq!(backoff(2), RETRY_FIRST * 2);
        assert_eq!(backoff(3), RETRY_FIRST * 4);
        assert_eq!(backoff(40), RETRY_MAX);
    }

    #[test]
    fn verdict_orders_missing_and_expiring_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let a = raw::Acme {
            storage: Some(tmp.path().to_string_lossy().into_owned()),
            ..raw::Acme::default()
        };
        let w = Wanted::new(&a, "v.example");
        assert!(matches!(verdict(&w, SystemTime::now()), Verdict::Order(_)));

        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["v.example".to_string()]).unwrap();
        let now = SystemTime::now();
        p.not_before = (now - Duration::from_secs(86_400)).into();
        p.not_after = (now + Duration::from_secs(40 * 86_400)).into();
        let cert = p.self_signed(&key).unwrap();
        storage::write_pair(&w.storage, "v.example", &cert.pem(), &key.serialize_pem()).unwrap();
        match verdict(&w, now) {
            // 40 days left, renewal 30 days before: due in about 10 days.
            Verdict::Fresh(d) => {
                assert!((9 * 86_400..=10 * 86_400).contains(&d.as_secs()), "{d:?}")
            }
            other => panic!("{other:?}"),
        }
        let later = now + Duration::from_secs(15 * 86_400);
        assert!(matches!(verdict(&w, later), Verdict::Order(_)));
    }
}
