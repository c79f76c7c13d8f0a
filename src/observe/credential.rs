//! One credential's status line: what refreshd knows about it, derived from its stored
//! state. Never holds a token or a refresh token: only fingerprints, times and errors.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Counters, Health};
use crate::config::Credential;
use crate::state::{Cause, CredentialState, LastError, Unsaved};
use crate::token::ExpirySource;

/// One credential's status line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialStatus {
    pub name: String,
    pub health: Health,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// For a chain: the member that served the current token (`sources[1] command`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// …and why each member before it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_source: Option<ExpirySource>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_rotation: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_refresh: Option<OffsetDateTime>,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Why the state lives in memory only (health `unsaved`): no space, permission, I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsaved: Option<Unsaved>,
    #[serde(default)]
    pub counters: Counters,
}

impl CredentialStatus {
    /// The status a stored state implies at `now`; `next_refresh` is the caller's (the
    /// daemon knows its jittered deadline, the state directory does not).
    pub fn from_state(
        credential: &Credential,
        state: &CredentialState,
        next_refresh: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> CredentialStatus {
        let token = state.token.as_ref();
        let valid = token.is_some_and(|t| t.is_valid_at(now));
        let health = if state.needs_login {
            Health::NeedsLogin
        } else if !valid {
            if token.is_none() && state.last_error.is_none() {
                Health::Pending
            } else {
                Health::Expired
            }
        } else if state.consecutive_failures > 0 {
            Health::Retrying
        } else {
            Health::Ok
        };
        CredentialStatus {
            name: credential.name.clone(),
            health,
            source: credential.source.kind().to_owned(),
            subject: token.and_then(|t| t.subject.clone()),
            client_id: token
                .and_then(|t| t.client_id.clone())
                .or_else(|| credential.source.client_id().map(str::to_owned)),
            issuer: token.and_then(|t| t.issuer.clone()),
            scopes: token.map(|t| t.scopes.clone()).unwrap_or_default(),
            fingerprint: token.map(|t| t.fingerprint()),
            served_by: token.and_then(|t| t.served.as_ref()).map(|s| s.by.clone()),
            skipped: token
                .and_then(|t| t.served.as_ref())
                .map(|s| s.skipped.clone())
                .unwrap_or_default(),
            expires_at: token.map(|t| t.expires_at),
            expiry_source: token.map(|t| t.expiry_source),
            last_rotation: state.last_rotation,
            last_error: state.last_error.clone(),
            next_refresh,
            consecutive_failures: state.consecutive_failures,
            unsaved: None,
            counters: Counters::default(),
        }
    }

    /// The daemon holds this credential's state in memory only: `cause` and `reason` (the
    /// system's words) say why.
    pub fn mark_unsaved(&mut self, cause: Unsaved, reason: &str, at: OffsetDateTime) {
        self.health = Health::Unsaved;
        self.unsaved = Some(cause);
        self.last_error = Some(LastError::new(
            at,
            crate::state::FailureKind::Transient,
            Cause::State,
            format!("the state could not be stored, it is kept in memory: {reason}"),
        ));
    }

    /// The health as of `now`: one that was healthy when published is `expired` once its
    /// token's time is up, whether or not anything happened since.
    pub fn health_at(&self, now: OffsetDateTime) -> Health {
        if self.health.is_healthy() && !self.has_valid_token(now) {
            Health::Expired
        } else {
            self.health
        }
    }

    pub fn has_valid_token(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at > now)
    }
}
