//! The credential tasks of a few credentials without a daemon around them: `refreshd exec`'s
//! in-process engine when no daemon runs. The same [`worker`] tasks, [`Engine`], timer queue
//! and state directory (with its per-credential locks) as `refreshd run`: a task refreshes
//! at the credential's refresh point, writes its targets and runs its reloads exactly as the
//! daemon's would. An `exec` and a `run` on one host therefore take turns on a credential and
//! never spend one refresh token twice: every rotation takes the credential's lock and reads
//! its state again under it ([`crate::credential`]'s hold), so the second to come finds the
//! first one's token and only adopts it.
//!
//! Must never: take the daemon's lock (a `run` may start beside it), serve the control socket
//! or metrics, or rotate a credential shared through the fleet store (only a daemon, which
//! keeps the store's lease rounds going, may).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::publish::{TokenChannels, TokenWatch, follow_token, token_channel};
use super::supervisor::drain_limit;
use super::timers::Timers;
use super::worker;
use crate::config::{Config, Credential};
use crate::observe::{Model, Snapshot, Vitals};
use crate::state::{StateDir, StateError};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "credential {0} is shared through the fleet store ([daemon] store): only a running daemon (`refreshd run`) rotates it; start one, and `refreshd exec` follows it through the control socket"
    )]
    Shared(String),
    #[error("no credential named {0:?}")]
    Unknown(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The running tasks, until [`Embedded::stop`].
pub struct Embedded {
    workers: Vec<worker::Handle>,
    timer_task: JoinHandle<()>,
    settled: mpsc::UnboundedReceiver<String>,
    unsettled: BTreeSet<String>,
    drain_limit: Duration,
}

impl Embedded {
    /// Starts the tasks of `names` and of the credentials whose tokens they send as bearers;
    /// with a receiver of each named credential's token (the stored one until its task
    /// publishes another).
    pub fn start(
        config: &Config,
        names: &[String],
    ) -> Result<(Embedded, BTreeMap<String, TokenWatch>), EmbeddedError> {
        let state = StateDir::of(&config.daemon);
        let credentials = with_bearers(config, names)?;
        state.ready_to_write(credentials.iter().map(|c| c.name.as_str()))?;
        let clock = crate::clock::system();
        let (timers, timer_task) = Timers::start(clock.clone());
        let model = Model::new(
            Snapshot::new("exec"),
            None,
            Vitals::new(Duration::from_secs(30)),
            clock.clone(),
        );
        let (settled_tx, settled) = mpsc::unbounded_channel();
        let engine = super::supervisor::engine(&state, &clock, &model, None);
        let shared = worker::Shared::new(config, engine, None, clock, timers, model, settled_tx);
        let mut channels = TokenChannels::new();
        let tokens: BTreeMap<String, TokenWatch> = names
            .iter()
            .map(|name| (name.clone(), follow_token(&mut channels, &state, name)))
            .collect();
        let mut workers = Vec::with_capacity(credentials.len());
        for credential in &credentials {
            let bearers = credential
                .source
                .bearers()
                .into_iter()
                .map(|bearer| {
                    let watch = follow_token(&mut channels, &state, bearer);
                    (bearer.to_owned(), watch)
                })
                .collect();
            // Followed by this process or by another credential: it publishes its token.
            let token = channels
                .contains_key(&credential.name)
                .then(|| token_channel(&mut channels, &credential.name).clone());
            // A template's other credentials may not run here: its file is written again
            // when this credential's token changes, or by the daemon.
            workers.push(worker::spawn(
                credential.clone(),
                shared.clone(),
                token,
                bearers,
                Vec::new(),
            ));
        }
        let embedded = Embedded {
            workers,
            timer_task,
            settled,
            unsettled: credentials.iter().map(|c| c.name.clone()).collect(),
            drain_limit: drain_limit(credentials.iter().map(|c| &**c)),
        };
        Ok((embedded, tokens))
    }

    /// Returns once every task has made its first attempt (its outcome is in the log).
    pub async fn settled(&mut self) {
        while !self.unsettled.is_empty() {
            match self.settled.recv().await {
                Some(name) => {
                    self.unsettled.remove(&name);
                }
                None => return,
            }
        }
    }

    /// Stops the tasks once the rotations in progress have finished (as the daemon's stop
    /// waits for them: dropping a token response can lose a rotated refresh token).
    pub async fn stop(self) {
        for worker in &self.workers {
            worker.stop();
        }
        let drain = async {
            for worker in self.workers {
                let _ = worker.join.await;
            }
        };
        if tokio::time::timeout(self.drain_limit, drain).await.is_err() {
            tracing::warn!(
                "rotations still running after {}s; exiting anyway",
                self.drain_limit.as_secs()
            );
        }
        self.timer_task.abort();
    }
}

/// `names` and, before the credentials that send them, their bearers (and theirs).
fn with_bearers(config: &Config, names: &[String]) -> Result<Vec<Arc<Credential>>, EmbeddedError> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = names.to_vec();
    while let Some(name) = queue.pop() {
        if !wanted.insert(name.clone()) {
            continue;
        }
        let credential = config
            .credential(&name)
            .ok_or_else(|| EmbeddedError::Unknown(name.clone()))?;
        if credential.sharing.is_shared() {
            return Err(EmbeddedError::Shared(name));
        }
        queue.extend(credential.source.bearers().into_iter().map(str::to_owned));
    }
    Ok(config
        .dependency_order()
        .into_iter()
        .filter(|c| wanted.contains(&c.name))
        .filter_map(|c| config.credential(&c.name).cloned())
        .collect())
}
