//! End to end against a real PostgreSQL (>= 15): `refreshd once` writes a `.pgpass` line
//! from a `command` source (the Databricks database-credential shape), and libpq, through
//! `psql -w`, logs in over TCP with scram-sha-256 using only that file.
//!
//! Each test starts its own throwaway cluster (initdb + pg_ctl, ~1-2 s) on a free loopback
//! port with a private unix socket directory, and stops it in `Drop`, even on panic. As root
//! the server runs as the `postgres` system user (PostgreSQL refuses to run as root); `psql`
//! and refreshd run as the test's own user.
//!
//! Needs `scripts/install-test-peers` to have run: it records the PostgreSQL bin directory in
//! `.test-peers/pg-bindir`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::common::pg::{Cluster, PATH, show};

/// A password with everything a `.pgpass` must escape (`:` and `\`, single and doubled),
/// SQL and shell metacharacters, and a JWT-ish tail.
const PW_AWKWARD: &str =
    r#"tok:en\with:colons\\and\back'"$ #%;=.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl"#;
/// `PW_AWKWARD` as a `.pgpass` field, escaped by hand (`\` -> `\\`, then `:` -> `\:`).
const PW_AWKWARD_ESCAPED: &str = r#"tok\:en\\with\:colons\\\\and\\back'"$ #%;=.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl"#;

/// A rotated password made of `\:` sequences: the escaping order matters here.
const PW_ROTATED: &str = r"rot\:ated\\:pw\:\\:x.eyJzdWIiOiJhcHAifQ\:end";
const PW_ROTATED_ESCAPED: &str = r"rot\\\:ated\\\\\:pw\\\:\\\\\:x.eyJzdWIiOiJhcHAifQ\\\:end";

const PW_WRONG: &str = "wrong-password-for-the-negative-control";

// ---------------------------------------------------------------------------------------
// refreshd's side: config, the "minted" credential, runs.

struct Refreshd {
    dir: TempDir,
    pgpass: PathBuf,
    minted: PathBuf,
    config: PathBuf,
    /// Every password this test used: none may ever appear in refreshd's output.
    secrets: Vec<&'static str>,
}

impl Refreshd {
    fn new(port: u16, secrets: &[&'static str]) -> Refreshd {
        let dir = tempfile::Builder::new()
            .prefix("refreshd-pgpass-")
            .tempdir()
            .expect("create the refreshd temp dir");
        let pgpass = dir.path().join(".pgpass");
        let minted = dir.path().join("minted.json");
        let config = dir.path().join("refreshd.toml");
        let state = dir.path().join("state");
        let toml_str = |p: &Path| serde_json::to_string(&p.to_str().expect("UTF-8 path")).unwrap();
        let text = format!(
            r#"[daemon]
state_dir = {state}

[credentials.pg]
source = {{ type = "command", argv = ["/bin/cat", {minted}] }}
targets = [ {{ type = "pgpass", path = {pgpass}, host = "127.0.0.1", port = {port}, database = "postgres", username = "app" }} ]
"#,
            state = toml_str(&state),
            minted = toml_str(&minted),
            pgpass = toml_str(&pgpass),
        );
        fs::write(&config, text).unwrap();
        Refreshd {
            dir,
            pgpass,
            minted,
            config,
            secrets: secrets.to_vec(),
        }
    }

    /// What `databricks database generate-database-credential` would print: valid 1 h.
    fn mint(&self, token: &str) {
        let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expiry = expiry
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let json = serde_json::json!({ "token": token, "expiration_time": expiry });
        fs::write(&self.minted, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }

    /// `refreshd once -c CONFIG [--force]`, asserting exit 0 and no secret in its output.
    fn once(&self, force: bool) -> Output {
        let mut command = Command::new(crate::common::refreshd_bin());
        command
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.dir.path())
            // Debug level: a secret must not show up at any level.
            .env("RUST_LOG", "debug")
            .current_dir(self.dir.path())
            .arg("once")
            .arg("-c")
            .arg(&self.config);
        if force {
            command.arg("--force");
        }
        let output = command.output().expect("run refreshd");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for secret in &self.secrets {
            let escaped = secret.replace('\\', "\\\\").replace(':', "\\:");
            if text.contains(secret) || text.contains(&escaped) {
                let redacted = show(&output)
                    .replace(&escaped, "[PASSWORD, .pgpass-escaped]")
                    .replace(secret, "[PASSWORD]");
                panic!("refreshd's output contains a password:\n{redacted}");
            }
        }
        assert_eq!(
            output.status.code(),
            Some(0),
            "refreshd once should succeed:\n{}",
            show(&output)
        );
        output
    }

    fn pgpass_bytes(&self) -> String {
        String::from_utf8(fs::read(&self.pgpass).expect("read .pgpass")).expect("UTF-8 .pgpass")
    }

    fn pgpass_mode(&self) -> u32 {
        fs::metadata(&self.pgpass).unwrap().permissions().mode() & 0o7777
    }
}

fn write_file_with_mode(path: &Path, content: &str, mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn psql_connects_with_the_password_refreshd_wrote() {
    let cluster = Cluster::start();
    cluster.set_password(PW_AWKWARD);
    let refreshd = Refreshd::new(cluster.port, &[PW_AWKWARD, PW_WRONG]);

    // Negative control: the server really checks the password from the file.
    let wrong = refreshd.dir.path().join("wrong.pgpass");
    write_file_with_mode(
        &wrong,
        &format!("127.0.0.1:{}:postgres:app:{PW_WRONG}\n", cluster.port),
        0o600,
    );
    let stderr = cluster.assert_app_refused(&wrong);
    assert!(
        stderr.contains("password authentication failed"),
        "the wrong password should be refused by the server, got: {stderr}"
    );

    refreshd.mint(PW_AWKWARD);
    refreshd.once(false);

    assert_eq!(refreshd.pgpass_mode(), 0o600);
    assert_eq!(
        refreshd.pgpass_bytes(),
        format!(
            "127.0.0.1:{}:postgres:app:{PW_AWKWARD_ESCAPED}\n",
            cluster.port
        )
    );
    cluster.assert_app_connects(&refreshd.pgpass);
}

#[test]
fn existing_pgpass_lines_are_kept_and_the_match_replaced() {
    let cluster = Cluster::start();
    cluster.set_password(PW_AWKWARD);
    let refreshd = Refreshd::new(cluster.port, &[PW_AWKWARD, PW_WRONG]);
    let port = cluster.port;

    let before_ours = format!(
        "# hand-written, keep me\n\
         db.other.example:5432:postgres:bob:bobs\\:secret\n\
         127.0.0.1:{port}:postgres:bob:same-host-other-user\n\
         localhost:{port}:postgres:app:other-host-spelling\n"
    );
    let after_ours = "\n# trailing comment\n*:*:*:carol:carols-password\n";
    let old_line = format!("127.0.0.1:{port}:postgres:app:{PW_WRONG}");
    write_file_with_mode(
        &refreshd.pgpass,
        &format!("{before_ours}{old_line}\n{after_ours}"),
        0o600,
    );
    // Negative control: the old line is the one libpq uses, and it is wrong.
    let stderr = cluster.assert_app_refused(&refreshd.pgpass);
    assert!(
        stderr.contains("password authentication failed"),
        "the old line should be used and refused, got: {stderr}"
    );

    refreshd.mint(PW_AWKWARD);
    refreshd.once(false);

    assert_eq!(
        refreshd.pgpass_bytes(),
        format!("{before_ours}127.0.0.1:{port}:postgres:app:{PW_AWKWARD_ESCAPED}\n{after_ours}")
    );
    assert_eq!(refreshd.pgpass_mode(), 0o600);
    cluster.assert_app_connects(&refreshd.pgpass);
}

/// A cluster whose `app` role has `PW_AWKWARD`, and a refreshd that wrote it into a
/// `.pgpass` psql has already logged in with.
fn connected_with_awkward_password() -> (Cluster, Refreshd) {
    let cluster = Cluster::start();
    cluster.set_password(PW_AWKWARD);
    let refreshd = Refreshd::new(cluster.port, &[PW_AWKWARD, PW_ROTATED]);
    refreshd.mint(PW_AWKWARD);
    refreshd.once(false);
    cluster.assert_app_connects(&refreshd.pgpass);
    (cluster, refreshd)
}

#[test]
fn libpq_ignores_a_loose_pgpass_and_refreshd_tightens_it() {
    let (cluster, refreshd) = connected_with_awkward_password();
    let written = refreshd.pgpass_bytes();

    fs::set_permissions(&refreshd.pgpass, fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = cluster.assert_app_refused(&refreshd.pgpass);
    assert!(
        stderr.contains("has group or world access"),
        "libpq should warn that it ignores the loose file, got: {stderr}"
    );

    // The stored token is still valid: a plain `once` re-syncs the target without fetching.
    // A different minted token proves no fetch happened.
    refreshd.mint(PW_ROTATED);
    refreshd.once(false);
    assert_eq!(refreshd.pgpass_mode(), 0o600);
    assert_eq!(refreshd.pgpass_bytes(), written);
    cluster.assert_app_connects(&refreshd.pgpass);
}

#[test]
fn rotation_changes_the_password() {
    let (cluster, refreshd) = connected_with_awkward_password();

    cluster.set_password(PW_ROTATED);
    let stderr = cluster.assert_app_refused(&refreshd.pgpass);
    assert!(
        stderr.contains("password authentication failed"),
        "the old password should be refused after ALTER ROLE, got: {stderr}"
    );

    refreshd.mint(PW_ROTATED);
    // Without --force the still-valid stored token is kept...
    refreshd.once(false);
    assert!(refreshd.pgpass_bytes().contains(PW_AWKWARD_ESCAPED));
    // ...with it, the new one is fetched and written.
    refreshd.once(true);

    let content = refreshd.pgpass_bytes();
    assert_eq!(
        content,
        format!(
            "127.0.0.1:{}:postgres:app:{PW_ROTATED_ESCAPED}\n",
            cluster.port
        )
    );
    assert!(!content.contains(PW_AWKWARD_ESCAPED));
    assert_eq!(refreshd.pgpass_mode(), 0o600);
    cluster.assert_app_connects(&refreshd.pgpass);
}
