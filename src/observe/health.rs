//! How a credential is doing, and the whole snapshot in one word: the operator's words for
//! a status. Plain values: it never looks at a token or the clock.

use serde::{Deserialize, Serialize};

/// How a credential is doing, from an operator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Holds a valid token; the last refresh worked.
    Ok,
    /// Holds a valid token; the last refresh failed and is being retried.
    Retrying,
    /// A permanent failure: a person must act (new login, fixed client). Targets keep the
    /// old token while it lasts.
    NeedsLogin,
    /// No valid token: the targets hold an expired one or none.
    Expired,
    /// The state could not be stored (a full or failing disk): it lives in refreshd's
    /// memory, and is lost, newest refresh token and all, if refreshd stops before it is.
    Unsaved,
    /// The daemon has not finished its first attempt yet.
    Pending,
}

impl Health {
    /// Healthy means the targets hold a token that works and nobody needs to act.
    pub fn is_healthy(self) -> bool {
        matches!(self, Health::Ok | Health::Retrying)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Retrying => "retrying",
            Health::NeedsLogin => "needs-login",
            Health::Expired => "expired",
            Health::Unsaved => "unsaved",
            Health::Pending => "pending",
        }
    }
}

/// The whole snapshot in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
    /// No credentials, or none has finished its first attempt.
    NoData,
}
