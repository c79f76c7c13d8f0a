//! The `aws-web-identity` source: STS `AssumeRoleWithWebIdentity`, a form POST that needs no
//! signature (the web identity token is the proof), answered in XML. The session token is
//! the credential's token; the access key id and secret access key are its fields.
//!
//! One request per call, no redirects, no retries. The web identity token and the keys
//! never reach an error or a log line: errors carry the URL, the status and STS's own
//! `<Code>` and `<Message>`.

pub(crate) mod rds;
mod sigv4;
mod xml;

use secrecy::{ExposeSecret, SecretString};

use super::{FetchContext, SourceError, oauth, subject};
use crate::config::{AWS_ENV, AwsRdsIamSource, AwsWebIdentitySource};
use crate::token::Fetched;

/// STS error codes that a later attempt can get past (the rest follow the status: a 4xx is
/// permanent, a 5xx transient).
pub(super) const TRANSIENT_ERRORS: &[&str] = &[
    "Throttling",
    "IDPCommunicationError",
    "ServiceUnavailable",
    "InternalFailure",
];

/// STS's API version of `AssumeRoleWithWebIdentity`.
const STS_VERSION: &str = "2011-06-15";

/// One `AssumeRoleWithWebIdentity` call with the web identity token as it is now.
pub(super) async fn web_identity(
    source: &AwsWebIdentitySource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let token = subject::read(&source.web_identity_token, ctx).await?;
    let session_name = source
        .session_name
        .clone()
        .unwrap_or_else(|| default_session_name(ctx.credential));
    let duration = source.duration_seconds.map(|d| d.to_string());
    let mut form: Vec<(&str, &str)> = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", STS_VERSION),
        ("RoleArn", &source.role_arn),
        ("RoleSessionName", &session_name),
        ("WebIdentityToken", token.expose_secret()),
    ];
    if let Some(duration) = &duration {
        form.push(("DurationSeconds", duration));
    }
    let url = source.sts_endpoint.as_str();
    let response = ctx
        .http(None)?
        .post(source.sts_endpoint.clone())
        .header(reqwest::header::ACCEPT, "text/xml")
        .form(&form)
        .timeout(ctx.timeout)
        .send()
        .await
        .map_err(|e| oauth::transport_error(url, ctx.timeout, &e))?;
    let status = response.status();
    let retry_after = oauth::retry_after(&response);
    let bytes = oauth::read_body(response, url, ctx.timeout).await?;
    let body = String::from_utf8_lossy(&bytes);
    if status.is_success() {
        return answer(&body).map_err(|reason| SourceError::Malformed {
            origin: url.to_owned(),
            reason,
        });
    }
    Err(refusal(url, status.as_u16(), &body, retry_after, &token))
}

/// An RDS IAM token signed now with the keys of the `aws` credential (its fields, its token
/// as the session token) or of refreshd's environment; it expires after 15 minutes or with
/// the keys, whichever comes first.
pub(super) fn rds_iam(
    source: &AwsRdsIamSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let now = crate::clock::system_now();
    let lifetime = time::Duration::seconds(i64::from(rds::TOKEN_LIFETIME_SECS));
    let db = rds::Database {
        host: &source.host,
        port: source.port,
        user: &source.user,
        region: &source.region,
    };
    let (token, keys_expire) = match &source.aws {
        Some(name) => {
            let held = super::bearer(ctx, name)?;
            let field = |key: &str| {
                held.fields
                    .get(key)
                    .map(ExposeSecret::expose_secret)
                    .ok_or_else(|| SourceError::Bearer {
                        credential: name.clone(),
                        reason: format!("its token has no field `{key}`"),
                    })
            };
            let keys = sigv4::Keys {
                access_key_id: field("access_key_id")?,
                secret_access_key: field("secret_access_key")?,
                session_token: Some(held.access_token.expose_secret()),
            };
            (rds::auth_token(&db, &keys, now), Some(held.expires_at))
        }
        None => {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let [id, secret, session] = AWS_ENV.map(var);
            let (Some(id), Some(secret)) = (id, secret) else {
                return Err(SourceError::AwsKeys(
                    "no `aws = { credential = … }` and no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in refreshd's environment".to_owned(),
                ));
            };
            let keys = sigv4::Keys {
                access_key_id: &id,
                secret_access_key: &secret,
                session_token: session.as_deref(),
            };
            (rds::auth_token(&db, &keys, now), None)
        }
    };
    let mut fetched = Fetched::new(SecretString::from(token));
    fetched.expires_at = Some(keys_expire.map_or(now + lifetime, |at| at.min(now + lifetime)));
    Ok(fetched)
}

/// `refreshd-NAME`, with what STS refuses in a session name made a dash, at most 64 long.
fn default_session_name(credential: &str) -> String {
    let name: String = format!("refreshd-{credential}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name
}

/// The keys of a success answer: `<Credentials>` with the session token, the key pair and
/// `<Expiration>`.
fn answer(body: &str) -> Result<Fetched, String> {
    let credentials = xml::element(body, "Credentials")
        .ok_or("no <Credentials> in the AssumeRoleWithWebIdentity answer")?;
    let field = |name: &str| {
        xml::text(credentials, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("no <{name}> in <Credentials>"))
    };
    let session_token = field("SessionToken")?;
    let access_key_id = field("AccessKeyId")?;
    let secret_access_key = field("SecretAccessKey")?;
    let expiration = field("Expiration")?;
    let expires_at =
        crate::token::parse_rfc3339(&expiration).ok_or("<Expiration> is not an RFC 3339 time")?;
    let mut fetched = Fetched::new(SecretString::from(session_token));
    fetched.expires_at = Some(expires_at);
    fetched
        .fields
        .insert("access_key_id".into(), access_key_id.into());
    fetched
        .fields
        .insert("secret_access_key".into(), secret_access_key.into());
    Ok(fetched)
}

/// STS's `<ErrorResponse>` as a provider error (its `<Code>` classified like an OAuth
/// `error`), else the bare status.
fn refusal(
    url: &str,
    status: u16,
    body: &str,
    retry_after: Option<std::time::Duration>,
    token: &SecretString,
) -> SourceError {
    let secrets = [Some(token)];
    let error = xml::element(body, "Error");
    let code = error.and_then(|e| xml::text(e, "Code"));
    let message = error
        .and_then(|e| xml::text(e, "Message"))
        .map(|m| oauth::redact(&m, &secrets));
    match code {
        Some(code) => SourceError::Provider {
            url: url.to_owned(),
            status,
            error: oauth::redact(&code, &secrets),
            description: message,
            retry_after,
        },
        None => SourceError::Http {
            url: url.to_owned(),
            status,
            detail: message,
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FailureKind;

    const ANSWER: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:app</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzE&amp;+/=</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-12-08T01:00:00Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn an_answer_gives_the_session_token_the_key_pair_and_the_expiry() {
        let fetched = answer(ANSWER).unwrap();
        assert_eq!(fetched.access_token.expose_secret(), "FwoGZXIvYXdzE&+/=");
        assert_eq!(
            fetched.fields["access_key_id"].expose_secret(),
            "ASIAIOSFODNN7EXAMPLE"
        );
        assert_eq!(
            fetched.fields["secret_access_key"].expose_secret(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(
            fetched.expires_at,
            crate::token::parse_rfc3339("2026-12-08T01:00:00Z")
        );
        let err = answer(&ANSWER.replace("<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>", ""))
            .err()
            .unwrap();
        assert_eq!(err, "no <AccessKeyId> in <Credentials>");
    }

    fn error(status: u16, code: &str) -> SourceError {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>because tok-123</Message></Error></ErrorResponse>"
        );
        refusal("u", status, &body, None, &"tok-123".to_owned().into())
    }

    #[test]
    fn sts_errors_carry_code_and_message_and_are_classified() {
        let e = error(400, "InvalidIdentityToken");
        assert_eq!(e.description(), Some("because [redacted]"));
        assert!(e.to_string().contains("InvalidIdentityToken"), "{e}");
        assert!(!e.to_string().contains("tok-123"), "{e}");
        assert_eq!(e.kind(), FailureKind::Permanent);
        assert_eq!(
            error(400, "ExpiredTokenException").kind(),
            FailureKind::Permanent
        );
        assert_eq!(error(403, "AccessDenied").kind(), FailureKind::Permanent);
        assert_eq!(error(400, "Throttling").kind(), FailureKind::Transient);
        assert_eq!(
            error(400, "Throttling").cause(),
            crate::state::Cause::RateLimited
        );
        assert_eq!(
            error(400, "IDPCommunicationError").kind(),
            FailureKind::Transient
        );
        assert_eq!(error(503, "Whatever").kind(), FailureKind::Transient);
        let bare = refusal("u", 502, "<html>", None, &"t".to_owned().into());
        assert_eq!(bare.kind(), FailureKind::Transient);
    }

    #[test]
    fn default_session_names_are_ones_sts_takes() {
        assert_eq!(default_session_name("db"), "refreshd-db");
        assert_eq!(default_session_name("a b/c"), "refreshd-a-b-c");
        assert_eq!(default_session_name(&"x".repeat(100)).len(), 64);
    }
}
