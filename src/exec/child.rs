//! `refreshd exec`'s program: started in a process group of its own with the environment it
//! is given, signalled, stopped (SIGTERM, a grace period, then SIGKILL to its whole group),
//! waited for, and handed the terminal when `exec` had it.
//!
//! Its own process group, as tini and dumb-init do: a restart's SIGKILL reaches whatever the
//! program started too (nothing started for the old token outlives it), and a terminal's
//! Ctrl-C reaches the program once, from the terminal, instead of once from the terminal and
//! once forwarded. Signals `exec` forwards go to the program alone, which decides what its
//! own children hear. (`crate::child` runs refreshd's short helper programs, with a clean
//! environment and a timeout; this one runs for as long as it likes, with refreshd's.)
//!
//! Must never: put a token in the program's argv (it comes only through its environment).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;

use nix::errno::Errno;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

/// Why the program could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{program}: cannot start: {source}")]
pub struct StartError {
    program: String,
    source: std::io::Error,
}

impl StartError {
    /// What a shell answers for the same failure: 127 not found, 126 not executable.
    pub fn status(&self) -> u8 {
        match self.source.kind() {
            std::io::ErrorKind::NotFound => 127,
            std::io::ErrorKind::PermissionDenied => 126,
            _ => 1,
        }
    }
}

/// The running program.
pub struct Program {
    child: tokio::process::Child,
    /// Also its process group's id: it leads a group of its own.
    pid: Pid,
}

impl Program {
    /// Starts `argv` with exactly `env`, stdin, stdout and stderr shared with `exec`, leading
    /// a new process group (given the terminal when `terminal` says `exec` holds it).
    pub fn start(
        argv: &[OsString],
        env: Vec<(OsString, OsString)>,
        terminal: Option<&Terminal>,
    ) -> Result<Program, StartError> {
        let program = name(argv);
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .envs(env)
            .process_group(0);
        let child = command.spawn().map_err(|source| StartError {
            program: program.clone(),
            source,
        })?;
        let pid = Pid::from_raw(child.id().map_or(0, |id| id as i32));
        if let Some(terminal) = terminal {
            terminal.hand_to(pid);
        }
        Ok(Program { child, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Sends `signal` to the program (not its group); one that has already exited is fine.
    pub fn signal(&self, signal: Signal) {
        if let Err(e) = signal::kill(self.pid, signal)
            && e != Errno::ESRCH
        {
            tracing::warn!(pid = self.pid.as_raw(), "cannot send {signal}: {e}");
        }
    }

    /// SIGKILL to the program's whole process group: what is left of it.
    pub fn kill_group(&self) {
        if let Err(e) = signal::killpg(self.pid, Signal::SIGKILL)
            && e != Errno::ESRCH
        {
            tracing::warn!(
                pid = self.pid.as_raw(),
                "cannot kill its process group: {e}"
            );
        }
    }

    /// Resolves when the program has exited (cancel-safe: select on it freely).
    pub async fn wait(&mut self) -> ExitStatus {
        // Only a bug makes waiting for our own child fail: call it a failure.
        self.child
            .wait()
            .await
            .unwrap_or_else(|_| ExitStatus::from_raw(1 << 8))
    }
}

/// The program's name as logs show it.
pub fn name(argv: &[OsString]) -> String {
    argv.first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An exit status as `exec`'s own: the program's code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

/// The terminal on stdin, whose foreground process group was `exec`'s when it started: each
/// program it starts gets the foreground (so that it can read the terminal, and Ctrl-C goes
/// to it), as a shell gives it to a job.
pub struct Terminal(());

impl Terminal {
    pub fn foreground() -> Option<Terminal> {
        let stdin = std::io::stdin();
        let ours = nix::unistd::isatty(&stdin).unwrap_or(false)
            && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == nix::unistd::getpgrp());
        ours.then_some(Terminal(()))
    }

    /// Makes `group` the terminal's foreground process group. After the first program,
    /// `exec` is in the background: SIGTTOU, which would stop it for asking, is blocked
    /// meanwhile (the kernel then allows the change).
    fn hand_to(&self, group: Pid) {
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let before = ttou.thread_swap_mask(SigmaskHow::SIG_BLOCK);
        let handed = nix::unistd::tcsetpgrp(std::io::stdin(), group);
        if let Ok(before) = before {
            let _ = before.thread_set_mask();
        }
        if let Err(e) = handed {
            tracing::debug!("cannot hand the terminal to the program: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_programs_or_128_plus_the_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[tokio::test]
    async fn a_program_leads_its_own_group_and_its_group_is_killed_whole() {
        let argv: Vec<OsString> = ["sh", "-c", "sleep 600 & echo $! > /dev/null; wait"]
            .iter()
            .map(OsString::from)
            .collect();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut program = Program::start(&argv, vec![("PATH".into(), path)], None).unwrap();
        let pid = Pid::from_raw(program.pid());
        assert_eq!(nix::unistd::getpgid(Some(pid)).unwrap(), pid);
        program.kill_group();
        assert_eq!(exit_code(program.wait().await), 137);
    }

    #[test]
    fn a_missing_program_is_127_like_in_a_shell() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let argv = vec![OsString::from("/nonexistent/program")];
        let Err(e) = Program::start(&argv, Vec::new(), None) else {
            panic!("started a program that does not exist");
        };
        assert_eq!(e.status(), 127);
    }
}
