//! What every rotation of this process shares: the HTTP client, the state directory, the
//! clock, what a rotation does besides fetching (write targets and reload, or only fetch),
//! the fleet store when the config has one, and the states the disk refused (held with their
//! locks, see [`super::hold`]). The rotation itself is [`super::rotation`].
//!
//! Must never: rotate, or decide anything about a credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::policy;
use crate::clock::SharedClock;
use crate::config::{Credential, SourceConfig};
use crate::durable::LitterIndex;
use crate::reload::Reloader;
use crate::source::{self, BearerTokens};
use crate::state::{CredentialLock, CredentialState, StateDir};
use crate::store::Fleet;
use crate::target;

/// What a rotation does besides fetching and persisting.
pub(super) enum Effects {
    /// Write the targets, then run reload actions when something changed.
    WriteAndReload(Reloader),
    /// `check --online`: fetch and persist, leave targets and processes alone.
    FetchOnly,
}

/// What a rotation needs besides the credential.
pub struct Engine {
    pub(super) http: source::HttpClients,
    pub(super) state: StateDir,
    pub(super) clock: SharedClock,
    pub(super) effects: Effects,
    /// States that could not be stored (a full or failing disk), with their locks: see
    /// [`super::hold`].
    unsaved: Mutex<HashMap<String, (CredentialState, CredentialLock)>>,
    /// The fleet store that shared credentials go through, when the config has one.
    fleet: Option<Arc<Fleet>>,
    /// Each credential's rolling reload in progress, by generation (see [`super::roll`]).
    rolls: Mutex<HashMap<String, (u64, tokio::task::AbortHandle)>>,
    /// The daemon's notifier, once it has one: told when a rolling reload stops.
    notifier: std::sync::OnceLock<crate::notify::Notifier>,
}

impl Engine {
    /// The daemon's: reloads go through its shared, debouncing reloader.
    pub fn daemon(state: StateDir, clock: SharedClock, reloader: Reloader) -> Engine {
        Engine {
            http: source::HttpClients::new(),
            state,
            clock,
            effects: Effects::WriteAndReload(reloader),
            unsaved: Mutex::default(),
            fleet: None,
            rolls: Mutex::default(),
            notifier: std::sync::OnceLock::new(),
        }
    }

    /// This engine, with the credentials the config shares going through `fleet` (the
    /// config's store). Without it, a shared credential is refused, never run alone.
    pub fn with_fleet(mut self, fleet: Option<Arc<Fleet>>) -> Engine {
        self.fleet = fleet;
        self
    }

    /// A one-shot command's (`once`, `login`): one process, run in sequence, nothing to
    /// merge, so reloads run at once.
    pub fn once(state: StateDir) -> Engine {
        let reloader = Reloader::start(Duration::ZERO);
        Engine::daemon(state, crate::clock::system(), reloader)
    }

    /// `check --online`'s: fetches and persists, but touches no target and no process, and
    /// has no fleet (a shared credential is read from the store, never fetched, by `check`).
    pub fn check(state: StateDir) -> Engine {
        Engine {
            effects: Effects::FetchOnly,
            ..Engine::once(state)
        }
    }

    /// Gives the engine the daemon's notifier (the first one given stays).
    pub fn set_notifier(&self, notifier: crate::notify::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    pub(super) fn notifier(&self) -> Option<crate::notify::Notifier> {
        self.notifier.get().cloned()
    }

    pub(super) fn rolls(&self) -> MutexGuard<'_, HashMap<String, (u64, tokio::task::AbortHandle)>> {
        crate::sync::lock(&self.rolls)
    }

    pub(super) fn fleet_arc(&self) -> Option<Arc<Fleet>> {
        self.fleet.clone()
    }

    pub(super) fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_deref()
    }

    pub(super) fn unsaved(
        &self,
    ) -> MutexGuard<'_, HashMap<String, (CredentialState, CredentialLock)>> {
        crate::sync::lock(&self.unsaved)
    }

    /// Removes the temp files an earlier crash left beside `credential`'s state file and
    /// targets (only refreshd's own, by name and owner); how many. `index` lists each
    /// directory once for every credential, so only files with litter are locked and looked at.
    pub fn remove_litter(&self, credential: &Credential, index: &mut LitterIndex) -> usize {
        let locks = self.state.locks();
        let state = if index.may_have(&self.state.file(&credential.name)) {
            self.state.remove_litter(&credential.name)
        } else {
            0
        };
        state
            + credential
                .targets
                .iter()
                .filter(|target| index.may_have(&target.path))
                .map(|target| target::remove_litter(target, &locks))
                .sum::<usize>()
    }

    /// The current token of every credential this one's source uses as a bearer, or why it
    /// has none. Read without the bearer's lock: state files are replaced atomically.
    pub fn bearers_from_state(&self, source: &SourceConfig) -> BearerTokens {
        let now = self.clock.now();
        source
            .bearers()
            .into_iter()
            .map(|name| {
                let token = match self.state.load(name) {
                    Ok(state) => policy::bearer(state.token.as_ref(), now),
                    Err(e) => Err(e.to_string()),
                };
                (name.to_owned(), token)
            })
            .collect::<BearerTokens>()
    }
}
