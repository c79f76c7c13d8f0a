//! Warnings found before logging is set up (a config is loaded before its `[log]` section
//! can apply): kept here until the log takes them, so that every line a daemon prints is in
//! its configured format (JSON lines stay JSON).
//!
//! Must never: print anything itself, or hold a secret (a warning names files, not values).

use std::sync::Mutex;

static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Says `message` in the log, or keeps it until the log is set up.
pub fn warn(message: String) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{message}");
    } else {
        crate::sync::lock(&PENDING).push(message);
    }
}

/// The warnings kept so far, for the log that has just been set up.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *crate::sync::lock(&PENDING))
}
