//! One rotation of one credential, whatever holds it: lock and load ([`super::hold`]),
//! open the ledger ([`super::ledger`]: this host alone, or the fleet store), decide
//! ([`super::decide`]), then carry the step out: fetch and record ([`super::refresh`]),
//! persist (the fleet's commit, then this host's state file), write targets and run reloads
//! ([`super::apply`]), and report. `refreshd once` calls it directly; the daemon calls it
//! from each credential's task.
//!
//! The order is the invariant of design §1: the new token and any rotated refresh token are
//! durable (committed to the store, then fsynced here) before a target is touched. A failed
//! fetch never changes a target. Nothing here logs a token: only fingerprints.

use std::time::Duration;

use secrecy::SecretString;

use super::decide::{self, Situation, Step};
use super::engine::Engine;
use super::hold::Hold;
use super::ledger::{Ledger, Session};
use super::outcome::{RotationError, RotationOutcome, RotationResult};
use super::policy::Trigger;
use crate::config::Credential;
use crate::source::{BearerTokens, FailureKind};
use crate::state::CredentialState;
use crate::store::StoreError;

/// One rotation's request: what it rotates, why, and with what.
pub(super) struct Job<'a> {
    pub credential: &'a Credential,
    pub trigger: &'a Trigger,
    /// The next refresh is planned this far from the schedule.
    pub jitter: time::Duration,
    pub bearers: &'a BearerTokens,
    pub started: tokio::time::Instant,
}

/// What [`Engine::rotate_with`] came to.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per rotation and consumed at once; boxing would cost an allocation per rotation for the rare variant's sake"
)]
pub enum Rotation {
    Done(RotationResult),
    /// A follower asked the fleet's lease holder to rotate: the caller waits, holding neither
    /// the credential's lock nor a refresh permit, for a generation after `seen` (at most
    /// `wait`), then rotates again ([`Engine::holder_silent`] when none came).
    Asked {
        seen: u64,
        wait: Duration,
    },
}

/// A rotation decides again after a step that changes what it sees (a takeover, a commit,
/// a handover); this many decisions always settle (a property in `decide/tests.rs`).
const DECISIONS: usize = 4;

impl Engine {
    /// One rotation without jitter, with bearer tokens read from the state directory (the
    /// one-shot commands). A follower's rotate request is waited for here, holding nothing.
    pub async fn rotate(&self, credential: &Credential, trigger: Trigger) -> RotationResult {
        let bearers = self.bearers_from_state(&credential.source);
        let zero = time::Duration::ZERO;
        let (seen, wait) = match self.rotate_with(credential, trigger, zero, &bearers).await {
            Rotation::Done(result) => return result,
            Rotation::Asked { seen, wait } => (seen, wait),
        };
        let came = match self.fleet() {
            Some(fleet) => {
                fleet
                    .wait_for_generation(&credential.name, seen, wait)
                    .await
            }
            None => false,
        };
        if !came {
            return self.holder_silent(credential, wait).await;
        }
        match self
            .rotate_with(credential, Trigger::IfDue, zero, &bearers)
            .await
        {
            Rotation::Done(result) => result,
            Rotation::Asked { wait, .. } => self.holder_silent(credential, wait).await,
        }
    }

    /// Runs one rotation of `credential`, waiting for its lock first, planning the next
    /// refresh `jitter` away from the schedule, and sending `bearers` to an `http` source.
    pub async fn rotate_with(
        &self,
        credential: &Credential,
        trigger: Trigger,
        jitter: time::Duration,
        bearers: &BearerTokens,
    ) -> Rotation {
        let job = Job {
            credential,
            trigger: &trigger,
            jitter,
            bearers,
            started: tokio::time::Instant::now(),
        };
        let ledger = match Ledger::of(credential, self.fleet()) {
            Ok(ledger) => ledger,
            Err(e) => return Rotation::Done(self.failed(credential, e.into())),
        };
        if ledger.is_local()
            && trigger == Trigger::IfDue
            && !self.has_unsaved(&credential.name)
            && let Some(result) = self.already_current(credential, jitter, job.started).await
        {
            return Rotation::Done(result);
        }
        let mut hold = match self.hold(credential).await {
            Ok(hold) => hold,
            Err(e) => return Rotation::Done(self.failed(credential, e)),
        };
        let outcome = self.carry_out(&job, &ledger, &mut hold).await;
        let result = RotationResult {
            state: hold.state.clone(),
            unsaved: hold.unsaved.clone(),
            outcome: match outcome {
                Ok(outcome) => outcome,
                Err(asked) => {
                    self.let_go(&credential.name, hold);
                    return asked;
                }
            },
        };
        self.let_go(&credential.name, hold);
        Rotation::Done(result)
    }

    /// Opens the ledger, decides and carries the steps out until one ends the rotation.
    /// `Err` only for a follower's rotate request, which is waited for outside the hold.
    async fn carry_out(
        &self,
        job: &Job<'_>,
        ledger: &Ledger<'_>,
        hold: &mut Hold,
    ) -> Result<RotationOutcome, Rotation> {
        let credential = job.credential;
        let mut session = match ledger.open(credential).await {
            Ok(session) => session,
            Err(e) => return Ok(self.store_failed(credential, hold, e).await),
        };
        for _ in 0..DECISIONS {
            if matches!(session, Session::Alone) {
                self.adopt_from_targets(job, hold).await;
            }
            let step = self.decide(job, &session, &hold.state);
            match step {
                Step::Current => {
                    session.release().await;
                    return Ok(self.write_current(job, &hold.state).await);
                }
                Step::Refresh => {
                    if let Err(refused) = ledger.may_spend(credential, &hold.state) {
                        return Ok(self.fail(credential, hold, refused.into()).await);
                    }
                    return Ok(self.refresh_or_record(job, hold, session).await);
                }
                Step::Follow => return Ok(self.follow(job, hold, &session, ledger).await),
                Step::TakeOver => {
                    let stored = session.stored().cloned().unwrap_or_default();
                    hold.state.take_over(stored);
                    self.save(credential, hold).await;
                }
                Step::CommitKept => {
                    if let Err(e) = self.commit_kept(credential, hold, session).await {
                        return Ok(self.store_failed(credential, hold, e).await);
                    }
                    session = match ledger.open(credential).await {
                        Ok(session) => session,
                        Err(e) => return Ok(self.store_failed(credential, hold, e).await),
                    };
                }
                Step::HandOver => {
                    session = match self.hand_over(credential, ledger).await {
                        Ok(session) => session,
                        Err(e) => return Ok(self.store_failed(credential, hold, e).await),
                    };
                }
                Step::AskHolder { seen } => return self.ask_holder(job, hold, ledger, seen).await,
                Step::WaitForHolder => {
                    let lease = ledger.fleet().map(|f| f.lease).unwrap_or_default();
                    let empty = StoreError::Empty(credential.name.clone(), lease);
                    return Ok(self.store_failed(credential, hold, empty).await);
                }
            }
        }
        let unsettled = RotationError::Internal("the rotation did not settle".to_owned());
        Ok(self.fail(credential, hold, unsettled).await)
    }

    /// The step for what this host holds and what the session sees.
    fn decide(&self, job: &Job<'_>, session: &Session<'_>, local: &CredentialState) -> Step {
        // Only a follower looks at the configured bootstrap token (to hand a new one over):
        // resolving it reads a secret file, which a local rotation need not do twice.
        let bootstrap = matches!(session, Session::Follower(_))
            .then(|| configured_bootstrap(job.credential))
            .flatten()
            .map(|t| crate::token::fingerprint(&t));
        decide::decide(&Situation {
            local,
            seat: session.seat(),
            bootstrap: bootstrap.as_deref(),
            bootstraps_seen: session.bootstraps_seen(),
            trigger: job.trigger,
            now: self.clock.now(),
            timing: &job.credential.timing,
        })
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

/// The bootstrap refresh token in the config, when there is one and it can be read.
pub(super) fn configured_bootstrap(credential: &Credential) -> Option<SecretString> {
    credential
        .source
        .oauth_refresh()
        .and_then(|source| source.refresh_token.as_ref())
        .and_then(|reference| reference.resolve().ok())
}
