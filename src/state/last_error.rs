//! What a credential's last failure is recorded as: whether retrying can help, what caused
//! it, and the words status shows. It never holds a token: a message is built from errors
//! that say where, never what; and nothing reads a cause back out of a message's text.

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

/// What a failure came from, for code to act on and for status to count; the message says
/// the rest to a person. Independent of [`FailureKind`]: a `command` failure, say, may be
/// either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A request got no answer in time. The provider may have received it: a rotating
    /// refresh token sent in it may be spent.
    Timeout,
    /// The request never reached the provider, or its answer broke off (DNS, connect, TLS,
    /// reset).
    Network,
    /// The provider could not answer now: 5xx, 408, 425, `temporarily_unavailable`,
    /// `server_error`.
    ProviderUnavailable,
    /// The provider asked to slow down: 429 or `slow_down`.
    RateLimited,
    /// The provider refused the refresh token or grant (`invalid_grant`).
    InvalidGrant,
    /// The provider refused the client (`invalid_client`, `unauthorized_client`).
    InvalidClient,
    /// Any other refusal by the provider: another 4xx, another OAuth error code, a redirect.
    ProviderRefused,
    /// The provider refused a signed assertion as outside its time window: the clock.
    ClockSkew,
    /// A success answer that holds no usable token.
    Malformed,
    /// There is no refresh token to spend: a login is needed.
    NoRefreshToken,
    /// A configured secret, private key or credentials file could not be read or used.
    Secret,
    /// A command source could not start, failed or did not finish in time.
    Command,
    /// The credential whose token an `http` source sends as its bearer has none.
    Bearer,
    /// The credential's state file or lock could not be had.
    State,
    /// The fleet store failed or refused.
    Store,
    /// A target could not be written.
    Target,
    /// A fault of refreshd's own.
    Internal,
    /// Not recorded: a failure from a version-1 state file that was not a timeout.
    #[default]
    Unknown,
}

impl Cause {
    /// The word that names it, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Timeout => "timeout",
            Cause::Network => "network",
            Cause::ProviderUnavailable => "provider_unavailable",
            Cause::RateLimited => "rate_limited",
            Cause::InvalidGrant => "invalid_grant",
            Cause::InvalidClient => "invalid_client",
            Cause::ProviderRefused => "provider_refused",
            Cause::ClockSkew => "clock_skew",
            Cause::Malformed => "malformed",
            Cause::NoRefreshToken => "no_refresh_token",
            Cause::Secret => "secret",
            Cause::Command => "command",
            Cause::Bearer => "bearer",
            Cause::State => "state",
            Cause::Store => "store",
            Cause::Target => "target",
            Cause::Internal => "internal",
            Cause::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last failure of a credential, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: FailureKind,
    /// Absent only where an older refreshd answers (its status): `unknown` then.
    #[serde(default)]
    pub cause: Cause,
    pub message: String,
}

impl LastError {
    pub fn new(at: OffsetDateTime, kind: FailureKind, cause: Cause, message: String) -> LastError {
        LastError {
            at,
            kind,
            cause,
            message,
        }
    }
}

/// A last error as version 1 of the state file held it: no cause.
#[derive(Deserialize)]
pub(super) struct LastErrorV1 {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    kind: FailureKind,
    message: String,
}

impl LastErrorV1 {
    /// The one place a cause is read from a message's text: version 1 stored none, and
    /// its only cause code acted on was a timeout, found by these words.
    pub(super) fn migrate(self) -> LastError {
        let cause = if self.message.contains(" timed out after ") {
            Cause::Timeout
        } else {
            Cause::Unknown
        };
        LastError::new(self.at, self.kind, cause, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_serialize_as_the_words_they_display() {
        for cause in [
            Cause::ProviderUnavailable,
            Cause::NoRefreshToken,
            Cause::Unknown,
        ] {
            let json = serde_json::to_string(&cause).unwrap();
            assert_eq!(json, format!("\"{cause}\""));
            assert_eq!(serde_json::from_str::<Cause>(&json).unwrap(), cause);
        }
    }

    #[test]
    fn a_last_error_without_a_cause_reads_as_unknown() {
        let old = r#"{"at": "2027-01-15T08:30:00Z", "kind": "permanent", "message": "m"}"#;
        let read: LastError = serde_json::from_str(old).unwrap();
        assert_eq!(read.cause, Cause::Unknown);
    }
}
