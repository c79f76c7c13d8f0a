//! Google's own credential files: a service account's JSON key (an RS256 JWT-bearer
//! assertion, RFC 7523 §2.1, exchanged at the key's `token_uri`) and gcloud's
//! application-default credentials of a user (the refresh grant with the file's client).
//!
//! Both files are read on every fetch, so a rotated key or a new `gcloud auth
//! application-default login` takes effect without a restart, as [`crate::secure_read`]
//! reads (no one else's symlink followed, regular files only, bounded) and on a blocking
//! thread. Never writes either file, and never puts a key, a client secret or a refresh
//! token into an error or a log line.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::{FetchContext, SourceError, oauth};
use crate::config::{GoogleAuthorizedUserSource, GoogleServiceAccountSource};
use crate::token::Fetched;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Where google-auth sends a user's refresh grant when the file names no `token_uri`.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Google accepts assertions that live at most an hour.
const ASSERTION_LIFETIME: i64 = 3600;

/// What refreshd uses of a service account key.
struct ServiceAccountKey {
    client_email: String,
    private_key_id: Option<String>,
    private_key: jsonwebtoken::EncodingKey,
    token_uri: Url,
}

/// What refreshd uses of an application-default credentials file.
struct AuthorizedUser {
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
    token_uri: Url,
}

pub(super) async fn service_account(
    source: &GoogleServiceAccountSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let key = off_the_runtime(source.key_file.clone(), read_key_file).await?;
    let assertion = assertion(&key, &source.scopes, source.subject.as_deref())
        .map_err(|reason| file_error(&source.key_file, reason))?;
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", assertion.expose_secret()),
    ];
    let url = key.token_uri.as_str();
    let request = ctx.http(None)?.post(key.token_uri.clone());
    oauth::post(request, &form, url, ctx.timeout, &[Some(&assertion)])
        .await
        .map_err(|e| match e {
            SourceError::Provider {
                url,
                error,
                description: Some(description),
                ..
            } if error == "invalid_grant" && is_clock_complaint(&description) => {
                SourceError::ClockSkew { url, description }
            }
            other => other,
        })
}

pub(super) async fn authorized_user(
    source: &GoogleAuthorizedUserSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let path = source.path();
    let user = off_the_runtime(path.clone(), read_adc_file).await?;
    // google-auth sends the client in the body; Google accepts both, other servers may not.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", user.refresh_token.expose_secret()),
        ("client_id", user.client_id.as_str()),
        ("client_secret", user.client_secret.expose_secret()),
    ];
    let request = ctx.http(None)?.post(user.token_uri.clone());
    let secrets = [Some(&user.refresh_token), Some(&user.client_secret)];
    let mut fetched = oauth::post(
        request,
        &form,
        user.token_uri.as_str(),
        ctx.timeout,
        &secrets,
    )
    .await?;
    // The file is gcloud's: refreshd never rewrites it and keeps no refresh token of its own
    // for it (Google does not rotate these).
    if let Some(new) = fetched.refresh_token.take()
        && new.expose_secret() != user.refresh_token.expose_secret()
    {
        tracing::warn!(
            credential = %ctx.credential,
            file = %path.display(),
            "the token endpoint returned a new refresh token for the application-default credentials; refreshd does not rewrite that file, so if refreshes start failing run `gcloud auth application-default login` again"
        );
    }
    Ok(fetched)
}

pub(super) fn check_key_file(path: &Path) -> Result<(), SourceError> {
    read_key_file(path).map(|_| ())
}

pub(super) fn check_adc_file(path: &Path) -> Result<(), SourceError> {
    read_adc_file(path).map(|_| ())
}

/// Google's skew answer: "Invalid JWT: Token must be a short-lived token (60 minutes) and in
/// a reasonable timeframe. Check your iat and exp values in the JWT claim." A bad signature
/// ("Invalid JWT Signature.") or a wrong claim ("Invalid JWT: Failed audience check…") is
/// not a clock problem: the phrases are matched whole, not `iat`/`exp` inside other words.
fn is_clock_complaint(description: &str) -> bool {
    description.starts_with("Invalid JWT:")
        && ["reasonable timeframe", "iat and exp", "clock"]
            .iter()
            .any(|phrase| description.contains(phrase))
}

fn file_error(path: &Path, reason: impl Into<String>) -> SourceError {
    SourceError::CredentialsFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Runs `read` of the file at `path` on a blocking thread: a fetch's worker never waits on
/// a disk.
async fn off_the_runtime<T: Send + 'static>(
    path: PathBuf,
    read: fn(&Path) -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    let shown = path.clone();
    tokio::task::spawn_blocking(move || read(&path))
        .await
        .unwrap_or_else(|e| Err(file_error(&shown, format!("the read did not finish: {e}"))))
}

/// Reads a credentials file as JSON and checks its `type`. Errors name fields, never values.
fn read_json(path: &Path, expected_type: &str, what: &str) -> Result<Value, SourceError> {
    let text = crate::secure_read::read(path, crate::secure_read::SECRET_LIMIT)
        .map_err(|e| file_error(path, format!("cannot read the {what}: {e}")))?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        file_error(
            path,
            format!(
                "the {what} is not JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    match value.get("type").and_then(Value::as_str) {
        Some(found) if found == expected_type => Ok(value),
        Some(found) => Err(file_error(
            path,
            format!("`type` is {found:?}, but a {what} has \"{expected_type}\""),
        )),
        None => Err(file_error(path, format!("no `type` field: not a {what}"))),
    }
}

fn text_field(value: &Value, path: &Path, field: &str) -> Result<String, SourceError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| file_error(path, format!("no `{field}` string")))
}

/// A token endpoint we may send a secret to: https, or http on loopback (tests).
fn token_uri(value: &Value, path: &Path, default: Option<&str>) -> Result<Url, SourceError> {
    let text = match value.get("token_uri").and_then(Value::as_str) {
        Some(text) => text.to_owned(),
        None => default
            .ok_or_else(|| file_error(path, "no `token_uri` string"))?
            .to_owned(),
    };
    let url = Url::parse(&text)
        .map_err(|e| file_error(path, format!("`token_uri` is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(url)
    } else {
        Err(file_error(
            path,
            format!("`token_uri` {url} must be https (plain http only on loopback)"),
        ))
    }
}

fn read_key_file(path: &Path) -> Result<ServiceAccountKey, SourceError> {
    let value = read_json(path, "service_account", "service account key file")?;
    let pem = SecretString::from(text_field(&value, path, "private_key")?);
    let private_key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
        .map_err(|_| file_error(path, "`private_key` is not a PEM RSA private key"))?;
    Ok(ServiceAccountKey {
        client_email: text_field(&value, path, "client_email")?,
        private_key_id: value
            .get("private_key_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        private_key,
        token_uri: token_uri(&value, path, None)?,
    })
}

fn read_adc_file(path: &Path) -> Result<AuthorizedUser, SourceError> {
    let value = read_json(
        path,
        "authorized_user",
        "application-default credentials file (`gcloud auth application-default login` writes one)",
    )?;
    Ok(AuthorizedUser {
        client_id: text_field(&value, path, "client_id")?,
        client_secret: SecretString::from(text_field(&value, path, "client_secret")?),
        refresh_token: SecretString::from(text_field(&value, path, "refresh_token")?),
        token_uri: token_uri(&value, path, Some(GOOGLE_TOKEN_URI))?,
    })
}

/// The RS256 JWT-bearer assertion Google's token endpoint expects.
fn assertion(
    key: &ServiceAccountKey,
    scopes: &[String],
    subject: Option<&str>,
) -> Result<SecretString, String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key.private_key_id.clone();
    let now = crate::clock::system_now().unix_timestamp();
    let mut claims = serde_json::json!({
        "iss": key.client_email,
        "scope": scopes.join(" "),
        "aud": key.token_uri.as_str(),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    if let Some(subject) = subject {
        claims["sub"] = Value::from(subject);
    }
    jsonwebtoken::encode(&header, &claims, &key.private_key)
        .map(SecretString::from)
        .map_err(|e| format!("cannot sign the assertion: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_complaints_are_told_from_bad_signatures() {
        assert!(is_clock_complaint(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
        ));
        assert!(!is_clock_complaint("Invalid JWT Signature."));
        assert!(!is_clock_complaint(
            "Invalid JWT: Failed audience check. The right audience is https://oauth2.googleapis.com/token"
        ));
        assert!(!is_clock_complaint("Invalid JWT: sub was not expected"));
        assert!(!is_clock_complaint("Account has been deleted"));
    }

    #[test]
    fn key_file_errors_name_the_file_and_field_but_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(
            &path,
            r#"{"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "private_key": "not-a-pem-secret-value", "token_uri": "https://oauth2.googleapis.com/token"}"#,
        )
        .unwrap();
        let err = check_key_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("key.json") && err.contains("private_key"),
            "{err}"
        );
        assert!(!err.contains("not-a-pem-secret-value"), "{err}");

        std::fs::write(&path, r#"{"type": "authorized_user"}"#).unwrap();
        let err = check_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("\"authorized_user\""), "{err}");

        std::fs::write(
            &path,
            r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r", "token_uri": "http://example.com/token"}"#,
        )
        .unwrap();
        let err = check_adc_file(&path).unwrap_err().to_string();
        assert!(err.contains("must be https"), "{err}");
        std::fs::write(
            &path,
            r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}"#,
        )
        .unwrap();
        let user = read_adc_file(&path).unwrap();
        assert_eq!(user.token_uri.as_str(), GOOGLE_TOKEN_URI);
    }
}
