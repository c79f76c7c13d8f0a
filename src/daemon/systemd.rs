//! The service manager's side channel: sd_notify `READY=1`, `STATUS=`, `WATCHDOG=1`,
//! `RELOADING=1` (with `MONOTONIC_USEC`) and `STOPPING=1`. Without `NOTIFY_SOCKET` every
//! call is a no-op, so refreshd runs the same under launchd or in a terminal.
//!
//! It never changes the process environment (children drop `NOTIFY_SOCKET` themselves).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// `RELOADING=1` must carry `MONOTONIC_USEC` (systemd ≥ 253 fails the reload without it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(e) => tracing::warn!("cannot read the monotonic clock for RELOADING=1: {e}"),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}
