//! Wall-clock waiting. Deadlines are wall-clock times, because tokio's timers do not count
//! time spent suspended: after a laptop sleeps, or the clock jumps, a monotonic sleep would
//! refresh long after the token died. So waits are cut into bounded chunks, each followed
//! by a fresh look at the wall clock. The clock is injectable so this is unit-tested.
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
#[allow(clippy::disallowed_methods)]
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

/// Returns once the wall clock says `deadline` has come, calling `beat` after every nap
/// (the watchdog's proof that this task is alive).
pub async fn sleep_until(
    clock: &dyn Clock,
    deadline: OffsetDateTime,
    chunk: Duration,
    mut beat: impl FnMut(),
) {
    while let Some(nap) = next_nap(clock.now(), deadline, chunk) {
        tokio::time::sleep(nap).await;
        beat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock that follows tokio's (paused) time, plus jumps the test makes.
    struct FakeClock {
        start_wall: OffsetDateTime,
        start_mono: tokio::time::Instant,
        jumped: Mutex<time::Duration>,
    }

    impl FakeClock {
        fn new() -> Arc<FakeClock> {
            Arc::new(FakeClock {
                start_wall: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
                start_mono: tokio::time::Instant::now(),
                jumped: Mutex::new(time::Duration::ZERO),
            })
        }
        /// A suspend or a clock step: wall time moves, monotonic time does not.
        fn jump(&self, by: time::Duration) {
            *self.jumped.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> OffsetDateTime {
            let mono = tokio::time::Instant::now() - self.start_mono;
            self.start_wall + mono + *self.jumped.lock().unwrap()
        }
    }

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

    #[tokio::test(start_paused = true)]
    async fn without_jumps_the_wait_takes_the_whole_interval() {
        let clock = FakeClock::new();
        let deadline = clock.now() + time::Duration::minutes(50);
        let started = tokio::time::Instant::now();
        let mut beats = 0;
        sleep_until(clock.as_ref(), deadline, CHUNK, || beats += 1).await;
        assert_eq!(started.elapsed(), Duration::from_secs(50 * 60));
        assert_eq!(beats, 50 * 60 / 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forward_jump_wakes_within_one_chunk() {
        let clock = FakeClock::new();
        let deadline = clock.now() + time::Duration::minutes(50);
        let waiting = {
            let clock = clock.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                sleep_until(clock.as_ref(), deadline, CHUNK, || {}).await;
                started.elapsed()
            })
        };
        // Ten monotonic minutes pass, then the machine sleeps for two hours.
        tokio::time::sleep(Duration::from_secs(600)).await;
        clock.jump(time::Duration::hours(2));
        let waited = waiting.await.unwrap();
        assert!(
            waited <= Duration::from_secs(600) + CHUNK,
            "woke {waited:?} after start, more than one chunk after the jump"
        );
        assert!(clock.now() >= deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backward_jump_waits_for_the_wall_clock() {
        let clock = FakeClock::new();
        let deadline = clock.now() + time::Duration::minutes(5);
        clock.jump(time::Duration::minutes(-5));
        let started = tokio::time::Instant::now();
        sleep_until(clock.as_ref(), deadline, CHUNK, || {}).await;
        assert_eq!(started.elapsed(), Duration::from_secs(600));
    }
}
