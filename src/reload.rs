//! Reload actions: tell dependent processes that their files changed. Signals to a pid or
//! a pid file, `systemctl`, `launchctl kickstart`, or a command. Requests for the same
//! action from several credentials within the debounce window run it once.
//!
//! A child never sees a token: not in its argv, not in its environment (it starts through
//! [`crate::child`], with an allow-list of the daemon's variables plus `REFRESHD_*`). A
//! failed reload is reported; it never undoes a rotation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::child::{Child, ChildError};
use crate::config::{ReloadAction, ReloadConfig};
use crate::observe::ReloadResults;
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

impl ReloadError {
    /// Whether trying again later may work: a process that was gone, a command or
    /// `systemctl` that failed. A refusal made for safety (a live process of another name
    /// or owner, a pid that reaches a process group) stays a refusal until the pid file
    /// changes, which the next rotation's reload reads.
    fn is_retryable(&self) -> bool {
        match self {
            ReloadError::WrongProcess { actual, .. } => actual == "not running",
            ReloadError::ForeignProcess { .. } | ReloadError::BadPid(_) => false,
            _ => true,
        }
    }
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

/// What becomes of a failed reload.
#[derive(Clone, Default)]
pub struct Retries {
    /// Retry in the background (a daemon's runner; a one-shot command exits instead).
    pub background: bool,
    /// Where each action's result goes (the read model's, for `status` and `/metrics`).
    pub results: Option<Arc<ReloadResults>>,
}

/// The first retry of a failed reload waits this long; each next one twice as long.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);

impl Reloader {
    /// Starts the runner on the current tokio runtime. Requests for an equal action that
    /// arrive within `window` of the first one are merged into one run.
    pub fn start(window: Duration) -> Reloader {
        Reloader::start_with(window, Retries::default())
    }

    /// [`Reloader::start`], retrying failed reloads and recording results as `retries` says.
    pub fn start_with(window: Duration, retries: Retries) -> Reloader {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, window, retries));
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

async fn run(mut requests: mpsc::UnboundedReceiver<Request>, window: Duration, retries: Retries) {
    let mut pending: HashMap<ReloadAction, Batch> = HashMap::new();
    // The latest batch of each action: a retry stops once a newer rotation's batch runs.
    let latest: Arc<Mutex<HashMap<ReloadAction, u64>>> = Arc::default();
    let mut batches: u64 = 0;
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
                    batches += 1;
                    crate::sync::lock(&latest).insert(action.clone(), batches);
                    let run = Run { action, id: batches, latest: latest.clone(), retries: retries.clone() };
                    tokio::spawn(run.go(batch));
                }
            }
        }
    }
}

/// One batch of one action: run, answer the waiters with the first result, then retry a
/// failure in the background until it works or a newer batch of the action supersedes it.
struct Run {
    action: ReloadAction,
    id: u64,
    latest: Arc<Mutex<HashMap<ReloadAction, u64>>>,
    retries: Retries,
}

impl Run {
    async fn go(self, batch: Batch) {
        let mut result = execute(&self.action, batch.timeout, &batch.contexts).await;
        self.record(&result, 1);
        for waiter in batch.waiters {
            let _ = waiter.send(result.clone());
        }
        let label = self.action.label();
        let mut wait = RETRY_FIRST;
        let mut attempts = 1;
        while self.retries.background && result.as_ref().is_err_and(ReloadError::is_retryable) {
            tokio::time::sleep(wait).await;
            if !self.is_latest() {
                tracing::info!(action = %label, "reload retry dropped: a newer rotation's reload has run");
                return;
            }
            attempts += 1;
            result = execute(&self.action, batch.timeout, &batch.contexts).await;
            self.record(&result, attempts);
            match &result {
                Ok(()) => {
                    tracing::info!(action = %label, attempts, "reload retried and done");
                }
                Err(e) => {
                    tracing::warn!(action = %label, attempts, retry_in = %format!("{}s", (wait * 2).min(RETRY_MAX).as_secs()), "reload failed again: {e}");
                }
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    fn is_latest(&self) -> bool {
        crate::sync::lock(&self.latest).get(&self.action) == Some(&self.id)
    }

    fn record(&self, result: &Result<(), ReloadError>, attempts: u32) {
        if let Some(results) = &self.retries.results {
            let outcome = result.clone().map_err(|e| e.to_string());
            results.record(
                &self.action.label(),
                outcome,
                attempts,
                crate::clock::system_now(),
            );
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
        } => signal_pid_file(*signal, pid_file, process_name.as_deref()).await,
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

/// How long a pid-file signal keeps re-reading a pid file whose process is gone: an app
/// that restarted between the write and the signal writes its new pid within moments.
const PID_FILE_SETTLE: Duration = Duration::from_secs(3);

/// Signals the process `pid_file` names; when it names no running process (or does not
/// exist yet), reads it again for a moment, so a restarted app's new process gets it.
async fn signal_pid_file(
    signal: Signal,
    pid_file: &Path,
    process_name: Option<&str>,
) -> Result<(), ReloadError> {
    let deadline = tokio::time::Instant::now() + PID_FILE_SETTLE;
    loop {
        let result = signal_pid_file_once(signal, pid_file, process_name).await;
        let gone = match &result {
            Err(ReloadError::Signal { reason, .. }) => reason == Errno::ESRCH.desc(),
            Err(ReloadError::WrongProcess { actual, .. }) => actual == "not running",
            Err(ReloadError::PidFile { .. }) => true,
            _ => false,
        };
        if !gone || tokio::time::Instant::now() >= deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn signal_pid_file_once(
    signal: Signal,
    pid_file: &Path,
    process_name: Option<&str>,
) -> Result<(), ReloadError> {
    let (pid, required_owner) = read_pid_file(pid_file)?;
    if let Some(uid) = required_owner {
        let actual = process_owner(pid).await;
        if actual != Some(uid) {
            return Err(ReloadError::ForeignProcess {
                pid,
                pid_file: pid_file.to_owned(),
                file_owner: uid,
                process_owner: actual,
            });
        }
    }
    if let Some(expected) = process_name {
        check_process_name(pid, expected).await?;
    }
    send_signal(signal, pid)
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

    /// A reload command that fails twice is retried in the background (2 s, then 4 s) and
    /// lands on its third try; the rotation's waiter heard the first failure at once, and
    /// the results show the third try's success.
    #[tokio::test]
    async fn a_failing_reload_is_retried_until_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ]",
            c = count.display()
        );
        let reload = ReloadConfig {
            action: ReloadAction::Command {
                argv: vec!["sh".into(), "-c".into(), script],
            },
            timeout: None,
        };
        let results = Arc::new(ReloadResults::default());
        let retries = Retries {
            background: true,
            results: Some(results.clone()),
        };
        let reloader = Reloader::start_with(Duration::ZERO, retries);
        let first = reloader.reload(&reload, context("a")).await;
        assert!(
            matches!(first, Err(ReloadError::Failed { .. })),
            "{first:?}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !results.all().first().is_some_and(|r| r.ok) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                results.all()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = results.all().remove(0);
        assert_eq!(status.attempts, 3);
        assert!(status.last_success.is_some());
        assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "3");
    }

    /// The app restarts between the write and the signal: the pid file names a process
    /// that is gone, then the new one. The signal reaches the new process.
    #[tokio::test]
    async fn a_pid_file_that_changes_under_the_signal_reaches_the_new_process() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        std::fs::write(&pid_file, format!("{}\n", gone.id())).unwrap();
        let mut new = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let new_pid = new.id().unwrap();
        let rewrite = {
            let pid_file = pid_file.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                std::fs::write(&pid_file, format!("{new_pid}\n")).unwrap();
            })
        };
        let reload = ReloadConfig {
            action: ReloadAction::SignalPidFile {
                signal: Signal::SIGTERM,
                pid_file: pid_file.clone(),
                process_name: Some("sleep".into()),
            },
            timeout: None,
        };
        let reloader = Reloader::start(Duration::ZERO);
        reloader.reload(&reload, context("a")).await.unwrap();
        rewrite.await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), new.wait())
            .await
            .unwrap()
            .unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(15), "{status:?}");
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
