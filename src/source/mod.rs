//! Sources: obtain a fresh token from wherever a credential's tokens come from, and classify
//! every failure as transient or permanent (design §4).
//!
//! A source makes exactly one attempt per call: it never retries, never follows a redirect
//! and never replays a token request (a replayed rotating refresh token can get the whole
//! grant revoked); the caller decides what happens next. It never writes state or targets,
//! and no error it returns contains a token, a refresh token or a client secret.

mod aws;
pub mod command;
mod exchange;
mod fields;
mod google;
pub mod http;
pub mod net;
pub mod oauth;
mod resolve;
mod subject;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{Network, SourceConfig, TlsClientAuth};
use crate::secret::SecretError;
pub use crate::state::{Cause, FailureKind};
use crate::token::Fetched;
pub use net::HttpClients;

/// The current token (with its fields and expiry) of each credential a source uses (an
/// `http` source's bearer, a subject, the AWS keys that sign), by name, or why there is none
/// worth using.
pub type BearerTokens = BTreeMap<String, Result<crate::token::Token, String>>;

/// Why a fetch failed.
/// Why a credential has no refresh token to spend or to keep: the one type for every path
/// that needs one (a refresh, a chain's member, a login's answer).
#[derive(Debug, thiserror::Error)]
#[error("no refresh token: {}", why.explain(credential))]
pub struct NoRefreshToken {
    pub credential: String,
    pub why: Missing,
}

/// What is missing.
#[derive(Debug)]
pub enum Missing {
    Nothing,
    Unreadable(crate::secret::SecretError),
    /// A login's answer carried none.
    NotIssued,
}

impl Missing {
    /// What is missing and what a person does about it.
    fn explain(&self, credential: &str) -> String {
        match self {
            Missing::Nothing => format!(
                "none is configured and none is stored; run `refreshd login {credential}`"
            ),
            Missing::Unreadable(e) => format!(
                "the configured one cannot be read ({e}) and none is stored; fix the reference or run `refreshd login {credential}`"
            ),
            Missing::NotIssued => "the provider's answer has none: ask for offline access (e.g. the `offline_access` scope) in the credential's `scopes`".to_owned(),
        }
    }
}

impl NoRefreshToken {
    pub fn new(credential: &str, why: Missing) -> NoRefreshToken {
        NoRefreshToken {
            credential: credential.to_owned(),
            why,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An OAuth error response (RFC 6749 §5.2).
    #[error("{url} answered HTTP {status} {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider {
        url: String,
        status: u16,
        error: String,
        description: Option<String>,
        retry_after: Option<Duration>,
    },
    /// An HTTP error without an OAuth error body.
    #[error("{url} answered HTTP {status}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Http {
        url: String,
        status: u16,
        detail: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("request to {url} timed out after {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    /// A success status whose body is not a usable token response.
    #[error("{origin}: not a usable token response: {reason}")]
    Malformed { origin: String, reason: String },
    /// A success response that is unusable but carries a rotated refresh token, which the
    /// caller must store: the old one is spent.
    #[error("{origin}: not a usable token response: {reason} (its new refresh token was kept)")]
    Incomplete {
        origin: String,
        reason: String,
        refresh_token: SecretString,
    },
    #[error("{key}: {source}")]
    Secret {
        key: &'static str,
        source: SecretError,
    },
    #[error("private_key: {0}")]
    PrivateKey(String),
    /// The credential's `ca_file` cannot be read or parsed (it was when the config was
    /// loaded).
    #[error("ca_file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The TLS client certificate and key (RFC 8705) cannot be used.
    #[error("{0}")]
    ClientCertificate(String),
    /// The HTTP client for the credential's network settings cannot be built.
    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),
    /// The command could not be started (wrong path, not executable).
    #[error("cannot run {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{program} {status}{}", stderr.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    CommandFailed {
        program: String,
        status: String,
        stderr: Option<String>,
    },
    #[error("{program} did not finish within {}", humantime::format_duration(*.after))]
    CommandTimeout { program: String, after: Duration },
    /// Google refused a correctly signed assertion as outside its time window.
    #[error(
        "{url} refused the signed assertion as outside its time window: the system clock is probably wrong (check NTP, e.g. `timedatectl`); invalid_grant: {description}"
    )]
    ClockSkew { url: String, description: String },
    /// A Google key or application-default credentials file that cannot be used.
    #[error("{}: {reason}", path.display())]
    CredentialsFile { path: PathBuf, reason: String },
    /// A subject token or client assertion that is a JWT past its `exp`: never sent.
    #[error(
        "{origin}: the token expired at {expired_at} ({ago} ago) and was not sent; whatever writes it should have replaced it"
    )]
    Expired {
        origin: String,
        expired_at: String,
        ago: String,
    },
    /// No AWS keys to sign with.
    #[error("aws: {0}")]
    AwsKeys(String),
    #[error(transparent)]
    NoRefreshToken(#[from] NoRefreshToken),
    /// The credential whose token an `http` source sends as its bearer has none to give.
    #[error(
        "bearer credential `{credential}` has no valid token ({reason}); it is refreshed first and this one follows"
    )]
    Bearer { credential: String, reason: String },
    #[error("every source of the chain failed: {}", .0.iter().enumerate().map(|(i, e)| format!("[{i}] {e}")).collect::<Vec<_>>().join("; "))]
    Chain(Vec<SourceError>),
}

/// OAuth `error` codes that retrying cannot fix (RFC 6749 §5.2).
const PERMANENT_ERRORS: &[&str] = &[
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_request",
    "access_denied",
    "invalid_target",
];

impl SourceError {
    pub fn kind(&self) -> FailureKind {
        match self {
            SourceError::Provider { error, status, .. } => {
                if matches!(
                    error.as_str(),
                    "temporarily_unavailable" | "server_error" | "slow_down"
                ) || aws::TRANSIENT_ERRORS.contains(&error.as_str())
                {
                    FailureKind::Transient
                } else if PERMANENT_ERRORS.contains(&error.as_str()) {
                    FailureKind::Permanent
                } else {
                    status_kind(*status)
                }
            }
            SourceError::Http { status, .. } => status_kind(*status),
            SourceError::Transport { .. }
            | SourceError::ClockSkew { .. }
            | SourceError::Bearer { .. }
            | SourceError::Timeout { .. }
            | SourceError::Malformed { .. }
            | SourceError::Incomplete { .. }
            // The platform replaces it (the daemon watches its file), or the credential
            // it comes from refreshes.
            | SourceError::Expired { .. }
            | SourceError::CommandFailed { .. }
            | SourceError::CommandTimeout { .. } => FailureKind::Transient,
            SourceError::Secret { .. }
            | SourceError::PrivateKey(_)
            | SourceError::CaFile { .. }
            | SourceError::ClientCertificate(_)
            | SourceError::HttpClient(_)
            | SourceError::Spawn { .. }
            | SourceError::NoRefreshToken(_)
            | SourceError::AwsKeys(_)
            | SourceError::CredentialsFile { .. } => FailureKind::Permanent,
            // A chain is as good as its best member.
            SourceError::Chain(errors) => {
                if errors.iter().any(|e| e.kind() == FailureKind::Transient) {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                }
            }
        }
    }

    /// What the failure came from. Like [`kind`](Self::kind) it reads the OAuth error code
    /// and the status, never a message's text.
    pub fn cause(&self) -> Cause {
        cause_of(self)
    }

    /// The provider's own words about the failure (`error_description`), when it sent some:
    /// what a notification quotes.
    pub fn description(&self) -> Option<&str> {
        match self {
            SourceError::Provider { description, .. } => description.as_deref(),
            SourceError::ClockSkew { description, .. } => Some(description),
            SourceError::Chain(errors) => errors.iter().find_map(SourceError::description),
            _ => None,
        }
    }

    /// What the provider asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Provider { retry_after, .. } | SourceError::Http { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// [`SourceError::cause`], a function of its own so that a chain's recursion does not
/// count as a use of the method (its `expect(dead_code)` holds until part 9 wires it).
fn cause_of(error: &SourceError) -> Cause {
    match error {
        SourceError::Provider { error, status, .. } => match error.as_str() {
            "invalid_grant" => Cause::InvalidGrant,
            "invalid_client" | "unauthorized_client" => Cause::InvalidClient,
            "slow_down" | "Throttling" => Cause::RateLimited,
            "temporarily_unavailable" | "server_error" => Cause::ProviderUnavailable,
            _ if PERMANENT_ERRORS.contains(&error.as_str()) => Cause::ProviderRefused,
            _ => status_cause(*status),
        },
        SourceError::Http { status, .. } => status_cause(*status),
        SourceError::Transport { .. } => Cause::Network,
        SourceError::Timeout { .. } => Cause::Timeout,
        SourceError::Malformed { .. } | SourceError::Incomplete { .. } => Cause::Malformed,
        SourceError::Secret { .. }
        | SourceError::PrivateKey(_)
        | SourceError::Expired { .. }
        | SourceError::CaFile { .. }
        | SourceError::ClientCertificate(_)
        | SourceError::AwsKeys(_)
        | SourceError::CredentialsFile { .. } => Cause::Secret,
        SourceError::HttpClient(_) => Cause::Internal,
        SourceError::Spawn { .. }
        | SourceError::CommandFailed { .. }
        | SourceError::CommandTimeout { .. } => Cause::Command,
        SourceError::ClockSkew { .. } => Cause::ClockSkew,
        SourceError::NoRefreshToken(_) => Cause::NoRefreshToken,
        SourceError::Bearer { .. } => Cause::Bearer,
        // The member that decided the chain's kind: its first of that kind.
        SourceError::Chain(errors) => {
            let kind = error.kind();
            errors
                .iter()
                .find(|e| e.kind() == kind)
                .map_or(Cause::Internal, cause_of)
        }
    }
}

fn status_kind(status: u16) -> FailureKind {
    match status {
        408 | 425 | 429 => FailureKind::Transient,
        500..=599 => FailureKind::Transient,
        _ => FailureKind::Permanent,
    }
}

/// The cause of an HTTP status without an error code that says more; in step with
/// [`status_kind`].
fn status_cause(status: u16) -> Cause {
    match status {
        429 => Cause::RateLimited,
        408 | 425 | 500..=599 => Cause::ProviderUnavailable,
        _ => Cause::ProviderRefused,
    }
}

/// What a fetch may use besides the source's own configuration.
pub struct FetchContext<'a> {
    /// The credential's name, for log lines.
    pub credential: &'a str,
    /// The HTTP clients; [`FetchContext::http`] picks this credential's.
    pub clients: &'a HttpClients,
    /// The credential's proxy and CA settings.
    pub network: &'a Network,
    /// Per request / per command.
    pub timeout: Duration,
    /// For `oauth-refresh`: the refresh token to spend (the rotated one from state, or the
    /// configured bootstrap token).
    pub refresh_token: Option<&'a SecretString>,
    /// For `http`: the current token of each credential named as a bearer, or why there is
    /// none.
    pub bearers: &'a BearerTokens,
}

impl FetchContext<'_> {
    /// The client for this credential's network and, for an OAuth source that authenticates
    /// with its TLS certificate, that certificate.
    pub fn http(&self, tls: Option<&TlsClientAuth>) -> Result<reqwest::Client, SourceError> {
        self.clients.client(self.network, tls)
    }
}

/// One attempt at a fresh token.
pub async fn fetch(source: &SourceConfig, ctx: &FetchContext<'_>) -> Result<Fetched, SourceError> {
    match source {
        SourceConfig::OauthRefresh(s) => oauth::refresh(s, ctx).await,
        SourceConfig::OauthClientCredentials(s) => oauth::client_credentials(s, ctx).await,
        SourceConfig::Command(s) => command::run(s, ctx).await,
        SourceConfig::GoogleServiceAccount(s) => google::service_account(s, ctx).await,
        SourceConfig::GoogleAuthorizedUser(s) => google::authorized_user(s, ctx).await,
        SourceConfig::Http(s) => http::fetch(s, ctx).await,
        SourceConfig::OauthTokenExchange(s) => exchange::exchange(s, ctx).await,
        SourceConfig::AwsWebIdentity(s) => aws::web_identity(s, ctx).await,
        SourceConfig::AwsRdsIam(s) => aws::rds_iam(s, ctx),
        SourceConfig::Chain(chain) => {
            let mut errors = Vec::new();
            let mut skipped = Vec::new();
            // A member that spent a rotating refresh token but gave nothing usable handed
            // back the new one: it must reach the state whatever the later members do.
            let mut kept_refresh_token = None;
            for (i, inner) in chain.sources.iter().enumerate() {
                let member = format!("sources[{i}] {}", inner.kind());
                match Box::pin(fetch(inner, ctx)).await {
                    Ok(mut fetched) => {
                        fetched.refresh_token = fetched.refresh_token.or(kept_refresh_token);
                        fetched.served = Some(crate::token::Served {
                            by: member,
                            skipped,
                        });
                        return Ok(fetched);
                    }
                    Err(e) => {
                        tracing::warn!(credential = %ctx.credential, source = ?member, error = ?e.to_string(), "chain source failed, trying the next");
                        skipped.push(format!("{member}: {e}"));
                        if let SourceError::Incomplete { refresh_token, .. } = &e {
                            kept_refresh_token = Some(refresh_token.clone());
                        }
                        errors.push(e);
                    }
                }
            }
            match kept_refresh_token {
                Some(refresh_token) => Err(SourceError::Incomplete {
                    origin: "chain".to_owned(),
                    reason: SourceError::Chain(errors).to_string(),
                    refresh_token,
                }),
                None => Err(SourceError::Chain(errors)),
            }
        }
    }
}

/// The current token of `credential`, a bearer or subject this source uses, as the
/// caller looked it up.
fn bearer_token(ctx: &FetchContext<'_>, credential: &str) -> Result<SecretString, SourceError> {
    bearer(ctx, credential).map(|token| token.access_token.clone())
}

/// The current token of `credential`, with its fields and expiry.
fn bearer<'a>(
    ctx: &'a FetchContext<'_>,
    credential: &str,
) -> Result<&'a crate::token::Token, SourceError> {
    match ctx.bearers.get(credential) {
        Some(Ok(token)) => Ok(token),
        Some(Err(reason)) => Err(SourceError::Bearer {
            credential: credential.to_owned(),
            reason: reason.clone(),
        }),
        None => Err(SourceError::Bearer {
            credential: credential.to_owned(),
            reason: "it was not looked up".to_owned(),
        }),
    }
}

/// What `refreshd check` can verify of a source's own files without a network: the Google
/// key and application-default credentials files parse and hold what they must.
pub fn check_files(source: &SourceConfig) -> Vec<SourceError> {
    match source {
        SourceConfig::GoogleServiceAccount(s) => google::check_key_file(&s.key_file)
            .err()
            .into_iter()
            .collect(),
        SourceConfig::GoogleAuthorizedUser(s) => google::check_adc_file(&s.path())
            .err()
            .into_iter()
            .collect(),
        SourceConfig::Chain(chain) => chain.sources.iter().flat_map(check_files).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod connection_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(status: u16, error: &str) -> SourceError {
        SourceError::Provider {
            url: "u".into(),
            status,
            error: error.into(),
            description: None,
            retry_after: None,
        }
    }

    #[test]
    fn classification_follows_rfc6749_and_status() {
        assert_eq!(
            provider(400, "invalid_grant").kind(),
            FailureKind::Permanent
        );
        assert_eq!(
            provider(401, "invalid_client").kind(),
            FailureKind::Permanent
        );
        assert_eq!(
            provider(503, "temporarily_unavailable").kind(),
            FailureKind::Transient
        );
        assert_eq!(provider(400, "slow_down").kind(), FailureKind::Transient);
        assert_eq!(provider(500, "weird_code").kind(), FailureKind::Transient);
        assert_eq!(provider(400, "weird_code").kind(), FailureKind::Permanent);
        let http = |status| SourceError::Http {
            url: "u".into(),
            status,
            detail: None,
            retry_after: None,
        };
        assert_eq!(http(429).kind(), FailureKind::Transient);
        assert_eq!(http(502).kind(), FailureKind::Transient);
        assert_eq!(http(404).kind(), FailureKind::Permanent);
        assert_eq!(http(302).kind(), FailureKind::Permanent);
    }

    #[test]
    fn every_error_has_a_cause_from_its_code_and_status() {
        assert_eq!(provider(400, "invalid_grant").cause(), Cause::InvalidGrant);
        assert_eq!(
            provider(401, "invalid_client").cause(),
            Cause::InvalidClient
        );
        assert_eq!(provider(400, "slow_down").cause(), Cause::RateLimited);
        assert_eq!(
            provider(400, "temporarily_unavailable").cause(),
            Cause::ProviderUnavailable
        );
        assert_eq!(
            provider(400, "invalid_scope").cause(),
            Cause::ProviderRefused
        );
        assert_eq!(
            provider(503, "weird_code").cause(),
            Cause::ProviderUnavailable
        );
        assert_eq!(provider(429, "weird_code").cause(), Cause::RateLimited);
        assert_eq!(provider(400, "weird_code").cause(), Cause::ProviderRefused);
        let http = |status| SourceError::Http {
            url: "u".into(),
            status,
            detail: None,
            retry_after: None,
        };
        assert_eq!(http(502).cause(), Cause::ProviderUnavailable);
        assert_eq!(http(302).cause(), Cause::ProviderRefused);
        let timeout = SourceError::Timeout {
            url: "u".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(timeout.cause(), Cause::Timeout);
        let spawn = SourceError::Spawn {
            program: "p".into(),
            message: "m".into(),
        };
        assert_eq!(spawn.cause(), Cause::Command);
        // A chain's cause is that of its first member of the chain's kind.
        let chain = SourceError::Chain(vec![provider(400, "invalid_grant"), timeout, spawn]);
        assert_eq!(chain.kind(), FailureKind::Transient);
        assert_eq!(chain.cause(), Cause::Timeout);
        let chain = SourceError::Chain(vec![provider(400, "invalid_grant"), http(404)]);
        assert_eq!(chain.cause(), Cause::InvalidGrant);
        assert_eq!(SourceError::Chain(Vec::new()).cause(), Cause::Internal);
    }

    #[test]
    fn provider_errors_show_error_and_description() {
        let e = SourceError::Provider {
            url: "https://idp/token".into(),
            status: 400,
            error: "invalid_grant".into(),
            description: Some("grant request is invalid".into()),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "https://idp/token answered HTTP 400 invalid_grant: grant request is invalid"
        );
    }
}
