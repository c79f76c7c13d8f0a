//! `credentials.NAME.reload[i]`: raw → typed. An action is exactly one of its five
//! shapes, its signal a real signal and its pid one that signals a single process.
//!
//! Never sends a signal or starts a process: that is [`crate::reload`]'s job.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::ConfigError;
use super::locate::Doc;
use super::raw::RawReload;

/// A reload action, run after every target of the credential is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    pub action: ReloadAction,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReloadAction {
    SignalPidFile {
        signal: Signal,
        pid_file: PathBuf,
        process_name: Option<String>,
    },
    SignalPid {
        signal: Signal,
        /// Greater than 1: 0, 1 and negative pids reach whole process groups or init.
        pid: i32,
    },
    SystemdUnit {
        unit: String,
        action: SystemdAction,
        signal: Option<Signal>,
    },
    Launchd {
        label: String,
    },
    Command {
        /// Never empty.
        argv: Vec<String>,
    },
}

impl ReloadAction {
    /// The action as `status` and `/metrics` name it.
    pub fn label(&self) -> String {
        match self {
            ReloadAction::SignalPidFile {
                signal, pid_file, ..
            } => format!(
                "signal {} to pid_file {}",
                signal.as_str(),
                pid_file.display()
            ),
            ReloadAction::SignalPid { signal, pid } => {
                format!("signal {} to pid {pid}", signal.as_str())
            }
            ReloadAction::SystemdUnit { unit, action, .. } => {
                format!("systemctl {} {unit}", action.as_str())
            }
            ReloadAction::Launchd { label } => format!("launchctl kickstart {label}"),
            ReloadAction::Command { argv } => {
                format!("command {}", argv.first().map_or("", String::as_str))
            }
        }
    }
}

/// What `systemctl` is asked to do to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemdAction {
    Reload,
    Restart,
    Kill,
}

impl SystemdAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemdAction::Reload => "reload",
            SystemdAction::Restart => "restart",
            SystemdAction::Kill => "kill",
        }
    }
}

pub(super) fn reload(
    doc: &Doc<'_>,
    start: usize,
    key: &str,
    raw: RawReload,
) -> Result<ReloadConfig, ConfigError> {
    let err = |message: &str| doc.error(start, key, message.to_owned());
    let signal = |what: &str| -> Result<Signal, ConfigError> {
        let name = raw
            .signal
            .as_deref()
            .ok_or_else(|| err(&format!("a {what} action needs `signal`")))?;
        parse_signal(name).map_err(|m| err(&m))
    };
    let action = match (
        &raw.pid_file,
        raw.pid,
        &raw.systemd_unit,
        &raw.launchd_label,
        &raw.command,
    ) {
        (Some(pid_file), None, None, None, None) => ReloadAction::SignalPidFile {
            signal: signal("pid_file")?,
            pid_file: pid_file.clone(),
            process_name: raw.process_name.clone(),
        },
        (None, Some(pid), None, None, None) => {
            if pid <= 1 || pid > i64::from(i32::MAX) {
                return Err(err(
                    "`pid` must be greater than 1 (0, 1 and negative pids signal whole process groups or init)",
                ));
            }
            ReloadAction::SignalPid {
                signal: signal("pid")?,
                pid: pid as i32,
            }
        }
        (None, None, Some(unit), None, None) => {
            let action = match raw.action.as_deref().unwrap_or("reload") {
                "reload" => SystemdAction::Reload,
                "restart" => SystemdAction::Restart,
                "kill" => SystemdAction::Kill,
                _ => return Err(err("`action` must be \"reload\", \"restart\" or \"kill\"")),
            };
            let signal = raw
                .signal
                .as_deref()
                .map(parse_signal)
                .transpose()
                .map_err(|m| err(&m))?;
            ReloadAction::SystemdUnit {
                unit: unit.clone(),
                action,
                signal,
            }
        }
        (None, None, None, Some(label), None) => ReloadAction::Launchd {
            label: label.clone(),
        },
        (None, None, None, None, Some(argv)) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(err("`command` must name a program"));
            }
            ReloadAction::Command { argv: argv.clone() }
        }
        _ => {
            return Err(err(
                "a reload action is exactly one of { signal, pid_file }, { signal, pid }, { systemd_unit, action }, { launchd_label } or { command }",
            ));
        }
    };
    if raw.process_name.is_some() && !matches!(action, ReloadAction::SignalPidFile { .. }) {
        return Err(err("`process_name` goes only with `pid_file`"));
    }
    if raw.action.is_some() && !matches!(action, ReloadAction::SystemdUnit { .. }) {
        return Err(err("`action` goes only with `systemd_unit`"));
    }
    Ok(ReloadConfig {
        action,
        timeout: raw.timeout,
    })
}

/// `SIGHUP`, `HUP` and `hup` are all SIGHUP (nix wants the `SIG` prefix).
pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| format!("{name:?} is not a signal name such as \"SIGHUP\""))
}
