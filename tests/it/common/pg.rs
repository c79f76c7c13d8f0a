//! A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free loopback port with a private
//! unix socket directory, stopped in `Drop`, even on panic. As root the server runs as the
//! `postgres` system user (PostgreSQL refuses to run as root).
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

/// Locale-free, PG*-free environment for every child process.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

// ---------------------------------------------------------------------------------------
// PostgreSQL binaries and the user the server runs as.

pub fn pg_bindir() -> PathBuf {
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

pub fn psql_binary(bindir: &Path) -> PathBuf {
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
pub fn server_user() -> Option<(Uid, Gid)> {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local_addr")
        .port()
}

pub fn show(output: &Output) -> String {
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
pub struct Cluster {
    /// `/tmp/refreshd-pg-XXXX`, 0755, owned by the test's user. Removed after the stop.
    pub root: TempDir,
    /// `root/pg`, owned by the server's user: data directory, socket directory, log.
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    pub bindir: PathBuf,
    pub psql: PathBuf,
    pub run_as: Option<(Uid, Gid)>,
    /// Whether `pg_ctl start` was attempted since the last stop (Drop then stops it).
    pub started: bool,
}

impl Cluster {
    pub fn start() -> Cluster {
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
            let start = cluster.pg_ctl_start();
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

    /// `program` with a clean environment (no PG* variables from ours), in the cluster's root.
    fn clean_command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("HOME", self.root.path())
            .current_dir(self.root.path());
        command
    }

    /// A server-side tool (initdb, pg_ctl) as the server's user, with a clean environment.
    pub fn server_command(&self, tool: &str) -> Command {
        let mut command = self.clean_command(&self.bindir.join(tool));
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups when root changes uid.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    /// psql with no PG* variables from our environment.
    pub fn psql_command(&self) -> Command {
        let mut command = self.clean_command(&self.psql);
        command.env("PGCONNECT_TIMEOUT", "5").arg("-X");
        command
    }

    /// Runs SQL as the superuser over the unix socket (trust).
    pub fn admin_sql(&self, sql: &str) {
        self.query("postgres", sql);
    }

    /// Runs one query as the superuser on `db` over the unix socket; its rows, `|`-separated.
    pub fn query(&self, db: &str, sql: &str) -> String {
        let output = self
            .psql_command()
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql])
            .output()
            .expect("run psql as postgres");
        assert!(output.status.success(), "query failed:\n{}", show(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Everything in database `db` as `pg_dump` writes it (schema and data).
    pub fn dump(&self, db: &str) -> String {
        let pg_dump = [
            self.bindir.join("pg_dump"),
            PathBuf::from("/usr/bin/pg_dump"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .expect("pg_dump beside psql: run scripts/install-test-peers");
        let output = self
            .clean_command(&pg_dump)
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .output()
            .expect("run pg_dump");
        assert!(
            output.status.success(),
            "pg_dump failed:\n{}",
            show(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) {
        let start = self.pg_ctl_start();
        assert!(
            start.status.success(),
            "pg_ctl start failed:\n{}",
            show(&start)
        );
    }

    /// `pg_ctl start` on `self.port`, waiting until it accepts connections.
    fn pg_ctl_start(&mut self) -> Output {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -k {} -p {} -c fsync=off",
            self.socket_dir.display(),
            self.port
        );
        self.started = true;
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .expect("run pg_ctl start")
    }

    /// Sets the password of `app` (scram-sha-256, the server default in 15).
    pub fn set_password(&self, password: &str) {
        // Dollar quoting: the body is taken verbatim, `'`, `\` and `$` included.
        const TAG: &str = "$refreshd_pw$";
        assert!(
            !password.contains("refreshd_pw"),
            "pick another dollar-quote tag"
        );
        self.admin_sql(&format!("ALTER ROLE app PASSWORD {TAG}{password}{TAG}"));
    }

    /// `psql -w` as `app` over TCP, whose only password source is `pgpass`.
    pub fn psql_as_app(&self, pgpass: &Path) -> Output {
        self.psql_command()
            .env("PGPASSFILE", pgpass)
            .args(["-w", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "app", "-d", "postgres", "-tAc", "select current_user"])
            .output()
            .expect("run psql as app")
    }

    pub fn assert_app_connects(&self, pgpass: &Path) {
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
    pub fn assert_app_refused(&self, pgpass: &Path) -> String {
        let output = self.psql_as_app(pgpass);
        assert!(
            !output.status.success(),
            "psql as app with PGPASSFILE={} should have failed:\n{}",
            pgpass.display(),
            show(&output)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn stop(&mut self) {
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
