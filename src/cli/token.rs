//! `refreshd token`: the current access token on stdout, from the daemon (for refreshd's
//! own user and the credential's readers) or, without one, from the state directory. Raw,
//! as JSON with its expiry, or as shell assignments for `eval`. With the helpers
//! (`kubectl-credential`, `git-credential`, the docker helper), the only commands that
//! print a token; never on stderr.

use std::fmt::Write as _;

use secrecy::ExposeSecret;
use time::OffsetDateTime;

use super::args::TokenFormat;
use super::reach::Reach;
use crate::cli::Exit;
use crate::control::protocol::TokenAnswer;
use crate::token::rfc3339;

pub async fn run(reach: Reach, name: String, format: TokenFormat) -> anyhow::Result<Exit> {
    if let Some(config) = reach.config()
        && super::credential(config, &name).is_none()
    {
        return Ok(Exit::Failed);
    }
    let fields = format == TokenFormat::AwsCredentialProcess;
    match reach.token_with(&name, fields).await {
        Ok(answer) => {
            let now = crate::clock::system_now();
            match render(&name, &answer, format, now) {
                Ok(text) => {
                    print!("{text}");
                    Ok(Exit::Ok)
                }
                Err(message) => {
                    eprintln!("refreshd: {message}");
                    Ok(Exit::Failed)
                }
            }
        }
        Err(message) => {
            eprintln!("refreshd: {}", crate::observe::shown(&message));
            Ok(Exit::Failed)
        }
    }
}

/// The token in `format`, ending in a newline; why not, when the credential lacks the
/// fields the format needs.
fn render(
    name: &str,
    answer: &TokenAnswer,
    format: TokenFormat,
    now: OffsetDateTime,
) -> Result<String, String> {
    let token = answer.token.expose_secret();
    Ok(match format {
        TokenFormat::Raw => format!("{token}\n"),
        TokenFormat::Json => {
            let json = serde_json::json!({
                "token": token,
                "token_type": answer.token_type,
                "expires_at": rfc3339(answer.expires_at),
                "expires_in": expires_in(answer.expires_at, now),
            });
            format!("{json}\n")
        }
        TokenFormat::Env => {
            let prefix = env_prefix(name);
            let mut out = String::new();
            let _ = writeln!(out, "export {prefix}_TOKEN={}", shell_quote(token));
            let _ = writeln!(
                out,
                "export {prefix}_EXPIRES_AT={}",
                shell_quote(&rfc3339(answer.expires_at))
            );
            out
        }
        TokenFormat::AwsCredentialProcess => aws_credential_process(name, answer)?,
    })
}

/// AWS's `credential_process` output (version 1): the key pair from the fields, the token
/// as the session token.
fn aws_credential_process(name: &str, answer: &TokenAnswer) -> Result<String, String> {
    let field = |key: &str| {
        answer
            .fields
            .as_ref()
            .and_then(|fields| fields.get(key))
            .map(ExposeSecret::expose_secret)
            .ok_or_else(|| {
                format!(
                    "credential {name:?} has no field `{key}`: --format aws-credential-process needs an AWS credential (aws-web-identity, or fields access_key_id and secret_access_key)"
                )
            })
    };
    let json = serde_json::json!({
        "Version": 1,
        "AccessKeyId": field("access_key_id")?,
        "SecretAccessKey": field("secret_access_key")?,
        "SessionToken": answer.token.expose_secret(),
        "Expiration": rfc3339(answer.expires_at),
    });
    Ok(format!("{json}\n"))
}

/// Whole seconds the token has left; never negative.
pub fn expires_in(expires_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (expires_at - now).whole_seconds().max(0)
}

/// The variable prefix for credential `name`: upper-cased, every character that is not
/// a letter or digit made `_` (credential names hold letters, digits, `_`, `-` and `.`),
/// and `_` in front of a leading digit, so `db-main` gives `DB_MAIN`.
fn env_prefix(name: &str) -> String {
    let mut prefix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if prefix.is_empty() || prefix.starts_with(|c: char| c.is_ascii_digit()) {
        prefix.insert(0, '_');
    }
    prefix
}

/// `value` in single quotes for a POSIX shell: nothing inside is expanded, and a `'` is
/// closed, escaped and reopened.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn answer(token: &str) -> TokenAnswer {
        TokenAnswer {
            token: SecretString::from(token.to_owned()),
            token_type: "Bearer".into(),
            expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            fields: None,
        }
    }

    #[test]
    fn each_format_says_the_token_and_its_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000 - 90).unwrap();
        let a = answer("tok");
        assert_eq!(render("db", &a, TokenFormat::Raw, now).unwrap(), "tok\n");
        let json: serde_json::Value =
            serde_json::from_str(&render("db", &a, TokenFormat::Json, now).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"token": "tok", "token_type": "Bearer", "expires_at": "2027-01-15T08:00:00Z", "expires_in": 90})
        );
        assert_eq!(
            render("db-main.eu", &answer("it's"), TokenFormat::Env, now).unwrap(),
            "export DB_MAIN_EU_TOKEN='it'\\''s'\nexport DB_MAIN_EU_EXPIRES_AT='2027-01-15T08:00:00Z'\n"
        );
        let later = OffsetDateTime::from_unix_timestamp(1_800_000_100).unwrap();
        assert_eq!(expires_in(a.expires_at, later), 0);
    }

    #[test]
    fn aws_credential_process_output_is_version_1_with_the_key_pair() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000 - 90).unwrap();
        let mut a = answer("session");
        let format = TokenFormat::AwsCredentialProcess;
        let err = render("plain", &a, format, now).unwrap_err();
        assert!(err.contains("has no field `access_key_id`"), "{err}");
        a.fields = Some(
            [
                ("access_key_id", "ASIAEXAMPLE"),
                ("secret_access_key", "s/k+"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), SecretString::from(v.to_owned())))
            .collect(),
        );
        let json: serde_json::Value =
            serde_json::from_str(&render("aws", &a, format, now).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s/k+", "SessionToken": "session", "Expiration": "2027-01-15T08:00:00Z"})
        );
    }

    #[test]
    fn variable_names_are_valid_in_a_shell() {
        assert_eq!(env_prefix("api"), "API");
        assert_eq!(env_prefix("1st"), "_1ST");
        assert_eq!(env_prefix("a_b"), "A_B");
    }
}
