//! What a credential's last failure is recorded as: whether retrying can help, and the
//! words status shows. It never holds a token: a message is built from errors that say
//! where, never what.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network trouble, timeouts, 5xx, 429, `temporarily_unavailable`: back off and retry.
    Transient,
    /// The provider refused the grant or the client (`invalid_grant`, `invalid_client`, …),
    /// or the configuration is wrong: a person has to act (`needs-login`).
    Permanent,
}

/// The last failure of a credential, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: FailureKind,
    pub message: String,
}
