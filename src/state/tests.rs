use std::fs::File;
use std::os::unix::fs::MetadataExt;

use nix::fcntl::{Flock, FlockArg};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::*;
use crate::token::{ExpirySource, Served, Token};

fn token() -> Token {
    Token {
        access_token: SecretString::from("at-1"),
        issued_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        expires_at: OffsetDateTime::from_unix_timestamp(1_800_003_600).unwrap(),
        expiry_source: ExpirySource::JwtExp,
        subject: Some("alice".into()),
        issuer: None,
        client_id: Some("cli".into()),
        scopes: vec!["api".into()],
        served: Some(Served {
            by: "sources[1] command".into(),
            skipped: vec!["sources[0] oauth-refresh: invalid_grant".into()],
        }),
    }
}

#[test]
fn round_trips_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path().join("state"));
    assert!(state_dir.load("db").unwrap().token.is_none());
    let state = CredentialState {
        token: Some(token()),
        refresh_token: Some(SecretString::from("rt-2")),
        last_error: Some(LastError {
            at: OffsetDateTime::UNIX_EPOCH,
            kind: FailureKind::Transient,
            message: "x".into(),
        }),
        ..Default::default()
    };
    state_dir.save("db", &state).unwrap();
    let loaded = state_dir.load("db").unwrap();
    let token = loaded.token.unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(token.served, state.token.as_ref().unwrap().served);
    assert_eq!(loaded.refresh_token.unwrap().expose_secret(), "rt-2");
    assert_eq!(loaded.last_error, state.last_error);
    assert_eq!(
        std::fs::metadata(dir.path().join("state")).unwrap().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("state/db.json"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!format!("{state:?}").contains("rt-2"));
}

#[test]
fn a_damaged_state_file_is_described_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path());
    // A token where a number belongs, and a token in broken JSON: neither is echoed.
    std::fs::write(
        dir.path().join("db.json"),
        r#"{"version": 1, "credential": "db", "consecutive_failures": "eyJsecret-token-value"}"#,
    )
    .unwrap();
    let err = state_dir.load("db").unwrap_err().to_string();
    assert!(err.contains("not a state file refreshd wrote"), "{err}");
    assert!(!err.contains("secret-token-value"), "{err}");
    std::fs::write(
        dir.path().join("db.json"),
        r#"{"version": 1, "x": "eyJsecret-token-value"#,
    )
    .unwrap();
    let err = state_dir.load("db").unwrap_err().to_string();
    assert!(
        err.contains("not JSON") && !err.contains("secret-token-value"),
        "{err}"
    );
}

#[test]
fn newer_and_unversioned_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path());
    std::fs::write(
        dir.path().join("db.json"),
        r#"{"version": 7, "credential": "db"}"#,
    )
    .unwrap();
    let err = state_dir.load("db").unwrap_err().to_string();
    assert!(err.contains("version 7") && err.contains("newer"), "{err}");
    std::fs::write(dir.path().join("db.json"), r#"{"credential": "db"}"#).unwrap();
    assert!(
        state_dir
            .load("db")
            .unwrap_err()
            .to_string()
            .contains("no `version`")
    );
}

#[test]
fn the_lock_excludes_a_second_holder() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path());
    let held = state_dir.lock("db").unwrap();
    let file = File::open(dir.path().join("db.lock")).unwrap();
    assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err());
    drop(held);
    let file = File::open(dir.path().join("db.lock")).unwrap();
    assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok());
}

#[test]
fn a_symlink_planted_at_a_lock_is_refused_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path().join("state"));
    state_dir.ensure().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("state/.daemon.lock")).unwrap();
    let absent = dir.path().join("absent");
    std::os::unix::fs::symlink(&absent, dir.path().join("state/db.lock")).unwrap();
    assert!(state_dir.lock_daemon().is_err());
    assert!(state_dir.lock("db").is_err());
    assert_eq!(state_dir.remove_litter("db"), 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!absent.exists());
}
