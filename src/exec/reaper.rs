//! `refreshd exec` as PID 1 (a container's main process, `unshare --pid --fork`): a minimal
//! init. It starts `refreshd exec` again, with the same arguments and environment, as its
//! only child; forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to it; reaps every
//! orphan the kernel hands to PID 1; and exits with that child's status once it is gone (the
//! kernel then ends whatever is left in the namespace).
//!
//! Why two processes rather than one that reaps: a wait for any child (`waitpid(-1)`) would
//! also take the exit statuses of the processes the supervisor starts for itself (reload
//! commands and `command` sources of the in-process engine), which are waited for by pid.
//! Here nothing else is started, so reaping everything is safe, as in tini.
//!
//! Must never: start anything but that one child, or exit while it runs.

use std::process::Command;

use nix::sys::signal::{self, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// What PID 1 forwards; SIGCHLD is its own.
const FORWARDED: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs the init until the supervisor exits; its exit status.
pub fn run() -> u8 {
    // Blocked before the child exists, and only ever taken with sigwait: none is lost and
    // none arrives on a handler. The child starts with an empty mask (std resets it).
    let mut signals = SigSet::empty();
    for signal in FORWARDED {
        signals.add(signal);
    }
    signals.add(Signal::SIGCHLD);
    if let Err(e) = signals.thread_block() {
        eprintln!("refreshd: exec as PID 1: cannot block signals: {e}");
        return 1;
    }
    let spawned = std::env::current_exe()
        .and_then(|exe| Command::new(exe).args(std::env::args_os().skip(1)).spawn());
    let supervisor = match spawned {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            eprintln!("refreshd: exec as PID 1: cannot start the supervisor: {e}");
            return 1;
        }
    };
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(supervisor) {
                    return code;
                }
            }
            Ok(signal) => {
                let _ = signal::kill(supervisor, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every child that has ended; the supervisor's exit status when it is one of them.
fn reap(supervisor: Pid) -> Option<u8> {
    let mut ended = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == supervisor => {
                ended = Some((code & 0xff) as u8);
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == supervisor => {
                ended = Some(128u8.saturating_add(signal as u8));
            }
            // An orphan's end, taken so that no zombie stays behind.
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {}
            // Nothing more has ended (StillAlive), or no child is left (ECHILD).
            Ok(_) | Err(_) => return ended,
        }
    }
}
