//! A token exchange's subject token, and a federated client assertion: read afresh for
//! every request (from a file, a variable, a systemd credential, another credential or a
//! command) and refused when it is a JWT whose `exp` has passed, before any request
//! carries it: the provider would only refuse it, and the error would not say which file
//! went stale.
//!
//! Must never: put a token's value in an error or a log line; errors say where the token
//! came from and when it expired.

use secrecy::SecretString;

use super::{FetchContext, SourceError};
use crate::config::SubjectToken;
use crate::secret::SecretRef;

/// The subject token now; refused when it is a JWT past its `exp`.
pub(super) async fn read(
    subject: &SubjectToken,
    ctx: &FetchContext<'_>,
) -> Result<SecretString, SourceError> {
    let (token, origin) = match subject {
        SubjectToken::Secret(secret) => (
            super::resolve::resolve("subject_token", secret)?,
            format!("subject_token {}", describe(secret)),
        ),
        SubjectToken::Credential(name) => (
            super::bearer_token(ctx, name)?,
            format!("subject_token from credential `{name}`"),
        ),
        SubjectToken::Command(command) => (
            Box::pin(super::command::run(command, ctx))
                .await?
                .access_token,
            format!("subject_token from command {:?}", command.argv[0]),
        ),
    };
    refuse_expired(&token, || origin)?;
    Ok(token)
}

/// Where a secret reference points, without its value.
pub(super) fn describe(secret: &SecretRef) -> String {
    match secret {
        SecretRef::File(path) => format!("file {}", path.display()),
        SecretRef::Env(name) => format!("variable {name}"),
        SecretRef::Systemd(name) => format!("systemd credential {name}"),
        SecretRef::Inline(_) => "written in the config".to_owned(),
    }
}

/// Refuses a JWT whose `exp` has passed; a token that is not a JWT, or has no `exp`, is
/// the provider's to judge.
pub(super) fn refuse_expired(
    token: &SecretString,
    origin: impl FnOnce() -> String,
) -> Result<(), SourceError> {
    use secrecy::ExposeSecret;
    let now = crate::clock::system_now();
    match crate::token::Claims::of(token.expose_secret()).exp {
        Some(exp) if exp <= now => Err(SourceError::Expired {
            origin: origin(),
            expired_at: crate::token::rfc3339(exp),
            ago: humantime::format_duration(std::time::Duration::from_secs(
                (now - exp).whole_seconds().unsigned_abs(),
            ))
            .to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: i64) -> SecretString {
        crate::token::tests::jwt(
            serde_json::json!({ "sub": "system:serviceaccount:ns:app", "exp": exp }),
        )
        .into()
    }

    #[test]
    fn an_expired_jwt_is_refused_naming_where_it_came_from_and_when() {
        let now = crate::clock::system_now().unix_timestamp();
        let err =
            refuse_expired(&jwt(now - 90), || "subject_token file /var/run/sa".into()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("subject_token file /var/run/sa: "),
            "{text}"
        );
        assert!(text.contains("expired at "), "{text}");
        assert!(
            text.contains("1m 30s ago") || text.contains("1m 31s ago"),
            "{text}"
        );
        assert_eq!(err.kind(), crate::source::FailureKind::Transient);
        assert_eq!(err.cause(), crate::source::Cause::Secret);
        refuse_expired(&jwt(now + 600), || String::from("unused")).unwrap();
        // Not a JWT, or a JWT without `exp`: the provider judges it.
        refuse_expired(&"opaque-token".to_owned().into(), || String::from("unused")).unwrap();
        let no_exp: SecretString =
            crate::token::tests::jwt(serde_json::json!({ "sub": "x" })).into();
        refuse_expired(&no_exp, || String::from("unused")).unwrap();
    }
}
