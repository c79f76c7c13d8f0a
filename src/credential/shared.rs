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
use crate::state::CredentialState;
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
        let (lock, mut state) = match self.lock_and_load(credential).await {
            Ok(held) => held,
            Err(e) => return self.failed(credential, e),
        };
        // A node that does not hold the lease only reads (no transaction, no connection of
        // its own): the holder's commits reach every follower this way.
        let claim = if fleet.holds(name) {
            fleet.claim(name, credential.timing.timeout).await
        } else {
            fleet.read(name).await.map(Claim::Follower)
        };
        let claim = match claim {
            Ok(claim) => claim,
            Err(e) if local_fallback && !e.is_fatal() => {
                drop(lock);
                tracing::warn!(credential = %name, "{e}: refreshing on this host alone (local_fallback)");
                fleet.set_local(name, true);
                return self
                    .rotate_local(credential, trigger, jitter, bearers)
                    .await;
            }
            Err(e) => return self.store_failed(credential, state, e).await,
        };
        fleet.set_local(name, false);
        let mut unsaved = None;
        let outcome = match claim {
            Claim::Follower(stored) => {
                let stored = match self.hand_over_bootstrap(credential, fleet, stored).await {
                    Ok(stored) => stored,
                    Err(e) => return self.store_failed(credential, state, e).await,
                };
                let stored = match trigger {
                    // `rotate` here: the holder does it; wait for its commit.
                    Trigger::Force { .. } => {
                        let seen = stored.as_ref().and_then(|s| s.generation).unwrap_or(0);
                        let wait = credential.timing.timeout * 2 + fleet.lease;
                        match fleet.ask_rotation(name, seen, wait).await {
                            Ok(true) => fleet.read(name).await,
                            Ok(false) => Err(StoreError::Unreachable(format!(
                                "the holder of {name} did not rotate it within {}",
                                humantime::format_duration(wait)
                            ))),
                            Err(e) => Err(e),
                        }
                    }
                    _ => Ok(stored),
                };
                let stored = match stored {
                    Ok(stored) => stored,
                    Err(e) => return self.store_failed(credential, state, e).await,
                };
                let took = take_over(&mut state, stored);
                if took {
                    self.save(credential, &state, &mut unsaved).await;
                }
                match state.token.clone() {
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
                        drop(lock);
                        return self
                            .store_failed(
                                credential,
                                state,
                                StoreError::Empty(name.clone(), fleet.lease),
                            )
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
                        let committed = if ahead {
                            fence.commit(&state).await.map(Some)
                        } else {
                            fence.release().await;
                            Ok(None)
                        };
                        match committed {
                            Ok(generation) => {
                                if let Some(generation) = generation {
                                    state.generation = Some(generation);
                                    self.save(credential, &state, &mut unsaved).await;
                                }
                                let report = self
                                    .write_targets(credential, &token, jitter, started)
                                    .await;
                                log_current(credential, &token, &report);
                                RotationOutcome::Current(report)
                            }
                            Err(e) => return self.store_failed(credential, state, e).await,
                        }
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
        drop(lock);
        RotationResult {
            outcome,
            state,
            unsaved,
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
    /// reported like a refresh's (status, metrics, `on_failure`).
    async fn store_failed(
        &self,
        credential: &Credential,
        mut state: CredentialState,
        e: StoreError,
    ) -> RotationResult {
        let mut unsaved = None;
        if let StoreError::Empty(..) = e {
            // Waiting for the holder's first commit (a fleet's cold start): status says so,
            // the commit's notification wakes this task, and no line per credential is logged.
            tracing::debug!(credential = %credential.name, "{e}");
            state.record_failure(FailureKind::Transient, e.to_string(), self.clock.now());
            self.save(credential, &state, &mut unsaved).await;
            return RotationResult {
                outcome: RotationOutcome::Failed {
                    error: e.into(),
                    kind: FailureKind::Transient,
                },
                state,
                unsaved,
            };
        }
        let error = RotationError::from(e);
        self.record_failure(
            credential,
            &mut state,
            &error,
            FailureKind::Transient,
            &mut unsaved,
        )
        .await;
        RotationResult {
            outcome: RotationOutcome::Failed {
                error,
                kind: FailureKind::Transient,
            },
            state,
            unsaved,
        }
    }
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
