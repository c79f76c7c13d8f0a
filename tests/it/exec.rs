//! `refreshd exec` with real processes: a Python program started with a credential's token
//! in its environment (it records, per start, its pid and the token's fingerprint, and the
//! names of its environment variables; per signal, which one) against the real
//! `oidc-provider` fixture (JWT access tokens, rotating refresh tokens).
//!
//! Both token sources: a running `refreshd run` (followed with `watch`, rotated with
//! `refreshd rotate`), and none (the credential tasks run inside `exec`, refreshing at the
//! refresh point of short-lived tokens). Then signal mode, SIGTERM within the grace period
//! and SIGKILL after it, `exec` as PID 1 of a new PID namespace reaping an orphan, and an
//! `exec` and a `run` on one host taking turns on one rotating grant.
//!
//! The program never prints a token (only fingerprints, into its own files); everything
//! refreshd printed is recorded and checked for leaked tokens.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Daemon, Oidc, Refreshd, eventually, fingerprint, require, require_root};
use nix::sys::signal::Signal;

/// Far more than any step needs on an idle machine.
const WAIT: Duration = Duration::from_secs(30);

/// The client secret, read by refreshd from this variable: the program must not see it.
const SECRET_VAR: &str = "API_CLIENT_SECRET";

/// The program `exec` runs: `program.py DIR VAR [ignore-term]`. Each start appends
/// `PID FINGERPRINT` to DIR/starts and writes its variables' names to DIR/env; SIGHUP and
/// SIGTERM append to DIR/signals (SIGTERM then exits 0, unless told to ignore it); once its
/// handlers are in place it appends its pid to DIR/ready.
const PROGRAM: &str = r#"
import hashlib, os, signal, sys, time
out, var = sys.argv[1], sys.argv[2]
ignore_term = len(sys.argv) > 3 and sys.argv[3] == "ignore-term"
def append(name, line):
    with open(os.path.join(out, name), "a") as f:
        f.write(line + "\n")
token = os.environ.get(var, "")
append("starts", "%d %s" % (os.getpid(), hashlib.sha256(token.encode()).hexdigest()[:8]))
with open(os.path.join(out, "env"), "w") as f:
    f.write("\n".join(sorted(os.environ)) + "\n")
signal.signal(signal.SIGHUP, lambda *_: append("signals", "HUP"))
def on_term(*_):
    append("signals", "TERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_term else on_term)
append("ready", str(os.getpid()))
while True:
    time.sleep(0.1)
"#;

/// PID 1's test: `orphan.py DIR` forks a child that forks a grandchild and exits at once,
/// so the grandchild (which exits at once too) is handed to PID 1. It then waits (at most
/// 20 s) for the grandchild to disappear from /proc, i.e. to be reaped, writes what it saw
/// (the grandchild's last state, PID 1's command line, every process's state) to
/// DIR/reaped, and exits 7.
const ORPHAN: &str = r#"
import os, sys, time
out = sys.argv[1]
child = os.fork()
if child == 0:
    grandchild = os.fork()
    if grandchild == 0:
        os._exit(0)
    with open(os.path.join(out, "grandchild"), "w") as f:
        f.write(str(grandchild))
    os._exit(0)
os.waitpid(child, 0)
grandchild = int(open(os.path.join(out, "grandchild")).read())
def state(pid):
    return open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[0]
seen = "never looked"
deadline = time.time() + 20
while time.time() < deadline:
    try:
        seen = state(grandchild)
    except FileNotFoundError:
        seen = "reaped"
        break
    time.sleep(0.05)
states = []
for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
    try:
        states.append("%s %s" % (pid, state(pid)))
    except OSError:
        pass
pid1 = open("/proc/1/cmdline").read().replace("\0", " ").strip()
with open(os.path.join(out, "reaped"), "w") as f:
    f.write("grandchild %s\npid1 %s\n%s\n" % (seen, pid1, "\n".join(states)))
sys.exit(7)
"#;

fn python() -> &'static str {
    let python = "/usr/bin/python3";
    require(
        Path::new(python),
        "python3 (Debian: `apt-get install python3`)",
    );
    python
}

/// One `oauth-refresh` credential `api` (client `rt-basic`, its secret read from
/// `$API_CLIENT_SECRET`) writing a token file, its control socket in the test's directory.
struct Setup {
    oidc: Oidc,
    r: Refreshd,
}

impl Setup {
    /// Access tokens live `ttl` seconds; `timing` is the credential's timing keys.
    fn new(ttl: u32, timing: &str) -> Setup {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), ttl);
        for dir in ["app", "out"] {
            std::fs::create_dir(r.path(dir)).unwrap();
        }
        let grant = oidc.grant("rt-basic");
        std::fs::write(r.path("bootstrap.refresh"), &grant.refresh_token).unwrap();
        std::fs::write(r.path("program.py"), PROGRAM).unwrap();
        std::fs::write(r.path("orphan.py"), ORPHAN).unwrap();
        let dir = r.dir.path().display();
        r.write_config(&format!(
            r#"control_socket = "{socket}"

[credentials.api]
{timing}
source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-basic", auth = "basic", client_secret = {{ env = "{SECRET_VAR}" }}, refresh_token = {{ file = "{dir}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
targets = [ {{ type = "file", path = "{dir}/app/token" }} ]
"#,
            socket = r.path("run/control.sock").display(),
            url = oidc.token_endpoint,
        ));
        Setup { oidc, r }
    }

    fn out(&self) -> PathBuf {
        self.r.path("out")
    }

    /// `refreshd ARGS` with the client secret in its environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.r.command(args);
        command.env(SECRET_VAR, "rt-basic-secret");
        command
    }

    /// `refreshd run`, once it has its first token.
    fn daemon(&self) -> Daemon {
        let mut daemon = self.r.spawn_with(self.command(&["run"]));
        daemon.wait_for("INFO ready", WAIT);
        daemon
    }

    /// `refreshd exec FLAGS --env API_TOKEN=api -- python3 program.py OUT API_TOKEN [MODE]`,
    /// with a variable of refreshd's own and one of the user's besides the secret's.
    fn exec(&self, flags: &[&str], mode: Option<&str>) -> Daemon {
        let program = self.r.path("program.py");
        let out = self.out();
        let mut args = vec!["exec", "--env", "API_TOKEN=api"];
        args.extend_from_slice(flags);
        args.extend([
            "--",
            python(),
            program.to_str().unwrap(),
            out.to_str().unwrap(),
            "API_TOKEN",
        ]);
        args.extend(mode);
        let mut command = self.command(&args);
        command
            .env("REFRESHD_EXTRA", "refreshd's own")
            .env("APP_SETTING", "the user's");
        self.r.spawn_with(command)
    }

    /// The lines of the program's file `name` (none yet: empty).
    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.out().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits for the program's `n`th start (and its handlers); each start's fingerprint.
    fn wait_for_starts(&self, n: usize) -> Vec<String> {
        eventually(&format!("start #{n} of the program"), WAIT, || {
            (self.lines("ready").len() >= n).then_some(())
        });
        self.lines("starts")
            .iter()
            .map(|line| line.split(' ').nth(1).unwrap().to_owned())
            .collect()
    }

    /// The fingerprint of the token in the state directory.
    fn stored(&self) -> String {
        let state = self.r.state("api");
        fingerprint(state["token"]["access_token"].as_str().unwrap())
    }

    fn refresh_grants(&self) -> u64 {
        self.oidc.count("by_grant", "refresh_token")
    }

    fn assert_clean_environment(&self) {
        let names = self.lines("env");
        assert!(names.iter().any(|n| n == "API_TOKEN"), "{names:?}");
        assert!(names.iter().any(|n| n == "APP_SETTING"), "{names:?}");
        assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
        for name in &names {
            assert!(
                !name.starts_with("REFRESHD_") && name != SECRET_VAR,
                "the program inherited {name}: {names:?}"
            );
        }
    }

    /// SIGTERM to `exec`: the program exits 0 on it, and so does `exec`.
    fn stop(&mut self, mut exec: Daemon) {
        exec.signal(Signal::SIGTERM);
        let status = exec.wait_exit(WAIT);
        self.r.record_daemon(&exec);
        assert_eq!(status.code(), Some(0), "exec:\n{}", exec.output());
    }
}

/// The value of `key=` in a text log line.
fn field(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_owned()
}

#[test]
fn restart_mode_follows_the_daemons_rotations() {
    let mut s = Setup::new(60, "refresh_at = \"50s\"\nmin_remaining = \"10s\"");
    let mut daemon = s.daemon();
    let mut exec = s.exec(&[], None);
    let first = s.wait_for_starts(1);
    assert_eq!(
        first,
        [s.stored()],
        "the program started with the current token"
    );
    exec.wait_for("source=daemon", WAIT);
    s.assert_clean_environment();

    let output = s.r.run(&["rotate", "api"]);
    assert_eq!(output.status.code(), Some(0));
    let starts = s.wait_for_starts(2);
    assert_eq!(starts[1], s.stored(), "restarted with the new token");
    assert_ne!(starts[1], starts[0]);
    let line = exec.wait_for("token rotated: restarting", WAIT);
    assert_eq!(field(&line, "credential"), "api");
    assert_eq!(field(&line, "old"), starts[0]);
    assert_eq!(field(&line, "new"), starts[1]);
    assert_eq!(s.lines("signals"), ["TERM"], "the old program got SIGTERM");
    s.assert_clean_environment();

    // A second rotation: the watch was issued again.
    assert_eq!(s.r.run(&["rotate", "api"]).status.code(), Some(0));
    let starts = s.wait_for_starts(3);
    assert_eq!(starts[2], s.stored());
    assert_eq!(s.refresh_grants(), 3, "exec itself refreshed nothing");

    // The daemon goes away: the program keeps running on its token, and exec follows the
    // next daemon once it answers.
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    exec.wait_for("lost the daemon", WAIT);
    let mut daemon = s.daemon();
    assert_eq!(s.lines("starts").len(), 3, "the program kept running");
    assert_eq!(s.r.run(&["rotate", "api"]).status.code(), Some(0));
    let starts = s.wait_for_starts(4);
    assert_eq!(starts[3], s.stored());
    exec.wait_for("the daemon answers again", WAIT);

    s.stop(exec);
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn without_a_daemon_it_refreshes_at_the_refresh_point_and_restarts_the_program() {
    // Tokens live 4 s and are due 2 s after issue.
    let mut s = Setup::new(
        4,
        "refresh_at = \"2s\"\nmin_remaining = \"1s\"\njitter = \"0s\"",
    );
    let mut exec = s.exec(&[], None);
    exec.wait_for("refreshing here", WAIT);
    exec.wait_for("source=in-process", WAIT);
    let starts = s.wait_for_starts(3);
    let mut distinct = starts.clone();
    distinct.dedup();
    assert_eq!(distinct, starts, "each start had a new token");
    assert!(
        exec.count("rotated credential=api") >= 3,
        "the rotations are exec's own:\n{}",
        exec.output()
    );
    // It IS a rotation: the state and the target hold what the program was given.
    eventually("the target holds the program's token", WAIT, || {
        let on_file = std::fs::read_to_string(s.r.path("app/token")).ok()?;
        let last = s.lines("starts").last()?.split(' ').nth(1)?.to_owned();
        (fingerprint(on_file.trim_end()) == last && s.stored() == last).then_some(())
    });
    s.assert_clean_environment();
    s.stop(exec);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn signal_mode_sends_the_signal_and_keeps_the_program() {
    let mut s = Setup::new(60, "refresh_at = \"50s\"\nmin_remaining = \"10s\"");
    let mut daemon = s.daemon();
    let mut exec = s.exec(&["--on-change", "signal:SIGHUP"], None);
    s.wait_for_starts(1);
    assert_eq!(s.r.run(&["rotate", "api"]).status.code(), Some(0));
    eventually("SIGHUP to the program", WAIT, || {
        (s.lines("signals") == ["HUP"]).then_some(())
    });
    exec.wait_for("token rotated: sending SIGHUP", WAIT);
    assert_eq!(s.lines("starts").len(), 1, "not restarted");
    // What a signalled program reads the new token from: the target refreshd wrote.
    let on_file = std::fs::read_to_string(s.r.path("app/token")).unwrap();
    assert_eq!(fingerprint(on_file.trim_end()), s.stored());

    // Other signals are forwarded as they come.
    exec.signal(Signal::SIGHUP);
    eventually("the forwarded SIGHUP", WAIT, || {
        (s.lines("signals").len() == 2).then_some(())
    });
    s.stop(exec);
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn sigterm_stops_the_program_and_sigkill_follows_after_the_grace_period() {
    let mut s = Setup::new(60, "refresh_at = \"50s\"\nmin_remaining = \"10s\"");
    // A program that exits on SIGTERM: exec exits with its status, 0.
    let exec = s.exec(&[], None);
    s.wait_for_starts(1);
    s.stop(exec);
    assert_eq!(s.lines("signals"), ["TERM"]);

    // One that ignores it is killed after --grace: 128 + SIGKILL.
    let mut exec = s.exec(&["--grace", "1s"], Some("ignore-term"));
    s.wait_for_starts(2);
    exec.signal(Signal::SIGTERM);
    let status = exec.wait_exit(WAIT);
    s.r.record_daemon(&exec);
    assert_eq!(status.code(), Some(137), "exec:\n{}", exec.output());
    assert_eq!(exec.count("after SIGTERM: SIGKILL"), 1, "{}", exec.output());
    let pid: i32 = s.lines("ready")[1].parse().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the program is gone"
    );
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn as_pid_1_it_reaps_orphans_and_exits_with_the_programs_status() {
    require_root("unshare --pid --mount-proc makes a new PID namespace");
    let mut s = Setup::new(60, "refresh_at = \"50s\"\nmin_remaining = \"10s\"");
    let out = s.out();
    let orphan = s.r.path("orphan.py");
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(crate::common::refreshd_bin())
        .args(["exec", "--env", "API_TOKEN=api", "--", python()])
        .args([&orphan, &out])
        .env("REFRESHD_CONFIG", &s.r.config)
        .env(SECRET_VAR, "rt-basic-secret")
        .env_remove("RUST_LOG");
    let mut exec = s.r.spawn_with(command);
    let status = exec.wait_exit(Duration::from_secs(60));
    s.r.record_daemon(&exec);
    let seen = std::fs::read_to_string(out.join("reaped")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(7),
        "the program's status; it saw:\n{seen}\nexec:\n{}",
        exec.output()
    );
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("grandchild reaped"), "{seen}");
    let pid1 = lines.next().unwrap_or_default();
    assert!(
        pid1.starts_with("pid1 ") && pid1.contains("refreshd exec --env API_TOKEN=api"),
        "PID 1 is refreshd exec: {seen}"
    );
    assert!(
        !lines.any(|line| line.ends_with(" Z")),
        "no zombie in the namespace: {seen}"
    );
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn exec_and_run_take_turns_on_one_rotating_grant() {
    // Tokens live 5 s and are due 2 s after issue (`iat` has whole seconds: any sooner and
    // a fresh token could be due within the second, which backs off), in both processes at
    // once (no jitter): every refresh point is a race for the credential's lock.
    let mut s = Setup::new(
        5,
        "refresh_at = \"2s\"\nmin_remaining = \"1s\"\njitter = \"0s\"",
    );
    let sleep = vec!["--on-change", "none", "--", "sleep", "600"];
    let mut args = vec!["exec", "--env", "API_TOKEN=api"];
    args.extend(sleep);
    let mut exec = s.r.spawn_with(s.command(&args));
    // exec first, alone: it refreshes in-process; then the daemon starts beside it.
    exec.wait_for("source=in-process", WAIT);
    let mut daemon = s.daemon();
    let start = s.refresh_grants();
    let exec_before = exec.count("rotated credential=api");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while s.refresh_grants() < start + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} rotations in 120 s:\nexec:\n{}\nrun:\n{}",
            s.refresh_grants() - start,
            exec.output(),
            daemon.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let by_exec = exec.count("rotated credential=api") - exec_before;
    let by_run = daemon.count("rotated credential=api");
    eprintln!(
        "{} refresh grants: exec made {by_exec}, run {by_run}",
        s.refresh_grants() - start
    );
    s.stop_quietly(&mut exec);
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    assert_eq!(
        s.oidc.count("by_error", "invalid_grant"),
        0,
        "a refresh token was spent twice:\nexec:\n{}\nrun:\n{}",
        exec.output(),
        daemon.output()
    );
    assert!(
        by_exec >= 1 && by_run >= 1,
        "both refreshed once both ran (exec {by_exec}, run {by_run}):\nexec:\n{}\nrun:\n{}",
        exec.output(),
        daemon.output()
    );
    assert_eq!(exec.count("refresh failed"), 0, "{}", exec.output());
    assert_eq!(daemon.count("refresh failed"), 0, "{}", daemon.output());
    s.r.assert_no_issued_tokens(&s.oidc);
}

impl Setup {
    /// SIGTERM to an `exec` running `sleep`: sleep dies of it, exec exits 143.
    fn stop_quietly(&mut self, exec: &mut Daemon) {
        exec.signal(Signal::SIGTERM);
        let status = exec.wait_exit(WAIT);
        self.r.record_daemon(exec);
        assert_eq!(status.code(), Some(143), "exec:\n{}", exec.output());
    }
}
