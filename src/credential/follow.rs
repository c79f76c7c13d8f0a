//! The fleet steps of a rotation on a node that does not hold the lease: follow the store
//! (take a newer generation over, write the committed token), hand a new bootstrap refresh
//! token over, ask the holder to rotate; and what a rotation records when the store cannot
//! be used.
//!
//! Must never: spend a refresh token, or write a target with a state the store has not
//! committed (a local fallback aside).

use std::time::Duration;

use time::OffsetDateTime;

use super::decide;
use super::engine::Engine;
use super::hold::Hold;
use super::ledger::{Ledger, Session, ask_wait};
use super::lines::{log_current, log_followed};
use super::outcome::{Report, RotationError, RotationOutcome, RotationResult};
use super::policy;
use super::rotation::{Job, Rotation, configured_bootstrap};
use crate::config::Credential;
use crate::source::FailureKind;
use crate::store::StoreError;

impl Engine {
    /// Takes the store's state over when it is newer, and writes the committed token (even
    /// when this node holds a state of the same generation that it could not commit).
    pub(super) async fn follow(
        &self,
        job: &Job<'_>,
        hold: &mut Hold,
        session: &Session<'_>,
        ledger: &Ledger<'_>,
    ) -> RotationOutcome {
        let credential = job.credential;
        let stored = session.stored();
        let committed = stored.and_then(|stored| stored.token.clone());
        let newer = decide::newer(&hold.state, stored).cloned();
        let took = newer.is_some();
        if let Some(newer) = newer {
            hold.state.take_over(newer);
            self.save(credential, hold).await;
        }
        let Some(token) = committed.or_else(|| hold.state.token.clone()) else {
            let lease = ledger.fleet().map(|f| f.lease).unwrap_or_default();
            let empty = StoreError::Empty(credential.name.clone(), lease);
            return self.store_failed(credential, hold, empty).await;
        };
        let mut report = self
            .write_targets(
                credential,
                &token,
                hold.state.generation,
                job.jitter,
                job.started,
            )
            .await;
        if let Some(fleet) = ledger.fleet() {
            follow_up(&mut report, fleet.lease, self.clock.now());
        }
        if took {
            let now = self.clock.now();
            let timing = &credential.timing;
            if let Some(skew) = policy::clock_skew(token.issued_at, token.expires_at, now, timing) {
                tracing::warn!(credential = %credential.name, "clock skew in the token the holder committed: {skew} (the holder's clock or this host's may be off)");
            }
            log_followed(credential, &token, &report, hold.state.generation);
        } else {
            log_current(credential, &token, &report);
        }
        RotationOutcome::Current(report)
    }

    /// Hands this node's configured bootstrap refresh token, new to the store, over for the
    /// holder to spend; the ledger opened again to read what the store holds now.
    pub(super) async fn hand_over<'a>(
        &self,
        credential: &Credential,
        ledger: &Ledger<'a>,
    ) -> Result<Session<'a>, StoreError> {
        if let (Some(fleet), Some(configured)) = (ledger.fleet(), configured_bootstrap(credential))
            && fleet
                .hand_over_bootstrap(&credential.name, &configured)
                .await?
        {
            tracing::info!(credential = %credential.name, "the configured refresh token is new: handed to the store, for the lease holder to spend");
        }
        ledger.open(credential).await
    }

    /// A follower's `rotate`: asks the holder through the store. The wait for its commit
    /// happens outside the hold (see [`Rotation::Asked`]).
    pub(super) async fn ask_holder(
        &self,
        job: &Job<'_>,
        hold: &mut Hold,
        ledger: &Ledger<'_>,
        seen: u64,
    ) -> Result<RotationOutcome, Rotation> {
        let Some(fleet) = ledger.fleet() else {
            let error = RotationError::Internal("a rotate request without a fleet".to_owned());
            return Ok(self.fail(job.credential, hold, error).await);
        };
        match fleet.ask(&job.credential.name).await {
            Ok(()) => Err(Rotation::Asked {
                seen,
                wait: ask_wait(job.credential, fleet),
            }),
            Err(e) => Ok(self.store_failed(job.credential, hold, e).await),
        }
    }

    /// The holder did not commit a new generation within `waited` of a follower's rotate
    /// request: recorded like a failed refresh (status, metrics, `on_failure`).
    pub async fn holder_silent(&self, credential: &Credential, waited: Duration) -> RotationResult {
        let silent = StoreError::NotRotated {
            credential: credential.name.clone(),
            waited,
        };
        let mut hold = match self.hold(credential).await {
            Ok(hold) => hold,
            Err(e) => return self.failed(credential, e),
        };
        let outcome = self.store_failed(credential, &mut hold, silent).await;
        let result = RotationResult {
            outcome,
            state: hold.state.clone(),
            unsaved: hold.unsaved.clone(),
        };
        self.let_go(&credential.name, hold);
        result
    }

    /// The store could not be used: targets keep what they hold, and the failure is
    /// reported like a refresh's (status, metrics, `on_failure`).
    pub(super) async fn store_failed(
        &self,
        credential: &Credential,
        hold: &mut Hold,
        e: StoreError,
    ) -> RotationOutcome {
        let kind = FailureKind::Transient;
        let error = RotationError::from(e);
        if error.is_waiting() {
            // Waiting for the holder's first commit (a fleet's cold start): status says so,
            // the commit's notification wakes this task, and no line per credential is logged.
            tracing::debug!(credential = %credential.name, "{error}");
            let now = self.clock.now();
            hold.state
                .record_failure(kind, error.cause(), error.to_string(), now);
            self.save(credential, hold).await;
        } else {
            self.record_failure(credential, hold, &error, kind).await;
        }
        RotationOutcome::Failed { error, kind }
    }
}

/// A follower looks again a lease after the holder was due (it hears a commit sooner), and
/// never sooner than a lease from now.
fn follow_up(report: &mut Report, lease: Duration, now: OffsetDateTime) {
    let lease = time::Duration::try_from(lease).unwrap_or(time::Duration::SECOND);
    report.next_refresh = (report.next_refresh + lease).max(now + lease);
}
