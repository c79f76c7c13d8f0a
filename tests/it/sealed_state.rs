//! Sealed local state (`[daemon] state_key`, issue 24 item 5) against the real
//! `oidc-provider` fixture with rotating refresh tokens:
//! - a daemon with a state key rotates; no token the provider issued is readable anywhere
//!   in the state directory, and every reader (`token` and `status` with no daemon, `check`,
//!   `once`) opens the sealed files;
//! - another key, or none, refuses with an error naming the file, spends no refresh token
//!   and changes no byte of the state directory; the right key then carries on;
//! - `refreshd state seal` then `unseal` round-trips the directory byte for byte, and is
//!   refused while the daemon runs.
//!
//! The key is a systemd credential (`{ systemd = "state-key" }`), as the README has it:
//! `$CREDENTIALS_DIRECTORY` is set as systemd sets it for `LoadCredentialEncrypted=`.
//! Every test ends with the leak check over everything refreshd printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{Daemon, Oidc, Refreshd, assert_success, refreshd_output, rt_basic_source};

const WAIT: Duration = Duration::from_secs(30);
/// What a sealed state file starts with.
const MAGIC: &[u8] = b"refreshd sealed state v1\n";

/// A refreshd whose config has `state_key = { systemd = "state-key" }` (when `sealed`) and
/// one credential `api` (rt-basic, refreshed every two seconds) writing `app/token`.
struct Sealed {
    r: Refreshd,
    oidc: Oidc,
    credentials: PathBuf,
    /// The credential's `source = …` line: one grant for the whole test (a new bootstrap
    /// refresh token would take over, and hide whether the stored one was spent).
    source: String,
}

impl Sealed {
    fn new() -> Sealed {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), 60);
        let credentials = r.path("credentials");
        std::fs::create_dir(&credentials).unwrap();
        std::fs::create_dir(r.path("app")).unwrap();
        let (_, source) = rt_basic_source(&r, &oidc);
        let sealed = Sealed {
            r,
            oidc,
            credentials,
            source,
        };
        sealed.set_key(&refreshd_output(&["store", "init-key"]));
        sealed.write_config(true);
        sealed
    }

    /// What systemd would put in `$CREDENTIALS_DIRECTORY/state-key`.
    fn set_key(&self, key: &str) {
        std::fs::write(self.credentials.join("state-key"), key).unwrap();
    }

    fn write_config(&self, sealed: bool) {
        let dir = self.r.dir.path().display().to_string();
        let source = &self.source;
        let key = if sealed {
            "state_key = { systemd = \"state-key\" }\n"
        } else {
            ""
        };
        self.r.write_config(&format!(
            r#"{key}control_socket = "{dir}/control.sock"

[credentials.api]
refresh_at = "2s"
min_remaining = "1s"
jitter = "0s"
{source}
targets = [ {{ type = "file", path = "{dir}/app/token" }} ]
"#
        ));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.r.command(args);
        command.env("CREDENTIALS_DIRECTORY", &self.credentials);
        command
    }

    fn run(&mut self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        self.r.record(&output);
        output
    }

    fn spawn(&self) -> Daemon {
        self.r.spawn_with(self.command(&["run"]))
    }

    fn refreshes(&self) -> u64 {
        self.oidc.count("by_grant", "refresh_token")
    }

    /// Every file in the state directory (not the `locks` directory), by name.
    fn state_files(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.r.state_dir())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    /// No token the provider ever issued is in any file of the state directory.
    fn assert_nothing_readable(&self) {
        let issued = self.oidc.issued();
        assert!(issued.len() >= 4, "too few tokens issued to prove anything");
        for (name, bytes) in self.state_files() {
            for token in &issued {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "an issued token is readable in the state directory's {name}"
                );
            }
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_sealed_state_directory_holds_no_readable_token_and_every_reader_opens_it() {
    let mut s = Sealed::new();
    let mut daemon = s.spawn();
    // Two rotations: the second spends the refresh token the first stored (sealed).
    daemon.wait_for_n("rotated credential=api", 2, WAIT);
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    let files = s.state_files();
    assert!(
        files["api.json"].starts_with(MAGIC),
        "api.json is not sealed"
    );
    s.assert_nothing_readable();

    // With no daemon, readers read the state directory themselves.
    // Printing the token is `token`'s job: its output is not recorded for the leak check.
    let token = s.command(&["token", "api"]).output().unwrap();
    assert_success(&token);
    let printed = String::from_utf8_lossy(&token.stdout).into_owned();
    let target = std::fs::read_to_string(s.r.path("app/token")).unwrap();
    assert_eq!(
        printed.trim(),
        target.trim(),
        "token read from sealed state"
    );
    for args in [&["status"][..], &["check"], &["once"]] {
        let output = s.run(args);
        assert_success(&output);
    }
    // A reader that cannot read the key (outside the unit) is told why, and reads nothing.
    let output = s.r.run(&["token", "api"]);
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains("[daemon] state_key") && said.contains("CREDENTIALS_DIRECTORY"),
        "{said}"
    );
    assert_eq!(
        s.state_files(),
        files,
        "readers changed the state directory"
    );
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn a_wrong_or_missing_key_refuses_naming_the_file_and_changes_nothing() {
    let mut s = Sealed::new();
    let right = std::fs::read_to_string(s.credentials.join("state-key")).unwrap();
    let output = s.run(&["once"]);
    assert_success(&output);
    let before = s.state_files();
    let spent = s.refreshes();
    let file = s.r.state_dir().join("api.json").display().to_string();

    s.set_key(&refreshd_output(&["store", "init-key"]));
    let mut daemon = s.spawn();
    let status = daemon.wait_exit(WAIT);
    s.r.record_daemon(&daemon);
    assert_eq!(status.code(), Some(78), "{}", daemon.output());
    let said = daemon.output();
    assert!(
        said.contains(&file) && said.contains("does not open with [daemon] state_key"),
        "{said}"
    );
    let output = s.run(&["once", "--force"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&file), "{}", stderr(&output));

    // No key at all: the same refusal, told to set one.
    s.write_config(false);
    let mut daemon = s.spawn();
    assert_eq!(daemon.wait_exit(WAIT).code(), Some(78));
    s.r.record_daemon(&daemon);
    assert!(
        daemon
            .output()
            .contains("is sealed: set [daemon] state_key"),
        "{}",
        daemon.output()
    );
    let after: BTreeMap<_, _> = s
        .state_files()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    let before: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    assert_eq!(after, before, "a refused key changed a state file");
    assert_eq!(s.refreshes(), spent, "a refused key spent a refresh token");

    // The right key again: the stored refresh token was never spent, so rotation goes on
    // (a lost grant would say needs_login).
    s.set_key(&right);
    s.write_config(true);
    let output = s.run(&["once", "--force"]);
    assert_success(&output);
    assert!(s.refreshes() > spent);
    s.assert_nothing_readable();
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn state_seal_then_unseal_round_trips_byte_for_byte_and_is_refused_while_the_daemon_runs() {
    let mut s = Sealed::new();
    s.write_config(false);
    assert_success(&s.run(&["once"]));
    let plain = s.state_files()["api.json"].clone();
    assert!(plain.starts_with(b"{"), "the plain state is JSON");

    s.write_config(true);
    let output = s.run(&["state", "seal"]);
    assert_success(&output);
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(said.contains("sealed 1 state files (api)"), "{said}");
    assert!(s.state_files()["api.json"].starts_with(MAGIC));
    s.assert_nothing_readable();
    assert_success(&s.run(&["state", "unseal"]));
    assert_eq!(
        s.state_files()["api.json"],
        plain,
        "seal then unseal is not byte for byte"
    );

    // Offline only: refused while a daemon holds the directory (which may rotate meanwhile,
    // sealed as every write is).
    assert_success(&s.run(&["state", "seal"]));
    let mut daemon = s.spawn();
    daemon.wait_for("started", WAIT);
    let output = s.run(&["state", "unseal"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("already running"),
        "{}",
        stderr(&output)
    );
    assert!(s.state_files()["api.json"].starts_with(MAGIC));
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}
