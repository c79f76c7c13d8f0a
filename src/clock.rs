//! Telling the time, and how long to nap before looking again. Deadlines are wall-clock
//! times, because tokio's timers do not count time spent suspended: after a laptop sleeps,
//! or the clock jumps, a monotonic sleep would refresh long after the token died. So waits
//! are cut into bounded chunks, each followed by a fresh look at the wall clock (the
//! daemon's one timer queue, `daemon::timers`, does this for every credential at once).
//!
//! This is the one place refreshd reads the system clock (`clippy.toml` bans
//! `OffsetDateTime::now_utc` and `std::time::Instant::now` elsewhere): everything else is
//! handed `now`, or a [`Clock`], so tests can move time. Nothing here refreshes anything;
//! it only tells the time and decides when to wake.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// The longest monotonic sleep between two looks at the wall clock: an overdue credential
/// is noticed at most this long after the machine wakes.
pub const CHUNK: Duration = Duration::from_secs(15);

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        system_now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The system clock, for one-shot commands that have no clock handed to them.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The wall clock now, in UTC.
#[expect(
    clippy::disallowed_methods,
    reason = "the one place the crate reads the wall clock"
)]
pub fn system_now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// How long to sleep before looking at the clock again; `None` once `deadline` has passed.
pub fn next_nap(
    now: OffsetDateTime,
    deadline: OffsetDateTime,
    chunk: Duration,
) -> Option<Duration> {
    if now >= deadline {
        return None;
    }
    let left = (deadline - now).unsigned_abs();
    Some(left.min(chunk))
}

/// A clock tests move by hand: it follows tokio's (paused) time, plus the jumps a test
/// makes (a suspend or a clock step), and counts how often it is read.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct FakeClock {
        start_wall: OffsetDateTime,
        start_mono: tokio::time::Instant,
        jumped: Mutex<time::Duration>,
        looks: AtomicUsize,
    }

    impl FakeClock {
        pub fn new() -> Arc<FakeClock> {
            Arc::new(FakeClock {
                start_wall: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
                start_mono: tokio::time::Instant::now(),
                jumped: Mutex::new(time::Duration::ZERO),
                looks: AtomicUsize::new(0),
            })
        }

        /// Wall time moves, monotonic time does not.
        pub fn jump(&self, by: time::Duration) {
            *self.jumped.lock().unwrap() += by;
        }

        /// How many times the clock was read.
        pub fn looks(&self) -> usize {
            self.looks.load(Ordering::Relaxed)
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> OffsetDateTime {
            self.looks.fetch_add(1, Ordering::Relaxed);
            let mono = tokio::time::Instant::now() - self.start_mono;
            self.start_wall + mono + *self.jumped.lock().unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naps_are_bounded_by_the_chunk_and_the_deadline() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let chunk = Duration::from_secs(15);
        assert_eq!(
            next_nap(t, t + time::Duration::hours(1), chunk),
            Some(chunk)
        );
        assert_eq!(
            next_nap(t, t + time::Duration::seconds(4), chunk),
            Some(Duration::from_secs(4))
        );
        assert_eq!(next_nap(t, t, chunk), None);
        assert_eq!(next_nap(t + time::Duration::hours(2), t, chunk), None);
    }
}
