//! Start-up: takes the state directory's lock, binds the control socket, the metrics port
//! and the SDK endpoints, builds the read model from what the state directory holds, joins
//! the fleet store, starts the listeners and the background tasks, then every credential's
//! task. It never rotates: the first attempts are the credential tasks' own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::timers::Timers;
use super::super::{Signals, systemd, watch, worker};
use super::{Daemon, FirstRound, followed};
use crate::access::Reads;
use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::control::server::{self as control, RotateRequest};
use crate::credential::{Engine, policy};
use crate::observe::{
    CredentialStatus, DaemonStatus, FleetView, Model, Observed, Snapshot, Vitals,
};
use crate::reload::{Reloader, Retries};
use crate::state::StateDir;

/// Requests for one reload action from several credentials within this window run once.
pub(in crate::daemon) const RELOAD_DEBOUNCE: Duration = Duration::from_secs(1);

/// The shortest time between two `STATUS=` lines that follow rotations.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(in crate::daemon) enum StartError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The state key is missing, unreadable or wrong: a person must set it.
    #[error(transparent)]
    StateKey(crate::state::StateError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("metrics_listen {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Endpoint(#[from] crate::endpoint::EndpointError),
}

impl StartError {
    /// Whether the config must change before a start can work (exit `EX_CONFIG`, so the
    /// service manager does not restart into the same refusal).
    pub(in crate::daemon) fn is_config(&self) -> bool {
        matches!(self, StartError::StateKey(_))
    }
}

/// The sockets, bound before anything starts (a port in use fails the start at once).
struct Sockets {
    control: UnixListener,
    metrics: Option<TcpListener>,
    endpoints: crate::endpoint::Bound,
}

impl Daemon {
    pub(in crate::daemon) async fn start(
        config: Config,
        signals: Signals,
    ) -> Result<Daemon, StartError> {
        let state = StateDir::of(&config.daemon);
        let lock = state.lock_daemon()?;
        // Before any socket, store or refresh: with a key that is missing, unreadable or
        // not the one the files were sealed with, nothing is done at all.
        state
            .check_key(config.credentials.iter().map(|c| c.name.as_str()))
            .map_err(StartError::StateKey)?;
        let sockets = Sockets::bind(&config, &state).await?;
        let clock: SharedClock = Arc::new(clock::SystemClock);
        let (snapshot, first_round) = from_state(&config, &state, &clock);
        let fleet = match &config.daemon.store {
            Some(store) => Some(start_fleet(store, &config, clock.clone()).await?),
            None => None,
        };
        let (timers, timer_task) = Timers::start(clock.clone());
        let model = Model::new(
            snapshot,
            fleet.clone().map(|fleet| fleet as Arc<dyn FleetView>),
            Vitals::new(watchdog_interval()),
            clock.clone(),
        );
        let (settled_tx, settled) = mpsc::unbounded_channel();
        let engine = engine(&state, &clock, &model, fleet.clone());
        let shared = worker::Shared::new(&config, engine, fleet, clock, timers, model, settled_tx);
        remove_litter(&config, &shared);
        let (rotate_tx, rotate_requests) = mpsc::channel(16);
        let mut background = vec![timer_task];
        if let Some(fleet) = &shared.fleet {
            background.extend(fleet.start());
        }
        let reads = Reads::new(&config, shared.model.observed(), state.clone());
        control::permit(&config.daemon.control_socket, reads.any_readers());
        let (served, endpoints) = sockets.serve(&shared.model, rotate_tx, &reads);
        background.extend(served);
        // The status line follows every change of the snapshot.
        background.push(tokio::spawn(follow_status(shared.model.observed())));
        let (watcher, config_changes) = watch_config(&config.path);
        let mut daemon = Daemon {
            config,
            state,
            shared,
            reads,
            endpoints,
            workers: BTreeMap::new(),
            tokens: BTreeMap::new(),
            followed: BTreeSet::new(),
            first_round,
            retiring: Vec::new(),
            signals,
            settled,
            unsettled: BTreeSet::new(),
            ready: false,
            rotate_requests,
            config_changes,
            _watcher: watcher,
            background,
            stuck_reported: BTreeSet::new(),
            config_digest: [0; 32],
            _lock: lock,
        };
        daemon.launch();
        Ok(daemon)
    }

    /// Starts every credential's task, and says so.
    fn launch(&mut self) {
        self.config_text_changed();
        self.followed = followed(&self.config);
        for credential in self.config.credentials.clone() {
            self.start_worker(credential);
        }
        // With no credentials there is nothing to wait for: ready at once (an empty config
        // idles until it is edited; a package starts it that way).
        self.announce_ready();
        let daemon = &self.config.daemon;
        tracing::info!(
            config = %self.config.path.display(),
            credentials = self.workers.len(),
            state_dir = %daemon.state_dir.display(),
            control_socket = %daemon.control_socket.display(),
            metrics = %daemon.metrics_listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            "started"
        );
    }
}

impl Sockets {
    async fn bind(config: &Config, state: &StateDir) -> Result<Sockets, StartError> {
        let control = control::bind(&config.daemon.control_socket).await?;
        let metrics = match config.daemon.metrics_listen {
            Some(addr) => Some(
                crate::metrics::bind(addr)
                    .await
                    .map_err(|source| StartError::Metrics { addr, source })?,
            ),
            None => None,
        };
        let endpoints = crate::endpoint::bind(config, state).await?;
        Ok(Sockets {
            control,
            metrics,
            endpoints,
        })
    }

    /// Serves the control socket, the metrics port and the SDK endpoints from `model`.
    fn serve(
        self,
        model: &Model,
        rotate: mpsc::Sender<RotateRequest>,
        reads: &Reads,
    ) -> (Vec<JoinHandle<()>>, crate::endpoint::Endpoints) {
        let server = control::Server {
            observed: model.observed(),
            rotate,
            reads: reads.clone(),
        };
        let mut tasks = vec![tokio::spawn(server.serve(self.control))];
        if let Some(listener) = self.metrics {
            tasks.push(tokio::spawn(crate::metrics::serve(
                listener,
                model.observed(),
            )));
        }
        let (endpoints, task) = self.endpoints.serve(reads.clone(), model.observed());
        tasks.push(task);
        (tasks, endpoints)
    }
}

/// A watch on the config file, if one can be set.
fn watch_config(
    path: &std::path::Path,
) -> (Option<watch::Watcher>, Option<mpsc::UnboundedReceiver<()>>) {
    match watch::config_file(path) {
        Ok((watcher, changes)) => (Some(watcher), Some(changes)),
        Err(e) => {
            tracing::warn!(config = %path.display(), "cannot watch the config file ({e}); reload with SIGHUP");
            (None, None)
        }
    }
}

/// The daemon's rotation engine (and `exec`'s in-process one): reloads merged within
/// [`RELOAD_DEBOUNCE`], a failed one retried in the background, each result shown in the
/// read model.
pub(in crate::daemon) fn engine(
    state: &StateDir,
    clock: &SharedClock,
    model: &Model,
    fleet: Option<Arc<crate::store::Fleet>>,
) -> Arc<Engine> {
    let retries = Retries {
        background: true,
        results: Some(model.observed().reload_results()),
    };
    let reloader = Reloader::start_with(RELOAD_DEBOUNCE, retries);
    Arc::new(Engine::daemon(state.clone(), clock.clone(), reloader).with_fleet(fleet))
}

/// What the state directory holds: the first status of every credential, and how many of
/// them are due for the first round.
fn from_state(config: &Config, state: &StateDir, clock: &SharedClock) -> (Snapshot, FirstRound) {
    let now = clock.now();
    let mut snapshot = Snapshot::new("daemon");
    snapshot.daemon = Some(DaemonStatus {
        started_at: now,
        config_reload_ok: true,
        config_loaded_at: now,
    });
    let mut due = 0;
    for credential in &config.credentials {
        let stored = state.load(&credential.name).unwrap_or_default();
        let trigger = policy::Trigger::IfDue;
        due += usize::from(policy::should_fetch(
            stored.token.as_ref(),
            stored.last_rotation,
            &trigger,
            now,
            &credential.timing,
        ));
        snapshot.set(CredentialStatus::from_state(credential, &stored, None, now));
    }
    let first_round = FirstRound::new(
        config.credentials.len(),
        due,
        config.daemon.max_concurrent_refreshes.max(1),
    );
    (snapshot, first_round)
}

/// How often the watchdog looks: twice per the service manager's interval, else every 30 s.
fn watchdog_interval() -> Duration {
    systemd::watchdog_interval()
        .map(|d| d / 2)
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_millis(100))
}

/// Removes the temp files an earlier crash left beside state and targets.
fn remove_litter(config: &Config, shared: &worker::Shared) {
    let mut litter = crate::durable::LitterIndex::default();
    let removed: usize = config
        .credentials
        .iter()
        .map(|c| shared.engine.remove_litter(c, &mut litter))
        .sum();
    if removed > 0 {
        tracing::info!(
            removed,
            "removed temp files an earlier crash left beside state and targets"
        );
    }
}

/// The fleet store of `config`, joined before any credential's task starts. A store that
/// does not answer yet does not stop the start: the state directory still knows every
/// token, and the store is retried every round.
async fn start_fleet(
    store: &crate::config::StoreConfig,
    config: &Config,
    clock: SharedClock,
) -> Result<Arc<crate::store::Fleet>, StartError> {
    let (fleet, unreachable) = crate::store::Fleet::join(
        store,
        config.shared_names(),
        clock,
        Some(crate::store::Instance::this_process()),
    )
    .await?;
    if let Some(e) = unreachable {
        tracing::warn!(
            "{e}: starting without it; shared credentials are not refreshed until it answers"
        );
    }
    Ok(fleet)
}

/// Keeps systemd's `STATUS=` in step with the snapshot, at most once a second: changes in
/// between are folded into the next line (hundreds of rotations a second make one line).
async fn follow_status(mut observed: Observed) {
    while observed.changed().await {
        let summary = observed.summary();
        systemd::status(&summary);
        tokio::time::sleep(STATUS_INTERVAL).await;
    }
}
