//! `refreshd run` as a whole process, from start to stop, with real peers (design §2, §4):
//!
//! - **Supervision**: a real `NOTIFY_SOCKET` listener (a Unix datagram socket bound by the
//!   test) sees `READY=1` with a `STATUS=` summary, `WATCHDOG=1` at the pace `WATCHDOG_USEC`
//!   asks for, `RELOADING=1` with a current `MONOTONIC_USEC` and then `READY=1` around a
//!   SIGHUP, and `STOPPING=1` on SIGTERM, in that order, and exit status 0.
//! - **Reload signals reach a real process**: a Python child (python-dotenv) receives exactly
//!   one SIGHUP per rotation and reads, each time, the very token refreshd logged as
//!   `fingerprint=`; a `pid_file` action whose `process_name` does not match the process
//!   sends nothing and says why.
//! - **Reconfiguration**: an editor-style save (write + rename) adds a credential, SIGHUP
//!   with another save removes one (its target stops changing), an invalid save is logged
//!   with file, line and key while the running configuration carries on, and credentials
//!   that did not change are not restarted (no extra token request).
//! - **SIGTERM during a rotation** waits for it: the new token is in the targets, `rotated`
//!   is logged before `stopped`, exit 0, and no temp file is left behind.
//! - **Restart** reuses the still-valid token: no token request, targets untouched.
//! - **One daemon per state directory**: a second `run` exits non-zero at once, naming the
//!   running one's pid, without disturbing it.
//! - **An invalid config at start** exits 78 naming file, line and key, with no side effects.
//!
//! The OAuth credentials run against the real `oidc-provider` fixture (JWT access tokens,
//! rotating refresh tokens); every test ends by checking that no token the fixture issued
//! appears in anything refreshd printed. Nothing here sleeps to prove a point: tests wait
//! (generously: the machine is shared) for log lines, datagrams or files.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::common::{Daemon, INSTALL, Oidc, Refreshd, assert_success, fingerprint, stderr};

/// How long to wait for anything that should happen "soon" on a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Helpers.

/// The `[daemon]` keys after `state_dir` (which `write_config` fills in): a control socket
/// of the test's own, so parallel tests (and root's default `/run/refreshd`) never collide.
fn daemon_keys(r: &Refreshd) -> String {
    format!(
        "control_socket = \"{}\"\n\n",
        r.path("control.sock").display()
    )
}

/// The full config text exactly as `Refreshd::write_config(body)` writes it.
fn config_text(r: &Refreshd, body: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\n\n{body}",
        r.state_dir().display()
    )
}

/// Saves the config the way editors do: a new file, renamed over the old one.
fn save_like_an_editor(r: &Refreshd, body: &str) {
    let tmp = r.path("config.toml.tmp");
    std::fs::write(&tmp, config_text(r, body)).unwrap();
    std::fs::rename(&tmp, &r.config).unwrap();
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in:\n{text}"))
        + 1
}

/// An `oauth-refresh` credential against the fixture (client `rt-basic`, basic auth), with
/// a bootstrap refresh token from a brand-new grant in `NAME.refresh`.
fn oauth_credential(
    r: &Refreshd,
    oidc: &Oidc,
    name: &str,
    timing: &str,
    targets: &str,
    extra: &str,
) -> String {
    let grant = oidc.grant("rt-basic");
    let dir = r.dir.path().display();
    std::fs::write(
        r.path(&format!("{name}.refresh")),
        format!("{}\n", grant.refresh_token),
    )
    .unwrap();
    std::fs::write(r.path("client.secret"), "rt-basic-secret").unwrap();
    format!(
        r#"[credentials.{name}]
{timing}
source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-basic", auth = "basic", client_secret = {{ file = "{dir}/client.secret" }}, refresh_token = {{ file = "{dir}/{name}.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
targets = [ {targets} ]
{extra}
"#,
        url = oidc.token_endpoint,
    )
}

/// A `command` credential printing `PREFIX-<nanoseconds>` (not a JWT: its life is
/// `default_lifetime`), refreshed every `every`.
fn command_credential(name: &str, prefix: &str, every: &str, target: &Path) -> String {
    format!(
        r#"[credentials.{name}]
default_lifetime = "60s"
refresh_at = "{every}"
min_remaining = "5s"
jitter = "0s"
source = {{ type = "command", argv = ["sh", "-c", "echo {prefix}-$(date +%s%N)"], format = "plain" }}
targets = [ {{ type = "file", path = "{}" }} ]
"#,
        target.display()
    )
}

/// The value of `key=` in a log line (up to the next space), if the line has that field.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    Some(line[start..].split(' ').next().unwrap_or(""))
}

/// Lines of everything the daemon printed so far.
fn lines(daemon: &Daemon) -> Vec<String> {
    daemon.output().lines().map(str::to_owned).collect()
}

/// Index of the `n`th (0-based) line containing `needle`.
fn nth_index(lines: &[String], needle: &str, n: usize) -> Option<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(n)
        .map(|(i, _)| i)
}

/// Polls until `ready()` holds; panics with `what` (and `context()`) after `timeout`.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dir_entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `CLOCK_MONOTONIC` in microseconds, the clock `MONOTONIC_USEC` is read from. std's
/// `Instant` is that clock on Linux; its Debug form is the only stable way to see the
/// raw value without another dependency.
fn monotonic_usec() -> u128 {
    let debug = format!("{:?}", Instant::now());
    let number = |key: &str| -> u128 {
        let start = debug
            .find(key)
            .unwrap_or_else(|| panic!("unexpected Instant format: {debug}"))
            + key.len();
        debug[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("unexpected Instant format: {debug}"))
    };
    number("tv_sec: ") * 1_000_000 + number("tv_nsec: ") / 1_000
}

/// Runs refreshd to completion like `Refreshd::run` (stdout and stderr kept apart and
/// recorded for the leak check), but panics after `timeout` instead of hanging when it
/// does not exit.
fn run_bounded(r: &mut Refreshd, args: &[&str], timeout: Duration) -> std::process::Output {
    let (out, err) = (r.path("bounded.stdout"), r.path("bounded.stderr"));
    let mut command = r.command(args);
    command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = ChildGuard(command.spawn().unwrap());
    let mut status = None;
    wait_until(
        &format!("refreshd {args:?} to exit"),
        timeout,
        || {
            status = child.0.try_wait().unwrap();
            status.is_some()
        },
        || format!("{}{}", read(&out), read(&err)),
    );
    let output = std::process::Output {
        status: status.unwrap(),
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    r.record(&output);
    output
}

/// A process the test started; killed when dropped (also when the test panics).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A service manager's notification socket: every datagram, in order of arrival.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> NotifySocket {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (messages, stop) = (messages.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv(&mut buf) {
                        Ok(n) => messages
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => panic!("notify socket: {e}"),
                    }
                }
            })
        };
        NotifySocket {
            path,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until a datagram after index `after` satisfies `matches`; its index.
    fn wait_for(
        &self,
        what: &str,
        after: Option<usize>,
        daemon: &Daemon,
        matches: impl Fn(&str) -> bool,
    ) -> usize {
        let from = after.map_or(0, |i| i + 1);
        let mut found = None;
        wait_until(
            what,
            WAIT,
            || {
                found = self
                    .messages()
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, m)| matches(m))
                    .map(|(i, _)| i);
                found.is_some()
            },
            || self.context(daemon),
        );
        found.unwrap()
    }

    fn context(&self, daemon: &Daemon) -> String {
        format!(
            "datagrams: {:#?}\nrefreshd printed:\n{}",
            self.messages(),
            daemon.output()
        )
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

// ---------------------------------------------------------------------------------------
// 1. sd_notify.

/// What a package does: start the service with a config that has no credentials. It must be
/// ready at once (systemd fails a `Type=notify` unit that never sends READY=1), idle, and take
/// up a credential as soon as the file is saved.
#[test]
fn an_empty_config_is_ready_at_once_and_picks_up_an_edit() {
    let r = Refreshd::new();
    r.write_config(&format!("{}# no credentials yet\n", daemon_keys(&r)));
    let notify = NotifySocket::bind(r.path("notify.sock"));
    let mut command = r.command(&["run"]);
    command.env("NOTIFY_SOCKET", &notify.path);
    let mut daemon = r.spawn_with(command);
    let ready = notify.wait_for("READY=1 with no credentials", None, &daemon, |m| {
        has_line(m, "READY=1")
    });
    assert!(
        has_line(
            &notify.messages()[ready],
            "STATUS=no credentials configured"
        ),
        "{:?}",
        notify.messages()
    );

    let target = r.path("later.token");
    r.write_config(&format!(
        "{}{}",
        daemon_keys(&r),
        command_credential("later", "later", "50s", &target)
    ));
    daemon.wait_for("rotated credential=later ", WAIT);
    assert!(read(&target).starts_with("later-"));
    daemon.terminate(WAIT);
}

#[test]
fn notifies_the_service_manager_through_start_reload_and_stop() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 20);
    let dir = r.dir.path().display().to_string();
    r.write_config(&format!(
        "{}{}",
        daemon_keys(&r),
        oauth_credential(
            &r,
            &oidc,
            "api",
            "refresh_at = \"15s\"\nmin_remaining = \"5s\"\njitter = \"0s\"",
            &format!("{{ type = \"file\", path = \"{dir}/api.token\" }}"),
            "",
        )
    ));
    let notify = NotifySocket::bind(r.path("notify.sock"));

    let mut command = r.command(&["run"]);
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID");
    let mut daemon = r.spawn_with(command);

    // READY=1 once the credential holds a token, with a one-line summary.
    let ready = notify.wait_for("READY=1", None, &daemon, |m| has_line(m, "READY=1"));
    let message = &notify.messages()[ready];
    let status = message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without STATUS=: {message:?}"));
    assert!(
        status.starts_with("1 credential ok; next: api in "),
        "{message:?}"
    );
    assert!(r.path("api.token").exists(), "READY=1 before a token");
    daemon.wait_for("ready", WAIT);

    // WATCHDOG_USEC=2 s: pings every second or so (a daemon ignoring it and pinging on its
    // own 30 s default would be killed by systemd, and fails the 10 s limit here).
    let since_ready = Instant::now();
    let mut watchdogs = 0;
    wait_until(
        "two WATCHDOG=1 after READY=1",
        Duration::from_secs(10),
        || {
            watchdogs = notify.messages()[ready + 1..]
                .iter()
                .filter(|m| has_line(m, "WATCHDOG=1"))
                .count();
            watchdogs >= 2
        },
        || notify.context(&daemon),
    );
    assert!(since_ready.elapsed() < Duration::from_secs(10));

    // SIGHUP: RELOADING=1 with the monotonic time of the reload, then READY=1 again.
    let before_hup = notify.messages().len();
    let hup_at = monotonic_usec();
    daemon.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", before_hup.checked_sub(1), &daemon, |m| {
        has_line(m, "RELOADING=1")
    });
    let received_at = monotonic_usec();
    let message = notify.messages()[reloading].clone();
    let usec: u128 = message
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {message:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("MONOTONIC_USEC is not a number ({e}): {message:?}"));
    assert!(
        (hup_at..=received_at).contains(&usec),
        "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC at the reload (between {hup_at} and {received_at}): {message:?}"
    );
    let ready_again = notify.wait_for("READY=1 after RELOADING=1", Some(reloading), &daemon, |m| {
        has_line(m, "READY=1")
    });
    daemon.wait_for("config reloaded (SIGHUP)", WAIT);

    // SIGTERM: STOPPING=1, then a clean exit.
    daemon.signal(Signal::SIGTERM);
    let stopping = notify.wait_for("STOPPING=1", Some(ready_again), &daemon, |m| {
        has_line(m, "STOPPING=1")
    });
    let exit = daemon.wait_exit(WAIT);
    assert_eq!(exit.code(), Some(0), "{}", daemon.output());

    let messages = notify.messages();
    assert!(ready < reloading && reloading < ready_again && ready_again < stopping);
    // Nothing claims readiness or reloading once stopping was announced.
    assert!(
        messages[stopping + 1..]
            .iter()
            .all(|m| !has_line(m, "READY=1") && !has_line(m, "RELOADING=1")),
        "{messages:#?}"
    );
    assert_eq!(
        messages.iter().filter(|m| has_line(m, "READY=1")).count(),
        2,
        "READY=1 at start and after the reload only: {messages:#?}"
    );

    r.record_daemon(&daemon);
    r.assert_no_secrets(&["rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

// ---------------------------------------------------------------------------------------
// 2. A real process receiving reload signals.

const SIGHUP_COUNTER: &str = r#"
import hashlib, os, signal, sys
from dotenv import dotenv_values

pid_file, env_file, key, log = sys.argv[1:5]

def append(line):
    with open(log, "a") as f:
        f.write(line + "\n")

def on_hup(signum, frame):
    value = dotenv_values(env_file).get(key)
    append(hashlib.sha256(value.encode()).hexdigest()[:8] if value is not None else "missing")

def on_usr1(signum, frame):
    append("barrier")

signal.signal(signal.SIGHUP, on_hup)
signal.signal(signal.SIGUSR1, on_usr1)
with open(pid_file + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.rename(pid_file + ".tmp", pid_file)
while True:
    signal.pause()
"#;

#[test]
fn a_real_process_gets_one_sighup_per_rotation_and_reads_the_logged_token() {
    let python = crate::common::repo().join(".test-peers/venv/bin/python");
    assert!(
        python.exists(),
        "python-dotenv's venv is missing at {}: {INSTALL}",
        python.display()
    );
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 15);
    let dir = r.dir.path().display().to_string();
    std::fs::create_dir(r.path("app")).unwrap();
    std::fs::create_dir(r.path("other")).unwrap();
    std::fs::write(r.path("app/.env"), "# the app's settings\nMODE=test\n").unwrap();

    let script = r.path("counter.py");
    std::fs::write(&script, SIGHUP_COUNTER).unwrap();
    let (pid_file, hup_log) = (r.path("app.pid"), r.path("hups.log"));
    let child = Command::new(&python)
        .arg(&script)
        .arg(&pid_file)
        .arg(r.path("app/.env"))
        .arg("APP_TOKEN")
        .arg(&hup_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(r.path("counter.stderr")).unwrap())
        .spawn()
        .unwrap();
    let child = ChildGuard(child);
    let child_pid = child.0.id();
    wait_until(
        "the child's pid file",
        WAIT,
        || pid_file.exists(),
        || read(&r.path("counter.stderr")),
    );
    assert_eq!(read(&pid_file).trim(), child_pid.to_string());
    // What `ps` shows for the venv's python (the kernel cuts it at 15 bytes).
    let comm = read(Path::new(&format!("/proc/{child_pid}/comm")))
        .trim_end()
        .to_owned();
    assert!(!comm.is_empty() && comm.len() <= 15, "{comm:?}");

    let body = format!(
        "{}{}{}reload = [ {{ signal = \"SIGHUP\", pid_file = \"{pid}\", process_name = \"not-this-one\" }} ]\n",
        daemon_keys(&r),
        oauth_credential(
            &r,
            &oidc,
            "app",
            "refresh_at = \"8s\"\nmin_remaining = \"4s\"\njitter = \"1s\"",
            &format!("{{ type = \"dotenv\", path = \"{dir}/app/.env\", key = \"APP_TOKEN\" }}"),
            &format!(
                "reload = [ {{ signal = \"SIGHUP\", pid_file = \"{}\", process_name = \"{comm}\" }} ]",
                pid_file.display()
            ),
        ),
        command_credential("stale", "stale", "3s", &r.path("other/token")),
        pid = pid_file.display(),
    );
    r.write_config(&body);
    let mut daemon = r.spawn(&["run"]);

    // The first rotation at start, then two on schedule.
    daemon.wait_for_n("rotated credential=app ", 3, WAIT);
    daemon.wait_for_n("not signalled", 2, WAIT);
    daemon.terminate(WAIT);

    // Every SIGHUP refreshd sent was sent before it exited. Python runs pending handlers in
    // signal-number order, so once SIGUSR1's line is written every SIGHUP has been handled.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child_pid as i32),
        Signal::SIGUSR1,
    )
    .unwrap();
    wait_until(
        "the child's barrier line",
        WAIT,
        || {
            std::fs::read_to_string(&hup_log)
                .unwrap_or_default()
                .contains("barrier\n")
        },
        || {
            format!(
                "child log:\n{}\nchild stderr:\n{}",
                std::fs::read_to_string(&hup_log).unwrap_or_default(),
                read(&r.path("counter.stderr"))
            )
        },
    );
    let seen: Vec<String> = read(&hup_log)
        .lines()
        .take_while(|l| *l != "barrier")
        .map(str::to_owned)
        .collect();

    let output = lines(&daemon);
    let rotated: Vec<&String> = output
        .iter()
        .filter(|l| l.contains("rotated credential=app "))
        .collect();
    let logged: Vec<String> = rotated
        .iter()
        .map(|l| field(l, "fingerprint").unwrap().to_owned())
        .collect();
    for line in &rotated {
        assert_eq!(field(line, "targets"), Some("1"), "{line}");
        assert_eq!(field(line, "reloads"), Some("1"), "{line}");
        assert_eq!(field(line, "reload_errors"), Some("0"), "{line}");
    }
    assert_eq!(
        seen,
        logged,
        "the child's SIGHUPs (and the token it read at each) differ from the rotations logged; refreshd printed:\n{}",
        daemon.output()
    );
    // The app's other settings are untouched.
    assert!(read(&r.path("app/.env")).starts_with("# the app's settings\nMODE=test\n"));

    // The action with the wrong process name sent nothing, and said why.
    let refusals: Vec<&String> = output
        .iter()
        .filter(|l| l.contains("not signalled"))
        .collect();
    let stale_rotations = daemon.count("rotated credential=stale ");
    assert_eq!(refusals.len(), stale_rotations, "{}", daemon.output());
    for line in &refusals {
        assert!(
            line.contains("credential=stale")
                && line.contains(&format!("pid {child_pid} is \"{comm}\""))
                && line.contains("\"not-this-one\""),
            "{line}"
        );
    }
    for line in output
        .iter()
        .filter(|l| l.contains("rotated credential=stale "))
    {
        assert_eq!(field(line, "reload_errors"), Some("1"), "{line}");
    }
    drop(child);

    r.record_daemon(&daemon);
    r.assert_no_secrets(&["rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

// ---------------------------------------------------------------------------------------
// 3. Reconfiguration.

#[test]
fn config_edits_and_sighup_add_and_remove_credentials_and_bad_edits_are_refused() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 300);
    let dir = r.dir.path().display().to_string();
    // A credential that stays throughout: it must never be restarted (no new token request).
    let steady = oauth_credential(
        &r,
        &oidc,
        "steady",
        "refresh_at = \"250s\"\nmin_remaining = \"30s\"\njitter = \"0s\"",
        &format!("{{ type = \"file\", path = \"{dir}/steady.token\" }}"),
        "",
    );
    let alpha = command_credential("alpha", "alpha", "2s", &r.path("alpha.token"));
    let bravo = command_credential("bravo", "bravo", "2s", &r.path("bravo.token"));
    let keys = daemon_keys(&r);
    r.write_config(&format!("{keys}{alpha}{steady}"));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("ready", WAIT);
    daemon.wait_for_n("rotated credential=alpha ", 2, WAIT);

    // (a) An editor-style save adding bravo.
    save_like_an_editor(&r, &format!("{keys}{alpha}{bravo}{steady}"));
    let line = daemon.wait_for("config reloaded", WAIT);
    assert!(line.contains("(the config file changed)"), "{line}");
    assert_eq!(field(&line, "added"), Some("bravo"), "{line}");
    assert_eq!(field(&line, "removed"), Some(""), "{line}");
    assert_eq!(field(&line, "changed"), Some(""), "{line}");
    daemon.wait_for("rotated credential=bravo ", WAIT);
    wait_until(
        "bravo's target",
        WAIT,
        || r.path("bravo.token").exists(),
        || daemon.output(),
    );
    let token = read(&r.path("bravo.token"));
    assert!(token.starts_with("bravo-"), "{token:?}");

    // (b) Another save removing alpha, and SIGHUP (whichever of the two is noticed first
    // reloads; the other finds nothing new).
    save_like_an_editor(&r, &format!("{keys}{bravo}{steady}"));
    daemon.signal(Signal::SIGHUP);
    let line = daemon.wait_for("removed=alpha", WAIT);
    assert!(line.contains("config reloaded"), "{line}");
    assert_eq!(field(&line, "added"), Some(""), "{line}");
    assert_eq!(field(&line, "changed"), Some(""), "{line}");
    // Alpha's target is frozen from the next bravo rotation on (a rotation already in
    // flight at the reload may finish), across three more of bravo's 2-second periods.
    let bravo_before = daemon.count("rotated credential=bravo ");
    daemon.wait_for_n("rotated credential=bravo ", bravo_before + 1, WAIT);
    let alpha_token = read(&r.path("alpha.token"));
    let alpha_rotations = daemon.count("rotated credential=alpha ");
    daemon.wait_for_n("rotated credential=bravo ", bravo_before + 4, WAIT);
    assert_eq!(read(&r.path("alpha.token")), alpha_token);
    assert_eq!(
        daemon.count("rotated credential=alpha "),
        alpha_rotations,
        "{}",
        daemon.output()
    );
    assert_eq!(daemon.count("removed=alpha"), 1, "{}", daemon.output());

    // A SIGHUP on its own reloads too (no file event can have caused this one).
    let reloads = daemon.count("config reloaded");
    daemon.signal(Signal::SIGHUP);
    let line = daemon.wait_for_n("config reloaded", reloads + 1, WAIT);
    assert!(line.contains("config reloaded (SIGHUP)"), "{line}");
    assert_eq!(
        (
            field(&line, "added"),
            field(&line, "removed"),
            field(&line, "changed")
        ),
        (Some(""), Some(""), Some("")),
        "{line}"
    );

    // (c) An invalid save: logged with file, line and key; the running config carries on.
    let bad_bravo = bravo.replace(
        &format!("path = \"{}\" }}", r.path("bravo.token").display()),
        &format!(
            "path = \"{}\", colour = \"red\" }}",
            r.path("bravo.token").display()
        ),
    );
    assert_ne!(bad_bravo, bravo);
    let bad_body = format!("{keys}{bad_bravo}{steady}");
    let bad_line = line_of(&config_text(&r, &bad_body), "colour");
    save_like_an_editor(&r, &bad_body);
    let error = daemon.wait_for("the new configuration is invalid", WAIT);
    assert!(error.contains("ERROR"), "{error}");
    assert!(
        error.contains(&format!("{}:{bad_line}:", r.config.display())) && error.contains("colour"),
        "the error names neither {}:{bad_line} nor the key: {error}",
        r.config.display()
    );
    // SIGHUP with the bad file in place: the same refusal.
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_n("the new configuration is invalid", 2, WAIT);
    let bravo_now = daemon.count("rotated credential=bravo ");
    daemon.wait_for_n("rotated credential=bravo ", bravo_now + 2, WAIT);

    // The daemon still answers (asked through a valid config naming the same socket).
    let probe = r.path("probe.toml");
    std::fs::write(&probe, config_text(&r, &keys)).unwrap();
    let status = r.run(&["status", "--json", "-c", probe.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let snapshot: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(snapshot["from"], "daemon", "{snapshot}");
    let names: Vec<&String> = snapshot["credentials"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names, ["bravo", "steady"], "{snapshot}");

    // No reload restarted the unchanged OAuth credential.
    assert!(
        daemon
            .output()
            .lines()
            .all(|l| !l.contains("config reloaded") || field(l, "changed") == Some("")),
        "{}",
        daemon.output()
    );
    assert_eq!(oidc.count("by_grant", "refresh_token"), 1);
    assert_eq!(daemon.count("rotated credential=steady "), 1);

    daemon.terminate(WAIT);
    r.record_daemon(&daemon);
    r.assert_no_secrets(&["rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

// ---------------------------------------------------------------------------------------
// 4. SIGTERM during a rotation.

/// Prints `tok-N-<ns>`; from the second run on it first touches `in-flight` and sleeps 4 s.
const SLOW_SOURCE: &str = r#"
dir="$1"
n=$(cat "$dir/runs" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$dir/runs"
if [ "$n" -ge 2 ]; then
    touch "$dir/in-flight"
    sleep 4
fi
echo "tok-$n-$(date +%s%N)"
"#;

#[test]
fn sigterm_waits_for_the_rotation_in_flight_and_leaves_no_temp_file() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 300);
    let dir = r.dir.path().display().to_string();
    std::fs::create_dir(r.path("app")).unwrap();
    std::fs::write(r.path("app/.env"), "KEEP=1\n").unwrap();
    std::fs::write(r.path("slow.sh"), SLOW_SOURCE).unwrap();
    let api = oauth_credential(
        &r,
        &oidc,
        "api",
        "refresh_at = \"250s\"\nmin_remaining = \"30s\"\njitter = \"0s\"",
        &format!("{{ type = \"file\", path = \"{dir}/api.token\" }}"),
        "",
    );
    r.write_config(&format!(
        r#"{keys}{api}
[credentials.slow]
default_lifetime = "60s"
refresh_at = "2s"
min_remaining = "5s"
jitter = "0s"
timeout = "30s"
source = {{ type = "command", argv = ["sh", "{dir}/slow.sh", "{dir}"], format = "plain" }}
targets = [
  {{ type = "file", path = "{dir}/app/token" }},
  {{ type = "dotenv", path = "{dir}/app/.env", key = "SLOW_TOKEN" }},
]
"#,
        keys = daemon_keys(&r),
    ));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("rotated credential=slow ", WAIT);
    let first = read(&r.path("app/token"));
    assert!(first.starts_with("tok-1-"), "{first:?}");

    // The second run is sleeping inside the rotation: stop now.
    let in_flight = r.path("in-flight");
    wait_until(
        "the second rotation to start",
        WAIT,
        || in_flight.exists(),
        || daemon.output(),
    );
    daemon.signal(Signal::SIGTERM);
    let exit = daemon.wait_exit(WAIT);
    assert_eq!(exit.code(), Some(0), "{}", daemon.output());

    let output = lines(&daemon);
    let sigterm = nth_index(&output, "SIGTERM", 0).expect("SIGTERM logged");
    let rotated = nth_index(&output, "rotated credential=slow ", 1).unwrap_or_else(|| {
        panic!(
            "the rotation in flight was not finished:\n{}",
            daemon.output()
        )
    });
    let stopped = nth_index(&output, "INFO stopped", 0).expect("stopped logged");
    assert!(
        sigterm < rotated && rotated < stopped,
        "expected SIGTERM, then rotated, then stopped:\n{}",
        daemon.output()
    );
    assert_eq!(read(&r.path("runs")).trim(), "2", "no third run");

    let token = read(&r.path("app/token"));
    let token = token.strip_suffix('\n').unwrap_or(&token).to_owned();
    assert!(token.starts_with("tok-2-"), "{token:?}");
    assert_eq!(
        read(&r.path("app/.env")),
        format!("KEEP=1\nSLOW_TOKEN={token}\n")
    );
    assert_eq!(
        field(&output[rotated], "fingerprint"),
        Some(fingerprint(&token).as_str()),
        "{}",
        output[rotated]
    );

    // Only the targets: no temp file in the target directory, none in the state directory.
    assert_eq!(
        dir_entries(&r.path("app")),
        BTreeSet::from([".env".to_owned(), "token".to_owned()])
    );
    let state = dir_entries(&r.state_dir());
    assert!(
        state.iter().all(|n| !n.contains("tmp")),
        "a temp file was left in the state directory: {state:?}"
    );
    assert!(
        !r.path("control.sock").exists(),
        "the control socket outlived the daemon"
    );

    r.record_daemon(&daemon);
    r.assert_no_secrets(&[first.trim(), token.as_str(), "rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

// ---------------------------------------------------------------------------------------
// 5. Restart.

#[test]
fn a_restart_reuses_the_still_valid_token() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 120);
    let dir = r.dir.path().display().to_string();
    std::fs::create_dir(r.path("app")).unwrap();
    r.write_config(&format!(
        "{}{}",
        daemon_keys(&r),
        oauth_credential(
            &r,
            &oidc,
            "api",
            "refresh_at = \"100s\"\nmin_remaining = \"10s\"\njitter = \"2s\"",
            &format!(
                "{{ type = \"file\", path = \"{dir}/app/token\" }}, {{ type = \"dotenv\", path = \"{dir}/app/.env\", key = \"API_TOKEN\" }}"
            ),
            "",
        )
    ));

    let mut first = r.spawn(&["run"]);
    first.wait_for("rotated credential=api ", WAIT);
    first.wait_for("ready", WAIT);
    first.terminate(WAIT);
    r.record_daemon(&first);
    let grants = oidc.count("by_grant", "refresh_token");
    assert_eq!(grants, 1);
    let token = read(&r.path("app/token"));
    let env = read(&r.path("app/.env"));
    let env_mtime = std::fs::metadata(r.path("app/.env"))
        .unwrap()
        .modified()
        .unwrap();

    let mut second = r.spawn(&["run"]);
    let ready = second.wait_for("ready", WAIT);
    assert!(ready.contains("1 credential ok"), "{ready}");
    assert_eq!(
        oidc.count("by_grant", "refresh_token"),
        grants,
        "the restart refreshed a still-valid token:\n{}",
        second.output()
    );
    assert_eq!(second.count("rotated"), 0, "{}", second.output());
    assert_eq!(read(&r.path("app/token")), token);
    assert_eq!(read(&r.path("app/.env")), env);
    assert_eq!(
        std::fs::metadata(r.path("app/.env"))
            .unwrap()
            .modified()
            .unwrap(),
        env_mtime,
        "a current value was rewritten"
    );
    second.terminate(WAIT);

    r.record_daemon(&second);
    r.assert_no_secrets(&["rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

// ---------------------------------------------------------------------------------------
// 6. One daemon per state directory.

#[test]
fn a_second_daemon_on_the_same_state_directory_exits_at_once() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 300);
    let dir = r.dir.path().display().to_string();
    r.write_config(&format!(
        "{}{}",
        daemon_keys(&r),
        oauth_credential(
            &r,
            &oidc,
            "api",
            "refresh_at = \"250s\"\nmin_remaining = \"30s\"",
            &format!("{{ type = \"file\", path = \"{dir}/api.token\" }}"),
            "",
        )
    ));
    let mut first = r.spawn(&["run"]);
    first.wait_for("ready", WAIT);
    let lock = r.state_dir().join(".daemon.lock");
    assert_eq!(read(&lock).trim(), first.pid().to_string());

    let second = run_bounded(&mut r, &["run"], Duration::from_secs(30));
    let printed = stderr(&second);
    assert!(!second.status.success(), "{}: {printed}", second.status);
    assert!(
        printed.contains("already running") && printed.contains(&first.pid().to_string()),
        "{printed}"
    );

    // The first one is undisturbed: its lock, its socket, its answers.
    assert_eq!(read(&lock).trim(), first.pid().to_string());
    let status = r.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let snapshot: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(snapshot["from"], "daemon", "{snapshot}");
    assert_eq!(oidc.count("by_grant", "refresh_token"), 1);

    first.terminate(WAIT);
    r.record_daemon(&first);
    r.assert_no_secrets(&["rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

// ---------------------------------------------------------------------------------------
// 7. Invalid config at start.

#[test]
fn an_invalid_config_stops_the_start_with_78_naming_file_line_and_key() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 300);
    // An inline refresh token next to the mistakes: no error may quote it.
    let grant = oidc.grant("rt-basic");
    let dir = r.dir.path().display().to_string();
    let valid = format!(
        r#"{keys}[credentials.app]
source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-public", refresh_token = "{rt}" }}
targets = [
  {{ type = "dotenv", path = "{dir}/app/.env", key = "APP_TOKEN" }},
]
"#,
        keys = daemon_keys(&r),
        url = oidc.token_endpoint,
        rt = grant.refresh_token,
    );
    let cases = [
        // An unknown key: the TOML layer's error, with line and column.
        (
            valid.replace("refresh_token = \"", "colour = \"red\", refresh_token = \""),
            "colour",
            "colour",
        ),
        // A semantic error: `file:line: key: message`.
        (
            valid.replace("key = \"APP_TOKEN\"", "key = \"APP-TOKEN\""),
            "APP-TOKEN",
            "credentials.app.targets[0].key",
        ),
    ];
    for (body, marker, key) in cases {
        r.write_config(&body);
        std::fs::set_permissions(
            &r.config,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let line = line_of(&config_text(&r, &body), marker);
        let output = run_bounded(&mut r, &["run"], Duration::from_secs(30));
        let printed = stderr(&output);
        assert_eq!(output.status.code(), Some(78), "{printed}");
        let at = format!("{}:{line}:", r.config.display());
        assert!(printed.contains(&at), "does not name {at}: {printed}");
        assert!(printed.contains(key), "does not name {key}: {printed}");
        if key.contains('.') {
            assert!(printed.contains(&format!("{at} {key}:")), "{printed}");
        }
        // Refused before doing anything: no state directory, no socket.
        assert!(!r.state_dir().exists(), "{printed}");
        assert!(!r.path("control.sock").exists(), "{printed}");
    }
    r.assert_no_secrets(&[&grant.refresh_token, &grant.access_token]);
    r.assert_no_issued_tokens(&oidc);
}

/// design §4: a refreshed token that is due again at once (its expiry did not move forward,
/// or it lives shorter than `min_remaining`) is backed off, not refreshed in a loop.
#[test]
fn a_token_due_as_soon_as_it_arrives_is_backed_off_not_looped() {
    let mut r = Refreshd::new();
    let calls = r.path("calls");
    // Every token lives 5 s, far less than min_remaining: each one is due on arrival.
    std::fs::write(
        r.path("short.sh"),
        format!(
            "echo x >> {calls}\nprintf '{{\"access_token\":\"short-%s\",\"expires_in\":5}}' \"$(date +%s%N)\"\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    r.write_config(&format!(
        r#"{keys}[credentials.short]
min_remaining = "10m"
retry = {{ initial = "1s", max = "2s" }}
source = {{ type = "command", argv = ["sh", "{dir}/short.sh"], format = "json" }}
targets = [ {{ type = "file", path = "{dir}/short.token" }} ]
"#,
        keys = daemon_keys(&r),
        dir = r.dir.path().display(),
    ));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for_n("already due", 2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4));
    let count = read(&calls).lines().count();
    daemon.terminate(Duration::from_secs(60));
    // Backoff of at least a second per attempt bounds the calls; a loop makes hundreds.
    assert!(
        (2..=12).contains(&count),
        "{count} fetches in a few seconds; refreshd printed:\n{}",
        daemon.output()
    );
    assert!(daemon.output().contains("retry_in="));
    r.record_daemon(&daemon);
    let token = read(&r.path("short.token"));
    r.assert_no_secrets(&[token.trim()]);
}

/// A service manager that stops reading its notify socket (a full datagram queue blocks
/// the sender) must not stall the daemon: the sends happen on a thread of their own, so
/// rotations, `rotate` and `status` carry on while `STATUS=` and `WATCHDOG=1` wait.
#[test]
fn a_notify_socket_nobody_reads_stalls_nothing() {
    let mut r = Refreshd::new();
    let mut body = daemon_keys(&r);
    for i in 0..6 {
        body.push_str(&command_credential(
            &format!("c{i}"),
            &format!("c{i}"),
            "2s",
            &r.path(&format!("c{i}.token")),
        ));
    }
    r.write_config(&body);
    // Bound and never read: after `max_dgram_qlen` datagrams every send blocks.
    let path = r.path("deaf-notify.sock");
    let _deaf = UnixDatagram::bind(&path).unwrap();
    let mut command = r.command(&["run"]);
    command
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut daemon = r.spawn_with(command);
    daemon.wait_for("ready", WAIT);
    // Watchdog pings every 100 ms and a status line per second: the queue is full long
    // before this; rotations must go on regardless.
    let before = daemon.count("rotated credential=");
    daemon.wait_for_n("rotated credential=", before + 12, WAIT);
    for _ in 0..3 {
        let rotate = r.run(&["rotate", "c0"]);
        assert_success(&rotate);
        let status = r.run(&["status"]);
        assert_success(&status);
    }
    daemon.terminate(WAIT);
}
