//! Reload actions: tell dependent processes that their files changed. Signals to a pid or
//! a pid file, `systemctl`, `launchctl kickstart`, or a command. Requests for the same
//! action from several credentials within the debounce window run it once.
//!
//! A child never sees a token: not in its argv, not in its environment (it starts through
//! [`crate::child`], with an allow-list of the daemon's variables plus `REFRESHD_*`). A
//! failed reload is reported; it never undoes a rotation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::child::{Child, ChildError};
use crate::config::{ReloadAction, ReloadConfig};
use crate::token;

/// Default for an action without its own `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("pid file {path}: {reason}")]
    PidFile { path: PathBuf, reason: String },
    #[error(
        "pid {pid} is {actual:?}, not {expected:?}: not signalled (a stale pid file naming a recycled pid?)"
    )]
    WrongProcess {
        pid: i32,
        expected: String,
        actual: String,
    },
    #[error("refusing to signal pid {0}: it would reach a whole process group")]
    BadPid(i32),
    #[error(
        "pid file {pid_file} can be written by uid {file_owner}, but pid {pid} belongs to {}: not signalled (only a pid file root or refreshd's user alone can write may name another user's process)",
        process_owner.map(|u| format!("uid {u}")).unwrap_or_else(|| "no running process".to_owned())
    )]
    ForeignProcess {
        pid: i32,
        pid_file: PathBuf,
        file_owner: u32,
        process_owner: Option<u32>,
    },
    #[error("{signal} to pid {pid}: {reason}")]
    Signal {
        signal: String,
        pid: i32,
        reason: String,
    },
    #[error("{program}: cannot start: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} exited with {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} did not finish within {}s and was killed", timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
    #[error("the reload runner stopped")]
    Gone,
}

/// What a reload is about: goes into a command's environment and the log line.
#[derive(Debug, Clone)]
pub struct Context {
    pub credential: String,
    pub expires_at: OffsetDateTime,
    pub targets: Vec<PathBuf>,
}

struct Request {
    reload: ReloadConfig,
    context: Context,
    reply: oneshot::Sender<Result<(), ReloadError>>,
}

/// Handle to the reload runner task. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    requests: mpsc::UnboundedSender<Request>,
}

impl Reloader {
    /// Starts the runner on the current tokio runtime. Requests for an equal action that
    /// arrive within `window` of the first one are merged into one run.
    pub fn start(window: Duration) -> Reloader {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, window));
        Reloader { requests }
    }

    /// Runs `reload` (possibly merged with the same action of other credentials) and waits
    /// for its result.
    pub async fn reload(&self, reload: &ReloadConfig, context: Context) -> Result<(), ReloadError> {
        let (reply, result) = oneshot::channel();
        self.requests
            .send(Request {
                reload: reload.clone(),
                context,
                reply,
            })
            .map_err(|_| ReloadError::Gone)?;
        result.await.unwrap_or(Err(ReloadError::Gone))
    }
}

struct Batch {
    due: tokio::time::Instant,
    timeout: Duration,
    contexts: Vec<Context>,
    waiters: Vec<oneshot::Sender<Result<(), ReloadError>>>,
}

async fn run(mut requests: mpsc::UnboundedReceiver<Request>, window: Duration) {
    let mut pending: HashMap<ReloadAction, Batch> = HashMap::new();
    loop {
        let next_due = pending.values().map(|b| b.due).min();
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                let timeout = request.reload.timeout.unwrap_or(DEFAULT_TIMEOUT);
                let batch = pending.entry(request.reload.action).or_insert_with(|| Batch {
                    due: tokio::time::Instant::now() + window,
                    timeout,
                    contexts: Vec::new(),
                    waiters: Vec::new(),
                });
                batch.timeout = batch.timeout.max(timeout);
                batch.contexts.push(request.context);
                batch.waiters.push(request.reply);
            }
            _ = sleep_until(next_due), if next_due.is_some() => {
                let now = tokio::time::Instant::now();
                let due: Vec<ReloadAction> = pending
                    .iter()
                    .filter(|(_, b)| b.due <= now)
                    .map(|(a, _)| a.clone())
                    .collect();
                for action in due {
                    let batch = pending.remove(&action).expect("listed above");
                    tokio::spawn(async move {
                        let result = execute(&action, batch.timeout, &batch.contexts).await;
                        for waiter in batch.waiters {
                            let _ = waiter.send(result.clone());
                        }
                    });
                }
            }
        }
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

/// Runs one action for the credentials in `contexts`.
async fn execute(
    action: &ReloadAction,
    timeout: Duration,
    contexts: &[Context],
) -> Result<(), ReloadError> {
    match action {
        ReloadAction::SignalPid { signal, pid } => send_signal(*signal, *pid),
        ReloadAction::SignalPidFile {
            signal,
            pid_file,
            process_name,
        } => {
            let (pid, required_owner) = read_pid_file(pid_file)?;
            if let Some(uid) = required_owner {
                let actual = process_owner(pid).await;
                if actual != Some(uid) {
                    return Err(ReloadError::ForeignProcess {
                        pid,
                        pid_file: pid_file.clone(),
                        file_owner: uid,
                        process_owner: actual,
                    });
                }
            }
            if let Some(expected) = process_name {
                check_process_name(pid, expected).await?;
            }
            send_signal(*signal, pid)
        }
        ReloadAction::SystemdUnit {
            unit,
            action,
            signal,
        } => {
            let mut argv = vec!["systemctl".to_owned()];
            if !nix::unistd::geteuid().is_root() {
                argv.push("--user".to_owned());
            }
            argv.push(action.as_str().to_owned());
            if let Some(signal) = signal {
                argv.push(format!("--signal={}", signal.as_str()));
            }
            argv.push("--".to_owned());
            argv.push(unit.clone());
            run_command(&argv, timeout, &environment(contexts)).await
        }
        ReloadAction::Launchd { label } => {
            let uid = nix::unistd::geteuid();
            let domain = if uid.is_root() {
                "system".to_owned()
            } else {
                format!("gui/{uid}")
            };
            let argv = vec![
                "launchctl".to_owned(),
                "kickstart".to_owned(),
                "-k".to_owned(),
                format!("{domain}/{label}"),
            ];
            run_command(&argv, timeout, &environment(contexts)).await
        }
        ReloadAction::Command { argv } => run_command(argv, timeout, &environment(contexts)).await,
    }
}

/// `REFRESHD_CREDENTIAL`, `REFRESHD_EXPIRES_AT` and `REFRESHD_TARGETS` for a command. When
/// several credentials were merged into one run, names and paths are joined (`,` and `:`),
/// and the expiry is the earliest.
fn environment(contexts: &[Context]) -> Vec<(String, String)> {
    let names: Vec<&str> = contexts.iter().map(|c| c.credential.as_str()).collect();
    let expires = contexts.iter().map(|c| c.expires_at).min();
    let mut targets: Vec<String> = contexts
        .iter()
        .flat_map(|c| c.targets.iter().map(|p| p.display().to_string()))
        .collect();
    targets.dedup();
    let mut env = vec![
        ("REFRESHD_CREDENTIAL".to_owned(), names.join(",")),
        ("REFRESHD_TARGETS".to_owned(), targets.join(":")),
    ];
    if let Some(at) = expires {
        env.push(("REFRESHD_EXPIRES_AT".to_owned(), token::rfc3339(at)));
    }
    env
}

/// The pid in `path`, and the uid that must own that process when the pid file is not
/// refreshd's own: anyone who can write the file could otherwise aim refreshd's signals at
/// any process. Read safely (no one else's symlinks, no FIFO, at most 32 bytes); the
/// content is never shown.
fn read_pid_file(path: &Path) -> Result<(i32, Option<u32>), ReloadError> {
    let err = |reason: String| ReloadError::PidFile {
        path: path.to_owned(),
        reason,
    };
    let (bytes, place) = crate::durable::read_file(path, 32)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("does not exist (is the process running?)".to_owned()))?;
    let pid: i32 = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| err("does not hold a pid".to_owned()))?;
    if pid <= 1 {
        return Err(ReloadError::BadPid(pid));
    }
    let owner = place.existing.as_ref().map(|stat| stat.st_uid);
    let required = (!crate::durable::chase::only_trusted_can_write(&place))
        .then_some(owner.unwrap_or(u32::MAX));
    Ok((pid, required))
}

/// The uid that runs `pid` (`/proc/PID`'s owner on Linux, `ps -o uid=` elsewhere).
async fn process_owner(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}")) {
        return Some(meta.uid());
    }
    ps_field(pid, "uid=").await?.parse().ok()
}

/// One field of `ps -o FIELD -p PID` (where there is no /proc).
async fn ps_field(pid: i32, field: &str) -> Option<String> {
    let argv = ["ps", "-o", field, "-p", &pid.to_string()].map(str::to_owned);
    let output = Child::new(&argv, DEFAULT_TIMEOUT)
        .capture_stdout()
        .run()
        .await
        .ok()?;
    let value = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!value.is_empty()).then_some(value)
}

/// The process's name as `ps` shows it: `/proc/PID/comm` on Linux (cut at 15 bytes by the
/// kernel, so the expected name is cut the same way), `ps -o comm=` elsewhere.
async fn check_process_name(pid: i32, expected: &str) -> Result<(), ReloadError> {
    let actual = process_name(pid).await.unwrap_or_default();
    let short: String = expected.chars().take(15).collect();
    let matches = !actual.is_empty()
        && (actual == expected
            || actual == short
            || Path::new(&actual)
                .file_name()
                .is_some_and(|n| n == expected));
    if matches {
        Ok(())
    } else {
        Err(ReloadError::WrongProcess {
            pid,
            expected: expected.to_owned(),
            actual: if actual.is_empty() {
                "not running".to_owned()
            } else {
                actual
            },
        })
    }
}

async fn process_name(pid: i32) -> Option<String> {
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        return Some(comm.trim_end_matches('\n').to_owned());
    }
    ps_field(pid, "comm=").await
}

fn send_signal(signal: Signal, pid: i32) -> Result<(), ReloadError> {
    if pid <= 1 {
        return Err(ReloadError::BadPid(pid));
    }
    kill(Pid::from_raw(pid), signal).map_err(|e| ReloadError::Signal {
        signal: signal.as_str().to_owned(),
        pid,
        reason: e.desc().to_owned(),
    })
}

/// Runs `argv` (through [`crate::child`]) with `env` added, killing it after `timeout`.
pub async fn run_command(
    argv: &[String],
    timeout: Duration,
    env: &[(String, String)],
) -> Result<(), ReloadError> {
    let child = Child::new(argv, timeout).envs(env.iter().cloned());
    let program = child.program();
    let output = child.run().await.map_err(|e| match e {
        ChildError::Spawn { program, reason } => ReloadError::Spawn { program, reason },
        ChildError::Timeout { program, after } => ReloadError::Timeout {
            program,
            timeout: after,
        },
        e @ ChildError::TooMuchOutput { .. } => ReloadError::Spawn {
            program: argv.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        },
    })?;
    if output.status.success() {
        return Ok(());
    }
    let lines = output.stderr_lines(None);
    let last: Vec<String> = lines.into_iter().rev().take(3).collect();
    Err(ReloadError::Failed {
        program,
        status: output.status.to_string(),
        stderr: last.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}

/// Runs a credential's `on_failure` hook in the background, with `REFRESHD_ERROR`.
pub fn on_failure(argv: &[String], credential: &str, error: &str, timeout: Duration) {
    let argv = argv.to_vec();
    let env = vec![
        ("REFRESHD_CREDENTIAL".to_owned(), credential.to_owned()),
        ("REFRESHD_ERROR".to_owned(), error.to_owned()),
    ];
    let credential = credential.to_owned();
    tokio::spawn(async move {
        match run_command(&argv, timeout, &env).await {
            Ok(()) => tracing::info!(credential = %credential, "on_failure hook ran"),
            Err(e) => tracing::warn!(credential = %credential, "on_failure hook failed: {e}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str) -> Context {
        Context {
            credential: name.to_owned(),
            expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            targets: vec![PathBuf::from(format!("/srv/{name}/.env"))],
        }
    }

    #[tokio::test]
    async fn one_action_from_two_credentials_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs");
        let script = format!(
            "echo \"$REFRESHD_CREDENTIAL $REFRESHD_TARGETS\" >> {}",
            log.display()
        );
        let reload = ReloadConfig {
            action: ReloadAction::Command {
                argv: vec!["sh".into(), "-c".into(), script],
            },
            timeout: None,
        };
        let reloader = Reloader::start(Duration::from_millis(300));
        let (a, b) = tokio::join!(
            reloader.reload(&reload, context("a")),
            reloader.reload(&reload, context("b"))
        );
        a.unwrap();
        b.unwrap();
        let runs = std::fs::read_to_string(&log).unwrap();
        assert_eq!(runs, "a,b /srv/a/.env:/srv/b/.env\n");
    }

    #[tokio::test]
    async fn children_get_no_inherited_secrets_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("env > {}; echo 'it broke' >&2; exit 3", out.display()),
        ];
        let error = run_command(&argv, Duration::from_secs(10), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ReloadError::Failed { stderr, .. } if stderr == "it broke"),
            "{error}"
        );
        let env = std::fs::read_to_string(&out).unwrap();
        for line in env.lines() {
            let key = line.split('=').next().unwrap();
            assert!(
                crate::child::inherited(key) || ["PWD", "SHLVL", "_"].contains(&key),
                "a child inherited {key}"
            );
        }
    }

    #[tokio::test]
    async fn slow_commands_are_killed() {
        let argv = vec!["sleep".to_owned(), "30".to_owned()];
        let error = run_command(&argv, Duration::from_millis(200), &[])
            .await
            .unwrap_err();
        assert!(matches!(error, ReloadError::Timeout { .. }), "{error}");
    }

    #[tokio::test]
    async fn pid_files_and_process_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, "1\n").unwrap();
        assert!(matches!(
            read_pid_file(&pid_file),
            Err(ReloadError::BadPid(1))
        ));
        std::fs::write(&pid_file, "not a pid").unwrap();
        let err = read_pid_file(&pid_file).unwrap_err().to_string();
        assert!(
            !err.contains("not a pid\""),
            "the content is never shown: {err}"
        );
        let me = std::process::id() as i32;
        std::fs::write(&pid_file, format!("{me}\n")).unwrap();
        assert_eq!(read_pid_file(&pid_file).unwrap(), (me, None));
        let err = check_process_name(me, "definitely-not-this")
            .await
            .unwrap_err();
        assert!(matches!(err, ReloadError::WrongProcess { .. }), "{err}");
        let own = process_name(me).await.unwrap();
        check_process_name(me, &own).await.unwrap();
    }
}
