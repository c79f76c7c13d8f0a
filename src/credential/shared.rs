//! One rotation of a credential shared through the fleet store. The node holding the lease
//! refreshes inside a [`Fence`] (request and commit in one transaction on the row), then
//! writes its targets; every other node takes the committed state over and writes its own.
//! While the store is unreachable nobody refreshes, except a credential whose source spends
//! no refresh token and may fall back to refreshing on its own.
//!
//! Must never: fetch outside a fence, write a target with a state the store has not
//! committed (a local fallback aside), or let an older store state replace a newer one here.

use time::OffsetDateTime;

use super::apply::log_current;
use super::outcome::{Report, RotationError, RotationOutcome, RotationResult};
use super::policy::{self, Trigger};
use super::rotation::Engine;
use crate::config::Credential;
use crate::source::{BearerTokens, FailureKind};
use crate::state::{CredentialLock, CredentialState};
use crate::store::{Claim, Fleet, StoreError};
use crate::token::{self, Token};

impl Engine {
    pub(super) async fn rotate_shared(
        &self,
        credential: &Credential,
        trigger: Trigger,
        jitter: time::Duration,
        bearers: &BearerTokens,
        fleet: &Fleet,
        local_fallback: bool,
    ) -> RotationResult {
        let started = tokio::time::Instant::now();
        let name = &credential.name;
        // A state the disk refused earlier is newer than the file: carry on from it (its lock
        // is still held), as the local path does.
        let (lock, mut state, mut unsaved) = match self.take_unsaved(name) {
            Some((state, lock)) => {
                let unsaved = self.store(credential, &state).err();
                (lock, state, unsaved)
            }
            None => match self.lock_and_load(credential).await {
                Ok((lock, state)) => (lock, state, None),
                Err(e) => return self.failed(credential, e),
            },
        };
        // A node that does not hold the lease only reads (no transaction, no connection of
        // its own): the holder's commits reach every follower this way.
        let claim = if fleet.holds(name) {
            fleet.claim(name, fetch_budget(credential)).await
        } else {
            fleet.read(name).await.map(Claim::Follower)
        };
        let claim = match claim {
            Ok(claim) => claim,
            Err(e) if local_fallback && !e.is_fatal() => {
                // The local path takes the lock (and any state still unsaved) itself.
                match unsaved {
                    Some(_) => self.keep_unsaved(name, state, lock),
                    None => drop(lock),
                }
                tracing::warn!(credential = %name, "{e}: refreshing on this host alone (local_fallback)");
                fleet.set_local(name, true);
                return self
                    .rotate_local(credential, trigger, jitter, bearers)
                    .await;
            }
            Err(e) => return self.store_failed(credential, lock, state, unsaved, e).await,
        };
        fleet.set_local(name, false);
        let outcome = match claim {
            Claim::Follower(stored) => {
                let stored = match self.follow(credential, fleet, stored, &trigger).await {
                    Ok(stored) => stored,
                    Err(e) => return self.store_failed(credential, lock, state, unsaved, e).await,
                };
                // The targets get what the store committed, even when this node holds a state
                // of the same generation that it could not commit.
                let committed = stored.as_ref().and_then(|stored| stored.token.clone());
                let took = take_over(&mut state, stored);
                if took {
                    self.save(credential, &state, &mut unsaved).await;
                }
                match committed.or_else(|| state.token.clone()) {
                    Some(token) => {
                        let mut report = self
                            .write_targets(credential, &token, jitter, started)
                            .await;
                        follow_up(&mut report, fleet, self.clock.now());
                        if took {
                            log_followed(credential, &token, &report, state.generation);
                        } else {
                            log_current(credential, &token, &report);
                        }
                        RotationOutcome::Current(report)
                    }
                    None => {
                        let empty = StoreError::Empty(name.clone(), fleet.lease);
                        return self
                            .store_failed(credential, lock, state, unsaved, empty)
                            .await;
                    }
                }
            }
            Claim::Held(fence, stored) => {
                // A state this node made but could not commit (the store failed at the
                // commit) is newer than the store's: it goes in before anything is spent.
                let ahead = stored.as_ref().is_none_or(|stored| {
                    stored.generation == state.generation
                        && state.last_rotation > stored.last_rotation
                });
                if !ahead && take_over(&mut state, stored) {
                    self.save(credential, &state, &mut unsaved).await;
                }
                let now = self.clock.now();
                let fetch = policy::should_fetch(
                    state.token.as_ref(),
                    state.last_rotation,
                    &trigger,
                    now,
                    &credential.timing,
                );
                match state.token.clone() {
                    Some(token) if !fetch => {
                        if ahead {
                            match fence.commit(&state).await {
                                Ok(generation) => {
                                    state.generation = Some(generation);
                                    self.save(credential, &state, &mut unsaved).await;
                                }
                                Err(e) => {
                                    return self
                                        .store_failed(credential, lock, state, unsaved, e)
                                        .await;
                                }
                            }
                        } else {
                            fence.release().await;
                        }
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
                            Some(*fence),
                        )
                        .await
                    }
                }
            }
        };
        self.close(
            name,
            lock,
            RotationResult {
                outcome,
                state,
                unsaved,
            },
        )
    }

    /// Ends a rotation: a state the disk refused is kept, with its lock, for the next one.
    fn close(&self, name: &str, lock: CredentialLock, result: RotationResult) -> RotationResult {
        if result.unsaved.is_some() {
            self.keep_unsaved(name, result.state.clone(), lock);
        }
        result
    }

    /// What a follower takes from the store: `stored`, after handing over a new bootstrap
    /// refresh token of its configuration; for `rotate` here, after the holder rotated.
    async fn follow(
        &self,
        credential: &Credential,
        fleet: &Fleet,
        stored: Option<CredentialState>,
        trigger: &Trigger,
    ) -> Result<Option<CredentialState>, StoreError> {
        let stored = self.hand_over_bootstrap(credential, fleet, stored).await?;
        let Trigger::Force { .. } = trigger else {
            return Ok(stored);
        };
        let name = &credential.name;
        let seen = stored.as_ref().and_then(|s| s.generation).unwrap_or(0);
        let wait = credential.timing.timeout * 2 + fleet.lease;
        if fleet.ask_rotation(name, seen, wait).await? {
            fleet.read(name).await
        } else {
            Err(StoreError::NotRotated {
                credential: name.clone(),
                waited: wait,
            })
        }
    }

    /// A follower whose configuration holds a bootstrap refresh token the store has not seen
    /// hands it over (the holder spends it next); the store's state, read again if so.
    async fn hand_over_bootstrap(
        &self,
        credential: &Credential,
        fleet: &Fleet,
        stored: Option<CredentialState>,
    ) -> Result<Option<CredentialState>, StoreError> {
        let configured = credential
            .source
            .oauth_refresh()
            .and_then(|source| source.refresh_token.as_ref())
            .and_then(|reference| reference.resolve().ok());
        let (Some(configured), Some(known)) = (configured, stored.as_ref()) else {
            return Ok(stored);
        };
        if known.bootstrap_fingerprint.as_deref()
            == Some(crate::token::fingerprint(&configured).as_str())
        {
            return Ok(stored);
        }
        if !fleet
            .hand_over_bootstrap(&credential.name, &configured)
            .await?
        {
            return Ok(stored);
        }
        tracing::info!(credential = %credential.name, "the configured refresh token is new: handed to the store, for the lease holder to spend");
        fleet.read(&credential.name).await
    }

    /// The store could not be used: targets keep what they hold, and the failure is
    /// reported like a refresh's (status, metrics, `on_failure`). Ends the rotation.
    async fn store_failed(
        &self,
        credential: &Credential,
        lock: CredentialLock,
        mut state: CredentialState,
        mut unsaved: Option<String>,
        e: StoreError,
    ) -> RotationResult {
        let kind = FailureKind::Transient;
        let error = RotationError::from(e);
        if error.is_waiting() {
            // Waiting for the holder's first commit (a fleet's cold start): status says so,
            // the commit's notification wakes this task, and no line per credential is logged.
            tracing::debug!(credential = %credential.name, "{error}");
            state.record_failure(kind, error.to_string(), self.clock.now());
            self.save(credential, &state, &mut unsaved).await;
        } else {
            self.record_failure(credential, &mut state, &error, kind, &mut unsaved)
                .await;
        }
        let failed = RotationResult {
            outcome: RotationOutcome::Failed { error, kind },
            state,
            unsaved,
        };
        self.close(&credential.name, lock, failed)
    }
}

/// The longest a fetch may take: a chain tries its members one after another, each within
/// the timeout. The fence's lease and the server's idle limit cover it.
fn fetch_budget(credential: &Credential) -> std::time::Duration {
    let members = match &credential.source {
        crate::config::SourceConfig::Chain(chain) => chain.sources.len().max(1),
        _ => 1,
    };
    credential.timing.timeout * u32::try_from(members).unwrap_or(u32::MAX)
}

/// The follower's line for each new generation it takes over (the holder's is `rotated`).
fn log_followed(credential: &Credential, token: &Token, report: &Report, generation: Option<u64>) {
    tracing::info!(
        credential = %credential.name,
        generation = generation.unwrap_or(0),
        expires_at = %token::rfc3339(token.expires_at),
        targets = report.targets_written + report.targets_unchanged,
        target_errors = report.target_errors.len(),
        reloads = report.reloads_run,
        reload_errors = report.reload_errors.len(),
        took = %format!("{}ms", report.took.as_millis()),
        fingerprint = %report.fingerprint,
        "followed the store"
    );
}

/// Takes the store's state over when it is newer than this node's; whether it was.
fn take_over(state: &mut CredentialState, stored: Option<CredentialState>) -> bool {
    let Some(stored) = stored else {
        return false;
    };
    if stored.generation <= state.generation {
        return false;
    }
    state.token = stored.token;
    state.refresh_token = stored.refresh_token;
    state.bootstrap_fingerprint = stored.bootstrap_fingerprint;
    state.last_rotation = stored.last_rotation;
    state.generation = stored.generation;
    state.last_error = None;
    state.needs_login = false;
    state.consecutive_failures = 0;
    true
}

/// A follower looks again a lease after the holder was due (it hears a commit sooner), and
/// never sooner than a lease from now.
fn follow_up(report: &mut Report, fleet: &Fleet, now: OffsetDateTime) {
    let lease = time::Duration::try_from(fleet.lease).unwrap_or(time::Duration::SECOND);
    report.next_refresh = (report.next_refresh + lease).max(now + lease);
}
