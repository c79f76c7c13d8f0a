//! The refresh step of a rotation: spend the refresh token (one request, inside the fence in
//! a fleet), record the answer (by [`super::transition`]), persist it — the store's commit
//! first, then this host's state file — and only then write the targets. Also what a
//! failure records, and a token adopted from a target.
//!
//! Must never: touch a target before the answer is durable, drop a refresh token the
//! provider rotated (even in an answer that fails otherwise), or replay a request.

use time::OffsetDateTime;

use super::engine::Engine;
use super::hold::Hold;
use super::ledger::Session;
use super::lines::log_rotated;
use super::outcome::{Report, RotationError, RotationOutcome};
use super::policy;
use super::rotation::Job;
use super::transition::Spend;
use crate::config::{Credential, SourceConfig};
use crate::source::{self, FailureKind, FetchContext, SourceError};
use crate::state::Cause;
use crate::store::StoreError;
use crate::token::{self, Token};

/// What the provider's answer left: a token, or a failure that may still carry a refresh
/// token it rotated (the old one is spent then).
enum Answer {
    Token {
        token: Token,
        rotated: Option<secrecy::SecretString>,
        received_at: OffsetDateTime,
    },
    Failed {
        error: RotationError,
        kept: Option<secrecy::SecretString>,
    },
}

impl Engine {
    /// [`Engine::refresh`], with a failure recorded in the held state: the outcome.
    pub(super) async fn refresh_or_record(
        &self,
        job: &Job<'_>,
        hold: &mut Hold,
        session: Session<'_>,
    ) -> RotationOutcome {
        match self.refresh(job, hold, session).await {
            Ok(report) => RotationOutcome::Rotated(report),
            Err(error) => self.fail(job.credential, hold, error).await,
        }
    }

    async fn refresh(
        &self,
        job: &Job<'_>,
        hold: &mut Hold,
        session: Session<'_>,
    ) -> Result<Report, RotationError> {
        let credential = job.credential;
        // Until the request is sent, a failure ends the session without a new state (in a
        // fleet: the intent recorded at the claim is withdrawn).
        let ready = self
            .refresh_token_to_spend(credential, &hold.state, &session)
            .and_then(|spend| session.may_send().map(|()| spend).map_err(Into::into));
        let spend = match ready {
            Ok(spend) => spend,
            Err(e) => {
                session.release().await;
                return Err(e);
            }
        };
        let previous_expiry = hold.state.token.as_ref().map(|t| t.expires_at);
        let (token, rotated, received_at) = match self.ask_provider(job, &spend).await {
            Answer::Token {
                token,
                rotated,
                received_at,
            } => (token, rotated, received_at),
            Answer::Failed { error, kept } => {
                match kept {
                    Some(refresh_token) => {
                        hold.state.keep_refresh_token(refresh_token, spend);
                        // The old one is spent: the next holder must not spend it again.
                        // The failure's record saves it here.
                        if let Err(e) = self.commit(hold, session).await {
                            tracing::error!(credential = %credential.name, "{e}: the rotated refresh token is kept in the state file only");
                        }
                    }
                    None => session.release().await,
                }
                return Err(error);
            }
        };
        let was_rotated = rotated.is_some();
        hold.state
            .record_success(token.clone(), rotated, spend, received_at);
        self.persist(credential, hold, session).await?;
        warn_about(credential, &token, previous_expiry, received_at);
        let report = self
            .write_targets(
                credential,
                &token,
                hold.state.generation,
                job.jitter,
                job.started,
            )
            .await;
        if let Some(first) = report.target_errors.first() {
            hold.state
                .record_target_error(first.to_string(), self.clock.now());
            self.save(credential, hold).await;
        }
        log_rotated(credential, &token, &report, was_rotated);
        Ok(report)
    }

    /// One token request with `spend`, and what its answer left.
    async fn ask_provider(&self, job: &Job<'_>, spend: &Spend) -> Answer {
        let credential = job.credential;
        let ctx = FetchContext {
            credential: &credential.name,
            clients: &self.http,
            network: &credential.network,
            timeout: credential.timing.timeout,
            refresh_token: spend.refresh_token.as_ref(),
            bearers: job.bearers,
        };
        let fetched = match source::fetch(&credential.source, &ctx).await {
            Ok(fetched) => fetched,
            Err(SourceError::Incomplete {
                origin,
                reason,
                refresh_token,
            }) => {
                let reason = format!("{reason} (its new refresh token was kept)");
                return Answer::Failed {
                    error: SourceError::Malformed { origin, reason }.into(),
                    kept: Some(refresh_token),
                };
            }
            Err(e) => {
                return Answer::Failed {
                    error: e.into(),
                    kept: None,
                };
            }
        };
        let received_at = self.clock.now();
        let lifetime = credential.timing.default_lifetime;
        match Token::from_fetched(fetched, received_at, lifetime) {
            Ok((token, rotated)) => Answer::Token {
                token,
                rotated,
                received_at,
            },
            // Nothing to schedule by; but a rotated refresh token must survive.
            Err(absurd) => {
                let kept = if absurd.refresh_token.is_some() {
                    " (its new refresh token was kept)"
                } else {
                    ""
                };
                let error = SourceError::Malformed {
                    origin: credential.source.kind().to_owned(),
                    reason: format!("{}{kept}", absurd.reason),
                };
                Answer::Failed {
                    error: error.into(),
                    kept: absurd.refresh_token,
                }
            }
        }
    }

    /// Makes the held state durable: across hosts the commit comes first (no host writes a
    /// target before it); then this host's state file. A commit that fails leaves the state
    /// here marked uncommitted (its refresh token may be the only copy): this host commits
    /// it first when it next holds the lease. A state the disk refuses stays in memory, and
    /// the targets still get the new token (it is valid, and the old one may not be for long).
    async fn persist(
        &self,
        credential: &Credential,
        hold: &mut Hold,
        session: Session<'_>,
    ) -> Result<(), StoreError> {
        let committed = self.commit(hold, session).await;
        self.save(credential, hold).await;
        committed
    }

    /// The fleet's half of [`Engine::persist`]: the commit, recorded in the held state.
    async fn commit(&self, hold: &mut Hold, session: Session<'_>) -> Result<(), StoreError> {
        match session.commit(&hold.state).await {
            Ok(Some(generation)) => hold.state.record_committed(generation),
            Ok(None) => {}
            Err((e, fenced)) => {
                hold.state.record_uncommitted(fenced);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The holder commits the answer the store never got, before anything else is spent.
    pub(super) async fn commit_kept(
        &self,
        credential: &Credential,
        hold: &mut Hold,
        session: Session<'_>,
    ) -> Result<(), StoreError> {
        self.persist(credential, hold, session).await?;
        tracing::info!(credential = %credential.name, generation = hold.state.generation.unwrap_or(0), "committed this node's newer state to the store");
        Ok(())
    }

    /// For `oauth-refresh` (also in a chain): the refresh token to spend. A configured one
    /// the fleet store took over before is spent already: the stored one carries on.
    fn refresh_token_to_spend(
        &self,
        credential: &Credential,
        state: &crate::state::CredentialState,
        session: &Session<'_>,
    ) -> Result<Spend, RotationError> {
        if credential.source.oauth_refresh().is_none() {
            return Ok(Spend::default());
        }
        let seen = session.bootstraps_seen();
        let configured = credential
            .source
            .oauth_refresh()
            .and_then(|source| source.refresh_token.as_ref())
            .map(|r| r.resolve())
            .filter(|configured| match configured {
                Ok(token) if state.refresh_token.is_some() => {
                    !seen.contains(&token::fingerprint(token))
                }
                _ => true,
            });
        let in_chain = matches!(credential.source, SourceConfig::Chain(_));
        state
            .refresh_token_to_spend(configured, in_chain)
            .map_err(|why| crate::source::NoRefreshToken::new(&credential.name, why).into())
    }

    /// Records `error` in the held state and says so: the outcome of a failed rotation.
    pub(super) async fn fail(
        &self,
        credential: &Credential,
        hold: &mut Hold,
        error: RotationError,
    ) -> RotationOutcome {
        let kind = error.kind();
        self.record_failure(credential, hold, &error, kind).await;
        RotationOutcome::Failed { error, kind }
    }

    pub(super) async fn record_failure(
        &self,
        credential: &Credential,
        hold: &mut Hold,
        error: &RotationError,
        kind: FailureKind,
    ) {
        let now = self.clock.now();
        let state = &mut hold.state;
        // A refresh whose answer never came may have been spent: the provider then refuses
        // the token we still hold. Say so rather than leave a bare invalid_grant.
        let after_timeout = state
            .last_error
            .as_ref()
            .is_some_and(|e| e.cause == Cause::Timeout);
        let mut message = error.to_string();
        if kind == FailureKind::Permanent
            && after_timeout
            && credential.source.oauth_refresh().is_some()
        {
            message.push_str(" (the refresh before this one timed out: the provider may have rotated the refresh token in an answer that never arrived; log in again)");
        }
        state.record_failure(kind, error.cause(), message.clone(), now);
        let held = state.token.as_ref().filter(|t| t.is_valid_at(now));
        match kind {
            FailureKind::Permanent => tracing::error!(
                credential = %credential.name,
                needs_login = true,
                targets_keep = held.map(|t| token::rfc3339(t.expires_at)).unwrap_or_else(|| "nothing valid".into()),
                "refresh failed: {message}"
            ),
            FailureKind::Transient => {
                tracing::warn!(credential = %credential.name, failures = state.consecutive_failures, "refresh failed: {message}")
            }
        }
        self.save(credential, hold).await;
    }

    /// With no token held (a first start, or a state directory that was lost), a JWT still
    /// valid and not yet due in one of the targets is taken over instead of being replaced:
    /// starting refreshd does not force a rotation. This host alone only.
    pub(super) async fn adopt_from_targets(&self, job: &Job<'_>, hold: &mut Hold) {
        if hold.state.token.is_some() || matches!(job.trigger, policy::Trigger::Force { .. }) {
            return;
        }
        let credential = job.credential;
        let now = self.clock.now();
        // Off the async workers: a target is a file someone else may control.
        let targets = credential.targets.clone();
        let timing = credential.timing.clone();
        let found = tokio::task::spawn_blocking(move || {
            targets.iter().find_map(|target| {
                let value = crate::target::read_current(target)?;
                let fetched = token::Fetched::new(value);
                let (found, _) = Token::from_fetched(fetched, now, timing.default_lifetime).ok()?;
                policy::adoptable(&found, now, &timing).then(|| (found, target.path.clone()))
            })
        })
        .await
        .ok()
        .flatten();
        let Some((found, path)) = found else {
            return;
        };
        tracing::info!(
            credential = %credential.name,
            target = %path.display(),
            expires_at = %token::rfc3339(found.expires_at),
            fingerprint = %found.fingerprint(),
            "reusing the still-valid token found in a target"
        );
        hold.state.token = Some(found);
        self.save(credential, hold).await;
    }
}

/// Warnings about a fresh token: clock skew, or an expiry earlier than the one it replaces.
fn warn_about(
    credential: &Credential,
    token: &Token,
    previous_expiry: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
) {
    if let Some(warning) = policy::clock_skew(
        token.issued_at,
        token.expires_at,
        received_at,
        &credential.timing,
    ) {
        tracing::warn!(credential = %credential.name, "clock skew: {warning}");
    }
    if previous_expiry.is_some_and(|before| token.expires_at < before) {
        tracing::warn!(credential = %credential.name, expires_at = %token::rfc3339(token.expires_at), "the refreshed token expires earlier than the one it replaces");
    }
}
