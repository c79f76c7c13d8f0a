//! One rotation of one credential, carried out: lock, decide (by [`policy`]), fetch,
//! persist (by [`transition`]), write targets, run reloads, report. `refreshd once` calls
//! it directly; the daemon calls it from each credential's task.
//!
//! The order is the invariant of design §1: the new token and any rotated refresh token are
//! fsynced in the state directory before a target is touched. A failed fetch never changes
//! a target. Nothing here logs a token: only fingerprints.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

use super::outcome::{Report, RotationError, RotationOutcome, RotationResult};
use super::policy::{self, Trigger};
use super::transition::Spend;
use crate::clock::SharedClock;
use crate::config::{Credential, Sharing, SourceConfig};
use crate::durable::LitterIndex;
use crate::reload::Reloader;
use crate::source::{self, BearerTokens, FailureKind, FetchContext, SourceError};
use crate::state::{CredentialLock, CredentialState, StateDir};
use crate::store::{Fence, Fleet};
use crate::target;
use crate::token::{self, Token};

/// What a rotation does besides fetching and persisting.
pub(super) enum Effects {
    /// Write the targets, then run reload actions when something changed.
    WriteAndReload(Reloader),
    /// `check --online`: fetch and persist, leave targets and processes alone.
    FetchOnly,
}

/// What a rotation needs besides the credential.
pub struct Engine {
    http: reqwest::Client,
    pub(super) state: StateDir,
    pub(super) clock: SharedClock,
    pub(super) effects: Effects,
    /// States that could not be stored (a full or failing disk): newer than their files, so
    /// they are what the next rotation spends, and their credential's lock stays held so
    /// that no other process (`once` from a timer) spends the older refresh token on file.
    unsaved: Mutex<HashMap<String, (CredentialState, CredentialLock)>>,
    /// The fleet store shared credentials go through, when the config has one.
    pub(super) fleet: Option<Arc<Fleet>>,
}

/// Inside a fence, a refresh token kept from an answer that failed otherwise goes to the
/// store at once: the old one is spent, and the next holder must not spend it again.
async fn commit_kept(fence: Option<Fence<'_>>, state: &mut CredentialState) {
    if let Some(fence) = fence {
        match fence.commit(state).await {
            Ok(generation) => state.generation = Some(generation),
            Err(e) => {
                tracing::error!("{e}: the rotated refresh token is kept in the state file only")
            }
        }
    }
}

impl Engine {
    /// The daemon's: reloads go through its shared, debouncing reloader.
    pub fn daemon(state: StateDir, clock: SharedClock, reloader: Reloader) -> Engine {
        Engine {
            http: source::http_client(),
            state,
            clock,
            effects: Effects::WriteAndReload(reloader),
            unsaved: Mutex::default(),
            fleet: None,
        }
    }

    /// This engine, with shared credentials going through `fleet`.
    pub fn with_fleet(mut self, fleet: Option<Arc<Fleet>>) -> Engine {
        self.fleet = fleet;
        self
    }

    /// A one-shot command's (`once`, `login`): one process, run in sequence, nothing to
    /// merge, so reloads run at once.
    pub fn once(state: StateDir) -> Engine {
        Engine::daemon(
            state,
            crate::clock::system(),
            Reloader::start(Duration::ZERO),
        )
    }

    /// `check --online`'s: fetches and persists, but touches no target and no process.
    pub fn check(state: StateDir) -> Engine {
        Engine {
            http: source::http_client(),
            state,
            clock: crate::clock::system(),
            effects: Effects::FetchOnly,
            unsaved: Mutex::default(),
            fleet: None,
        }
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

    /// One rotation without jitter, with bearer tokens read from the state directory
    /// (one-shot commands; the daemon hands its own bearers to [`Engine::rotate_with`]).
    pub async fn rotate(&self, credential: &Credential, trigger: Trigger) -> RotationResult {
        let bearers = self.bearers_from_state(&credential.source);
        self.rotate_with(credential, trigger, time::Duration::ZERO, &bearers)
            .await
    }

    /// Runs one rotation of `credential`, waiting for its lock first, planning the next
    /// refresh `jitter` away from the schedule, and sending `bearers` to an `http` source.
    pub async fn rotate_with(
        &self,
        credential: &Credential,
        trigger: Trigger,
        jitter: time::Duration,
        bearers: &BearerTokens,
    ) -> RotationResult {
        if let (Some(fleet), Sharing::Shared { local_fallback }) = (&self.fleet, credential.sharing)
        {
            return self
                .rotate_shared(credential, trigger, jitter, bearers, fleet, local_fallback)
                .await;
        }
        self.rotate_local(credential, trigger, jitter, bearers)
            .await
    }

    /// [`Engine::rotate_with`] on this host alone.
    pub(super) async fn rotate_local(
        &self,
        credential: &Credential,
        trigger: Trigger,
        jitter: time::Duration,
        bearers: &BearerTokens,
    ) -> RotationResult {
        let started = tokio::time::Instant::now();
        let held = self.take_unsaved(&credential.name);
        if held.is_none()
            && matches!(trigger, Trigger::IfDue)
            && let Some(result) = self.already_current(credential, jitter, started).await
        {
            return result;
        }
        let (lock, mut state, mut unsaved) = match held {
            // Newer than the file: store it first, and carry on from it either way.
            Some((state, lock)) => {
                let unsaved = self.store(credential, &state).err();
                if unsaved.is_none() {
                    tracing::info!(credential = %credential.name, "the state that could not be stored earlier is stored now");
                }
                (lock, state, unsaved)
            }
            None => match self.lock_and_load(credential).await {
                Ok((lock, state)) => (lock, state, None),
                Err(e) => return self.failed(credential, e),
            },
        };
        let now = self.clock.now();
        if state.token.is_none() && !matches!(trigger, Trigger::Force { .. }) {
            self.adopt_from_targets(credential, &mut state, now, &mut unsaved)
                .await;
        }
        let fetch = policy::should_fetch(
            state.token.as_ref(),
            state.last_rotation,
            &trigger,
            now,
            &credential.timing,
        );
        let outcome = match state.token.clone() {
            Some(token) if !fetch => {
                self.write_current(credential, &token, jitter, started)
                    .await
            }
            _ => {
                self.refresh_or_record(
                    credential,
                    &mut state,
                    jitter,
                    started,
                    bearers,
                    &mut unsaved,
                    None,
                )
                .await
            }
        };
        if unsaved.is_some() {
            self.keep_unsaved(&credential.name, state.clone(), lock);
        }
        RotationResult {
            outcome,
            state,
            unsaved,
        }
    }

    /// Takes `credential`'s lock and reads its state under it (another process may have just
    /// rotated), on the blocking pool: the lock may be held by another process, and the disk
    /// may be slow.
    pub(super) async fn lock_and_load(
        &self,
        credential: &Credential,
    ) -> Result<(CredentialLock, CredentialState), RotationError> {
        let state_dir = self.state.clone();
        let name = credential.name.clone();
        tokio::task::spawn_blocking(move || {
            let lock = state_dir.lock(&name)?;
            let state = state_dir.load(&name)?;
            Ok::<_, RotationError>((lock, state))
        })
        .await
        .unwrap_or_else(|e| Err(RotationError::Internal(e.to_string())))
    }

    /// Tries to store what is still unsaved for `credential` (`once` retries this before it
    /// gives up); the reason it still cannot be stored, if so.
    pub fn store_unsaved(&self, credential: &Credential) -> Option<String> {
        let (state, lock) = self.take_unsaved(&credential.name)?;
        let reason = self.store(credential, &state).err()?;
        self.keep_unsaved(&credential.name, state, lock);
        Some(reason)
    }

    pub(super) fn take_unsaved(&self, name: &str) -> Option<(CredentialState, CredentialLock)> {
        self.unsaved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name)
    }

    pub(super) fn keep_unsaved(&self, name: &str, state: CredentialState, lock: CredentialLock) {
        self.unsaved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned(), (state, lock));
    }

    /// Stores `state`; on failure says why and what is at risk, and the caller keeps it.
    pub(super) fn store(
        &self,
        credential: &Credential,
        state: &CredentialState,
    ) -> Result<(), String> {
        self.state
            .save(&credential.name, state)
            .map_err(|e| self.unsaved_because(credential, state, e))
    }

    /// Says why `state` could not be stored and what is at risk; the reason.
    fn unsaved_because(
        &self,
        credential: &Credential,
        state: &CredentialState,
        e: impl std::fmt::Display,
    ) -> String {
        tracing::error!(
            credential = %credential.name,
            "{e}: the new state is kept in memory, and this credential's lock held, until it can be stored (retried with backoff); if refreshd stops before then, {}",
            if state.refresh_token.is_some() {
                "the newest refresh token is lost and, where the provider allows each refresh token once, the credential needs a new login"
            } else {
                "only its status history is lost"
            }
        );
        e.to_string()
    }

    /// [`Engine::store`] on the blocking pool (an fsync must not stall other credentials'
    /// timers), remembering the outcome for the rotation's result.
    pub(super) async fn save(
        &self,
        credential: &Credential,
        state: &CredentialState,
        unsaved: &mut Option<String>,
    ) {
        let state_dir = self.state.clone();
        let name = credential.name.clone();
        let copy = state.clone();
        let saved = tokio::task::spawn_blocking(move || state_dir.save(&name, &copy)).await;
        *unsaved = match saved {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(self.unsaved_because(credential, state, e)),
            Err(e) => Some(self.unsaved_because(credential, state, e)),
        };
    }

    /// [`Engine::refresh`], with a failure recorded in `state`: the outcome.
    // The rotation's whole context; a struct for it would only be taken apart here.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn refresh_or_record(
        &self,
        credential: &Credential,
        state: &mut CredentialState,
        jitter: time::Duration,
        started: tokio::time::Instant,
        bearers: &BearerTokens,
        unsaved: &mut Option<String>,
        fence: Option<Fence<'_>>,
    ) -> RotationOutcome {
        let refreshed = self
            .refresh(credential, state, jitter, started, bearers, unsaved, fence)
            .await;
        match refreshed {
            Ok(report) => RotationOutcome::Rotated(report),
            Err(error) => {
                let kind = error.kind();
                self.record_failure(credential, state, &error, kind, unsaved)
                    .await;
                RotationOutcome::Failed { error, kind }
            }
        }
    }

    // The rotation's whole context; a struct for it would only be taken apart here.
    #[allow(clippy::too_many_arguments)]
    async fn refresh(
        &self,
        credential: &Credential,
        state: &mut CredentialState,
        jitter: time::Duration,
        started: tokio::time::Instant,
        bearers: &BearerTokens,
        unsaved: &mut Option<String>,
        fence: Option<Fence<'_>>,
    ) -> Result<Report, RotationError> {
        let seen = fence.as_ref().map(|f| f.bootstraps_seen.as_slice());
        let spend = self.refresh_token_to_spend(credential, state, seen)?;
        if let Some(fence) = &fence {
            fence.still_held()?;
        }
        let previous_expiry = state.token.as_ref().map(|t| t.expires_at);
        let ctx = FetchContext {
            credential: &credential.name,
            http: &self.http,
            timeout: credential.timing.timeout,
            refresh_token: spend.refresh_token.as_ref(),
            bearers,
        };
        let fetched = match source::fetch(&credential.source, &ctx).await {
            Ok(fetched) => fetched,
            Err(SourceError::Incomplete {
                origin,
                reason,
                refresh_token,
            }) => {
                // The old refresh token is spent; the new one must survive the failure.
                state.keep_refresh_token(refresh_token, spend);
                commit_kept(fence, state).await;
                return Err(SourceError::Malformed {
                    origin,
                    reason: format!("{reason} (its new refresh token was kept)"),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let received_at = self.clock.now();
        let lifetime = credential.timing.default_lifetime;
        let (token, rotated_refresh) = match Token::from_fetched(fetched, received_at, lifetime) {
            Ok(fetched) => fetched,
            Err(absurd) => {
                // Nothing to schedule by; but a rotated refresh token must survive.
                let kept = absurd.refresh_token.is_some();
                if let Some(refresh_token) = absurd.refresh_token {
                    state.keep_refresh_token(refresh_token, spend);
                    commit_kept(fence, state).await;
                }
                let kept = if kept {
                    " (its new refresh token was kept)"
                } else {
                    ""
                };
                return Err(SourceError::Malformed {
                    origin: credential.source.kind().to_owned(),
                    reason: format!("{}{kept}", absurd.reason),
                }
                .into());
            }
        };
        let rotated = rotated_refresh.is_some();
        state.record_success(token.clone(), rotated_refresh, spend, received_at);
        // Across hosts, the commit comes first: no host writes a target before it. When it
        // fails, this host keeps the new state (its refresh token may be the only copy) and
        // commits it when it next holds the lease.
        if let Some(fence) = fence {
            match fence.commit(state).await {
                Ok(generation) => state.generation = Some(generation),
                Err(e) => {
                    self.save(credential, state, unsaved).await;
                    return Err(e.into());
                }
            }
        }
        // The invariant: durable before any target is touched. When the disk refuses, the
        // state lives on in memory (and is what the next attempt spends), and the targets
        // still get the new token: it is valid, and the old one may not be for long.
        self.save(credential, state, unsaved).await;

        if let Some(warning) = policy::clock_skew(
            token.issued_at,
            token.expires_at,
            received_at,
            &credential.timing,
        ) {
            tracing::warn!(credential = %credential.name, "clock skew: {warning}");
        }
        if previous_expiry.is_some_and(|before| token.expires_at < before) {
            tracing::warn!(credential = %credential.name, expires_at = %token::rfc3339(token.expires_at), "the refreshed token expires earlier than the one it replaces");
        }
        let report = self
            .write_targets(credential, &token, jitter, started)
            .await;
        if let Some(first) = report.target_errors.first() {
            state.record_target_error(first.to_string(), self.clock.now());
            self.save(credential, state, unsaved).await;
        }
        tracing::info!(
            credential = %credential.name,
            expires_at = %token::rfc3339(token.expires_at),
            next_refresh = %token::rfc3339(report.next_refresh),
            targets = report.targets_written + report.targets_unchanged,
            target_errors = report.target_errors.len(),
            reloads = report.reloads_run,
            reload_errors = report.reload_errors.len(),
            took = %format!("{}ms", report.took.as_millis()),
            fingerprint = %report.fingerprint,
            refresh_token_rotated = rotated,
            served_by = token.served.as_ref().map(|s| tracing::field::debug(&s.by)),
            "rotated"
        );
        Ok(report)
    }

    /// For `oauth-refresh` (also in a chain): the refresh token to spend. A configured one
    /// whose fingerprint is among `seen` (the fleet store took it over before) is spent
    /// already: the stored one carries on.
    fn refresh_token_to_spend(
        &self,
        credential: &Credential,
        state: &CredentialState,
        seen: Option<&[String]>,
    ) -> Result<Spend, RotationError> {
        let Some(source) = credential.source.oauth_refresh() else {
            return Ok(Spend::default());
        };
        let configured = source
            .refresh_token
            .as_ref()
            .map(|r| r.resolve())
            .filter(|configured| match (configured, seen) {
                (Ok(token), Some(seen)) if state.refresh_token.is_some() => {
                    !seen.contains(&crate::token::fingerprint(token))
                }
                _ => true,
            });
        let in_chain = matches!(credential.source, SourceConfig::Chain(_));
        state
            .refresh_token_to_spend(configured, in_chain)
            .map_err(|reason| RotationError::NoRefreshToken {
                credential: credential.name.clone(),
                reason,
            })
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
            .collect::<BTreeMap<String, Result<SecretString, String>>>()
    }

    /// With no token in state (a first start, or a state directory that was lost), a JWT
    /// still valid and not yet due in one of the targets is taken over instead of being
    /// replaced: starting refreshd does not force a rotation.
    async fn adopt_from_targets(
        &self,
        credential: &Credential,
        state: &mut CredentialState,
        now: OffsetDateTime,
        unsaved: &mut Option<String>,
    ) {
        // Off the async workers: a target is a file someone else may control.
        let targets = credential.targets.clone();
        let timing = credential.timing.clone();
        let found = tokio::task::spawn_blocking(move || {
            targets.iter().find_map(|target| {
                let value = target::read_current(target)?;
                let fetched = token::Fetched::new(value);
                let (found, _) = Token::from_fetched(fetched, now, timing.default_lifetime).ok()?;
                policy::adoptable(&found, now, &timing).then(|| (found, target.path.clone()))
            })
        })
        .await
        .ok()
        .flatten();
        let Some((found, path)) = found else {
            return;
        };
        tracing::info!(
            credential = %credential.name,
            target = %path.display(),
            expires_at = %token::rfc3339(found.expires_at),
            fingerprint = %found.fingerprint(),
            "reusing the still-valid token found in a target"
        );
        state.token = Some(found);
        self.save(credential, state, unsaved).await;
    }

    pub(super) async fn record_failure(
        &self,
        credential: &Credential,
        state: &mut CredentialState,
        error: &RotationError,
        kind: FailureKind,
        unsaved: &mut Option<String>,
    ) {
        let now = self.clock.now();
        // A refresh whose answer never came may have been spent: the provider then refuses
        // the token we still hold. Say so rather than leave a bare invalid_grant.
        let after_timeout = state
            .last_error
            .as_ref()
            .is_some_and(|e| e.message.contains(" timed out after "));
        let mut message = error.to_string();
        if kind == FailureKind::Permanent
            && after_timeout
            && credential.source.oauth_refresh().is_some()
        {
            message.push_str(" (the refresh before this one timed out: the provider may have rotated the refresh token in an answer that never arrived; log in again)");
        }
        state.record_failure(kind, message.clone(), now);
        let held = state.token.as_ref().filter(|t| t.is_valid_at(now));
        match kind {
            FailureKind::Permanent => tracing::error!(
                credential = %credential.name,
                needs_login = true,
                targets_keep = held.map(|t| token::rfc3339(t.expires_at)).unwrap_or_else(|| "nothing valid".into()),
                "refresh failed: {message}"
            ),
            FailureKind::Transient => {
                tracing::warn!(credential = %credential.name, failures = state.consecutive_failures, "refresh failed: {message}")
            }
        }
        self.save(credential, state, unsaved).await;
    }

    /// The lock or the state file could not be had: nothing was fetched or changed. The
    /// state is read again, without the lock, for the caller's status.
    pub(super) fn failed(&self, credential: &Credential, error: RotationError) -> RotationResult {
        tracing::error!(credential = %credential.name, "{error}");
        RotationResult {
            state: self.state.load(&credential.name).unwrap_or_default(),
            unsaved: None,
            outcome: RotationOutcome::Failed {
                error,
                kind: FailureKind::Transient,
            },
        }
    }
}
