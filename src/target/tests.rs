use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use secrecy::ExposeSecret;

mod formats;
mod templates;

/// Where these tests' target locks go (as the state directory's `locks/` would).
fn locks() -> &'static Path {
    static LOCKS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    LOCKS.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn target(path: PathBuf, kind: TargetKind) -> TargetConfig {
    TargetConfig::new(path, kind)
}

fn dotenv(path: PathBuf) -> TargetConfig {
    target(
        path,
        TargetKind::Dotenv {
            keys: vec![
                ("TOKEN".into(), ValueOf::Token),
                ("TOKEN_EXPIRES_AT".into(), ValueOf::ExpiresAt),
            ],
        },
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

#[test]
fn creates_a_new_file_0600_then_skips_an_identical_write() {
    let dir = tempfile::tempdir().unwrap();
    let t = dotenv(dir.path().join(".env"));
    let token = SecretString::from("abc.def");
    assert_eq!(write(&t, &token, now(), locks()).unwrap(), Outcome::Written);
    assert_eq!(
        std::fs::read_to_string(&t.path).unwrap(),
        "TOKEN=abc.def\nTOKEN_EXPIRES_AT=2027-01-15T08:00:00Z\n"
    );
    assert_eq!(std::fs::metadata(&t.path).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        write(&t, &token, now(), locks()).unwrap(),
        Outcome::Unchanged
    );
}

#[test]
fn existing_mode_is_kept_and_a_symlink_stays_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.env");
    std::fs::write(&real, "A=1\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink("real.env", &link).unwrap();
    write(
        &dotenv(link.clone()),
        &SecretString::from("v"),
        now(),
        locks(),
    )
    .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .starts_with("A=1\nTOKEN=v\n")
    );
    assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o640);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temp file left"
    );
}

#[test]
fn in_place_keeps_the_inode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "A=1\n").unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let mut t = dotenv(path.clone());
    t.write = WriteMode::InPlace;
    write(&t, &SecretString::from("v"), now(), locks()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("TOKEN=v\n")
    );
}

#[test]
fn an_unquotable_value_is_refused_and_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "TOKEN=old\n").unwrap();
    let err = write(
        &dotenv(path.clone()),
        &SecretString::from("a'b c"),
        now(),
        locks(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("target {}:", path.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "TOKEN=old\n");
}

#[test]
fn pgpass_is_tightened_to_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".pgpass");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let t = target(
        path.clone(),
        TargetKind::Pgpass {
            host: "h".into(),
            port: "5432".into(),
            database: "d".into(),
            username: PgUser::Fixed("u".into()),
            password: ValueOf::Token,
        },
    );
    write(&t, &SecretString::from("p:w"), now(), locks()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "h:5432:d:u:p\\:w\n"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn raw_file_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = target(
        dir.path().join("token"),
        TargetKind::File {
            newline: false,
            value: ValueOf::Token,
        },
    );
    write(&t, &SecretString::from("tok"), now(), locks()).unwrap();
    assert_eq!(std::fs::read(&t.path).unwrap(), b"tok");
    t.kind = TargetKind::File {
        newline: true,
        value: ValueOf::Token,
    };
    write(&t, &SecretString::from("tok"), now(), locks()).unwrap();
    assert_eq!(std::fs::read(&t.path).unwrap(), b"tok\n");
}

#[test]
fn the_current_value_reads_back_from_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let token = SecretString::from("eyJhbGciOi.e30.sig-_x");
    let targets = [
        TargetConfig::dotenv(dir.path().join(".env"), "TOKEN"),
        TargetConfig::new(
            dir.path().join(".pgpass"),
            TargetKind::Pgpass {
                host: "db".into(),
                port: "5432".into(),
                database: "app".into(),
                username: PgUser::Fixed("a:b".into()),
                password: ValueOf::Token,
            },
        ),
        TargetConfig::new(
            dir.path().join("token"),
            TargetKind::File {
                newline: true,
                value: ValueOf::Token,
            },
        ),
    ];
    for target in &targets {
        assert!(read_current(target).is_none());
        write(target, &token, now(), locks()).unwrap();
        assert_eq!(
            read_current(target).unwrap().expose_secret(),
            token.expose_secret(),
            "{}",
            target.path.display()
        );
    }
    // Disagreeing duplicates, or a style refreshd never writes, are not trusted.
    std::fs::write(&targets[0].path, "TOKEN=a\nTOKEN=b\n").unwrap();
    assert!(read_current(&targets[0]).is_none());
    std::fs::write(&targets[0].path, "TOKEN=\"quoted\"\n").unwrap();
    assert!(read_current(&targets[0]).is_none());
    std::fs::write(&targets[0].path, "export TOKEN='x y' # note\n").unwrap();
    assert_eq!(read_current(&targets[0]).unwrap().expose_secret(), "x y");
}

#[test]
fn a_missing_directory_is_named() {
    let t = dotenv(PathBuf::from("/nonexistent-refreshd-dir/.env"));
    let err = write(&t, &SecretString::from("v"), now(), locks())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent-refreshd-dir/.env"), "{err}");
    assert!(check(&t).is_err());
}

#[test]
fn a_token_over_64_kib_and_a_file_value_with_a_line_break_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(
        dir.path().join("token"),
        TargetKind::File {
            newline: true,
            value: ValueOf::Token,
        },
    );
    let huge = SecretString::from("t".repeat(MAX_TOKEN + 1));
    let err = write(&t, &huge, now(), locks()).unwrap_err().to_string();
    assert!(err.contains("more than the 65536"), "{err}");
    let split = SecretString::from("first\nsecond".to_owned());
    let err = write(&t, &split, now(), locks()).unwrap_err().to_string();
    assert!(err.contains("line break or a NUL"), "{err}");
    assert!(!t.path.exists(), "nothing was written");
}

#[test]
fn an_app_holding_a_flock_on_its_file_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = dotenv(dir.path().join(".env"));
    std::fs::write(&t.path, "A=1\n").unwrap();
    // The app locks its own file and never lets go.
    let held = nix::fcntl::Flock::lock(
        std::fs::File::open(&t.path).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    assert_eq!(
        write(&t, &SecretString::from("v"), now(), locks()).unwrap(),
        Outcome::Written
    );
    drop(held);
    assert!(
        std::fs::read_to_string(&t.path)
            .unwrap()
            .contains("TOKEN=v\n")
    );
}

#[test]
fn a_symlink_planted_at_a_target_lock_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let t = dotenv(dir.path().join(".env"));
    drop(lock(&locks, &t.path).unwrap());
    let lock_file = std::fs::read_dir(&locks)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&lock_file).unwrap();
    let victim = dir.path().join("victim");
    std::os::unix::fs::symlink(&victim, &lock_file).unwrap();
    let err = write(&t, &SecretString::from("v"), now(), &locks)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open its lock"), "{err}");
    assert!(!victim.exists(), "the link's target was created");
    assert!(!t.path.exists(), "nothing was written without the lock");
}
