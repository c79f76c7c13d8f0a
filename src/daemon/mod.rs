//! `refreshd run`: the supervisor. It owns the configuration, one task per credential
//! ([`worker`]), the control socket, the metrics listener, the config-file watch, signals
//! and the service manager's notifications ([`systemd`]).
//!
//! [`Embedded`] runs the same credential tasks without the rest, for `refreshd exec`.
//!
//! It never refreshes a token itself and never cancels a rotation in progress: reloads
//! stop a credential's task between rotations, and SIGTERM waits for in-flight ones.

mod embedded;
mod liveness;
mod publish;
mod reconfigure;
mod supervisor;
mod systemd;
mod timers;
mod watch;
mod worker;

pub(crate) use embedded::{Embedded, EmbeddedError};
pub(crate) use publish::TokenWatch;

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Config;

/// How the daemon ended; every reason was already reported (on stderr before logging is
/// set up, in the log after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT, after rotations in progress finished.
    Clean,
    /// The configuration is invalid: a supervisor should not restart until it is fixed.
    InvalidConfig,
    /// It could not start (another daemon holds the state directory, a socket or port).
    Failed,
}

/// The daemon's runtime (also the demo's): two workers are plenty for a handful of timers
/// and sockets, and keep RSS small.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
}

/// Runs the daemon in the foreground until SIGTERM/SIGINT.
pub fn main(config_path: &Path) -> Stopped {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("refreshd: cannot start the async runtime: {e}");
            return Stopped::Failed;
        }
    };
    let stopped = runtime.block_on(serve(config_path));
    // A target write stuck on a dead NFS server must not hold the exit forever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    stopped
}

/// The daemon, on the current runtime.
pub async fn serve(config_path: &Path) -> Stopped {
    // Before anything else: a SIGHUP that arrives before its handler kills the process.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("refreshd: cannot install signal handlers: {e}");
            return Stopped::Failed;
        }
    };
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("refreshd: {e}");
            return Stopped::InvalidConfig;
        }
    };
    crate::audit::open(config.log.audit.as_deref());
    if let Err(e) = crate::log::init_daemon(&config.log) {
        eprintln!("refreshd: {e}");
        return Stopped::Failed;
    }
    let daemon = match supervisor::Daemon::start(config, signals).await {
        Ok(daemon) => daemon,
        Err(e) => {
            tracing::error!("{e}");
            return if e.is_config() {
                Stopped::InvalidConfig
            } else {
                Stopped::Failed
            };
        }
    };
    daemon.run().await;
    Stopped::Clean
}

pub(crate) struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}
