//! The daemon's vitals: what its watchdog last concluded and whether its first round is
//! done, the same signals as sd_notify's `WATCHDOG=1` and `READY=1`, which `/livez` and
//! `/readyz` answer from. The supervisor records them; it never looks at a credential.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;

/// The watchdog's last verdict and whether the first round is done: the same signals as
/// sd_notify's `WATCHDOG=1` and `READY=1`, for HTTP probes.
pub struct Vitals {
    beat: Mutex<Beat>,
    /// How often the watchdog looks.
    interval: Duration,
    ready: AtomicBool,
    /// Draining after SIGTERM: the watchdog no longer looks, yet the daemon must not be
    /// killed while rotations in flight are stored.
    stopping: AtomicBool,
}

struct Beat {
    at: Instant,
    stuck: Vec<String>,
}

impl Vitals {
    pub fn new(interval: Duration) -> Vitals {
        Vitals {
            beat: Mutex::new(Beat {
                at: Instant::now(),
                stuck: Vec::new(),
            }),
            interval,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// How often the watchdog looks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The daemon is stopping: alive until it exits.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The watchdog looked; `stuck` names what is not responding (empty: all is well).
    pub fn beat(&self, stuck: Vec<String>) {
        *lock(&self.beat) = Beat {
            at: Instant::now(),
            stuck,
        };
    }

    /// Alive: the watchdog looked within two of its intervals and found nothing stuck. A
    /// supervisor too busy or wedged to look counts as not alive.
    pub fn alive(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        let beat = lock(&self.beat);
        if !beat.stuck.is_empty() {
            return Err(format!("not responding: {}", beat.stuck.join(", ")));
        }
        let since = beat.at.elapsed();
        if since > self.interval * 2 {
            return Err(format!(
                "the supervisor has not checked in for {}s",
                since.as_secs()
            ));
        }
        Ok(())
    }

    /// Every credential finished its first attempt.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn vitals_fail_when_something_is_stuck_or_the_watchdog_stops_looking() {
        let vitals = Vitals::new(Duration::from_secs(30));
        assert_eq!(vitals.alive(), Ok(()));
        vitals.beat(vec!["the timer queue".to_owned()]);
        assert_eq!(
            vitals.alive(),
            Err("not responding: the timer queue".to_owned())
        );
        vitals.beat(Vec::new());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(vitals.alive(), Ok(()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            vitals.alive(),
            Err("the supervisor has not checked in for 61s".to_owned())
        );
        assert!(!vitals.ready());
        vitals.set_ready();
        assert!(vitals.ready());
        // Draining after SIGTERM, the watchdog stops looking: still alive.
        vitals.set_stopping();
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(vitals.alive(), Ok(()));
    }
}
