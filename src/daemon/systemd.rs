//! The service manager's side channel: sd_notify `READY=1`, `STATUS=`, `WATCHDOG=1`,
//! `RELOADING=1` (with `MONOTONIC_USEC`) and `STOPPING=1`. Without `NOTIFY_SOCKET` every
//! call is a no-op, so refreshd runs the same under launchd or in a terminal.
//!
//! Every call only posts to an outbox: one thread of its own sends, because a datagram
//! socket whose reader lags (a full queue; `net.unix.max_dgram_qlen` is 10) blocks the
//! sender, and a runtime worker blocked there stalls every credential it serves. A
//! `STATUS=` line that has not gone out when a newer one comes is replaced (only the
//! latest matters); `READY=1`, `RELOADING=1`, `WATCHDOG=1` and `STOPPING=1` are kept and
//! sent in order as soon as the socket takes them.
//!
//! It never changes the process environment (children drop `NOTIFY_SOCKET` themselves).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sd_notify::NotifyState;

/// A notification that must reach the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Ready,
    Reloading { monotonic_usec: i128 },
    Watchdog,
    Stopping,
}

#[derive(Default)]
struct Outbox {
    /// Each with the status line sent along with it.
    events: VecDeque<(Event, Option<String>)>,
    /// The newest status line not yet sent.
    status: Option<String>,
    /// Whether the thread holds taken events it has not sent yet.
    sending: bool,
}

struct Sender {
    outbox: Mutex<Outbox>,
    posted: Condvar,
}

/// The sending thread's outbox, started at the first post; `None` without `NOTIFY_SOCKET`.
fn sender() -> Option<&'static Sender> {
    static SENDER: OnceLock<Option<&'static Sender>> = OnceLock::new();
    *SENDER.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let sender: &'static Sender = Box::leak(Box::new(Sender {
            outbox: Mutex::new(Outbox::default()),
            posted: Condvar::new(),
        }));
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || send_forever(sender));
        match spawned {
            Ok(_) => Some(sender),
            Err(e) => {
                tracing::warn!("sd_notify: cannot start its thread ({e}); not notifying");
                None
            }
        }
    })
}

fn post(event: Option<Event>, status: Option<&str>) {
    let Some(sender) = sender() else {
        return;
    };
    let mut outbox = sender.outbox.lock().unwrap_or_else(PoisonError::into_inner);
    match event {
        // One pending ping says all that two would.
        Some(Event::Watchdog) if outbox.events.iter().any(|(e, _)| *e == Event::Watchdog) => {}
        Some(event) => {
            // The event carries the newest status: an older pending one must not follow it.
            let status = status.map(str::to_owned);
            if status.is_some() {
                outbox.status = None;
            }
            outbox.events.push_back((event, status));
        }
        None => outbox.status = status.map(str::to_owned),
    }
    sender.posted.notify_one();
}

/// Sends what is posted, in order, for the life of the process (a thread blocked in a
/// send holds up no one but itself, and does not keep the process from exiting).
fn send_forever(sender: &Sender) {
    loop {
        let (events, status) = {
            let mut outbox = sender.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            while outbox.events.is_empty() && outbox.status.is_none() {
                outbox = sender
                    .posted
                    .wait(outbox)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            outbox.sending = true;
            (std::mem::take(&mut outbox.events), outbox.status.take())
        };
        for (event, status) in events {
            let mut states = match event {
                Event::Ready => vec![NotifyState::Ready],
                Event::Reloading { monotonic_usec } => vec![
                    NotifyState::Reloading,
                    NotifyState::MonotonicUsec(monotonic_usec),
                ],
                Event::Watchdog => vec![NotifyState::Watchdog],
                Event::Stopping => vec![NotifyState::Stopping],
            };
            if let Some(status) = &status {
                states.push(NotifyState::Status(status));
            }
            send(&states);
        }
        if let Some(status) = status {
            send(&[NotifyState::Status(&status)]);
        }
        sender
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sending = false;
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    post(Some(Event::Ready), Some(status));
}

pub fn status(status: &str) {
    post(None, Some(status));
}

pub fn watchdog() {
    post(Some(Event::Watchdog), None);
}

/// `RELOADING=1` must carry `MONOTONIC_USEC` (systemd ≥ 253 fails the reload without it),
/// taken now, not when the thread gets to send it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(NotifyState::MonotonicUsec(monotonic_usec)) => post(
            Some(Event::Reloading { monotonic_usec }),
            Some("reloading the configuration"),
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the monotonic clock for RELOADING=1: {e}"),
    }
}

/// `STOPPING=1`, then a moment for the thread to send it before the process exits (it
/// never waits long: a service manager that stopped reading learns it from the exit).
pub fn stopping() {
    post(Some(Event::Stopping), Some("stopping"));
    let Some(sender) = sender() else {
        return;
    };
    for _ in 0..20 {
        let sent = {
            let outbox = sender.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            outbox.events.is_empty() && !outbox.sending
        };
        if sent {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}
