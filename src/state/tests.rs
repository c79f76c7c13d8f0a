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
        fields: Default::default(),
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
        last_error: Some(LastError::new(
            OffsetDateTime::UNIX_EPOCH,
            FailureKind::Transient,
            Cause::RateLimited,
            "x".into(),
        )),
        uncommitted: Some(7),
        ..Default::default()
    };
    state_dir.save("db", &state).unwrap();
    let loaded = state_dir.load("db").unwrap();
    let token = loaded.token.unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(token.served, state.token.as_ref().unwrap().served);
    assert_eq!(loaded.refresh_token.unwrap().expose_secret(), "rt-2");
    assert_eq!(loaded.last_error, state.last_error);
    assert_eq!(loaded.uncommitted, Some(7));
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
    std::fs::write(
        dir.path().join("db.json"),
        r#"{"version": 4, "credential": "db"}"#,
    )
    .unwrap();
    let err = state_dir.load("db").unwrap_err().to_string();
    assert!(err.contains("version 4") && err.contains("newer"), "{err}");
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

#[test]
fn a_refused_save_says_why_in_a_word() {
    let io = |errno: i32| StateError::Io {
        path: "/s/db.json".into(),
        source: std::io::Error::from_raw_os_error(errno),
    };
    use nix::libc;
    assert_eq!(io(libc::ENOSPC).unsaved(), Unsaved::NoSpace);
    assert_eq!(io(libc::EDQUOT).unsaved(), Unsaved::NoSpace);
    assert_eq!(io(libc::EACCES).unsaved(), Unsaved::Permission);
    assert_eq!(io(libc::EPERM).unsaved(), Unsaved::Permission);
    assert_eq!(io(libc::EROFS).unsaved(), Unsaved::Permission);
    assert_eq!(io(libc::EIO).unsaved(), Unsaved::Io);
    let refused = StateError::Dir {
        path: "/s".into(),
        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "refused: link"),
    };
    assert_eq!(refused.unsaved(), Unsaved::Permission);
    let foreign = StateError::ForeignOwner {
        path: "/s".into(),
        owner: "app".into(),
    };
    assert_eq!(foreign.unsaved(), Unsaved::Permission);
    assert_eq!(Unsaved::NoSpace.to_string(), "no space");
    assert_eq!(Unsaved::Permission.to_string(), "permission denied");
    assert_eq!(Unsaved::Io.to_string(), "I/O error");
    assert_eq!(
        serde_json::to_string(&Unsaved::NoSpace).unwrap(),
        r#""no_space""#
    );
}

/// A state file exactly as version 1 wrote it (two-space JSON, a last error without a
/// cause): read, and its last error's cause migrated.
#[test]
fn a_version_1_file_is_read_and_migrated() {
    const V1: &str = r#"{
  "version": 1,
  "credential": "db",
  "token": {
    "access_token": "at-1",
    "fingerprint": "sha256:0123456789abcdef",
    "issued_at": "2027-01-15T08:00:00Z",
    "expires_at": "2027-01-15T09:00:00Z",
    "expiry_source": "jwt_exp",
    "subject": "alice",
    "scopes": [
      "api"
    ]
  },
  "refresh_token": "rt-2",
  "last_rotation": "2027-01-15T08:00:00Z",
  "last_error": {
    "at": "2027-01-15T08:30:00Z",
    "kind": "transient",
    "message": "request to https://idp.example/token timed out after 10s"
  },
  "consecutive_failures": 1,
  "store_generation": 4
}
"#;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path());
    std::fs::write(dir.path().join("db.json"), V1).unwrap();
    let state = state_dir.load("db").unwrap();
    let error = state.last_error.clone().unwrap();
    assert_eq!(error.cause, Cause::Timeout);
    assert_eq!(error.kind, FailureKind::Transient);
    assert_eq!(
        error.message,
        "request to https://idp.example/token timed out after 10s"
    );
    assert_eq!(
        error.at,
        OffsetDateTime::from_unix_timestamp(1_800_001_800).unwrap()
    );
    let token = state.token.as_ref().unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(token.expiry_source, ExpirySource::JwtExp);
    assert_eq!(
        state.refresh_token.as_ref().unwrap().expose_secret(),
        "rt-2"
    );
    assert_eq!(state.consecutive_failures, 1);
    assert_eq!((state.generation, state.uncommitted), (Some(4), None));
    // Saved again, it is version 2 with the cause stored.
    state_dir.save("db", &state).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("db.json")).unwrap()).unwrap();
    assert_eq!(json["version"], 2);
    assert_eq!(json["last_error"]["cause"], "timeout");
    assert!(json.get("uncommitted").is_none(), "{json}");

    // Any other message is an honest `unknown`.
    let other = V1.replace(
        "request to https://idp.example/token timed out after 10s",
        "https://idp.example/token answered HTTP 400 invalid_grant",
    );
    std::fs::write(dir.path().join("db.json"), other).unwrap();
    let error = state_dir.load("db").unwrap().last_error.unwrap();
    assert_eq!(error.cause, Cause::Unknown);
}

#[test]
fn a_state_version_1_can_hold_is_written_as_version_1() {
    let at = time::OffsetDateTime::UNIX_EPOCH;
    let mut state = CredentialState {
        token: Some(crate::token::tests::token_at(at, at + time::Duration::HOUR)),
        generation: Some(3),
        ..CredentialState::default()
    };
    let version = |state: &CredentialState| {
        let bytes = encode("api", state);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(decode("api", &bytes).unwrap().generation, state.generation);
        value["version"].as_u64().unwrap()
    };
    // What the fleet store seals: an older node must still read it.
    assert_eq!(version(&state), 1);
    state.uncommitted = Some(3);
    assert_eq!(version(&state), 2);
    state.uncommitted = None;
    state.last_error = Some(crate::state::LastError::new(
        at,
        crate::state::FailureKind::Transient,
        crate::state::Cause::Timeout,
        "timed out".to_owned(),
    ));
    assert_eq!(version(&state), 2);
}
