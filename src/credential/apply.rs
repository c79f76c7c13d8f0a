//! What a rotation does with a token once it holds one: writes every target and runs the
//! reload actions when something changed, and says so. Targets are written on the blocking
//! pool (a target on a slow filesystem must not stall other credentials, and a started
//! write finishes even if the caller goes away).

use std::time::Duration;

use super::engine::{Effects, Engine};
use super::lines::log_current;
use super::outcome::{Report, RotationError, RotationOutcome, RotationResult};
use super::policy::{self, Trigger};
use super::rotation::Job;
use crate::config::Credential;
use crate::reload;
use crate::source::FailureKind;
use crate::state::CredentialState;
use crate::target::{self, Outcome};
use crate::token::Token;

impl Engine {
    /// Writes every target (on the blocking pool: a target on a slow filesystem must not
    /// stall other credentials, and a started write finishes even if the caller goes away),
    /// then runs the reload actions when something changed.
    pub(super) async fn write_targets(
        &self,
        credential: &Credential,
        token: &Token,
        generation: Option<u64>,
        jitter: time::Duration,
        started: tokio::time::Instant,
    ) -> Report {
        let mut report = self.report(credential, token, jitter);
        let Effects::WriteAndReload(reloader) = &self.effects else {
            report.took = started.elapsed();
            return report;
        };
        let targets = credential.targets.clone();
        let name = credential.name.clone();
        let held = token.clone();
        let state = self.state.clone();
        let outcomes = tokio::task::spawn_blocking(move || {
            // Another credential's token, read under the target's lock (after this one's
            // state was saved): of two credentials rotating at once, the later writer
            // renders both new tokens.
            let uses = |other: &str| state.load(other).ok().and_then(|s| s.token);
            let values = target::Values::of(&name, &held, &uses);
            let locks = state.locks();
            targets
                .iter()
                .map(|target| target::write_values(target, &values, &locks))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for outcome in outcomes {
            match outcome {
                Ok(Outcome::Written) => report.targets_written += 1,
                Ok(Outcome::Unchanged) => report.targets_unchanged += 1,
                Err(e) => {
                    tracing::error!(credential = %credential.name, "{e}");
                    report.target_errors.push(e);
                }
            }
        }
        // A reload after a write that changed nothing would restart apps for no reason.
        if report.targets_written > 0 {
            let context = reload::Context {
                credential: credential.name.clone(),
                expires_at: token.expires_at,
                targets: credential.targets.iter().map(|t| t.path.clone()).collect(),
            };
            let rolling = credential
                .rolling
                .as_ref()
                .filter(|_| credential.sharing.is_shared());
            if let (Some(rolling), Some(fleet), Some(generation)) =
                (rolling, self.fleet_arc(), generation)
            {
                // Its reloads wait their turn on a task of their own: never on this path.
                self.roll(credential, rolling, fleet, generation, context, reloader);
                report.took = started.elapsed();
                return report;
            }
            for action in &credential.reload {
                report.reloads_run += 1;
                if let Err(e) = reloader.reload(action, context.clone()).await {
                    tracing::warn!(credential = %credential.name, "reload failed (the new token stays in place): {e}");
                    report.reload_errors.push(e);
                }
            }
        }
        report.took = started.elapsed();
        report
    }
}

impl Engine {
    /// A report of `token` with nothing written yet, its next refresh `jitter` away.
    pub(super) fn report(
        &self,
        credential: &Credential,
        token: &Token,
        jitter: time::Duration,
    ) -> Report {
        Report {
            fingerprint: token.fingerprint(),
            expires_at: token.expires_at,
            next_refresh: policy::next_refresh(
                token.issued_at,
                token.expires_at,
                &credential.timing,
                jitter,
                self.clock.now(),
            ),
            targets_written: 0,
            targets_unchanged: 0,
            target_errors: Vec::new(),
            reloads_run: 0,
            reload_errors: Vec::new(),
            took: Duration::ZERO,
        }
    }

    /// When the stored token is valid and not due and every target already holds it (the
    /// usual first attempt after a restart), that result, found by reading alone: no lock
    /// is taken and nothing written. `None` sends the caller down the locked path.
    pub(super) async fn already_current(
        &self,
        credential: &Credential,
        jitter: time::Duration,
        started: tokio::time::Instant,
    ) -> Option<RotationResult> {
        if !matches!(self.effects, Effects::WriteAndReload(_)) {
            return None;
        }
        let state_dir = self.state.clone();
        let name = credential.name.clone();
        let targets = credential.targets.clone();
        let timing = credential.timing.clone();
        let now = self.clock.now();
        let state = tokio::task::spawn_blocking(move || {
            // Replaced whole by rename, so read without the lock it is never torn.
            let state = state_dir.load(&name).ok()?;
            let token = state.token.as_ref()?;
            let due = policy::should_fetch(
                Some(token),
                state.last_rotation,
                &Trigger::IfDue,
                now,
                &timing,
            );
            let uses = |other: &str| state_dir.load(other).ok().and_then(|s| s.token);
            let values = target::Values::of(&name, token, &uses);
            let current = !due
                && targets
                    .iter()
                    .all(|t| target::is_current_values(t, &values));
            current.then_some(state)
        })
        .await
        .ok()??;
        let token = state.token.as_ref()?;
        let mut report = self.report(credential, token, jitter);
        report.targets_unchanged = credential.targets.len();
        report.took = started.elapsed();
        log_current(credential, token, &report);
        Some(RotationResult {
            outcome: RotationOutcome::Current(report),
            state,
            unsaved: None,
        })
    }

    /// The token this host holds is current: its targets are brought in line with it, and
    /// that is the outcome.
    pub(super) async fn write_current(
        &self,
        job: &Job<'_>,
        state: &CredentialState,
    ) -> RotationOutcome {
        let Some(token) = state.token.as_ref() else {
            return RotationOutcome::Failed {
                error: RotationError::Internal("no token to write".to_owned()),
                kind: FailureKind::Transient,
            };
        };
        let report = self
            .write_targets(
                job.credential,
                token,
                state.generation,
                job.jitter,
                job.started,
            )
            .await;
        log_current(job.credential, token, &report);
        RotationOutcome::Current(report)
    }
}
