//! The device flow (RFC 8628): a code to enter on another device, then polling the token
//! endpoint at the pace the provider sets.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::config::OauthRefreshSource;
use crate::source::{SourceError, oauth};
use crate::token::Fetched;

use super::{LoginError, Options};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub(super) async fn device_flow(
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    url: &Url,
    options: &Options,
) -> Result<Fetched, LoginError> {
    let answer = oauth::device_authorization(source, http, url, options.request_timeout).await?;
    let text = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
    let malformed = |reason: &str| LoginError::Device {
        url: url.to_string(),
        reason: reason.to_owned(),
    };
    let device_code =
        SecretString::from(text("device_code").ok_or_else(|| malformed("no `device_code`"))?);
    let user_code = text("user_code").ok_or_else(|| malformed("no `user_code`"))?;
    // Google says `verification_url`.
    let verification = text("verification_uri")
        .or_else(|| text("verification_url"))
        .ok_or_else(|| malformed("no `verification_uri`"))?;
    let seconds = |k: &str| answer.get(k).and_then(Value::as_u64);
    let mut interval = Duration::from_secs(seconds("interval").unwrap_or(5).max(1));
    let lifetime = Duration::from_secs(seconds("expires_in").unwrap_or(600));
    eprintln!("Open {verification} and enter the code {user_code}");
    if let Some(complete) = text("verification_uri_complete") {
        eprintln!("(or open {complete})");
    }
    eprintln!("Waiting for the approval (Ctrl-C to cancel)…");
    let deadline = tokio::time::Instant::now() + lifetime;
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(LoginError::TimedOut(lifetime));
        }
        let grant = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code.expose_secret()),
        ];
        match oauth::grant(
            source,
            http,
            options.request_timeout,
            &grant,
            &[&device_code],
        )
        .await
        {
            Ok(fetched) => return Ok(fetched),
            Err(SourceError::Provider { error, .. }) if error == "authorization_pending" => {}
            Err(SourceError::Provider { error, .. }) if error == "slow_down" => {
                // RFC 8628 §3.5: every later poll waits 5 s longer.
                interval += Duration::from_secs(5);
                tracing::debug!(
                    interval = interval.as_secs(),
                    "slow_down: polling less often"
                );
            }
            Err(SourceError::Provider {
                error, description, ..
            }) if error == "access_denied" || error == "expired_token" => {
                return Err(LoginError::Refused { error, description });
            }
            // A network blip or a 5xx must not end a login the person may be finishing.
            Err(e) if e.kind() == crate::source::FailureKind::Transient => {
                tracing::warn!("polling the token endpoint: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
}
