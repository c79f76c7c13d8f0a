//! One task per credential: rotate when due, publish the result, decide when to try next,
//! wait (on the wall clock) for that moment, a `rotate` request or a stop.
//!
//! A rotation that has started is never cancelled: a stop waits for it, because dropping a
//! token response on the floor can lose a rotated refresh token, and a target write must
//! finish rather than leave a half-done edit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::clock::{self, SharedClock};
use crate::config::Credential;
use crate::rotation::{Engine, RotationResult, Trigger};
use crate::source::FailureKind;
use crate::status::{CredentialStatus, Snapshot};
use crate::token;

/// After a permanent failure (`needs-login`), how often to look again: the config, the
/// bootstrap refresh token or the provider may be fixed without telling us.
const PERMANENT_RETRY: Duration = Duration::from_secs(15 * 60);

/// The longest wait a `Retry-After` can impose.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);

/// What another task can ask of a credential task.
pub enum Command {
    /// Refresh now (unless another process just did) and report; with `if_due`, only
    /// when the stored token is due (after another process stored a new one).
    Rotate {
        reply: oneshot::Sender<Outcome>,
        if_due: bool,
    },
}

/// The answer to a `rotate` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// "rotated", "current" or the error.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

/// Proof of life for the watchdog: when the task last woke, and whether it is inside a
/// rotation (which may legitimately take a request timeout or a target lock wait).
pub struct Heartbeat {
    base: tokio::time::Instant,
    last_ms: AtomicU64,
    busy: AtomicBool,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        Heartbeat {
            base: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    fn beat(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
        self.beat();
    }

    /// How long the task has been silent, and whether it is inside a rotation.
    pub fn silence(&self) -> (Duration, bool) {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        (
            self.base.elapsed().saturating_sub(last),
            self.busy.load(Ordering::Relaxed),
        )
    }
}

/// What every credential task shares.
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Engine>,
    pub clock: SharedClock,
    pub permits: Arc<Semaphore>,
    pub snapshot: watch::Sender<Snapshot>,
    /// Receives a credential's name after its first attempt (for `READY=1`).
    pub settled: mpsc::UnboundedSender<String>,
}

/// The supervisor's side of a running credential task.
pub struct Handle {
    pub credential: Arc<Credential>,
    pub commands: mpsc::Sender<Command>,
    pub heartbeat: Arc<Heartbeat>,
    stop: watch::Sender<bool>,
    pub join: JoinHandle<()>,
}

impl Handle {
    /// Asks the task to stop once any rotation in progress has finished.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

pub fn spawn(credential: Credential, shared: Shared) -> Handle {
    let credential = Arc::new(credential);
    let (commands, commands_rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let heartbeat = Arc::new(Heartbeat::new());
    let join = tokio::spawn(run(
        credential.clone(),
        shared,
        commands_rx,
        stop_rx,
        heartbeat.clone(),
    ));
    Handle {
        credential,
        commands,
        heartbeat,
        stop,
        join,
    }
}

async fn run(
    credential: Arc<Credential>,
    shared: Shared,
    mut commands: mpsc::Receiver<Command>,
    mut stop: watch::Receiver<bool>,
    heartbeat: Arc<Heartbeat>,
) {
    let name = credential.name.clone();
    let timing = &credential.timing;
    let mut trigger = Trigger::IfDue;
    let mut replies: Vec<oneshot::Sender<Outcome>> = Vec::new();
    // Consecutive attempts that did not leave a token good for a while: the backoff step.
    let mut attempt: u32 = 0;
    let mut was_healthy: Option<bool> = None;
    let mut first = true;
    let mut counters = shared
        .snapshot
        .borrow()
        .credentials
        .get(&name)
        .map(|s| s.counters.clone())
        .unwrap_or_default();

    // An `http` source sends other credentials' tokens: follow them.
    let bearers: Vec<String> = credential
        .source
        .bearers()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut snapshots = shared.snapshot.subscribe();
    if !bearers.is_empty() {
        wait_for_bearers(
            &shared,
            &bearers,
            &mut snapshots,
            timing.timeout * 2,
            &mut stop,
        )
        .await;
        if *stop.borrow() {
            return;
        }
    }

    loop {
        let seen = bearer_fingerprints(&snapshots.borrow_and_update(), &bearers);
        heartbeat.set_busy(true);
        let started = tokio::time::Instant::now();
        let result = {
            let _permit = shared.permits.acquire().await;
            shared
                .engine
                .rotate_with_jitter(&credential, trigger.clone(), jitter(timing.jitter))
                .await
        };
        heartbeat.set_busy(false);
        let now = shared.clock.now();

        let deadline = match &result {
            RotationResult::Rotated(report) | RotationResult::Current(report) => {
                let planned = report.next_refresh;
                if !report.target_errors.is_empty() {
                    attempt += 1;
                    now + backoff(timing.retry_initial, timing.retry_max, attempt)
                } else if planned <= now + time::Duration::SECOND {
                    // The token is due again at once: its expiry did not move forward, or it
                    // lives shorter than min_remaining. Refreshing again now would loop.
                    attempt += 1;
                    let wait = backoff(timing.retry_initial, timing.retry_max, attempt);
                    tracing::warn!(
                        credential = %name,
                        expires_at = %token::rfc3339(report.expires_at),
                        retry_in = %format!("{}s", wait.as_secs()),
                        "the new token is already due (its expiry did not move forward, or it lives shorter than min_remaining): backing off"
                    );
                    now + wait
                } else {
                    attempt = 0;
                    planned
                }
            }
            RotationResult::Failed { error, kind } => {
                attempt += 1;
                let wait = match kind {
                    FailureKind::Transient => {
                        let wait = backoff(timing.retry_initial, timing.retry_max, attempt);
                        match error.retry_after() {
                            Some(asked) => wait.max(asked.min(RETRY_AFTER_CAP)),
                            None => wait,
                        }
                    }
                    FailureKind::Permanent => PERMANENT_RETRY.max(timing.retry_max),
                };
                tracing::info!(credential = %name, retry_in = %format!("{}s", wait.as_secs()), attempt, "next attempt scheduled");
                now + wait
            }
        };
        if !matches!(result, RotationResult::Current(_)) {
            counters.observe(result.is_ok(), started.elapsed().as_secs_f64());
        }

        let outcome = outcome(&name, &result);
        for reply in replies.drain(..) {
            let _ = reply.send(outcome.clone());
        }
        // A stopped task no longer owns its status entry (it was removed or replaced).
        if !*stop.borrow() {
            let state = shared
                .engine
                .state
                .load(&name)
                .unwrap_or_else(|_| Default::default());
            let mut status = CredentialStatus::from_state(&credential, &state, Some(deadline), now);
            status.counters = counters.clone();
            let healthy = status.health.is_healthy();
            if was_healthy != Some(false)
                && !healthy
                && let Some(argv) = &credential.on_failure
            {
                let error = status
                    .last_error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_else(|| format!("{}: no valid token", status.health.as_str()));
                crate::reload::on_failure(argv, &name, &error, timing.timeout);
            }
            was_healthy = Some(healthy);
            shared.snapshot.send_modify(|snapshot| {
                snapshot.credentials.insert(name.clone(), status);
            });
        }
        if first {
            first = false;
            let _ = shared.settled.send(name.clone());
        }

        // When the deadline comes, the token it was planned for is refreshed even if the
        // jitter put it a little before the schedule's own due time.
        trigger = match &result {
            RotationResult::Rotated(report) | RotationResult::Current(report) if attempt == 0 => {
                Trigger::Scheduled {
                    fingerprint: report.fingerprint.clone(),
                }
            }
            _ => Trigger::IfDue,
        };
        let beat = || heartbeat.beat();
        tokio::select! {
            _ = clock::sleep_until(shared.clock.as_ref(), deadline, clock::CHUNK, beat) => {}
            Some(command) = commands.recv() => {
                let Command::Rotate { reply, mut if_due } = command;
                replies.push(reply);
                while let Ok(Command::Rotate { reply, if_due: also }) = commands.try_recv() {
                    replies.push(reply);
                    if_due &= also;
                }
                trigger = if if_due {
                    Trigger::IfDue
                } else {
                    Trigger::Force { since: OffsetDateTime::now_utc() }
                };
            }
            _ = bearer_changed(&mut snapshots, &bearers, &seen), if !bearers.is_empty() => {
                tracing::info!(credential = %name, bearers = %bearers.join(","), "a bearer credential's token changed: refreshing");
                trigger = Trigger::Force { since: OffsetDateTime::now_utc() };
            }
            _ = stop.changed() => break,
        }
    }
    tracing::debug!(credential = %name, "stopped");
}

/// The fingerprints of the bearers' current tokens as the daemon last published them.
fn bearer_fingerprints(snapshot: &Snapshot, bearers: &[String]) -> Vec<Option<String>> {
    bearers
        .iter()
        .map(|b| {
            snapshot
                .credentials
                .get(b)
                .and_then(|s| s.fingerprint.clone())
        })
        .collect()
}

/// Resolves when a bearer's token is no longer the one seen before the last rotation.
async fn bearer_changed(
    snapshots: &mut watch::Receiver<Snapshot>,
    bearers: &[String],
    seen: &[Option<String>],
) {
    loop {
        if snapshots.changed().await.is_err() {
            // The daemon is shutting down; the stop signal ends the task.
            std::future::pending::<()>().await;
        }
        if bearer_fingerprints(&snapshots.borrow_and_update(), bearers) != seen {
            return;
        }
    }
}

/// On start, gives the bearers (started at the same moment) up to `patience` to get a
/// token before this credential's first attempt, instead of failing it at once.
async fn wait_for_bearers(
    shared: &Shared,
    bearers: &[String],
    snapshots: &mut watch::Receiver<Snapshot>,
    patience: Duration,
    stop: &mut watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let now = OffsetDateTime::now_utc();
        let ready = bearers.iter().all(|b| {
            shared
                .engine
                .state
                .load(b)
                .ok()
                .and_then(|s| s.token)
                .is_some_and(|t| t.is_valid_at(now))
        });
        if ready {
            return;
        }
        let seen = bearer_fingerprints(&snapshots.borrow_and_update(), bearers);
        tokio::select! {
            _ = bearer_changed(snapshots, bearers, &seen) => {}
            _ = tokio::time::sleep_until(deadline) => return,
            _ = stop.changed() => return,
        }
    }
}

fn outcome(name: &str, result: &RotationResult) -> Outcome {
    match result {
        RotationResult::Rotated(report) | RotationResult::Current(report) => {
            let verb = if matches!(result, RotationResult::Rotated(_)) {
                "rotated"
            } else {
                "current"
            };
            let message = match report.target_errors.first() {
                Some(e) => format!("{verb}, but a target failed: {e}"),
                None => verb.to_owned(),
            };
            Outcome {
                name: name.to_owned(),
                ok: result.is_ok(),
                message,
                fingerprint: Some(report.fingerprint.clone()),
                expires_at: Some(report.expires_at),
            }
        }
        RotationResult::Failed { error, .. } => Outcome {
            name: name.to_owned(),
            ok: false,
            message: error.to_string(),
            fingerprint: None,
            expires_at: None,
        },
    }
}

/// A uniform random number in `[0, 1)`.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    // getrandom fails only without any entropy source; then the spread is lost, nothing else.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A random offset in `±spread`, so a fleet does not refresh in lockstep.
fn jitter(spread: Duration) -> time::Duration {
    let offset = (unit_random() * 2.0 - 1.0) * spread.as_secs_f64();
    time::Duration::seconds_f64(offset)
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial·2^(attempt−1))]`,
/// but at least a second, so a burst of failures never becomes a hot loop.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(initial, max, attempt);
    ceiling
        .mul_f64(unit_random())
        .max(Duration::from_secs(1).min(ceiling))
}

fn backoff_ceiling(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_stays_within_it() {
        let initial = Duration::from_secs(2);
        let max = Duration::from_secs(300);
        let ceilings: Vec<u64> = (1..=10)
            .map(|a| backoff_ceiling(initial, max, a).as_secs())
            .collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_ceiling(initial, max, u32::MAX).as_secs(), 300);
        for attempt in 1..=40 {
            let wait = backoff(initial, max, attempt);
            assert!(wait >= Duration::from_secs(1) && wait <= max, "{wait:?}");
        }
        // Full jitter spreads: many draws at the cap are not all equal.
        let draws: std::collections::BTreeSet<u64> = (0..50)
            .map(|_| backoff(initial, max, 20).as_millis() as u64)
            .collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..200 {
            let offset = jitter(Duration::from_secs(30));
            assert!(offset.abs() <= time::Duration::seconds(30), "{offset}");
        }
        assert_eq!(jitter(Duration::ZERO), time::Duration::ZERO);
    }
}
