//! `refreshd login`: gets an `oauth-refresh` credential its first refresh token, through the
//! authorization-code flow with PKCE (RFC 7636) and a loopback redirect (RFC 8252), or the
//! device flow (RFC 8628); the caller stores the grant as a rotation's answer is stored.
//!
//! Never prints or logs a token, an authorization code, a device code or the PKCE verifier:
//! the URL it prints carries only the challenge and the `state`. It never writes targets
//! itself; the caller hands the stored token to the daemon or to a rotation.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::config::{Credential, OauthRefreshSource};
use crate::credential::Grant;
use crate::source::{SourceError, oauth};
use crate::token::{Fetched, Token, fingerprint};

mod code;
mod device;

use code::code_flow;
use device::device_flow;

/// How `refreshd login` runs.
pub struct Options {
    /// The device flow instead of a browser redirect.
    pub device: bool,
    /// Try to open a browser on the authorization URL.
    pub open_browser: bool,
    /// The loopback port, instead of the redirect URI's or an ephemeral one.
    pub port: Option<u16>,
    /// How long to wait for the person to finish.
    pub timeout: Duration,
    /// Per HTTP request.
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the provider's token cannot be scheduled by: {0}")]
    Absurd(String),
    #[error(
        "credential `{0}` has no oauth-refresh source: only those need a login (the others get their tokens without a person)"
    )]
    NotOauthRefresh(String),
    #[error(
        "credential `{credential}` has no `{field}` and no `issuer` to discover it from: add one of them to its source"
    )]
    NoEndpoint {
        credential: String,
        field: &'static str,
    },
    #[error("discovery at {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("cannot listen on {addr} for the login redirect: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the authorization server refused the login: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("{url}: not a device authorization response: {reason}")]
    Device { url: String, reason: String },
    #[error("no login within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error(transparent)]
    NoRefreshToken(#[from] crate::source::NoRefreshToken),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Runs the login for `credential`: the grant it obtained, not yet stored.
pub async fn login(
    credential: &Credential,
    http: &reqwest::Client,
    options: &Options,
) -> Result<Grant, LoginError> {
    let source = credential
        .source
        .oauth_refresh()
        .ok_or_else(|| LoginError::NotOauthRefresh(credential.name.clone()))?;
    let fetched = if options.device {
        let url = endpoint(credential, source, http, options, Endpoint::Device).await?;
        device_flow(source, http, &url, options).await?
    } else {
        let url = endpoint(credential, source, http, options, Endpoint::Authorize).await?;
        code_flow(credential, source, http, &url, options).await?
    };
    grant(credential, source, fetched)
}

#[derive(Clone, Copy)]
enum Endpoint {
    Authorize,
    Device,
}

/// The configured endpoint, or the one the issuer's metadata names.
async fn endpoint(
    credential: &Credential,
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    options: &Options,
    which: Endpoint,
) -> Result<Url, LoginError> {
    let (configured, field, metadata_key) = match which {
        Endpoint::Authorize => (
            &source.authorize_url,
            "authorize_url",
            "authorization_endpoint",
        ),
        Endpoint::Device => (
            &source.device_authorization_url,
            "device_authorization_url",
            "device_authorization_endpoint",
        ),
    };
    if let Some(url) = configured {
        return Ok(url.clone());
    }
    let Some(issuer) = &source.issuer else {
        return Err(LoginError::NoEndpoint {
            credential: credential.name.clone(),
            field,
        });
    };
    let metadata = discover(issuer, http, options.request_timeout).await?;
    if let Some(token_endpoint) = metadata.get("token_endpoint").and_then(Value::as_str)
        && token_endpoint != source.token_url.as_str()
    {
        tracing::warn!(credential = %credential.name, discovered = token_endpoint, configured = %source.token_url, "the issuer's token endpoint differs from token_url; refreshes use token_url");
    }
    let text = metadata
        .get(metadata_key)
        .and_then(Value::as_str)
        .ok_or_else(|| LoginError::Discovery {
            url: issuer.to_string(),
            reason: format!("the metadata has no `{metadata_key}`; set `{field}`"),
        })?;
    let url = Url::parse(text).map_err(|e| LoginError::Discovery {
        url: issuer.to_string(),
        reason: format!("`{metadata_key}` is not a URL: {e}"),
    })?;
    if url.scheme() != "https" && url.scheme() != issuer.scheme() {
        return Err(LoginError::Discovery {
            url: issuer.to_string(),
            reason: format!("`{metadata_key}` {url} is not https"),
        });
    }
    Ok(url)
}

/// OpenID Connect discovery, then RFC 8414 authorization-server metadata.
async fn discover(
    issuer: &Url,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<Value, LoginError> {
    let base = issuer.as_str().trim_end_matches('/');
    let path = issuer.path().trim_end_matches('/');
    let mut origin = issuer.clone();
    origin.set_path("");
    let origin = origin.as_str().trim_end_matches('/').to_owned();
    let candidates = [
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ];
    let mut reasons = Vec::new();
    for url in &candidates {
        let response = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {
                let body = oauth::read_body(r, url, timeout).await;
                match body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                {
                    Some(json) if json.is_object() => return Ok(json),
                    _ => reasons.push(format!("{url}: not a JSON object")),
                }
            }
            Ok(r) => reasons.push(format!("{url}: HTTP {}", r.status().as_u16())),
            Err(e) => reasons.push(format!(
                "{url}: {}",
                oauth::transport_error(url, timeout, &e)
            )),
        }
    }
    Err(LoginError::Discovery {
        url: issuer.to_string(),
        reason: reasons.join("; "),
    })
}

/// The grant a login obtained, for the caller to store ([`crate::credential::Engine::seed`]).
fn grant(
    credential: &Credential,
    source: &OauthRefreshSource,
    fetched: Fetched,
) -> Result<Grant, LoginError> {
    let now = crate::clock::system_now();
    let (token, refresh_token) =
        Token::from_fetched(fetched, now, credential.timing.default_lifetime)
            .map_err(|absurd| LoginError::Absurd(absurd.reason))?;
    let refresh_token = refresh_token.ok_or_else(|| {
        crate::source::NoRefreshToken::new(&credential.name, crate::source::Missing::NotIssued)
    })?;
    // The configured bootstrap token (if any) must not take over from this newer login.
    let bootstrap_fingerprint = source
        .refresh_token
        .as_ref()
        .and_then(|r| r.resolve().ok())
        .map(|t| fingerprint(&t));
    Ok(Grant {
        token,
        refresh_token,
        bootstrap_fingerprint,
        at: now,
    })
}
