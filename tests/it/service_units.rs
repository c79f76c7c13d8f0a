//! Proves that the service-manager files are valid and say what the daemon needs:
//! `systemd-analyze verify` accepts both systemd units without a single warning, the system
//! unit's `systemd-analyze security` exposure is at most 2.0, both launchd plists parse with
//! Python's `plistlib` and carry the keys launchd needs, and the units declare the contract
//! with the daemon (Type=notify, watchdog, SIGHUP reload, user, directories, EX_CONFIG).
//!
//! Needs `systemd-analyze` (Debian: `apt-get install systemd`) and `python3`; a missing tool
//! fails the test, it never skips. No running systemd is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Where the unit files say the binary is installed; replaced by the test-built binary in
/// the copies given to `systemd-analyze`, which checks that ExecStart= is executable.
const INSTALLED_BINARY: &str = "/usr/bin/refreshd";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a tool the test depends on; a missing tool fails with the package that provides it.
fn run(command: &mut Command, install: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not installed; install it with `{install}`")
        }
        Err(e) => panic!("running `{program}`: {e}"),
    }
}

fn systemd_analyze(args: &[&str], runtime_dir: &Path) -> Output {
    let mut command = Command::new("systemd-analyze");
    // `--user` needs a runtime directory to set up its manager, even offline.
    command.args(args).env("XDG_RUNTIME_DIR", runtime_dir);
    run(&mut command, "apt-get install systemd")
}

/// The `key=value` lines of a unit file, in order, without comments and section headers.
fn directives(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', ';', '[']))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect()
}

fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    directives(unit)
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

#[track_caller]
fn assert_directive(unit: &str, key: &str, expected: &str) {
    let found = values(unit, key);
    assert!(
        found.contains(&expected),
        "expected `{key}={expected}`, found {found:?}"
    );
}

/// A copy of `relative` in `dir`, under `name` (systemd-analyze names the unit after its
/// file), with ExecStart= pointing at the test-built binary. With `root_user`, User= and
/// Group= become root, so `verify` never depends on a `refreshd` account existing on this
/// machine; the real file's `User=refreshd` is checked separately.
fn unit_copy(relative: &str, name: &str, dir: &Path, root_user: bool) -> PathBuf {
    let original = read(relative);
    assert!(
        original.contains(INSTALLED_BINARY),
        "{relative} does not mention {INSTALLED_BINARY}"
    );
    // Quoted, with `%` escaped, so any build path is one ExecStart= argument.
    let binary = format!("\"{}\"", crate::common::refreshd_bin().replace('%', "%%"));
    let mut copy = original.replace(INSTALLED_BINARY, &binary);
    if root_user {
        copy = copy
            .replace("\nUser=refreshd\n", "\nUser=root\n")
            .replace("\nGroup=refreshd\n", "\nGroup=root\n");
    }
    let path = dir.join(name);
    std::fs::write(&path, copy).unwrap();
    path
}

/// `systemd-analyze verify` reports problems (unknown keys, bad values) as warnings on
/// stderr with exit status 0, so a clean unit is one with empty stderr. Nothing is
/// filtered: on this Debian 12 host (systemd 252, not booted with systemd) a correct unit
/// produces no output at all.
fn assert_verifies(unit: &Path, runtime_dir: &Path, mode: Option<&str>) {
    let mut args: Vec<&str> = mode.into_iter().collect();
    args.extend(["verify", "--man=no"]);
    let unit_arg = unit.to_str().unwrap();
    args.push(unit_arg);
    let output = systemd_analyze(&args, runtime_dir);
    let stderr = text(&output.stderr);
    println!("systemd-analyze {}", args.join(" "));
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify rejected {} ({}):\n{stderr}{}",
        unit.display(),
        output.status,
        text(&output.stdout)
    );
}

#[test]
fn system_unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(
        "systemd/refreshd.service",
        "refreshd.service",
        dir.path(),
        true,
    );
    assert_verifies(&unit, dir.path(), None);
}

#[test]
fn user_unit_verifies_without_warnings_in_user_mode() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(
        "systemd/refreshd-user.service",
        "refreshd.service",
        dir.path(),
        false,
    );
    assert_verifies(&unit, dir.path(), Some("--user"));
}

#[test]
fn system_unit_exposure_is_at_most_2_0() {
    let dir = tempfile::tempdir().unwrap();
    // The real User=refreshd: running as root would itself raise the exposure.
    let unit = unit_copy(
        "systemd/refreshd.service",
        "refreshd.service",
        dir.path(),
        false,
    );
    let unit_arg = unit.to_str().unwrap();
    // --threshold is in tenths: a non-zero exit status above 2.0.
    let args = ["security", "--offline=true", "--threshold=20", unit_arg];
    let output = systemd_analyze(&args, dir.path());
    let stdout = text(&output.stdout);
    let prefix = "Overall exposure level for refreshd.service:";
    let line = stdout
        .lines()
        .find(|line| line.contains(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no exposure line from `systemd-analyze {}`:\n{stdout}{}",
                args.join(" "),
                text(&output.stderr)
            )
        });
    println!("systemd-analyze {}\n{line}", args.join(" "));
    let score: f64 = line
        .split_once(prefix)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{stdout}");
    assert!(
        output.status.success(),
        "systemd-analyze security failed ({}):\n{}",
        output.status,
        text(&output.stderr)
    );
}

#[test]
fn system_unit_declares_the_daemon_contract() {
    let unit = read("systemd/refreshd.service");
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/bin/refreshd run -c /etc/refreshd/config.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WatchdogSec", "60s"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "78"),
        ("User", "refreshd"),
        ("Group", "refreshd"),
        ("StateDirectory", "refreshd"),
        ("StateDirectoryMode", "0700"),
        ("LogsDirectory", "refreshd"),
        ("RuntimeDirectory", "refreshd"),
        ("RuntimeDirectoryMode", "0700"),
        ("ConfigurationDirectory", "refreshd"),
        ("ProtectSystem", "strict"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        ),
        ("WantedBy", "multi-user.target"),
        ("Documentation", "man:refreshd(1) man:refreshd.toml(5)"),
    ] {
        assert_directive(&unit, key, value);
    }
    // A DynamicUser= uid cannot be named in the group ownership of target files.
    assert!(values(&unit, "DynamicUser").is_empty(), "DynamicUser= set");
    // The daemon (not root) takes its state directory and socket from $STATE_DIRECTORY and
    // $RUNTIME_DIRECTORY, which these set; no Environment= override should shadow them.
    assert!(values(&unit, "Environment").is_empty(), "Environment= set");
}

#[test]
fn user_unit_declares_the_daemon_contract() {
    let unit = read("systemd/refreshd-user.service");
    for (key, value) in [
        ("Type", "notify"),
        ("ExecStart", "/usr/bin/refreshd run"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WatchdogSec", "60s"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "78"),
        ("NoNewPrivileges", "yes"),
        ("WantedBy", "default.target"),
        ("Documentation", "man:refreshd(1) man:refreshd.toml(5)"),
    ] {
        assert_directive(&unit, key, value);
    }
    // A user manager cannot switch users.
    assert!(values(&unit, "User").is_empty(), "User= in a user unit");
}

/// The plist as JSON, read by Python's own `plistlib` (it rejects malformed XML and plists).
fn plist(relative: &str) -> Value {
    let path = repo_file(relative);
    let script = "import json, plistlib, sys\n\
                  with open(sys.argv[1], 'rb') as f:\n    \
                  print(json.dumps(plistlib.load(f)))";
    let output = run(
        Command::new("python3").args(["-c", script]).arg(&path),
        "apt-get install python3",
    );
    assert!(
        output.status.success(),
        "plistlib rejected {}:\n{}",
        path.display(),
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("plistlib printed JSON")
}

/// What both plists must hold; returns the log path.
fn assert_launchd_job(job: &Value, label: &str, arguments: &[&str]) -> String {
    assert_eq!(job["Label"], label);
    let argv: Vec<&str> = job["ProgramArguments"]
        .as_array()
        .expect("ProgramArguments is an array")
        .iter()
        .map(|a| a.as_str().expect("arguments are strings"))
        .collect();
    assert_eq!(argv, arguments);
    assert_eq!(job["RunAtLoad"], true);
    // Restart on failure or crash; a clean exit stays stopped.
    assert_eq!(job["KeepAlive"]["SuccessfulExit"], false, "{job}");
    // launchd cannot exempt exit status 78, so restarts must be throttled.
    assert!(job["ThrottleInterval"].as_u64() >= Some(10), "{job}");
    assert_eq!(job["ProcessType"], "Background");
    let out = job["StandardOutPath"].as_str().expect("StandardOutPath");
    let err = job["StandardErrorPath"]
        .as_str()
        .expect("StandardErrorPath");
    assert!(out.starts_with('/') && err.starts_with('/'), "{job}");
    out.to_owned()
}

#[test]
fn launch_daemon_plist_runs_refreshd_with_the_system_config() {
    let job = plist("launchd/com.refreshd.daemon.plist");
    let log = assert_launchd_job(
        &job,
        "com.refreshd.daemon",
        &[
            "/usr/local/bin/refreshd",
            "run",
            "-c",
            "/usr/local/etc/refreshd/config.toml",
        ],
    );
    assert_eq!(log, "/usr/local/var/log/refreshd/refreshd.log");
}

#[test]
fn launch_agent_plist_runs_refreshd_for_the_user() {
    let job = plist("launchd/com.refreshd.agent.plist");
    let log = assert_launchd_job(
        &job,
        "com.refreshd.agent",
        &["/usr/local/bin/refreshd", "run"],
    );
    // launchd expands neither ~ nor $HOME: a placeholder the operator must replace.
    assert_eq!(log, "/Users/USERNAME/Library/Logs/refreshd.log");
    let raw = read("launchd/com.refreshd.agent.plist");
    assert!(
        raw.contains("replace USERNAME"),
        "the agent plist must tell the operator to replace USERNAME"
    );
}
