//! The supervisor: owns the configuration, one task per credential ([`worker`]) and the
//! channels that carry each credential's token to the credentials that send it as a
//! bearer, the control socket, the metrics listener, the config-file watch, signals and
//! the service manager's notifications ([`systemd`]).
//!
//! Here: its state and its loop (signals, config edits, first attempts, `rotate` requests,
//! the watchdog's tick) and the credential tasks it starts and stops. Beside it, one file
//! per job: [`start`], [`reload`], [`watchdog`], [`shutdown`], the [`first_round`].
//!
//! It never refreshes a token itself and never cancels a rotation in progress: reloads
//! stop a credential's task between rotations, and SIGTERM waits for in-flight ones.

mod first_round;
mod reload;
mod shutdown;
mod start;

pub(super) use shutdown::drain_limit;
pub(super) use start::engine;
mod watchdog;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::publish::{self, TokenChannels, TokenWatch};
use super::{Signals, systemd, watch, worker};
use crate::config::{Config, Credential};
use crate::control::server::RotateRequest;
use crate::state::{DaemonLock, StateDir};
use crate::token::Token;
use first_round::FirstRound;

pub(super) struct Daemon {
    config: Config,
    /// The state directory, held open (shared with the engine's copy).
    state: StateDir,
    shared: worker::Shared,
    workers: BTreeMap<String, worker::Handle>,
    /// Each credential's current token, published by its task (kept across its restarts).
    tokens: TokenChannels,
    /// How other processes read tokens: the control socket's and the endpoints' one path.
    reads: crate::access::Reads,
    /// The SDK endpoints (`serve`), kept in step with the config.
    endpoints: crate::endpoint::Endpoints,
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
    fn start_worker(&mut self, credential: Arc<Credential>) {
        self.unsettled.insert(credential.name.clone());
        let name = credential.name.clone();
        let bearers: Vec<(String, TokenWatch)> = credential
            .source
            .bearers()
            .into_iter()
            .map(|bearer| (bearer.to_owned(), self.follow_token(bearer)))
            .collect();
        let rendered: Vec<(String, TokenWatch)> = credential
            .uses()
            .into_iter()
            .map(|used| (used.to_owned(), self.follow_token(used)))
            .collect();
        // Only a credential another one sends as a bearer publishes its token (a watch
        // channel per credential is half a kilobyte; ten thousand of them add up).
        let token = self
            .followed
            .contains(&name)
            .then(|| self.token_channel(&name).clone());
        let handle = worker::spawn(credential, self.shared.clone(), token, bearers, rendered);
        self.workers.insert(name, handle);
    }

    /// A receiver of `bearer`'s token (see [`publish::follow_token`]).
    fn follow_token(&mut self, bearer: &str) -> TokenWatch {
        publish::follow_token(&mut self.tokens, &self.state, bearer)
    }

    fn token_channel(&mut self, name: &str) -> &tokio::sync::watch::Sender<Option<Token>> {
        publish::token_channel(&mut self.tokens, name)
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
}

/// The credentials some credential of `config` sends as a bearer or renders in a template.
fn followed(config: &Config) -> BTreeSet<String> {
    config
        .credentials
        .iter()
        .flat_map(|c| c.source.bearers().into_iter().chain(c.uses()))
        .map(str::to_owned)
        .collect()
}

/// A closed or absent channel never yields (the branch stays quiet instead of spinning).
async fn recv_opt(rx: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
