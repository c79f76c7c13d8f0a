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
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::unistd::{Gid, Uid, User};
use tempfile::TempDir;

const REFRESHD: &str = env!("CARGO_BIN_EXE_refreshd");

/// Locale-free, PG*-free environment for every child process.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

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
// PostgreSQL binaries and the user the server runs as.

fn pg_bindir() -> PathBuf {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-peers/pg-bindir");
    let text = fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run scripts/install-test-peers first (it finds or installs PostgreSQL >= 15 and records its bin directory there)",
            file.display()
        )
    });
    let dir = PathBuf::from(text.trim());
    for tool in ["initdb", "pg_ctl", "postgres"] {
        assert!(
            dir.join(tool).is_file(),
            "{} (from {}) has no {tool}: run scripts/install-test-peers again",
            dir.display(),
            file.display()
        );
    }
    dir
}

fn psql_binary(bindir: &Path) -> PathBuf {
    [bindir.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no psql in {} or /usr/bin: run scripts/install-test-peers",
                bindir.display()
            )
        })
}

/// `Some(postgres user)` when we are root: the server must not run as root.
fn server_user() -> Option<(Uid, Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = User::from_name("postgres").ok().flatten().unwrap_or_else(|| {
        panic!(
            "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` system user to run it as: run scripts/install-test-peers (the postgresql package creates it)"
        )
    });
    Some((user.uid, user.gid))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local_addr")
        .port()
}

fn show(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// The cluster.

/// A running throwaway PostgreSQL cluster with a LOGIN role `app` (no password until
/// `set_password`). Local socket: trust; TCP: scram-sha-256.
struct Cluster {
    /// `/tmp/refreshd-pg-XXXX`, 0755, owned by the test's user. Removed after the stop.
    root: TempDir,
    /// `root/pg`, owned by the server's user: data directory, socket directory, log.
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
    bindir: PathBuf,
    psql: PathBuf,
    run_as: Option<(Uid, Gid)>,
    /// Whether `pg_ctl start` was attempted since the last stop (Drop then stops it).
    started: bool,
}

impl Cluster {
    fn start() -> Cluster {
        let bindir = pg_bindir();
        let psql = psql_binary(&bindir);
        let run_as = server_user();
        // Always under /tmp: unix socket paths are limited to ~107 bytes, and every parent
        // must be traversable by the `postgres` user when we are root.
        let root = tempfile::Builder::new()
            .prefix("refreshd-pg-")
            .tempdir_in("/tmp")
            .expect("create the cluster temp dir");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let pg = root.path().join("pg");
        let socket_dir = pg.join("sock");
        fs::create_dir(&pg).unwrap();
        fs::create_dir(&socket_dir).unwrap();
        fs::set_permissions(&pg, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = run_as {
            for dir in [&pg, &socket_dir] {
                nix::unistd::chown(dir, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut cluster = Cluster {
            data: pg.join("data"),
            log: pg.join("server.log"),
            socket_dir,
            root,
            port: 0,
            bindir,
            psql,
            run_as,
            started: false,
        };

        let initdb = cluster
            .server_command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .expect("run initdb");
        assert!(initdb.status.success(), "initdb failed:\n{}", show(&initdb));

        // The port was free a moment ago; another test may take it meanwhile: retry.
        for attempt in 1..=5 {
            cluster.port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -k {} -p {} -c fsync=off",
                cluster.socket_dir.display(),
                cluster.port
            );
            cluster.started = true;
            let start = cluster
                .server_command("pg_ctl")
                .arg("-D")
                .arg(&cluster.data)
                .arg("-l")
                .arg(&cluster.log)
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .expect("run pg_ctl start");
            if start.status.success() {
                cluster.admin_sql("CREATE ROLE app LOGIN");
                return cluster;
            }
            let log = fs::read_to_string(&cluster.log).unwrap_or_default();
            cluster.stop();
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            assert!(
                port_taken && attempt < 5,
                "pg_ctl start failed (attempt {attempt}):\n{}\n--- server log ---\n{log}",
                show(&start)
            );
        }
        panic!("the loop returns a started cluster or fails its assertion")
    }

    /// A server-side tool (initdb, pg_ctl) as the server's user, with a clean environment.
    fn server_command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bindir.join(tool));
        command
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("HOME", self.root.path())
            .current_dir(self.root.path());
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups when root changes uid.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    /// psql with no PG* variables from our environment.
    fn psql_command(&self) -> Command {
        let mut command = Command::new(&self.psql);
        command
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("HOME", self.root.path())
            .env("PGCONNECT_TIMEOUT", "5")
            .current_dir(self.root.path())
            .arg("-X");
        command
    }

    /// Runs SQL as the superuser over the unix socket (trust).
    fn admin_sql(&self, sql: &str) {
        let output = self
            .psql_command()
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("run psql as postgres");
        assert!(
            output.status.success(),
            "admin SQL failed:\n{}",
            show(&output)
        );
    }

    /// Sets the password of `app` (scram-sha-256, the server default in 15).
    fn set_password(&self, password: &str) {
        // Dollar quoting: the body is taken verbatim, `'`, `\` and `$` included.
        const TAG: &str = "$refreshd_pw$";
        assert!(
            !password.contains("refreshd_pw"),
            "pick another dollar-quote tag"
        );
        self.admin_sql(&format!("ALTER ROLE app PASSWORD {TAG}{password}{TAG}"));
    }

    /// `psql -w` as `app` over TCP, whose only password source is `pgpass`.
    fn psql_as_app(&self, pgpass: &Path) -> Output {
        self.psql_command()
            .env("PGPASSFILE", pgpass)
            .args(["-w", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "app", "-d", "postgres", "-tAc", "select current_user"])
            .output()
            .expect("run psql as app")
    }

    fn assert_app_connects(&self, pgpass: &Path) {
        let output = self.psql_as_app(pgpass);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "app",
            "psql as app with PGPASSFILE={} should connect and print `app`:\n{}\n--- pgpass ---\n{}",
            pgpass.display(),
            show(&output),
            fs::read_to_string(pgpass).unwrap_or_else(|e| format!("(unreadable: {e})"))
        );
    }

    /// psql as app fails; returns its stderr.
    fn assert_app_refused(&self, pgpass: &Path) -> String {
        let output = self.psql_as_app(pgpass);
        assert!(
            !output.status.success(),
            "psql as app with PGPASSFILE={} should have failed:\n{}",
            pgpass.display(),
            show(&output)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn stop(&mut self) {
        if !self.started {
            return;
        }
        self.started = false;
        match self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output()
        {
            Ok(output) if output.status.success() => {}
            // Not running (a failed start) is fine; anything else is worth a line.
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                if !stderr.contains("Is server running?") {
                    eprintln!("pg_ctl stop failed:\n{}", show(&output));
                }
            }
            Err(e) => eprintln!("cannot run pg_ctl stop: {e}"),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

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
        let mut command = Command::new(REFRESHD);
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
