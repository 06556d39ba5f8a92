//! The Pingora server: listeners from the snapshot, the gateway service, reload triggers and
//! graceful shutdown.

pub mod app;
pub mod connections;
pub(crate) mod delegate;
pub mod guard;
pub mod reload;
pub mod shutdown;

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::H2Options;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::compile::{compile, Mode, Registries};
use crate::config::{self, LoadError};
use crate::proxy::Gateway;
use crate::snapshot::SnapshotHandle;
use app::GatewayApp;
use reload::Reloader;
use shutdown::DrainOnSignal;

/// Largest HTTP/2 header list accepted.
pub const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// Largest `global.shutdownTimeoutSecs`.
pub const MAX_SHUTDOWN_SECS: u64 = 3600;
/// HTTP/2 concurrent streams per connection.
pub const H2_MAX_STREAMS: u32 = 100;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<config::ConfigError>),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Fails fast when a listening address is taken (Pingora itself would retry for a long time).
fn check_bind(addrs: &[std::net::SocketAddr]) -> Result<(), StartError> {
    for addr in addrs {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind {
            addr: *addr,
            source,
        })?;
    }
    Ok(())
}

/// Loads `path`, then runs the server until it is stopped. Only returns on a start error.
pub fn run(path: &Path) -> Result<(), StartError> {
    let loaded = match config::load_checked(path) {
        Ok(l) => l,
        Err(LoadError::Invalid(errors)) => return Err(StartError::Invalid(errors)),
        Err(e) => return Err(e.into()),
    };
    let registries = Arc::new(Registries::default());
    let snapshot = compile(&loaded, &registries, 1, Mode::Serve).map_err(StartError::Invalid)?;
    let process = snapshot.process.clone();
    let ports: Vec<u16> = snapshot.ports.keys().copied().collect();
    let addrs: Vec<std::net::SocketAddr> = ports
        .iter()
        .map(|p| std::net::SocketAddr::new(process.bind, *p))
        .collect();
    check_bind(&addrs)?;
    let handle = Arc::new(SnapshotHandle::new(snapshot));

    let conf = ServerConf {
        threads: process.workers,
        work_stealing: process.work_stealing,
        upstream_keepalive_pool_size: process.keepalive_pool_size,
        // The drain thread exits the process as soon as requests finish, bounded by the
        // shutdown timeout of the snapshot current at signal time; this is only a backstop.
        grace_period_seconds: Some(MAX_SHUTDOWN_SECS + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: std::env::temp_dir()
            .join(format!("conduit-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("conduit-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let inflight = Arc::new(AtomicUsize::new(0));
    let gateway = Gateway::new(handle.clone(), inflight.clone());
    let mut proxy = HttpProxy::new(gateway, server.configuration.clone());
    proxy.handle_init_modules();
    let mut options = HttpServerOptions::default();
    options.h2c = false;
    options.h2_idle_timeout = Some(crate::compile::DEFAULT_IDLE_TIMEOUT);
    proxy.server_options = Some(options);
    let mut h2 = H2Options::default();
    h2.max_concurrent_streams(process.h2_max_streams);
    if let Some(window) = process.h2_window {
        h2.initial_window_size(window);
    }
    h2.max_header_list_size(H2_MAX_HEADER_LIST);
    proxy.h2_options = Some(h2);
    let app = GatewayApp {
        proxy: Arc::new(proxy),
        handle: handle.clone(),
    };
    let mut service = Service::new("conduit".to_string(), app);
    for addr in &addrs {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(service);
    server.add_service(pingora::services::background::background_service(
        "health checks",
        crate::upstream::health::HealthChecker::new(registries.clone()),
    ));
    // Fetches and refreshes the JWKS key sets of `jwtAuth` (`jwksUrl`) in the background.
    #[cfg(feature = "jwt")]
    server.add_service(pingora::services::background::background_service(
        "jwks refresh",
        crate::filter::jwt::JwksRefresher,
    ));

    crate::ext::acme_hooks::add_service(&mut server, handle.clone(), path);

    let reloader = Arc::new(Reloader::new(
        handle.clone(),
        registries.clone(),
        path.to_path_buf(),
    ));
    reload::spawn_triggers(reloader)?;

    tracing::info!(
        ports = ?ports,
        workers = process.workers,
        config = %path.display(),
        "conduit listening"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal {
            inflight,
            handle,
            registries,
        }),
    });
    Ok(())
}
