//! What a rotation did: its outcome, the figures of its log line, why it failed, and the
//! credential's state after it. Read by the daemon's publisher, the CLI and the policy.

use std::time::Duration;

use time::OffsetDateTime;

use super::policy;
use crate::reload::ReloadError;
use crate::source::{FailureKind, SourceError};
use crate::state::{Cause, CredentialState, StateError, Unsaved};
use crate::target;

/// What a rotation did, and the credential's state after it (what status shows).
#[derive(Debug)]
pub struct RotationResult {
    pub outcome: RotationOutcome,
    pub state: CredentialState,
    /// Why `state` could not be stored, when it could not: it lives in memory until it can.
    pub unsaved: Option<Refused>,
}

/// A state the disk refused: the kind of refusal, and the system's words with the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub cause: Unsaved,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

#[derive(Debug)]
pub enum RotationOutcome {
    /// A new token was fetched, persisted and written.
    Rotated(Report),
    /// The held token is still good; targets were brought up to date with it.
    Current(Report),
    /// The fetch or persisting failed; targets hold what they held.
    Failed {
        error: RotationError,
        kind: FailureKind,
    },
}

/// Figures for the rotation log line and the caller.
#[derive(Debug)]
pub struct Report {
    pub fingerprint: String,
    pub expires_at: OffsetDateTime,
    pub next_refresh: OffsetDateTime,
    pub targets_written: usize,
    pub targets_unchanged: usize,
    pub target_errors: Vec<target::TargetError>,
    pub reloads_run: usize,
    pub reload_errors: Vec<ReloadError>,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    NoRefreshToken(#[from] crate::source::NoRefreshToken),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    NoStore(#[from] super::ledger::NoStore),
    #[error(transparent)]
    FleetsGrant(#[from] super::ledger::FleetsGrant),
    #[error("internal: {0}")]
    Internal(String),
}

impl RotationResult {
    /// A rotation whose targets were all written; a failed reload does not count against
    /// it (it is reported, and never undoes the rotation).
    pub fn is_ok(&self) -> bool {
        match &self.outcome {
            RotationOutcome::Rotated(report) | RotationOutcome::Current(report) => {
                report.target_errors.is_empty() && self.unsaved.is_none()
            }
            RotationOutcome::Failed { .. } => false,
        }
    }

    /// See [`RotationError::is_waiting`].
    pub fn is_waiting(&self) -> bool {
        matches!(&self.outcome, RotationOutcome::Failed { error, .. } if error.is_waiting())
    }

    /// The provider's own words about a failed attempt (`error_description`), when it sent
    /// some: what a notification quotes beside refreshd's message.
    pub fn provider_words(&self) -> Option<&str> {
        match &self.outcome {
            RotationOutcome::Failed {
                error: RotationError::Source(e),
                ..
            } => e.description(),
            _ => None,
        }
    }

    pub fn report(&self) -> Option<&Report> {
        match &self.outcome {
            RotationOutcome::Rotated(report) | RotationOutcome::Current(report) => Some(report),
            RotationOutcome::Failed { .. } => None,
        }
    }

    /// What the policy needs to plan the next attempt.
    pub fn attempted(&self) -> policy::Attempted<'_> {
        match &self.outcome {
            RotationOutcome::Rotated(report) | RotationOutcome::Current(report) => {
                policy::Attempted::Held {
                    fingerprint: &report.fingerprint,
                    next_refresh: report.next_refresh,
                    target_failed: !report.target_errors.is_empty(),
                    unsaved: self.unsaved.is_some(),
                }
            }
            RotationOutcome::Failed { error, kind } => policy::Attempted::Failed {
                kind: *kind,
                retry_after: error.retry_after(),
            },
        }
    }
}

impl RotationError {
    /// What the provider asked for with `Retry-After`, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RotationError::Source(e) => e.retry_after(),
            // The holder's commit wakes the task; until then, look again a lease later.
            RotationError::Store(crate::store::StoreError::Empty(_, recheck)) => Some(*recheck),
            _ => None,
        }
    }

    /// A follower waiting for the holder's first commit: not worth a line per credential.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self,
            RotationError::Store(crate::store::StoreError::Empty(..))
        )
    }

    /// What the failure came from, for the stored last error (and what it drives: the hint
    /// after a timed-out refresh, status, metrics).
    pub(super) fn cause(&self) -> Cause {
        match self {
            RotationError::Source(e) => e.cause(),
            RotationError::State(_) => Cause::State,
            RotationError::NoRefreshToken(_) => Cause::NoRefreshToken,
            RotationError::Store(_) | RotationError::NoStore(_) | RotationError::FleetsGrant(_) => {
                Cause::Store
            }
            RotationError::Internal(_) => Cause::Internal,
        }
    }

    pub(super) fn kind(&self) -> FailureKind {
        match self {
            RotationError::Source(e) => e.kind(),
            RotationError::NoRefreshToken(_) | RotationError::FleetsGrant(_) => {
                FailureKind::Permanent
            }
            _ => FailureKind::Transient,
        }
    }
}
