//! How a credential's stored state changes: after a fetch that worked, one that failed, a
//! target that could not be written, a login; and which refresh token the next fetch
//! spends; what a fleet node takes over from the store, and what it seals into it. Rotation,
//! login and the fleet all go through here, so the rules are written once.
//!
//! Pure: no file, clock or network. The caller persists the result.

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::secret::SecretError;
use crate::source::Missing;
use crate::state::{Cause, CredentialState, FailureKind, LastError};
use crate::token::{Token, fingerprint};

/// The refresh token a fetch should spend, and the fingerprint of the configured bootstrap
/// token to remember with the result.
#[derive(Debug, Default)]
pub struct Spend {
    pub refresh_token: Option<SecretString>,
    pub bootstrap_fingerprint: Option<String>,
}

impl CredentialState {
    /// The stored (rotated) refresh token, unless `configured` — the bootstrap token of the
    /// config, resolved — differs from the one the stored token descends from: then a person
    /// put a new one there, and it takes over. In a chain a missing token is not an error
    /// (the oauth-refresh member fails on its own and the next member is tried).
    pub fn refresh_token_to_spend(
        &self,
        configured: Option<Result<SecretString, SecretError>>,
        in_chain: bool,
    ) -> Result<Spend, Missing> {
        let bootstrap: Result<SecretString, Missing> = match configured {
            Some(Ok(token)) => Ok(token),
            Some(Err(e)) => Err(Missing::Unreadable(e)),
            None => Err(Missing::Nothing),
        };
        match (&self.refresh_token, bootstrap) {
            (Some(stored), Ok(bootstrap)) => {
                let fp = fingerprint(&bootstrap);
                let refresh_token = if self.bootstrap_fingerprint.as_deref() == Some(fp.as_str()) {
                    stored.clone()
                } else {
                    tracing::info!(
                        "the configured refresh token is new: using it instead of the stored one"
                    );
                    bootstrap
                };
                Ok(Spend {
                    refresh_token: Some(refresh_token),
                    bootstrap_fingerprint: Some(fp),
                })
            }
            // The bootstrap may be gone after first use; the stored one carries on.
            (Some(stored), Err(_)) => Ok(Spend {
                refresh_token: Some(stored.clone()),
                bootstrap_fingerprint: None,
            }),
            (None, Ok(bootstrap)) => Ok(Spend {
                bootstrap_fingerprint: Some(fingerprint(&bootstrap)),
                refresh_token: Some(bootstrap),
            }),
            (None, Err(_)) if in_chain => Ok(Spend::default()),
            (None, Err(reason)) => Err(reason),
        }
    }

    /// A fetch that spent `spend` returned `token` at `at`, with `rotated` as the provider's
    /// new refresh token, if it sent one (RFC 6749 §6: none means keep the one we have).
    pub fn record_success(
        &mut self,
        token: Token,
        rotated: Option<SecretString>,
        spend: Spend,
        at: OffsetDateTime,
    ) {
        self.refresh_token = rotated.or(spend.refresh_token);
        self.bootstrap_fingerprint = spend
            .bootstrap_fingerprint
            .or(self.bootstrap_fingerprint.take());
        self.token = Some(token);
        self.last_rotation = Some(at);
        self.last_error = None;
        self.needs_login = false;
        self.consecutive_failures = 0;
    }

    /// The fetch failed after the provider had already handed out a new refresh token (the
    /// old one is spent): keep the new one, whatever else went wrong.
    pub fn keep_refresh_token(&mut self, refresh_token: SecretString, spend: Spend) {
        self.refresh_token = Some(refresh_token);
        self.bootstrap_fingerprint = spend
            .bootstrap_fingerprint
            .or(self.bootstrap_fingerprint.take());
    }

    /// A fetch failed at `at`; a permanent failure needs a person (`needs-login`).
    pub fn record_failure(
        &mut self,
        kind: FailureKind,
        cause: Cause,
        message: String,
        at: OffsetDateTime,
    ) {
        self.last_error = Some(LastError::new(at, kind, cause, message));
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if kind == FailureKind::Permanent {
            self.needs_login = true;
        }
    }

    /// A target could not be written: the token is good, the credential is retried.
    pub fn record_target_error(&mut self, message: String, at: OffsetDateTime) {
        self.last_error = Some(LastError::new(
            at,
            FailureKind::Transient,
            Cause::Target,
            message,
        ));
    }

    /// The fleet store holds a newer generation (`stored`): this host's state becomes it.
    /// Failures stay local history, so they are cleared with the state they were about.
    pub fn take_over(&mut self, stored: CredentialState) {
        self.token = stored.token;
        self.refresh_token = stored.refresh_token;
        self.bootstrap_fingerprint = stored.bootstrap_fingerprint;
        self.last_rotation = stored.last_rotation;
        self.generation = stored.generation;
        self.uncommitted = None;
        self.last_error = None;
        self.needs_login = false;
        self.consecutive_failures = 0;
    }

    /// The fleet store committed this state as `generation`.
    pub fn record_committed(&mut self, generation: u64) {
        self.generation = Some(generation);
        self.uncommitted = None;
    }

    /// The store refused the commit of an answer fetched inside the fence of `generation`:
    /// this host alone holds it, and commits it first when it next holds the lease.
    pub fn record_uncommitted(&mut self, generation: u64) {
        self.uncommitted = Some(generation);
    }

    /// What the fleet store keeps of this state: what every node may take over. Failures and
    /// the uncommitted mark are this host's own.
    pub fn sealable(&self) -> CredentialState {
        let mut sealed = self.clone();
        sealed.uncommitted = None;
        sealed.last_error = None;
        sealed.consecutive_failures = 0;
        sealed.needs_login = false;
        sealed
    }

    /// `refreshd login` obtained `token` and `refresh_token` at `at`. The configured
    /// bootstrap token (its fingerprint, if any) must not take over from this newer login.
    pub fn record_login(
        &mut self,
        token: Token,
        refresh_token: SecretString,
        configured_fingerprint: Option<String>,
        at: OffsetDateTime,
    ) {
        self.record_success(token, Some(refresh_token), Spend::default(), at);
        self.bootstrap_fingerprint = configured_fingerprint;
        // A new grant: the fleet's generation (if the state came from there) is no longer
        // what it descends from, until the store commits it.
        self.generation = None;
        self.uncommitted = None;
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    fn spent(state: &CredentialState, configured: Option<&str>, chain: bool) -> Option<String> {
        state
            .refresh_token_to_spend(configured.map(|t| Ok(secret(t))), chain)
            .unwrap()
            .refresh_token
            .map(|t| t.expose_secret().to_owned())
    }

    #[test]
    fn the_stored_token_is_spent_until_a_new_bootstrap_appears() {
        let mut state = CredentialState::default();
        assert_eq!(
            spent(&state, Some("boot-1"), false).as_deref(),
            Some("boot-1")
        );
        let spend = state
            .refresh_token_to_spend(Some(Ok(secret("boot-1"))), false)
            .unwrap();
        let at = OffsetDateTime::UNIX_EPOCH;
        let token = crate::token::tests::token_at(at, at + time::Duration::HOUR);
        state.record_success(token.clone(), Some(secret("rotated-1")), spend, at);
        assert_eq!(
            spent(&state, Some("boot-1"), false).as_deref(),
            Some("rotated-1")
        );
        assert_eq!(spent(&state, None, false).as_deref(), Some("rotated-1"));
        assert_eq!(
            spent(&state, Some("boot-2"), false).as_deref(),
            Some("boot-2")
        );
        // No rotation in the response: the spent token stays.
        let spend = state.refresh_token_to_spend(None, false).unwrap();
        state.record_success(token, None, spend, at);
        assert_eq!(
            spent(&state, Some("boot-1"), false).as_deref(),
            Some("rotated-1")
        );
    }

    #[test]
    fn without_any_token_only_a_chain_carries_on() {
        let state = CredentialState::default();
        assert!(matches!(
            state.refresh_token_to_spend(None, false),
            Err(Missing::Nothing)
        ));
        assert!(spent(&state, None, true).is_none());
        let unreadable = Some(Err(SecretError::EnvMissing("RT".into())));
        assert!(matches!(
            state.refresh_token_to_spend(unreadable, false),
            Err(Missing::Unreadable(SecretError::EnvMissing(_)))
        ));
    }

    #[test]
    fn failures_count_and_permanent_ones_need_a_login() {
        let mut state = CredentialState::default();
        let at = OffsetDateTime::UNIX_EPOCH;
        state.record_failure(FailureKind::Transient, Cause::Timeout, "timeout".into(), at);
        state.record_failure(FailureKind::Transient, Cause::Timeout, "timeout".into(), at);
        assert_eq!((state.consecutive_failures, state.needs_login), (2, false));
        state.record_failure(
            FailureKind::Permanent,
            Cause::InvalidGrant,
            "invalid_grant".into(),
            at,
        );
        assert!(state.needs_login);
        let token = crate::token::tests::token_at(at, at + time::Duration::HOUR);
        state.record_login(token, secret("rt"), Some("abcd0123".into()), at);
        assert_eq!((state.consecutive_failures, state.needs_login), (0, false));
        assert_eq!(state.bootstrap_fingerprint.as_deref(), Some("abcd0123"));
        assert!(state.last_error.is_none());
    }
}
