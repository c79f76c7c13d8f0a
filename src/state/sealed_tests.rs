//! The state directory with `[daemon] state_key`: what is on disk, what a wrong or missing
//! key does (nothing), and `refreshd state seal|unseal`.

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::seal::Key;
use crate::secret::SecretRef;

fn new_key() -> SecretRef {
    SecretRef::Inline(Key::generate())
}

fn state(refresh: &str) -> CredentialState {
    CredentialState {
        refresh_token: Some(SecretString::from(refresh.to_owned())),
        consecutive_failures: 2,
        ..Default::default()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_key_seals_every_write_and_every_reader_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let sealed = StateDir::sealed(dir.path(), key.clone());
    sealed.save("db", &state("rt-secret-1")).unwrap();
    let bytes = std::fs::read(dir.path().join("db.json")).unwrap();
    assert!(bytes.starts_with(sealed::MAGIC));
    assert!(!contains(&bytes, "rt-secret-1"));
    let loaded = StateDir::sealed(dir.path(), key).load("db").unwrap();
    assert_eq!(loaded.refresh_token.unwrap().expose_secret(), "rt-secret-1");
    assert_eq!(loaded.consecutive_failures, 2);
}

#[test]
fn a_plain_file_is_read_and_sealed_at_its_next_write() {
    let dir = tempfile::tempdir().unwrap();
    StateDir::new(dir.path())
        .save("db", &state("rt-plain"))
        .unwrap();
    let sealed = StateDir::sealed(dir.path(), new_key());
    let loaded = sealed.load("db").unwrap();
    assert_eq!(loaded.refresh_token.unwrap().expose_secret(), "rt-plain");
    assert!(
        !std::fs::read(dir.path().join("db.json"))
            .unwrap()
            .starts_with(sealed::MAGIC)
    );
    sealed.save("db", &state("rt-next")).unwrap();
    let bytes = std::fs::read(dir.path().join("db.json")).unwrap();
    assert!(bytes.starts_with(sealed::MAGIC) && !contains(&bytes, "rt-next"));
}

#[test]
fn no_key_or_a_wrong_key_is_refused_naming_the_file_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    StateDir::sealed(dir.path(), new_key())
        .save("db", &state("rt-1"))
        .unwrap();
    let file = dir.path().join("db.json");
    let before = std::fs::read(&file).unwrap();
    let plain = StateDir::new(dir.path());
    let err = plain.load("db").unwrap_err();
    assert!(matches!(err, StateError::Sealed { .. }), "{err}");
    assert!(err.to_string().contains("set [daemon] state_key"), "{err}");
    let wrong = StateDir::sealed(dir.path(), new_key());
    let err = wrong.check_key(["db"]).unwrap_err();
    assert!(matches!(err, StateError::Unopenable { .. }), "{err}");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    assert!(plain.check_key(["db"]).unwrap_err().is_key());
    // A credential with no file yet is no refusal.
    wrong.check_key(["other"]).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_state_file_moved_to_another_credential_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let sealed = StateDir::sealed(dir.path(), key);
    sealed.save("db", &state("rt-1")).unwrap();
    std::fs::copy(dir.path().join("db.json"), dir.path().join("api.json")).unwrap();
    assert!(matches!(
        sealed.load("api"),
        Err(StateError::Unopenable { .. })
    ));
}

#[test]
fn a_key_that_is_not_32_bytes_is_refused_before_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bad = StateDir::sealed(dir.path(), SecretRef::Inline(SecretString::from("short")));
    let err = bad.check_key(["db"]).unwrap_err().to_string();
    assert!(err.starts_with("[daemon] state_key:"), "{err}");
    assert!(bad.save("db", &state("rt")).is_err());
    assert!(!dir.path().join("db.json").exists());
}

#[test]
fn seal_then_unseal_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let plain = StateDir::new(dir.path());
    plain.save("db", &state("rt-db")).unwrap();
    plain.save("api", &state("rt-api")).unwrap();
    let original: Vec<Vec<u8>> = ["api", "db"]
        .iter()
        .map(|n| std::fs::read(dir.path().join(format!("{n}.json"))).unwrap())
        .collect();
    let sealed = StateDir::sealed(dir.path(), new_key());
    let migrated = sealed.migrate(Direction::Seal).unwrap();
    assert_eq!(migrated.changed, ["api", "db"]);
    for name in ["api", "db"] {
        let bytes = std::fs::read(dir.path().join(format!("{name}.json"))).unwrap();
        assert!(bytes.starts_with(sealed::MAGIC) && !contains(&bytes, "rt-"));
    }
    // Again: nothing left to seal, and every file checked to open.
    let again = sealed.migrate(Direction::Seal).unwrap();
    assert!(again.changed.is_empty() && again.unchanged.len() == 2);
    sealed.migrate(Direction::Unseal).unwrap();
    let after: Vec<Vec<u8>> = ["api", "db"]
        .iter()
        .map(|n| std::fs::read(dir.path().join(format!("{n}.json"))).unwrap())
        .collect();
    assert_eq!(after, original);
}

#[test]
fn a_migration_with_a_wrong_key_or_a_running_daemon_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let sealed = StateDir::sealed(dir.path(), key);
    sealed.save("a", &state("rt-a")).unwrap();
    StateDir::new(dir.path()).save("b", &state("rt-b")).unwrap();
    let snapshot =
        || ["a", "b"].map(|n| std::fs::read(dir.path().join(format!("{n}.json"))).unwrap());
    let before = snapshot();
    // `a` does not open with another key: `b` is not sealed either.
    let wrong = StateDir::sealed(dir.path(), new_key());
    assert!(matches!(
        wrong.migrate(Direction::Seal),
        Err(StateError::Unopenable { .. })
    ));
    assert!(wrong.migrate(Direction::Unseal).is_err());
    assert_eq!(snapshot(), before);
    assert!(matches!(
        StateDir::new(dir.path()).migrate(Direction::Seal),
        Err(StateError::NoKey)
    ));
    let _daemon = sealed.lock_daemon().unwrap();
    let other = StateDir::sealed(dir.path(), SecretRef::Inline(Key::generate()));
    assert!(matches!(
        other.migrate(Direction::Seal),
        Err(StateError::DaemonRunning { .. })
    ));
    assert_eq!(snapshot(), before);
}

#[test]
fn garbage_is_not_sealed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.json"), b"not a state").unwrap();
    let sealed = StateDir::sealed(dir.path(), new_key());
    assert!(matches!(
        sealed.migrate(Direction::Seal),
        Err(StateError::Invalid { .. })
    ));
    assert_eq!(
        std::fs::read(dir.path().join("x.json")).unwrap(),
        b"not a state"
    );
}
