//! What a credential task tells the rest of the daemon after each attempt, fed from the
//! rotation's own result (never from a second read of the state file): the log line of
//! its plan, the rotation counters, answers to waiting `rotate` requests, the notifier
//! (which tells `[[notify]]` sinks and runs the `on_failure` hook), its entry in the status snapshot, its current token for
//! the credentials that send it as a bearer, and that its first attempt is done.
//!
//! Never rotates and never waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Credential;
use crate::credential::policy::{Backoff, Plan};
use crate::credential::{RotationOutcome, RotationResult};
use crate::notify::Notifier;
use crate::observe::{Counters, CredentialStatus, Model, RotationReply};
use crate::token::{self, Token};

/// A credential's current token, as its task last published it.
pub type TokenWatch = watch::Receiver<Option<Token>>;

/// Each followed credential's token channel, by name: what its task publishes on.
pub type TokenChannels = BTreeMap<String, watch::Sender<Option<Token>>>;

/// The channel `name`'s task publishes its token on (made if missing).
pub fn token_channel<'a>(
    channels: &'a mut TokenChannels,
    name: &str,
) -> &'a watch::Sender<Option<Token>> {
    channels
        .entry(name.to_owned())
        .or_insert_with(|| watch::channel(None).0)
}

/// A receiver of `name`'s token: a credential that sends it as a bearer, or `refreshd exec`
/// handing it to its program. A task keeps its token in memory only while another follows
/// it: for the first follower, the stored one is filled in (as no change to react to).
pub fn follow_token(
    channels: &mut TokenChannels,
    state: &crate::state::StateDir,
    name: &str,
) -> TokenWatch {
    // Subscribed first: from now on the task publishes its token here, so what is read
    // from the state directory next can only be as new or older.
    let channel = token_channel(channels, name);
    let follower = channel.subscribe();
    let stored = state.load(name).ok().and_then(|s| s.token);
    channel.send_if_modified(|held| {
        if held.is_none() {
            *held = stored;
        }
        false
    });
    follower
}

/// One credential task's outlets.
pub struct Publisher {
    credential: Arc<Credential>,
    model: Model,
    settled: mpsc::UnboundedSender<String>,
    /// Only for a credential another one sends as a bearer.
    token: Option<watch::Sender<Option<Token>>>,
    counters: Counters,
    notifier: Notifier,
    settled_sent: bool,
    /// `rotate` requests waiting for the next attempt's outcome.
    pub replies: Vec<oneshot::Sender<RotationReply>>,
}

impl Publisher {
    /// Counters carry on from an earlier task of the same credential (a reload restarts it).
    pub fn new(
        credential: Arc<Credential>,
        model: Model,
        settled: mpsc::UnboundedSender<String>,
        token: Option<watch::Sender<Option<Token>>>,
        notifier: Notifier,
    ) -> Publisher {
        let counters = model.counters(&credential.name);
        Publisher {
            credential,
            model,
            settled,
            token,
            counters,
            notifier,
            settled_sent: false,
            replies: Vec::new(),
        }
    }

    /// Publishes one attempt that took `took` and the plan made after it. A `stopped` task
    /// no longer owns its status entry or token (it was removed or replaced): it only
    /// answers its waiting requests.
    pub fn publish(
        &mut self,
        result: &RotationResult,
        plan: &Plan,
        took: Duration,
        now: OffsetDateTime,
        stopped: bool,
    ) {
        let name = self.credential.name.clone();
        if !matches!(result.outcome, RotationOutcome::Current(_)) {
            self.counters.observe(result.is_ok(), took.as_secs_f64());
        }
        if let Some(report) = result.report() {
            self.counters
                .observe_reloads(report.reloads_run, report.reload_errors.len());
        }
        self.log_plan(result, plan, now);
        let outcome = outcome(&name, result);
        for reply in self.replies.drain(..) {
            let _ = reply.send(outcome.clone());
        }
        if !stopped {
            let mut status =
                CredentialStatus::from_state(&self.credential, &result.state, Some(plan.at), now);
            status.counters = self.counters.clone();
            if let Some(refused) = &result.unsaved {
                status.mark_unsaved(refused.cause, &refused.reason, now);
            }
            // The one place failures and recoveries are told: from this attempt's status.
            self.notifier.credential(
                &self.credential,
                &status,
                result.provider_words().map(str::to_owned),
            );
            self.model.set(status);
            if let Some(token) = &self.token {
                let current = result.state.token.as_ref();
                token.send_if_modified(|held| {
                    let changed =
                        held.as_ref().map(Token::fingerprint) != current.map(Token::fingerprint);
                    if changed {
                        *held = current.cloned();
                    }
                    changed
                });
            }
        }
        // A stopped task's first attempt is not its successor's: counting it would take the
        // new task's entry out of the first round and announce readiness too early.
        if !stopped && !self.settled_sent {
            self.settled_sent = true;
            let _ = self.settled.send(name);
        }
    }

    fn log_plan(&self, result: &RotationResult, plan: &Plan, now: OffsetDateTime) {
        let name = &self.credential.name;
        let wait = (plan.at - now).unsigned_abs();
        let retry_in = format!("{}s", wait.as_secs());
        match (plan.backoff, result.report()) {
            (Some(Backoff::AlreadyDue), Some(report)) => tracing::warn!(
                credential = %name,
                expires_at = %token::rfc3339(report.expires_at),
                retry_in = %retry_in,
                "the new token is already due (its expiry did not move forward, or it lives shorter than min_remaining): backing off"
            ),
            (Some(Backoff::Failed(_)), _) if result.is_waiting() => {
                tracing::debug!(credential = %name, retry_in = %retry_in, "waiting for the store's first token")
            }
            (Some(Backoff::Failed(_)), _) => {
                tracing::info!(credential = %name, retry_in = %retry_in, attempt = plan.attempt, "next attempt scheduled")
            }
            _ => {}
        }
    }
}

fn outcome(name: &str, result: &RotationResult) -> RotationReply {
    match &result.outcome {
        RotationOutcome::Rotated(report) | RotationOutcome::Current(report) => {
            let verb = if matches!(result.outcome, RotationOutcome::Rotated(_)) {
                "rotated"
            } else {
                "current"
            };
            let message = match (&result.unsaved, report.target_errors.first()) {
                (Some(reason), _) => {
                    format!("{verb}, but the state could not be stored (kept in memory): {reason}")
                }
                (None, Some(e)) => format!("{verb}, but a target failed: {e}"),
                (None, None) => verb.to_owned(),
            };
            RotationReply {
                name: name.to_owned(),
                ok: result.is_ok(),
                message,
                fingerprint: Some(report.fingerprint.clone()),
                expires_at: Some(report.expires_at),
            }
        }
        RotationOutcome::Failed { error, .. } => RotationReply {
            name: name.to_owned(),
            ok: false,
            message: error.to_string(),
            fingerprint: None,
            expires_at: None,
        },
    }
}
