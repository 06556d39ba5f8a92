//! Configuration change: the reload entry point (used by SIGHUP, the file watcher, and later the
//! admin API) and the background thread that listens for those triggers.
//!
//! A reload loads, validates and compiles the file into a new snapshot and swaps it in. Anything
//! wrong (syntax, fields, unresolvable targets, a change that needs a restart) is reported and the
//! old snapshot keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::compile::{compile, Mode, Registries};
use crate::config::{self, ConfigError, LoadError};
use crate::snapshot::SnapshotHandle;

/// Why a reload was refused (the old configuration keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("invalid configuration:\n{}", lines(.0))]
    Invalid(Vec<ConfigError>),
    #[error("this change needs a restart: {0}")]
    RestartRequired(String),
}

fn lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reloads the configuration of a running server.
pub struct Reloader {
    handle: Arc<SnapshotHandle>,
    registries: Arc<Registries>,
    source: PathBuf,
    lock: Mutex<()>,
}

impl Reloader {
    pub fn new(handle: Arc<SnapshotHandle>, registries: Arc<Registries>, source: PathBuf) -> Self {
        Self {
            handle,
            registries,
            source,
            lock: Mutex::new(()),
        }
    }

    /// Reads the config file again and swaps in the new snapshot; returns its generation.
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = match config::load_checked(&self.source) {
            Ok(l) => l,
            Err(LoadError::Invalid(errors)) => return Err(ReloadError::Invalid(errors)),
            Err(e) => return Err(e.into()),
        };
        let current = self.handle.load();
        let next = compile(
            &loaded,
            &self.registries,
            current.generation + 1,
            Mode::Serve,
        )
        .map_err(ReloadError::Invalid)?;
        let (a, b) = (&current.process, &next.process);
        if a.workers != b.workers || a.work_stealing != b.work_stealing || a.bind != b.bind {
            return Err(ReloadError::RestartRequired(
                "global.workers, global.workStealing or global.bind changed".into(),
            ));
        }
        if a.h2_max_streams != b.h2_max_streams || a.h2_window != b.h2_window {
            return Err(ReloadError::RestartRequired(
                "http2.maxConcurrentStreams or http2.initialWindowSize changed".into(),
            ));
        }
        let old_ports: Vec<u16> = current.ports.keys().copied().collect();
        let new_ports: Vec<u16> = next.ports.keys().copied().collect();
        if old_ports != new_ports {
            return Err(ReloadError::RestartRequired(format!(
                "listening ports changed from {old_ports:?} to {new_ports:?}"
            )));
        }
        let generation = next.generation;
        self.handle.store(next);
        Ok(generation)
    }

    /// Runs [`Self::reload`] and logs the outcome.
    pub fn reload_and_log(&self, trigger: &str) {
        match self.reload() {
            Ok(generation) => tracing::info!(trigger, generation, "configuration reloaded"),
            Err(e) => tracing::error!(
                trigger,
                "reload rejected, previous configuration keeps serving: {e}"
            ),
        }
    }
}

/// Starts the thread that reloads on SIGHUP and, when a site enables `hotReload`, on changes of
/// the config file.
pub fn spawn_triggers(reloader: Arc<Reloader>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Register the handler now, so a SIGHUP right after start is never fatal.
    let mut hup = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let watcher = file_watcher(&reloader.source, tx);
    let (cert_tx, mut cert_rx) = tokio::sync::mpsc::channel::<()>(16);
    std::thread::Builder::new()
        .name("conduit-reload".into())
        .spawn(move || {
            let _watcher = watcher;
            // Certificate files are always watched: a renewed certificate is served without a
            // restart. The watch follows the files of the current snapshot, through symlinks
            // (certbot's live/ links, Kubernetes secret volumes): any change in the directories
            // involved is checked against the files' contents.
            let mut cert_files = reloader.handle.load().cert_files.clone();
            let mut cert_seen = fingerprint(&cert_files);
            let mut _cert_watcher = cert_watcher(&cert_files, cert_tx.clone());
            rt.block_on(async move {
                loop {
                    tokio::select! {
                        Some(()) = hup.recv() => reloader.reload_and_log("SIGHUP"),
                        Some(()) = rx.recv() => {
                            // Editors write in several steps: let them finish.
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            while rx.try_recv().is_ok() {}
                            if reloader.handle.load().watch_config || enables_hot_reload(&reloader.source) {
                                reloader.reload_and_log("file change");
                            }
                        }
                        Some(()) = cert_rx.recv() => {
                            // A certificate and its key are often written one after the other.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            while cert_rx.try_recv().is_ok() {}
                            let seen = fingerprint(&cert_files);
                            if seen != cert_seen {
                                cert_seen = seen;
                                reloader.reload_and_log("certificate file change");
                            }
                        }
                        else => break,
                    }
                    // Re-resolve after every event: symlinks may point elsewhere now.
                    let now = reloader.handle.load().cert_files.clone();
                    if now != cert_files {
                        cert_seen = fingerprint(&now);
                    }
                    _cert_watcher = cert_watcher(&now, cert_tx.clone());
                    cert_files = now;
                }
            });
        })?;
    Ok(())
}

/// Whether the file on disk asks for `hotReload` (so turning it on takes effect by itself).
fn enables_hot_reload(path: &std::path::Path) -> bool {
    config::load_file(path).is_ok_and(|l| l.raw.sites.iter().any(|s| s.hot_reload == Some(true)))
}

fn file_watcher(
    path: &std::path::Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let path = std::fs::canonicalize(path).ok()?;
    let dir = path.parent()?.to_path_buf();
    let name = path.file_name()?.to_os_string();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if event.kind.is_access() {
                return;
            }
            if event.paths.iter().any(|p| p.file_name() == Some(&name)) {
                let _ = tx.try_send(());
            }
        }
    })
    .ok()?;
    match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!("cannot watch {}: {e}; hotReload is off", dir.display());
            None
        }
    }
}

/// What the certificate files hold now (their contents, through symlinks), to tell a real
/// change from other activity in their directories.
fn fingerprint(files: &[std::path::PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

/// Watches the directories of `files` — where they are configured and where their symlinks
/// lead — and signals any change there.
fn cert_watcher(
    files: &[std::path::PathBuf],
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    if files.is_empty() {
        return None;
    }
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for f in files {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        if let Some(d) = abs.parent() {
            dirs.push(d.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(f) {
            if let Some(d) = real.parent() {
                dirs.push(d.to_path_buf());
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if !event.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })
    .ok()?;
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {}: {e}; certificate changes there need a reload",
                dir.display()
            );
        }
    }
    Some(watcher)
}
