//! The supervisor: owns the configuration, one task per credential ([`worker`]) and the
//! channels that carry each credential's token to the credentials that send it as a
//! bearer, the control socket, the metrics listener, the config-file watch, signals and
//! the service manager's notifications ([`systemd`]).
//!
//! It never refreshes a token itself and never cancels a rotation in progress: reloads
//! stop a credential's task between rotations, and SIGTERM waits for in-flight ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::liveness::Liveness;
use super::publish::TokenWatch;
use super::reconfigure::ConfigChanges;
use super::timers::Timers;
use super::{Signals, systemd, watch, worker};
use crate::clock::{self, SharedClock};
use crate::config::{Config, Credential};
use crate::control::server::{self as control, RotateRequest};
use crate::credential::{Engine, policy};
use crate::observe::{
    CredentialStatus, DaemonStatus, FleetView, Model, Observed, Snapshot, Vitals,
};
use crate::reload::Reloader;
use crate::state::{DaemonLock, StateDir};
use crate::token::Token;

/// Requests for one reload action from several credentials within this window run once.
const RELOAD_DEBOUNCE: Duration = Duration::from_secs(1);

/// The timer queue looks at the clock every [`clock::CHUNK`]: silent for longer than this,
/// the runtime is stuck. A rotation may wait for a request timeout and target locks, but
/// not for longer than this.
const TIMERS_LIMIT: Duration = Duration::from_secs(60);
const ROTATION_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The shortest time between two `STATUS=` lines that follow rotations.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What SIGTERM waits for rotations in progress beyond the longest request timeout: the
/// state save, the target writes and reloads after the answer. The units' TimeoutStopSec
/// (400 s) covers config::MAX_TIMEOUT plus this.
const DRAIN_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("metrics_listen {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub(super) struct Daemon {
    config: Config,
    /// The state directory, held open (shared with the engine's copy).
    state: StateDir,
    shared: worker::Shared,
    workers: BTreeMap<String, worker::Handle>,
    /// Each credential's current token, published by its task (kept across its restarts).
    tokens: BTreeMap<String, tokio::sync::watch::Sender<Option<Token>>>,
    /// The credentials another one sends as a bearer (in the running config).
    followed: BTreeSet<String>,
    /// How the first refreshes after start are getting on.
    first_round: FirstRound,
    /// Tasks of removed or replaced credentials, finishing a rotation.
    retiring: Vec<JoinHandle<()>>,
    signals: Signals,
    settled: mpsc::UnboundedReceiver<String>,
    unsettled: BTreeSet<String>,
    ready: bool,
    rotate_requests: mpsc::Receiver<RotateRequest>,
    config_changes: Option<mpsc::UnboundedReceiver<()>>,
    _watcher: Option<watch::Watcher>,
    background: Vec<JoinHandle<()>>,
    stuck_reported: BTreeSet<String>,
    /// SHA-256 of the config file as last read.
    config_digest: [u8; 32],
    _lock: DaemonLock,
}

impl Daemon {
    pub(super) async fn start(config: Config, signals: Signals) -> Result<Daemon, StartError> {
        let state = StateDir::new(&config.daemon.state_dir);
        let lock = state.lock_daemon()?;
        let listener = control::bind(&config.daemon.control_socket).await?;
        let metrics = match config.daemon.metrics_listen {
            Some(addr) => Some(
                crate::metrics::bind(addr)
                    .await
                    .map_err(|source| StartError::Metrics { addr, source })?,
            ),
            None => None,
        };

        let clock: SharedClock = Arc::new(clock::SystemClock);
        let now = clock.now();
        // What the state directory holds: the first status, and the first token each
        // credential offers the credentials that send it as a bearer.
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
        let (settled_tx, settled) = mpsc::unbounded_channel();
        let (rotate_tx, rotate_requests) = mpsc::channel(16);
        let fleet = match &config.daemon.store {
            Some(store) => Some(start_fleet(store, &config, clock.clone()).await?),
            None => None,
        };
        let (timers, timer_task) = Timers::start(clock.clone());
        let watchdog_every = systemd::watchdog_interval()
            .map(|d| d / 2)
            .unwrap_or(Duration::from_secs(30))
            .max(Duration::from_millis(100));
        let model = Model::new(
            snapshot,
            fleet.clone().map(|fleet| fleet as Arc<dyn FleetView>),
            Vitals::new(watchdog_every),
            clock.clone(),
        );
        let shared = worker::Shared {
            engine: Arc::new(
                Engine::daemon(
                    state.clone(),
                    clock.clone(),
                    Reloader::start(RELOAD_DEBOUNCE),
                )
                .with_fleet(fleet.clone()),
            ),
            fleet: fleet.clone(),
            clock: clock.clone(),
            timers,
            liveness: Arc::new(Liveness::default()),
            permits: Arc::new(Semaphore::new(
                config.daemon.max_concurrent_refreshes.max(1),
            )),
            model: model.clone(),
            settled: settled_tx,
        };

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
        let mut background = vec![timer_task];
        if let Some(fleet) = &fleet {
            background.extend(fleet.start());
        }
        let server = control::Server {
            observed: model.observed(),
            rotate: rotate_tx,
            state: state.clone(),
        };
        background.push(tokio::spawn(server.serve(listener)));
        if let Some(listener) = metrics {
            background.push(tokio::spawn(crate::metrics::serve(
                listener,
                model.observed(),
            )));
        }
        // The status line follows every change of the snapshot.
        background.push(tokio::spawn(follow_status(model.observed())));

        let (watcher, config_changes) = match watch::config_file(&config.path) {
            Ok((watcher, changes)) => (Some(watcher), Some(changes)),
            Err(e) => {
                tracing::warn!(config = %config.path.display(), "cannot watch the config file ({e}); reload with SIGHUP");
                (None, None)
            }
        };

        let mut daemon = Daemon {
            config,
            state,
            shared,
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
        daemon.config_text_changed();
        daemon.followed = followed(&daemon.config);
        for credential in daemon.config.credentials.clone() {
            daemon.start_worker(credential);
        }
        // With no credentials there is nothing to wait for: ready at once (an empty config
        // idles until it is edited; a package starts it that way).
        daemon.announce_ready();
        tracing::info!(
            config = %daemon.config.path.display(),
            credentials = daemon.workers.len(),
            state_dir = %daemon.config.daemon.state_dir.display(),
            control_socket = %daemon.config.daemon.control_socket.display(),
            metrics = %daemon.config.daemon.metrics_listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            "started"
        );
        Ok(daemon)
    }

    fn start_worker(&mut self, credential: Arc<Credential>) {
        self.unsettled.insert(credential.name.clone());
        let name = credential.name.clone();
        let bearers: Vec<(String, TokenWatch)> = credential
            .source
            .bearers()
            .into_iter()
            .map(|bearer| (bearer.to_owned(), self.follow_token(bearer)))
            .collect();
        // Only a credential another one sends as a bearer publishes its token (a watch
        // channel per credential is half a kilobyte; ten thousand of them add up).
        let token = self
            .followed
            .contains(&name)
            .then(|| self.token_channel(&name).clone());
        let handle = worker::spawn(credential, self.shared.clone(), token, bearers);
        self.workers.insert(name, handle);
    }

    /// A receiver of `bearer`'s token. A credential's task keeps its token in memory only
    /// while another follows it: for the first follower, the stored one is filled in.
    fn follow_token(&mut self, bearer: &str) -> TokenWatch {
        // Subscribed first: from now on the task publishes its token here, so what is read
        // from the state directory next can only be as new or older.
        let channel = self.token_channel(bearer).clone();
        let follower = channel.subscribe();
        let stored = self.state.load(bearer).ok().and_then(|s| s.token);
        channel.send_if_modified(|held| {
            if held.is_none() {
                *held = stored;
            }
            // What was on file is no change to react to.
            false
        });
        follower
    }

    fn token_channel(&mut self, name: &str) -> &tokio::sync::watch::Sender<Option<Token>> {
        self.tokens
            .entry(name.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(None).0)
    }

    fn stop_worker(&mut self, name: &str) {
        if let Some(handle) = self.workers.remove(name) {
            handle.stop();
            self.retiring.push(handle.join);
        }
        self.unsettled.remove(name);
    }

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(self.shared.model.vitals().interval());
        loop {
            tokio::select! {
                _ = self.signals.terminate.recv() => {
                    tracing::info!("SIGTERM: stopping once rotations in progress finish");
                    break;
                }
                _ = self.signals.interrupt.recv() => {
                    tracing::info!("SIGINT: stopping once rotations in progress finish");
                    break;
                }
                _ = self.signals.hangup.recv() => self.reload("SIGHUP"),
                Some(()) = recv_opt(&mut self.config_changes) => {
                    if self.config_text_changed() {
                        self.reload("the config file changed");
                    }
                }
                Some(name) = self.settled.recv() => {
                    if self.unsettled.remove(&name) {
                        self.first_round.settled();
                    }
                    self.announce_ready();
                }
                Some(request) = self.rotate_requests.recv() => self.dispatch_rotate(request),
                _ = tick.tick() => self.watchdog(),
            }
            self.retiring.retain(|join| !join.is_finished());
        }
        self.shutdown().await;
    }

    /// Whether the file differs from what was last loaded: saving an unchanged file, or a
    /// `touch`, is not worth a reload.
    fn config_text_changed(&mut self) -> bool {
        let text = std::fs::read(&self.config.path).unwrap_or_default();
        let digest = digest(&text);
        let changed = digest != self.config_digest;
        self.config_digest = digest;
        changed
    }

    /// The one-line summary for the service manager and the log.
    fn summary(&self) -> String {
        self.shared.model.summary()
    }

    fn announce_ready(&mut self) {
        if !self.ready && self.unsettled.is_empty() {
            self.ready = true;
            self.shared.model.vitals().set_ready();
            let summary = self.summary();
            systemd::ready(&summary);
            tracing::info!(status = %summary, "ready");
        }
    }

    /// Re-reads the config; an invalid one is logged and the running one kept.
    fn reload(&mut self, why: &str) {
        systemd::reloading();
        self.config_text_changed();
        match Config::load(&self.config.path) {
            Err(e) => {
                tracing::error!(
                    "{why}: the new configuration is invalid, keeping the running one: {e}"
                );
                self.config_loaded(false);
            }
            Ok(new) => {
                self.apply(new, why);
                self.config_loaded(true);
                // Removing the last credentials still waiting for a first attempt is ready.
                self.announce_ready();
            }
        }
        let summary = self.summary();
        if self.ready {
            systemd::ready(&summary);
        } else {
            systemd::status(&summary);
        }
    }

    /// Records the outcome of loading the config file for status and metrics.
    fn config_loaded(&self, ok: bool) {
        self.shared.model.config_loaded(ok, self.shared.clock.now());
    }

    fn apply(&mut self, new: Config, why: &str) {
        let ConfigChanges {
            restart_needed,
            added,
            removed,
            changed,
        } = ConfigChanges::between(&self.config, &new);
        if !restart_needed.is_empty() {
            tracing::warn!(
                "{} changed: takes effect when refreshd restarts",
                restart_needed.join(", ")
            );
        }
        // A running credential that another one now sends as a bearer restarts, so that it
        // publishes its token (only followed credentials do).
        let newly_followed: BTreeSet<String> = new
            .credentials
            .iter()
            .flat_map(|c| c.source.bearers())
            .filter(|bearer| {
                !self.tokens.contains_key(*bearer)
                    && self.workers.contains_key(*bearer)
                    && !changed.iter().chain(&removed).any(|name| name == bearer)
            })
            .map(str::to_owned)
            .collect();
        self.config = new;
        if let Some(fleet) = &self.shared.fleet {
            fleet.set_names(self.config.shared_names());
        }
        self.followed = followed(&self.config);
        for name in removed.iter().chain(&changed).chain(&newly_followed) {
            self.stop_worker(name);
        }
        self.shared.model.remove(&removed);
        for name in &removed {
            self.tokens.remove(name);
        }
        for name in added.iter().chain(&changed).chain(&newly_followed) {
            let credential = Arc::clone(self.config.credential(name).expect("listed from new"));
            self.start_worker(credential);
        }
        tracing::info!(
            added = %added.join(","),
            removed = %removed.join(","),
            changed = %changed.join(","),
            "config reloaded ({why})"
        );
    }

    fn dispatch_rotate(&self, request: RotateRequest) {
        let names: Vec<String> = if request.names.is_empty() {
            self.workers.keys().cloned().collect()
        } else {
            request.names.clone()
        };
        let mut handles = Vec::new();
        for name in &names {
            match self.workers.get(name) {
                Some(handle) => handles.push(handle),
                None => {
                    let _ = request
                        .reply
                        .send(Err(format!("no credential named {name:?}")));
                    return;
                }
            }
        }
        let pending: Vec<_> = handles
            .into_iter()
            .map(|handle| {
                let (reply, result) = tokio::sync::oneshot::channel();
                handle.rotate(reply, request.if_due);
                result
            })
            .collect();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for result in pending {
                if let Ok(outcome) = result.await {
                    outcomes.push(outcome);
                }
            }
            let _ = request.reply.send(Ok(outcomes));
        });
    }

    /// `WATCHDOG=1` only while the timer queue runs, no rotation has been in progress for
    /// too long and no credential task has died. Each look costs the same whatever the
    /// number of credentials.
    fn watchdog(&mut self) {
        let mut stuck = Vec::new();
        let silence = self.shared.timers.silence();
        if silence > TIMERS_LIMIT {
            stuck.push(("the timer queue".to_owned(), silence));
        }
        if let Some((name, took)) = self.shared.liveness.oldest_rotation()
            && took > ROTATION_LIMIT
        {
            stuck.push((format!("credential {name}"), took));
        }
        for name in self.shared.liveness.dead() {
            if self.workers.contains_key(&name) {
                stuck.push((format!("credential {name}"), Duration::ZERO));
            }
        }
        self.shared
            .model
            .vitals()
            .beat(stuck.iter().map(|(what, _)| what.clone()).collect());
        if stuck.is_empty() {
            self.stuck_reported.clear();
            systemd::watchdog();
        } else {
            for (what, silence) in stuck {
                if self.stuck_reported.insert(what.clone()) {
                    tracing::error!(task = %what, silent_for = %format!("{}s", silence.as_secs()), "a task is not responding or has died; withholding the watchdog ping so the service manager restarts refreshd");
                }
            }
        }
        let summary = self.summary();
        systemd::status(&summary);
    }

    async fn shutdown(mut self) {
        systemd::stopping();
        self.shared.model.vitals().set_stopping();
        // Long enough for the slowest request in flight to answer and be stored: dropping
        // that answer could lose a rotated refresh token.
        let drain_limit = self
            .config
            .credentials
            .iter()
            .map(|c| c.timing.timeout)
            .max()
            .unwrap_or_default()
            + DRAIN_MARGIN;
        let mut joins = std::mem::take(&mut self.retiring);
        for handle in self.workers.values() {
            handle.stop();
        }
        joins.extend(
            std::mem::take(&mut self.workers)
                .into_values()
                .map(|h| h.join),
        );
        let drain = async {
            for join in joins {
                let _ = join.await;
            }
        };
        tokio::select! {
            _ = drain => {}
            _ = tokio::time::sleep(drain_limit) => tracing::warn!("rotations still running after {}s; exiting anyway", drain_limit.as_secs()),
            _ = self.signals.terminate.recv() => tracing::warn!("second SIGTERM: exiting without waiting"),
            _ = self.signals.interrupt.recv() => tracing::warn!("second SIGINT: exiting without waiting"),
        }
        // The lease rounds stop first, so that none renews what is released next.
        for task in &self.background {
            task.abort();
        }
        // Handed over at once rather than a lease later: another node takes them next round.
        if let Some(fleet) = &self.shared.fleet {
            fleet.release().await;
        }
        remove_socket(&self.config.daemon.control_socket);
        tracing::info!("stopped");
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
    let (fleet, unreachable) =
        crate::store::Fleet::join(store, config.shared_names(), clock).await?;
    if let Some(e) = unreachable {
        tracing::warn!(
            "{e}: starting without it; shared credentials are not refreshed until it answers"
        );
    }
    Ok(fleet)
}

/// The first attempts after start: with more credentials due than may refresh at once, it
/// says how many there are and, once a tenth of them (at least one batch) is done, how long
/// the rest should take at the pace so far.
struct FirstRound {
    started: tokio::time::Instant,
    /// Every credential's first attempt takes a permit, due or not.
    total: usize,
    due: usize,
    at_once: usize,
    settled: usize,
}

impl FirstRound {
    fn new(total: usize, due: usize, at_once: usize) -> FirstRound {
        if due > at_once {
            tracing::info!(
                due,
                max_concurrent_refreshes = at_once,
                "credentials need a refresh before refreshd is ready; refreshing {at_once} at a time"
            );
        }
        FirstRound {
            started: tokio::time::Instant::now(),
            total,
            due,
            at_once,
            settled: 0,
        }
    }

    /// One more credential had its first attempt.
    fn settled(&mut self) {
        self.settled += 1;
        if self.due > self.at_once && self.settled == (self.due / 10).max(self.at_once) {
            let took = self.started.elapsed().as_secs_f64();
            let rest = self.total.saturating_sub(self.settled) as f64;
            tracing::info!(
                "the first {} credentials took {took:.1}s: expect the other {rest} in about {:.0}s",
                self.settled,
                (took * rest / self.settled as f64).ceil()
            );
        }
    }
}

/// The credentials some credential of `config` sends as a bearer.
fn followed(config: &Config) -> BTreeSet<String> {
    config
        .credentials
        .iter()
        .flat_map(|c| c.source.bearers())
        .map(str::to_owned)
        .collect()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// A closed or absent channel never yields (the branch stays quiet instead of spinning).
async fn recv_opt(rx: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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

fn remove_socket(path: &PathBuf) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(control_socket = %path.display(), "cannot remove the control socket: {e}");
    }
}
