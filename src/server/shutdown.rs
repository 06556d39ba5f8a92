//! Graceful shutdown: on SIGTERM or SIGINT, stop accepting, let in-flight requests finish, and
//! exit as soon as none is left — bounded by `global.shutdownTimeoutSecs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};

use crate::compile::Registries;
use crate::snapshot::SnapshotHandle;

/// How long listeners get to stop accepting before the drain check starts.
const SETTLE: Duration = Duration::from_millis(100);

/// Pingora's shutdown watcher, plus the drain that ends the process early.
pub struct DrainOnSignal {
    pub inflight: Arc<AtomicUsize>,
    pub handle: Arc<SnapshotHandle>,
    pub registries: Arc<Registries>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let timeout = self.handle.load().process.shutdown_timeout;
        tracing::info!(
            signal = which,
            timeout_secs = timeout.as_secs(),
            "draining in-flight requests"
        );
        let inflight = self.inflight.clone();
        let registries = self.registries.clone();
        let spawned = std::thread::Builder::new()
            .name("conduit-drain".into())
            .spawn(move || drain_then_exit(&inflight, timeout, &registries));
        if spawned.is_err() {
            return ShutdownSignal::FastShutdown;
        }
        ShutdownSignal::GracefulTerminate
    }
}

fn drain_then_exit(inflight: &AtomicUsize, timeout: Duration, registries: &Registries) {
    let start = Instant::now();
    std::thread::sleep(SETTLE);
    loop {
        let n = inflight.load(Ordering::Acquire);
        if n == 0 {
            tracing::info!(
                elapsed_ms = start.elapsed().as_millis() as u64,
                "drained; exiting"
            );
            break;
        }
        if start.elapsed() >= timeout {
            tracing::warn!(
                in_flight = n,
                "shutdown timeout reached; exiting with requests in flight"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    registries.flush_logs(Duration::from_secs(1));
    std::process::exit(0);
}
