//! Properties that must hold for every input (design §6): nothing a provider, a token, a
//! target file or a config can hold makes refreshd panic, and the editors change only
//! the line they own. proptest on stable Rust (cargo-fuzz would need nightly).

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::config::{Config, Timing};
use crate::credential::policy::{self, Attempted, Trigger};
use crate::state::FailureKind;
use crate::target::{dotenv, pgpass};
use crate::token::{self, Fetched, Token};

/// Any number a JSON claim or field could hold, extremes included.
fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-1e13f64..3e11f64),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(-62_200_000_000.0),
        Just(253_402_300_799.0),
        Just(0.0),
    ]
}

fn timing() -> impl Strategy<Value = Timing> {
    let span = || (0u64..=315_360_000).prop_map(Duration::from_secs);
    (span(), span(), span(), span(), span(), span(), span()).prop_map(
        |(refresh_at, min_remaining, jitter, retry_initial, retry_max, timeout, lifetime)| Timing {
            refresh_at: refresh_at.max(Duration::from_secs(1)),
            min_remaining,
            jitter,
            retry_initial: retry_initial.max(Duration::from_secs(1)),
            retry_max: retry_max.max(retry_initial).max(Duration::from_secs(1)),
            timeout: timeout.max(Duration::from_secs(1)),
            default_lifetime: lifetime.max(Duration::from_secs(1)),
        },
    )
}

fn jwt(claims: serde_json::Value) -> String {
    crate::token::tests::jwt(claims)
}

/// A sane "now": between 1970 and 2100.
fn now() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_102_444_800).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever times a token claims, building it never panics; what is accepted can be
    /// scheduled, formatted and planned around without overflowing.
    #[test]
    fn token_times_never_panic_and_accepted_ones_schedule(
        exp in proptest::option::of(any_number()),
        iat in proptest::option::of(any_number()),
        expires_in in proptest::option::of(any_number()),
        reported in proptest::option::of(-400_000_000_000i64..400_000_000_000),
        now in now(),
        timing in timing(),
        jitter in -1.0f64..1.0,
    ) {
        let mut claims = serde_json::Map::new();
        if let Some(exp) = exp { claims.insert("exp".into(), serde_json::json!(exp)); }
        if let Some(iat) = iat { claims.insert("iat".into(), serde_json::json!(iat)); }
        let mut fetched = Fetched::new(SecretString::from(jwt(claims.into())));
        fetched.expires_in = expires_in.and_then(token::seconds);
        fetched.expires_at = reported.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        fetched.refresh_token = Some(SecretString::from("rotated".to_owned()));
        match Token::from_fetched(fetched, now, timing.default_lifetime) {
            Ok((token, refresh)) => {
                prop_assert!(token::is_sane(token.issued_at) && token::is_sane(token.expires_at));
                prop_assert!(token.issued_at <= token.expires_at);
                prop_assert!(refresh.is_some());
                let offset = policy::jitter(timing.jitter, (jitter + 1.0) / 2.0);
                let next = policy::next_refresh(token.issued_at, token.expires_at, &timing, offset, now);
                prop_assert!(next >= now);
                let _ = policy::is_due(token.issued_at, token.expires_at, &timing, now);
                let _ = policy::clock_skew(token.issued_at, token.expires_at, now, &timing);
                let text = token::rfc3339(token.expires_at);
                prop_assert!(token::parse_rfc3339(&text).is_some(), "{}", text);
            }
            // Refused: the rotated refresh token comes back with the reason.
            Err(absurd) => prop_assert!(absurd.refresh_token.is_some()),
        }
    }

    /// The plan after any attempt is a moment at or after now, whatever the timing, the
    /// attempt count or the provider's `Retry-After`.
    #[test]
    fn plans_never_panic_and_never_look_back(
        now in now(),
        timing in timing(),
        attempt in any::<u32>(),
        random in 0.0f64..1.0,
        retry_after in proptest::option::of(any::<u64>()),
        next_refresh in -1_000_000i64..1_000_000,
        outcome in 0u8..4,
    ) {
        let next_refresh = now + time::Duration::seconds(next_refresh);
        let attempted = match outcome {
            0 => Attempted::Held { fingerprint: "3f9a1c07", next_refresh, target_failed: false, unsaved: false },
            1 => Attempted::Held { fingerprint: "3f9a1c07", next_refresh, target_failed: true, unsaved: true },
            2 => Attempted::Failed { kind: FailureKind::Transient, retry_after: retry_after.map(Duration::from_secs) },
            _ => Attempted::Failed { kind: FailureKind::Permanent, retry_after: None },
        };
        let plan = policy::plan(attempted, attempt, now, &timing, &mut || random);
        let scheduled = matches!(plan.trigger, Trigger::Scheduled { .. });
        prop_assert!(plan.at >= now, "planned in the past (scheduled: {})", scheduled);
        prop_assert!(plan.at <= now + policy::RETRY_AFTER_CAP.max(timing.retry_max).max(policy::PERMANENT_RETRY) + time::Duration::seconds(1_000_000));
    }

    /// Setting a key appends exactly one line and keeps every other byte; setting it again
    /// with the same value changes nothing, and the value reads back.
    #[test]
    fn dotenv_set_keeps_every_other_byte(
        lines in proptest::collection::vec("[ -~\t]{0,40}", 0..12),
        crlf in any::<bool>(),
        value in "[A-Za-z0-9._/+=:@%,^-]{1,60}",
    ) {
        let key = "REFRESHD_PROPERTY_TOKEN";
        let ending = if crlf { "\r\n" } else { "\n" };
        let content: String = lines
            .iter()
            .filter(|l| !l.contains(key))
            .map(|l| format!("{l}{ending}"))
            .collect();
        let quoted = dotenv::quote(&value).unwrap();
        let once = dotenv::set(content.as_bytes(), key, &quoted);
        prop_assert!(once.starts_with(content.as_bytes()));
        let line = format!("{key}={quoted}\n");
        prop_assert_eq!(&once[content.len()..], line.as_bytes());
        prop_assert_eq!(dotenv::get(&once, key), Some(value.clone()));
        prop_assert_eq!(dotenv::set(&once, key, &quoted), once);
    }

    /// Any password libpq can hold round-trips through refreshd's escaping.
    #[test]
    fn pgpass_passwords_round_trip(password in "[^\r\n\u{0}]{1,80}", other in "[a-z*]{1,10}") {
        let entry = pgpass::Entry { host: "db.example.com", port: "5432", database: &other, username: "app" };
        let edited = pgpass::set(b"# comment\n*:*:*:*:fallback\n", &entry, &password).unwrap();
        prop_assert_eq!(pgpass::get(&edited.content, &entry), Some(password.clone()));
        prop_assert!(edited.content.ends_with(b"# comment\n*:*:*:*:fallback\n"));
    }

    /// No text makes the config loader panic: it accepts or names the problem.
    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,400}") {
        let _ = Config::parse(Path::new("/etc/refreshd/config.toml"), &text);
    }

    /// Nor does a valid config with one byte changed.
    #[test]
    fn damaged_configs_never_panic(at in 0usize..10_000, byte in any::<u8>()) {
        let mut bytes = VALID.as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            if let Err(e) = Config::parse(Path::new("/etc/refreshd/config.toml"), &text) {
                prop_assert!(e.to_string().starts_with("/etc/refreshd/config.toml:"), "{}", e);
            }
        }
    }
}

mod formats;

const VALID: &str = r#"[daemon]
state_dir = "/var/lib/refreshd"
metrics_listen = "127.0.0.1:9813"

[defaults]
refresh_at = "50m"
retry = { initial = "2s", max = "5m" }

[credentials.db]
source = { type = "oauth-refresh", token_url = "https://idp.example.com/token", client_id = "cli", refresh_token = { file = "/etc/refreshd/rt" }, scopes = ["a", "b"] }
targets = [
  { type = "dotenv", path = "/srv/app/.env", key = "TOKEN", expires_at_key = "TOKEN_EXPIRES_AT" },
  { type = "pgpass", path = "/home/app/.pgpass", host = "db.example.com", port = 5432, database = "postgres", username = "app@example.com" },
]
reload = [ { signal = "HUP", pid_file = "/run/app.pid", process_name = "app" } ]

[credentials.pg]
source = { type = "http", url = "https://api.example.com/creds", body = '{"request_id": "{{uuid}}"}', bearer = { credential = "db" }, token_field = "/token", expiry_field = "/expiration_time" }
targets = [ { type = "file", path = "/run/app/pg.token", mode = "0600" } ]
"#;

#[test]
fn the_damaged_config_starts_valid() {
    let config = Config::parse(Path::new("/etc/refreshd/config.toml"), VALID).unwrap();
    assert_eq!(config.credentials.len(), 2);
    assert_eq!(
        SecretString::from("x".to_owned()).expose_secret(),
        "x",
        "secrecy is in scope for the properties above"
    );
}
