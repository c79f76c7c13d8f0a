//! The `http` source: a token minted by an API, with another credential's current token as
//! the bearer — e.g. a Databricks database credential (`POST /api/2.0/database/credentials`
//! → `{token, expiration_time}`) that is a PostgreSQL password.
//!
//! One request per fetch, no redirects, no retries. The bearer token and the minted token
//! never reach an error or a log line: errors carry the URL, the status and the API's own
//! error code and message.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::command::ClassifyKind;
use super::{FetchContext, SourceError, fields, oauth};
use crate::config::{HttpMethod, HttpSource};
use crate::token::Fetched;

/// One request; every `{{uuid}}` of the body becomes a fresh random UUID (APIs such as
/// Databricks' take a `request_id` as an idempotency key, and a repeated one would answer
/// the old token).
pub(super) async fn fetch(
    source: &HttpSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let url = source.url.as_str();
    let (request, bearer) = request(source, ctx)?;
    let response = request
        .send()
        .await
        .map_err(|e| oauth::transport_error(url, ctx.timeout, &e))?;
    let status = response.status();
    let retry_after = oauth::retry_after(&response);
    let bytes = oauth::read_body(response, url, ctx.timeout).await?;
    if status.is_success() {
        return token(source, status, &bytes);
    }
    Err(refusal(url, status, &bytes, retry_after, bearer.as_ref()))
}

/// The request, and the bearer token it carries (for redaction).
fn request(
    source: &HttpSource,
    ctx: &FetchContext<'_>,
) -> Result<(reqwest::RequestBuilder, Option<SecretString>), SourceError> {
    let method = match source.method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
    };
    let mut request = ctx
        .http(None)?
        .request(method, source.url.clone())
        .header(ACCEPT, "application/json")
        .timeout(ctx.timeout);
    let mut sent = None;
    if let Some(bearer) = &source.bearer {
        let token = super::bearer_token(ctx, &bearer.credential)?;
        request = request.bearer_auth(token.expose_secret());
        sent = Some(token);
    }
    if let Some(body) = &source.body {
        let body = body.render(uuid_v4);
        request = request.header(CONTENT_TYPE, "application/json").body(body);
    }
    Ok((request, sent))
}

/// The token and expiry of a success answer.
fn token(
    source: &HttpSource,
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<Fetched, SourceError> {
    let url = source.url.as_str();
    let json: Value = serde_json::from_slice(bytes).map_err(|e| SourceError::Malformed {
        origin: url.to_owned(),
        reason: format!(
            "HTTP {status} body is not JSON: {} at line {} column {}",
            e.classify_kind(),
            e.line(),
            e.column()
        ),
    })?;
    let (token, expiry) = fields::token_and_expiry(
        &json,
        Some(&source.token_field),
        source.expiry_field.as_deref(),
    )
    .map_err(|reason| SourceError::Malformed {
        origin: url.to_owned(),
        reason,
    })?;
    let named = fields::named(&json, &source.fields).map_err(|reason| SourceError::Malformed {
        origin: url.to_owned(),
        reason,
    })?;
    Ok(fields::fetched(token, expiry, named))
}

/// The error an unsuccessful answer stands for, with the bearer token redacted from
/// whatever of the body it quotes.
fn refusal(
    url: &str,
    status: reqwest::StatusCode,
    bytes: &[u8],
    retry_after: Option<std::time::Duration>,
    bearer: Option<&SecretString>,
) -> SourceError {
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    let secrets = [bearer];
    let text = |key: &str| {
        json.as_ref()
            .and_then(|j| j.get(key))
            .and_then(Value::as_str)
            .map(|text| oauth::redact(text, &secrets))
    };
    // An OAuth-style error is classified by its code like a token endpoint's.
    if let Some(error) = text("error") {
        return SourceError::Provider {
            url: url.to_owned(),
            status: status.as_u16(),
            error,
            description: text("error_description").or_else(|| text("message")),
            retry_after,
        };
    }
    // Databricks: {"error_code": "PERMISSION_DENIED", "message": "…"}.
    let detail = match (text("error_code"), text("message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(code), None) => Some(code),
        (None, Some(message)) => Some(message),
        (None, None) if status.is_redirection() => {
            Some("redirect not followed: point url at the final address".to_owned())
        }
        (None, None) => None,
    };
    SourceError::Http {
        url: url.to_owned(),
        status: status.as_u16(),
        detail,
        retry_after,
    }
}

/// A random (version 4) UUID, as APIs take for a request id.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    // Without an entropy source the id is still well-formed; uniqueness is the API's concern.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fresh_version_4_uuids() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!("89ab".contains(&parts[3][..1]), "{a}");
    }
}
