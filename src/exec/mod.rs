//! `refreshd exec`: runs one program with credentials' current tokens in its environment and
//! keeps it on current tokens. On a rotation of any of them it restarts the program (SIGTERM,
//! the grace period, SIGKILL; the new one gets the new tokens), signals it, or does nothing;
//! it forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to it (SIGTERM and SIGINT also
//! stop it, within the grace period); and it exits with the program's status. The tokens
//! come from the running daemon or from the daemon's credential tasks run here ([`follow`]);
//! the program is started and stopped by [`child`], with the environment of
//! [`environment`]. As PID 1 it first splits off a minimal init that reaps orphans
//! ([`reaper`]).
//!
//! Must never: put a token in argv, a log line or an error (fingerprints only), or refresh
//! a token other than through the daemon's credential tasks.

mod child;
mod environment;
mod follow;
pub mod reaper;

use std::ffi::OsString;
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use child::{Program, StartError, Terminal};
pub use environment::Binding;
use environment::Environment;
use follow::{FollowError, Follower, Tokens};

/// What to do when a token the program holds has been rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Stop the program (SIGTERM, grace, SIGKILL) and start it again with the new tokens.
    Restart,
    /// Send it this signal: it keeps its environment, so it must learn the new token some
    /// other way (a target file refreshd writes, or `refreshd token`).
    Signal(Signal),
    /// Leave it alone.
    Nothing,
}

impl FromStr for OnChange {
    type Err = String;

    fn from_str(text: &str) -> Result<OnChange, String> {
        match text {
            "restart" => Ok(OnChange::Restart),
            "none" => Ok(OnChange::Nothing),
            _ => match text.strip_prefix("signal:") {
                Some(name) => crate::config::parse_signal(name).map(OnChange::Signal),
                None => Err(format!(
                    "{text:?} is not one of `restart`, `signal:SIG` (e.g. `signal:SIGHUP`) or `none`"
                )),
            },
        }
    }
}

/// The command line of `refreshd exec`.
pub struct Options {
    pub bindings: Vec<Binding>,
    pub on_change: OnChange,
    pub grace: Duration,
    /// The program and its arguments; never empty.
    pub program: Vec<OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Start(#[from] StartError),
}

impl ExecError {
    /// `exec`'s exit status for this failure: a shell's for a program that cannot start.
    pub fn status(&self) -> u8 {
        match self {
            ExecError::Start(e) => e.status(),
            _ => 1,
        }
    }
}

/// Runs the program until it ends (or a SIGTERM/SIGINT ends it); its status as `exec`'s own
/// (128 + the signal's number when a signal ended it).
pub async fn run(config: Config, options: Options) -> Result<u8, ExecError> {
    // Before anything else: a signal that arrives before its handler would end `exec` and
    // leave the program running.
    let mut signals = Signals::install().map_err(ExecError::Signals)?;
    let environment = Environment::new(&config, &options.bindings);
    let dropped = Environment::dropped(&config);
    if !dropped.is_empty() {
        tracing::debug!(variables = %dropped.join(","), "kept out of the program's environment");
    }
    let mut names: Vec<String> = options
        .bindings
        .iter()
        .map(|b| b.credential.clone())
        .collect();
    names.sort();
    names.dedup();
    let mut follower = Follower::start(config, names);
    let first = tokio::select! {
        first = follower.first() => first,
        signal = signals.terminating() => {
            tracing::info!("{signal} before the program started: stopping");
            follower.stop().await;
            return Ok(128u8.saturating_add(signal as u8));
        }
    };
    let result = match first {
        Ok((mode, tokens)) => {
            let supervisor = Supervisor {
                signals,
                environment,
                options: &options,
                terminal: Terminal::foreground(),
                program: child::name(&options.program),
            };
            supervisor.run(mode, tokens, &mut follower).await
        }
        Err(e) => Err(e.into()),
    };
    follower.stop().await;
    result
}

/// The program's supervision: what it needs besides the follower.
struct Supervisor<'a> {
    signals: Signals,
    environment: Environment,
    options: &'a Options,
    terminal: Option<Terminal>,
    /// The program's name, for the log.
    program: String,
}

/// What woke the supervisor.
enum Event {
    Exited(ExitStatus),
    Signal(Signal),
    Rotated(Tokens),
}

/// How a restart ended.
enum Restarted {
    Running(Program),
    /// A SIGTERM or SIGINT came meanwhile: the old program's status, no new one.
    Stopped(ExitStatus),
}

impl Supervisor<'_> {
    async fn run(
        mut self,
        mode: follow::Mode,
        mut held: Tokens,
        follower: &mut Follower,
    ) -> Result<u8, ExecError> {
        let mut program = self.start(&held)?;
        let shown: Vec<String> = held
            .iter()
            .map(|(name, h)| format!("{name}:{}", h.fingerprint))
            .collect();
        tracing::info!(program = %self.program, pid = program.pid(), tokens = %shown.join(","), source = %mode.as_str(), "started");
        loop {
            let event = tokio::select! {
                status = program.wait() => Event::Exited(status),
                signal = self.signals.recv() => Event::Signal(signal),
                tokens = follower.changed() => Event::Rotated(tokens),
            };
            match event {
                Event::Exited(status) => {
                    tracing::info!(program = %self.program, status = %status, "exited");
                    return Ok(child::exit_code(status));
                }
                Event::Signal(signal) => {
                    program.signal(signal);
                    if matches!(signal, Signal::SIGTERM | Signal::SIGINT) {
                        tracing::info!(program = %self.program, "{signal}: forwarded; stopping");
                        let status = self.stop(&mut program).await;
                        tracing::info!(program = %self.program, status = %status, "stopped");
                        return Ok(child::exit_code(status));
                    }
                    tracing::debug!(program = %self.program, "{signal}: forwarded");
                }
                Event::Rotated(tokens) => {
                    if !self.log_rotation(&held, &tokens, program.pid()) {
                        continue;
                    }
                    held = tokens;
                    match self.options.on_change {
                        OnChange::Restart => match self.restart(program, &held).await? {
                            Restarted::Running(new) => program = new,
                            Restarted::Stopped(status) => return Ok(child::exit_code(status)),
                        },
                        OnChange::Signal(signal) => program.signal(signal),
                        OnChange::Nothing => {}
                    }
                }
            }
        }
    }

    fn start(&self, tokens: &Tokens) -> Result<Program, StartError> {
        let env = self.environment.with(tokens);
        Program::start(&self.options.program, env, self.terminal.as_ref())
    }

    /// Logs each rotated token (credential, old → new fingerprint) and what is done about
    /// it; `false` when nothing the program holds changed.
    fn log_rotation(&self, held: &Tokens, tokens: &Tokens, pid: i32) -> bool {
        let action = match self.options.on_change {
            OnChange::Restart => format!(
                "restarting (SIGTERM, SIGKILL after {}s)",
                self.options.grace.as_secs_f64()
            ),
            OnChange::Signal(signal) => format!("sending {signal}"),
            OnChange::Nothing => "leaving it alone (--on-change none)".to_owned(),
        };
        let mut any = false;
        for (name, new) in tokens {
            let old = held.get(name).map(|h| h.fingerprint.as_str());
            if old == Some(new.fingerprint.as_str()) {
                continue;
            }
            any = true;
            tracing::info!(
                credential = %name,
                old = %old.unwrap_or("none"),
                new = %new.fingerprint,
                program = %self.program,
                pid,
                "token rotated: {action}"
            );
        }
        any
    }

    /// SIGTERM, up to the grace period for the program to exit, SIGKILL to its group; then
    /// the new program with `tokens`. SIGTERM or SIGINT meanwhile makes it a stop.
    async fn restart(&mut self, mut old: Program, tokens: &Tokens) -> Result<Restarted, ExecError> {
        old.signal(Signal::SIGTERM);
        let (status, stopping) = self.wait_or_kill(&mut old).await;
        // Nothing started for the old tokens outlives the old program.
        old.kill_group();
        tracing::info!(program = %self.program, pid = old.pid(), status = %status, "the old program ended");
        if stopping {
            return Ok(Restarted::Stopped(status));
        }
        let new = self.start(tokens)?;
        tracing::info!(program = %self.program, pid = new.pid(), "restarted with the new tokens");
        Ok(Restarted::Running(new))
    }

    /// A stop: the program already has its SIGTERM or SIGINT; up to the grace period for
    /// it to exit, then SIGKILL to its group. Its status.
    async fn stop(&mut self, program: &mut Program) -> ExitStatus {
        self.wait_or_kill(program).await.0
    }

    /// Waits up to the grace period for `program` to exit, forwarding signals meanwhile, then
    /// kills its group and waits; its status, and whether SIGTERM or SIGINT came meanwhile.
    async fn wait_or_kill(&mut self, program: &mut Program) -> (ExitStatus, bool) {
        let grace = tokio::time::sleep(self.options.grace);
        tokio::pin!(grace);
        let mut stopping = false;
        loop {
            tokio::select! {
                status = program.wait() => return (status, stopping),
                () = &mut grace => {
                    tracing::warn!(program = %self.program, pid = program.pid(), "still running {}s after SIGTERM: SIGKILL", self.options.grace.as_secs_f64());
                    program.kill_group();
                    return (program.wait().await, stopping);
                }
                signal = self.signals.recv() => {
                    stopping |= matches!(signal, Signal::SIGTERM | Signal::SIGINT);
                    program.signal(signal);
                }
            }
        }
    }
}

/// The signals `exec` forwards, handled from its start.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next signal to forward.
    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::SIGTERM,
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.hangup.recv() => Signal::SIGHUP,
            _ = self.user1.recv() => Signal::SIGUSR1,
            _ = self.user2.recv() => Signal::SIGUSR2,
        }
    }

    /// The next SIGTERM or SIGINT (before there is a program, the others are dropped).
    async fn terminating(&mut self) -> Signal {
        loop {
            let signal = self.recv().await;
            if matches!(signal, Signal::SIGTERM | Signal::SIGINT) {
                return signal;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_change_is_restart_none_or_a_signal() {
        assert_eq!("restart".parse(), Ok(OnChange::Restart));
        assert_eq!("none".parse(), Ok(OnChange::Nothing));
        assert_eq!(
            "signal:SIGHUP".parse(),
            Ok(OnChange::Signal(Signal::SIGHUP))
        );
        assert_eq!("signal:usr1".parse(), Ok(OnChange::Signal(Signal::SIGUSR1)));
        assert!("signal:NOPE".parse::<OnChange>().is_err());
        assert!("reload".parse::<OnChange>().is_err());
    }
}
