//! The watchdog: every interval it looks at the timer queue, the rotations in progress and
//! the credential tasks, records its verdict in the vitals and pings the service manager
//! only when nothing is stuck. It only looks and reports: it never stops or restarts a task.

use std::time::Duration;

use super::super::systemd;
use super::Daemon;

/// The timer queue looks at the clock every [`crate::clock::CHUNK`]: silent for longer than
/// this, the runtime is stuck. A rotation may wait for a request timeout and target locks,
/// but not for longer than this.
const TIMERS_LIMIT: Duration = Duration::from_secs(60);
const ROTATION_LIMIT: Duration = Duration::from_secs(10 * 60);

impl Daemon {
    /// `WATCHDOG=1` only while the timer queue runs, no rotation has been in progress for
    /// too long and no credential task has died. Each look costs the same whatever the
    /// number of credentials.
    pub(super) fn watchdog(&mut self) {
        let mut stuck = Vec::new();
        let silence = self.shared.timers.silence();
        if silence > TIMERS_LIMIT {
            stuck.push(("the timer queue".to_owned(), silence));
        }
        if let Some((name, took)) = self.shared.liveness.oldest_rotation()
            && took > ROTATION_LIMIT
        {
            stuck.push((format!("credential {name}"), took));
        }
        for name in self.shared.liveness.dead() {
            if self.workers.contains_key(&name) {
                stuck.push((format!("credential {name}"), Duration::ZERO));
            }
        }
        self.shared
            .model
            .vitals()
            .beat(stuck.iter().map(|(what, _)| what.clone()).collect());
        if stuck.is_empty() {
            self.stuck_reported.clear();
            systemd::watchdog();
        } else {
            for (what, silence) in stuck {
                if self.stuck_reported.insert(what.clone()) {
                    tracing::error!(task = %what, silent_for = %format!("{}s", silence.as_secs()), "a task is not responding or has died; withholding the watchdog ping so the service manager restarts refreshd");
                }
            }
        }
        let summary = self.summary();
        systemd::status(&summary);
    }
}
