//! OAuth 2.0 token endpoint requests: the refresh grant (RFC 6749 §6) and the client
//! credentials grant (§4.4) with a client secret or an assertion; how a client
//! authenticates is [`client`]'s, shared with the token exchange.
//!
//! Written against reqwest rather than the `oauth2` crate because refreshd needs what that
//! crate hides: the HTTP status and `Retry-After` of an error (to classify it), `expires_in`
//! sent as a string (some Azure endpoints), and a guarantee of exactly one POST per call.
//! Never logs, and never puts a secret into an error.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::OffsetDateTime;

use super::resolve::resolve;
use super::{FetchContext, SourceError};
use crate::config::{ClientCredentialsSource, OauthRefreshSource};
use crate::token::Fetched;

pub(super) async fn refresh(
    source: &OauthRefreshSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    // Which refresh token to spend (stored, rotated or configured) is the rotation's choice.
    let Some(refresh_token) = ctx.refresh_token else {
        let missing = super::NoRefreshToken::new(ctx.credential, super::Missing::Nothing);
        return Err(missing.into());
    };
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    let scope = source.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let http = ctx.http(source.tls_client.as_ref())?;
    grant(source, &http, ctx.timeout, &form, &[refresh_token]).await
}

/// A grant at an `oauth-refresh` source's token endpoint with its client authentication
/// and `params`: the refresh above, and `refreshd login`'s authorization-code
/// (RFC 6749 §4.1.3) and device-code (RFC 8628 §3.4) exchanges. `grant` holds the grant's
/// own parameters; `secrets` those of its values that must never reach an error.
pub async fn grant(
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    timeout: Duration,
    grant: &[(&str, &str)],
    secrets: &[&SecretString],
) -> Result<Fetched, SourceError> {
    let client_secret = client_secret(source)?;
    let mut form: Vec<(&str, &str)> = grant.to_vec();
    form.extend(source.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let request = http.post(source.token_url.clone());
    let request = client_auth(
        request,
        &mut form,
        &source.client_id,
        client_secret.as_ref(),
        source.auth,
    );
    let mut all: Vec<Option<&SecretString>> = secrets.iter().map(|s| Some(*s)).collect();
    all.push(client_secret.as_ref());
    post(request, &form, source.token_url.as_str(), timeout, &all).await
}

pub(super) async fn client_credentials(
    source: &ClientCredentialsSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    let scope = source.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    form.extend(source.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let proof = ClientProof::of(&source.client_id, &source.client, &source.token_url)?;
    let request = proof.present(
        ctx.http(source.client.tls())?
            .post(source.token_url.clone()),
        &mut form,
        &source.client_id,
    );
    post(
        request,
        &form,
        source.token_url.as_str(),
        ctx.timeout,
        &[proof.value.as_ref()],
    )
    .await
}

/// The refresh client's secret, when it is a confidential client.
fn client_secret(source: &OauthRefreshSource) -> Result<Option<SecretString>, SourceError> {
    source
        .client_secret
        .as_ref()
        .map(|s| resolve("client_secret", s))
        .transpose()
}

/// Sends the one token POST and turns the answer into a token or a classified error.
pub(super) async fn post(
    request: reqwest::RequestBuilder,
    form: &[(&str, &str)],
    url: &str,
    timeout: Duration,
    secrets: &[Option<&SecretString>],
) -> Result<Fetched, SourceError> {
    let response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(url, timeout, &e))?;
    let status = response.status();
    let retry_after = retry_after(&response);
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body(response, url, timeout).await?;
    let json: Option<Value> = serde_json::from_slice(&body).ok();

    if status.is_success() {
        let Some(json) = json else {
            return Err(SourceError::Malformed {
                origin: url.to_owned(),
                reason: format!("HTTP {status} body is not JSON ({} bytes)", body.len()),
            });
        };
        // A provider that rotated the refresh token in a response we cannot use has still
        // spent the old one: hand the new one back so it is stored, not lost.
        if let Some(refresh_token) = json
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            && parse_token_response(&json).is_err()
        {
            return Err(SourceError::Incomplete {
                origin: url.to_owned(),
                reason: parse_token_response(&json).err().unwrap_or_default(),
                refresh_token: SecretString::from(refresh_token),
            });
        }
        return parse_token_response(&json).map_err(|reason| SourceError::Malformed {
            origin: url.to_owned(),
            reason,
        });
    }
    Err(error_response(
        url,
        status,
        json.as_ref(),
        retry_after,
        location,
        secrets,
    ))
}

/// An RFC 6749 §5.2 error answer (or a bare HTTP error) as a classified error.
fn error_response(
    url: &str,
    status: reqwest::StatusCode,
    json: Option<&Value>,
    retry_after: Option<Duration>,
    location: Option<String>,
    secrets: &[Option<&SecretString>],
) -> SourceError {
    let redact = |text: &str| redact(text, secrets);
    if let Some(error) = json.and_then(|j| j.get("error")).and_then(Value::as_str) {
        let description = json
            .and_then(|j| j.get("error_description"))
            .and_then(Value::as_str)
            .map(&redact);
        return SourceError::Provider {
            url: url.to_owned(),
            status: status.as_u16(),
            error: redact(error),
            description,
            retry_after,
        };
    }
    let detail = if status.is_redirection() {
        Some(format!(
            "redirect to {} not followed: point token_url at the final address",
            location.as_deref().unwrap_or("?")
        ))
    } else {
        None
    };
    SourceError::Http {
        url: url.to_owned(),
        status: status.as_u16(),
        detail,
        retry_after,
    }
}

/// RFC 8628 §3.1–3.2: asks for a device code and a user code for this client.
pub async fn device_authorization(
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    url: &url::Url,
    timeout: Duration,
) -> Result<Value, SourceError> {
    let client_secret = client_secret(source)?;
    let mut form: Vec<(&str, &str)> = Vec::new();
    let scope = source.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    form.extend(source.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let request = client_auth(
        http.post(url.clone()),
        &mut form,
        &source.client_id,
        client_secret.as_ref(),
        source.auth,
    );
    let response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(url.as_str(), timeout, &e))?;
    let status = response.status();
    let body = read_body(response, url.as_str(), timeout).await?;
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    match json {
        Some(json) if status.is_success() => Ok(json),
        json => Err(error_response(
            url.as_str(),
            status,
            json.as_ref(),
            None,
            None,
            &[client_secret.as_ref()],
        )),
    }
}

/// A failed request as a classified error naming the innermost cause.
pub fn transport_error(url: &str, timeout: Duration, e: &reqwest::Error) -> SourceError {
    if e.is_timeout() {
        return SourceError::Timeout {
            url: url.to_owned(),
            after: timeout,
        };
    }
    if let Some(message) = super::net::untrusted_certificate(e) {
        return SourceError::Transport {
            url: url.to_owned(),
            message,
        };
    }
    // The innermost cause says what actually went wrong (refused, DNS, TLS).
    let mut message = e.to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(inner) = cause {
        message = inner.to_string();
        cause = inner.source();
    }
    SourceError::Transport {
        url: url.to_owned(),
        message,
    }
}

/// A provider should never echo a secret back, but if it does, in whatever shape, it
/// stops here.
pub(super) fn redact(text: &str, secrets: &[Option<&SecretString>]) -> String {
    let secrets: Vec<&str> = secrets
        .iter()
        .flatten()
        .map(|s| s.expose_secret())
        .collect();
    crate::redact::redact(text, &secrets)
}

/// RFC 6749 §5.1, tolerant of what real providers send: `expires_in` as a number or a
/// numeric string, an absolute `expires_on` (Azure v1) or `expires_at`.
pub(super) fn parse_token_response(json: &Value) -> Result<Fetched, String> {
    let access_token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("no `access_token` in the response")?;
    let seconds = |key: &str| -> Option<f64> {
        match json.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    // Present but unusable (negative, zero, NaN, centuries) is an error, not a default.
    let expires_in = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(_) => Some(
            seconds("expires_in")
                .and_then(crate::token::seconds)
                .ok_or("`expires_in` is not a usable number of seconds (more than 0, at most ten years)")?,
        ),
    };
    let absolute = ["expires_on", "expires_at"]
        .into_iter()
        .find(|key| json.get(key).is_some_and(|v| !v.is_null()));
    let expires_at = match absolute {
        None => None,
        Some(key) => Some(
            seconds(key)
                .and_then(crate::token::unix_time)
                .ok_or_else(|| {
                    format!("`{key}` is not a Unix time between 1970 and the year 9000")
                })?,
        ),
    };
    let refresh_token = json
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    let scopes = json
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().map(str::to_owned).collect());
    Ok(Fetched {
        access_token: SecretString::from(access_token),
        refresh_token,
        expires_in,
        expires_at,
        scopes,
        served: None,
        fields: answer_fields(json),
    })
}

/// What a token answer holds beside the token that a target may want (an OIDC `id_token`,
/// the granted `scope`, a Keycloak `refresh_expires_in`): [`OAUTH_FIELDS`], where present.
fn answer_fields(json: &Value) -> crate::token::Fields {
    OAUTH_FIELDS
        .iter()
        .filter_map(|&name| {
            let text = match json.get(name)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((name.to_owned(), SecretString::from(text)))
        })
        .collect()
}

/// The fields an OAuth token answer may yield.
pub const OAUTH_FIELDS: [&str; 3] = ["id_token", "scope", "refresh_expires_in"];

#[cfg(test)]
#[test]
fn an_answers_fields_are_kept_and_its_token_is_not_one() {
    let json = serde_json::json!({
        "access_token": "at", "token_type": "Bearer", "expires_in": 60,
        "id_token": "eyJ.x.y", "scope": "openid offline_access", "refresh_expires_in": 1800,
        "refresh_token": "rt"
    });
    let fetched = parse_token_response(&json).unwrap();
    let fields: Vec<(&str, &str)> = fetched
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    assert_eq!(
        fields,
        [
            ("id_token", "eyJ.x.y"),
            ("refresh_expires_in", "1800"),
            ("scope", "openid offline_access")
        ]
    );
}

/// `Retry-After` in seconds or as an HTTP date (RFC 9110 §10.2.3).
/// The largest answer read from a token endpoint or an API: a token response is a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// A response's body, refused (not cut) when larger than [`MAX_BODY`].
pub async fn read_body(
    mut response: reqwest::Response,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(url, timeout, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SourceError::Malformed {
                origin: url.to_owned(),
                reason: format!("the answer is larger than {MAX_BODY} bytes: not a token response"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a response's `Retry-After` asks for, if it says anything usable.
pub(super) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, crate::clock::system_now()))
}

/// `Retry-After` (RFC 9110 §10.2.3): delay seconds, or an HTTP-date in any of its three
/// forms (IMF-fixdate, the obsolete RFC 850 and asctime forms), as a wait from `now`. A date
/// in the past means "now".
pub(super) fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = OffsetDateTime::from(httpdate::parse_http_date(value).ok()?);
    Some(Duration::from_secs((at - now).whole_seconds().max(0) as u64))
}

mod client;
pub(super) use client::ClientProof;
#[cfg(test)]
use client::client_assertion;
use client::client_auth;

#[cfg(test)]
mod tests;
