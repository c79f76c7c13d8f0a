//! One rotation of one credential: lock, decide, fetch, persist, write targets, report.
//! `refreshd once` calls it directly; the daemon calls it from each credential's task.
//!
//! The order is the invariant of DESIGN §1: the new token and any rotated refresh token are
//! fsynced in the state directory before a target is touched. A failed fetch never changes
//! a target. Nothing here logs a token: only fingerprints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::config::{Credential, SourceConfig};
use crate::reload::{self, ReloadError, Reloader};
use crate::schedule;
use crate::source::{self, FailureKind, FetchContext, SourceError};
use crate::state::{CredentialState, LastError, StateDir, StateError};
use crate::target::{self, Outcome};
use crate::token::{self, Token, fingerprint};

/// Why a rotation is asked for.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Refresh only if the schedule says the token is due (or there is none).
    IfDue,
    /// Refresh unless some process already rotated it at or after `since` (two `--force`
    /// runs at once make one token request, not two).
    Force { since: OffsetDateTime },
    /// The daemon's (jittered) deadline for the token with this fingerprint has come:
    /// refresh it, unless another process already replaced it (then as `IfDue`).
    Scheduled { fingerprint: String },
}

/// What a rotation did.
#[derive(Debug)]
pub enum RotationResult {
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
    pub issued_at: OffsetDateTime,
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
    #[error(
        "no refresh token: {} and none is stored; run `refreshd login {credential}`{}",
        reason.as_ref().map(|e| format!("the configured one cannot be read ({e})")).unwrap_or_else(|| "none is configured".to_owned()),
        if reason.is_some() { " or fix the reference" } else { "" }
    )]
    NoRefreshToken {
        credential: String,
        reason: Option<crate::secret::SecretError>,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl RotationResult {
    /// A rotation whose targets were all written; a failed reload does not count against
    /// it (it is reported, and never undoes the rotation).
    pub fn is_ok(&self) -> bool {
        match self {
            RotationResult::Rotated(report) | RotationResult::Current(report) => {
                report.target_errors.is_empty()
            }
            RotationResult::Failed { .. } => false,
        }
    }
}

impl RotationError {
    /// What the provider asked for with `Retry-After`, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RotationError::Source(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What a rotation needs besides the credential.
pub struct Engine {
    pub http: reqwest::Client,
    pub state: StateDir,
    /// `false` for `check --online`: fetch and persist, but leave targets alone.
    pub write_targets: bool,
    /// Runs reload actions after targets changed; `None` leaves them alone.
    pub reloader: Option<Reloader>,
}

impl Engine {
    /// Runs one rotation of `credential`, waiting for its lock first.
    pub async fn rotate(&self, credential: &Credential, trigger: Trigger) -> RotationResult {
        self.rotate_with_jitter(credential, trigger, time::Duration::ZERO)
            .await
    }

    /// [`Engine::rotate`], planning the next refresh `jitter` away from the schedule (the
    /// daemon spreads a fleet's refreshes; the plan goes into the report and the log).
    pub async fn rotate_with_jitter(
        &self,
        credential: &Credential,
        trigger: Trigger,
        jitter: time::Duration,
    ) -> RotationResult {
        let started = Instant::now();
        let state_dir = self.state.clone();
        let name = credential.name.clone();
        let locked = tokio::task::spawn_blocking(move || state_dir.lock(&name)).await;
        let _lock = match locked {
            Ok(Ok(lock)) => lock,
            Ok(Err(e)) => return failed(credential, e.into()),
            Err(e) => return failed(credential, RotationError::Internal(e.to_string())),
        };
        // Read under the lock: another process may have just rotated.
        let mut state = match self.state.load(&credential.name) {
            Ok(state) => state,
            Err(e) => return failed(credential, e.into()),
        };
        let now = OffsetDateTime::now_utc();
        if state.token.is_none() && !matches!(trigger, Trigger::Force { .. }) {
            self.adopt_from_targets(credential, &mut state, now);
        }
        if !needs_refresh(credential, &state, &trigger, now)
            && let Some(token) = state.token.clone()
        {
            let report = self
                .write_targets(credential, &token, jitter, started)
                .await;
            // Only worth an operator's attention when a target had to be repaired.
            let level_info = report.targets_written > 0;
            macro_rules! current {
                ($level:ident) => {
                    tracing::$level!(
                credential = %credential.name,
                expires_at = %token::rfc3339(token.expires_at),
                next_refresh = %token::rfc3339(report.next_refresh),
                targets_written = report.targets_written,
                reloads = report.reloads_run,
                fingerprint = %report.fingerprint,
                "current"
                    )
                };
            }
            if level_info {
                current!(info);
            } else {
                current!(debug);
            }
            return RotationResult::Current(report);
        }
        match self.refresh(credential, &mut state, jitter, started).await {
            Ok(result) => result,
            Err(error) => {
                let kind = match &error {
                    RotationError::Source(e) => e.kind(),
                    RotationError::NoRefreshToken { .. } => FailureKind::Permanent,
                    _ => FailureKind::Transient,
                };
                record_failure(&self.state, credential, &mut state, &error, kind);
                RotationResult::Failed { error, kind }
            }
        }
    }

    async fn refresh(
        &self,
        credential: &Credential,
        state: &mut CredentialState,
        jitter: time::Duration,
        started: Instant,
    ) -> Result<RotationResult, RotationError> {
        let (spend, bootstrap_fp) = refresh_token_to_spend(credential, state)?;
        let previous_expiry = state.token.as_ref().map(|t| t.expires_at);
        let bearers = self.bearer_tokens(&credential.source);
        let ctx = FetchContext {
            credential: &credential.name,
            http: &self.http,
            timeout: credential.timing.timeout,
            refresh_token: spend.as_ref(),
            bearers: &bearers,
        };
        let fetched = match source::fetch(&credential.source, &ctx).await {
            Ok(fetched) => fetched,
            Err(SourceError::Incomplete {
                origin,
                reason,
                refresh_token,
            }) => {
                // The old refresh token is spent; the new one must survive the failure.
                state.refresh_token = Some(refresh_token);
                state.bootstrap_fingerprint = bootstrap_fp.or(state.bootstrap_fingerprint.take());
                return Err(SourceError::Malformed {
                    origin,
                    reason: format!("{reason} (its new refresh token was kept)"),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let received_at = OffsetDateTime::now_utc();
        let (token, rotated_refresh) =
            Token::from_fetched(fetched, received_at, credential.timing.default_lifetime);

        // RFC 6749 §6: no refresh_token in the response means keep the one we have.
        let rotated = rotated_refresh.is_some();
        state.refresh_token = rotated_refresh.or(spend);
        state.bootstrap_fingerprint = bootstrap_fp.or(state.bootstrap_fingerprint.take());
        state.token = Some(token.clone());
        state.last_rotation = Some(received_at);
        state.last_error = None;
        state.needs_login = false;
        state.consecutive_failures = 0;
        // The invariant: durable before any target is touched.
        if let Err(e) = self.state.save(&credential.name, state) {
            if rotated {
                tracing::error!(
                    credential = %credential.name,
                    "the provider rotated the refresh token but it could not be stored; if the provider allows each refresh token once, this credential needs a new login"
                );
            }
            return Err(e.into());
        }

        if let Some(warning) = schedule::clock_skew(
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
        let report = self
            .write_targets(credential, &token, jitter, started)
            .await;
        if let Some(first) = report.target_errors.first() {
            state.last_error = Some(LastError {
                at: OffsetDateTime::now_utc(),
                kind: FailureKind::Transient,
                message: first.to_string(),
            });
            if let Err(e) = self.state.save(&credential.name, state) {
                tracing::error!(credential = %credential.name, "{e}");
            }
        }
        tracing::info!(
            credential = %credential.name,
            expires_at = %token::rfc3339(token.expires_at),
            next_refresh = %token::rfc3339(report.next_refresh),
            targets = report.targets_written + report.targets_unchanged,
            target_errors = report.target_errors.len(),
            reloads = report.reloads_run,
            reload_errors = report.reload_errors.len(),
            took = %format!("{}ms", report.took.as_millis()),
            fingerprint = %report.fingerprint,
            refresh_token_rotated = rotated,
            served_by = token.served.as_ref().map(|s| tracing::field::debug(&s.by)),
            "rotated"
        );
        Ok(RotationResult::Rotated(report))
    }

    /// The current token of every credential this one's source uses as a bearer, or why it
    /// has none. Read without the bearer's lock: state files are replaced atomically.
    fn bearer_tokens(
        &self,
        source: &SourceConfig,
    ) -> BTreeMap<String, Result<SecretString, String>> {
        // Databricks refuses a token with 30 s or less to live: do not send one.
        let soon = OffsetDateTime::now_utc() + time::Duration::seconds(30);
        source
            .bearers()
            .into_iter()
            .map(|name| {
                let token = match self.state.load(name) {
                    Ok(state) => match state.token {
                        Some(token) if token.expires_at > soon => Ok(token.access_token),
                        Some(token) => Err(format!(
                            "its token expires at {}",
                            token::rfc3339(token.expires_at)
                        )),
                        None => Err("it has none yet".to_owned()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                (name.to_owned(), token)
            })
            .collect()
    }

    /// With no token in state (a first start, or a state directory that was lost), a JWT
    /// still valid and not yet due in one of the targets is taken over instead of being
    /// replaced: starting refreshd does not force a rotation. Opaque tokens are never
    /// adopted (their expiry cannot be known).
    fn adopt_from_targets(
        &self,
        credential: &Credential,
        state: &mut CredentialState,
        now: OffsetDateTime,
    ) {
        for target in &credential.targets {
            let Some(value) = target::read_current(target) else {
                continue;
            };
            let fetched = token::Fetched::new(value);
            let (found, _) = Token::from_fetched(fetched, now, credential.timing.default_lifetime);
            if found.expiry_source != token::ExpirySource::JwtExp
                || !found.is_valid_at(now)
                || schedule::is_due(found.issued_at, found.expires_at, &credential.timing, now)
            {
                continue;
            }
            tracing::info!(
                credential = %credential.name,
                target = %target.path.display(),
                expires_at = %token::rfc3339(found.expires_at),
                fingerprint = %found.fingerprint(),
                "reusing the still-valid token found in a target"
            );
            state.token = Some(found);
            if let Err(e) = self.state.save(&credential.name, state) {
                tracing::warn!(credential = %credential.name, "{e}");
            }
            return;
        }
    }

    /// Writes every target (on the blocking pool: a target on a slow filesystem must not
    /// stall other credentials, and a started write finishes even if the caller goes away),
    /// then runs the reload actions when something changed.
    async fn write_targets(
        &self,
        credential: &Credential,
        token: &Token,
        jitter: time::Duration,
        started: Instant,
    ) -> Report {
        let mut report = Report {
            fingerprint: token.fingerprint(),
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            next_refresh: schedule::next_refresh(
                token.issued_at,
                token.expires_at,
                &credential.timing,
                jitter,
                OffsetDateTime::now_utc(),
            ),
            targets_written: 0,
            targets_unchanged: 0,
            target_errors: Vec::new(),
            reloads_run: 0,
            reload_errors: Vec::new(),
            took: Duration::ZERO,
        };
        if self.write_targets {
            let targets = credential.targets.clone();
            let value = token.access_token.clone();
            let expires_at = token.expires_at;
            let outcomes = tokio::task::spawn_blocking(move || {
                targets
                    .iter()
                    .map(|target| target::write(target, &value, expires_at))
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
        }
        // A reload after a write that changed nothing would restart apps for no reason.
        if report.targets_written > 0
            && let Some(reloader) = &self.reloader
        {
            let context = reload::Context {
                credential: credential.name.clone(),
                expires_at: token.expires_at,
                targets: credential.targets.iter().map(|t| t.path.clone()).collect(),
            };
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

/// Whether the stored token should be replaced now.
fn needs_refresh(
    credential: &Credential,
    state: &CredentialState,
    trigger: &Trigger,
    now: OffsetDateTime,
) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    match trigger {
        Trigger::Force { since } => state.last_rotation.is_none_or(|at| at < *since),
        Trigger::Scheduled { fingerprint } if token.fingerprint() == *fingerprint => true,
        Trigger::IfDue | Trigger::Scheduled { .. } => {
            !token.is_valid_at(now)
                || schedule::is_due(token.issued_at, token.expires_at, &credential.timing, now)
        }
    }
}

/// For `oauth-refresh`: the stored (rotated) refresh token, unless the configured bootstrap
/// token is a different one than the stored token descends from, which means a person put a
/// new one there. Returns the token and the bootstrap's fingerprint.
fn refresh_token_to_spend(
    credential: &Credential,
    state: &CredentialState,
) -> Result<(Option<SecretString>, Option<String>), RotationError> {
    let Some(source) = credential.source.oauth_refresh() else {
        return Ok((None, None));
    };
    let bootstrap = match &source.refresh_token {
        Some(configured) => configured.resolve().map_err(Some),
        None => Err(None),
    };
    match (&state.refresh_token, bootstrap) {
        (Some(stored), Ok(bootstrap)) => {
            let fp = fingerprint(&bootstrap);
            if state.bootstrap_fingerprint.as_deref() == Some(fp.as_str()) {
                Ok((Some(stored.clone()), Some(fp)))
            } else {
                tracing::info!(credential = %credential.name, "the configured refresh token is new: using it instead of the stored one");
                Ok((Some(bootstrap), Some(fp)))
            }
        }
        // The bootstrap may be gone after first use; the stored one carries on.
        (Some(stored), Err(_)) => Ok((Some(stored.clone()), None)),
        (None, Ok(bootstrap)) => {
            let fp = fingerprint(&bootstrap);
            Ok((Some(bootstrap), Some(fp)))
        }
        // In a chain the oauth-refresh member fails on its own and the next one is tried.
        (None, Err(_)) if matches!(credential.source, SourceConfig::Chain(_)) => Ok((None, None)),
        (None, Err(reason)) => Err(RotationError::NoRefreshToken {
            credential: credential.name.clone(),
            reason,
        }),
    }
}

fn record_failure(
    state_dir: &StateDir,
    credential: &Credential,
    state: &mut CredentialState,
    error: &RotationError,
    kind: FailureKind,
) {
    state.last_error = Some(LastError {
        at: OffsetDateTime::now_utc(),
        kind,
        message: error.to_string(),
    });
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    if kind == FailureKind::Permanent {
        state.needs_login = true;
    }
    let held = state
        .token
        .as_ref()
        .filter(|t| t.is_valid_at(OffsetDateTime::now_utc()));
    match kind {
        FailureKind::Permanent => tracing::error!(
            credential = %credential.name,
            needs_login = true,
            targets_keep = held.map(|t| token::rfc3339(t.expires_at)).unwrap_or_else(|| "nothing valid".into()),
            "refresh failed: {error}"
        ),
        FailureKind::Transient => {
            tracing::warn!(credential = %credential.name, failures = state.consecutive_failures, "refresh failed: {error}")
        }
    }
    if !matches!(error, RotationError::State(_))
        && let Err(e) = state_dir.save(&credential.name, state)
    {
        tracing::error!(credential = %credential.name, "{e}");
    }
}

fn failed(credential: &Credential, error: RotationError) -> RotationResult {
    tracing::error!(credential = %credential.name, "{error}");
    RotationResult::Failed {
        error,
        kind: FailureKind::Transient,
    }
}
