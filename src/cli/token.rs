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
    match reach.token(&name).await {
        Ok(answer) => {
            let now = crate::clock::system_now();
            print!("{}", render(&name, &answer, format, now));
            Ok(Exit::Ok)
        }
        Err(message) => {
            eprintln!("refreshd: {}", crate::observe::shown(&message));
            Ok(Exit::Failed)
        }
    }
}

/// The token in `format`, ending in a newline.
fn render(name: &str, answer: &TokenAnswer, format: TokenFormat, now: OffsetDateTime) -> String {
    let token = answer.token.expose_secret();
    match format {
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
    }
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
        }
    }

    #[test]
    fn each_format_says_the_token_and_its_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000 - 90).unwrap();
        let a = answer("tok");
        assert_eq!(render("db", &a, TokenFormat::Raw, now), "tok\n");
        let json: serde_json::Value =
            serde_json::from_str(&render("db", &a, TokenFormat::Json, now)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"token": "tok", "token_type": "Bearer", "expires_at": "2027-01-15T08:00:00Z", "expires_in": 90})
        );
        assert_eq!(
            render("db-main.eu", &answer("it's"), TokenFormat::Env, now),
            "export DB_MAIN_EU_TOKEN='it'\\''s'\nexport DB_MAIN_EU_EXPIRES_AT='2027-01-15T08:00:00Z'\n"
        );
        let later = OffsetDateTime::from_unix_timestamp(1_800_000_100).unwrap();
        assert_eq!(expires_in(a.expires_at, later), 0);
    }

    #[test]
    fn variable_names_are_valid_in_a_shell() {
        assert_eq!(env_prefix("api"), "API");
        assert_eq!(env_prefix("1st"), "_1ST");
        assert_eq!(env_prefix("a_b"), "A_B");
    }
}
