//! The daemon's one timer queue: every credential's next wall-clock deadline in one ordered
//! map, and one task that sleeps until the earliest. Deadlines are wall-clock times because
//! tokio's timers do not count time spent suspended: that task never sleeps longer than
//! [`clock::CHUNK`] before it looks at the wall clock again, so after a laptop sleeps, or
//! the clock steps, overdue credentials are woken within one chunk. Idle, the daemon wakes
//! once a chunk whatever the number of credentials.
//!
//! It only wakes: it never rotates, and a wait that is given up (a `rotate` request came
//! first) leaves nothing behind in the queue.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, oneshot};

use crate::clock::{self, SharedClock};

/// The queue, shared by every credential task and the timer task.
#[derive(Clone)]
pub struct Timers {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SharedClock,
    queue: Mutex<Queue>,
    /// A deadline earlier than every other was added: the timer task re-plans its nap.
    earlier: Notify,
    /// Milliseconds since `base` at the timer task's last look at the clock.
    last_look_ms: AtomicU64,
    base: tokio::time::Instant,
}

#[derive(Default)]
struct Queue {
    deadlines: BTreeMap<(OffsetDateTime, u64), oneshot::Sender<()>>,
    next_id: u64,
}

impl Timers {
    /// The queue and the task that fires it (the caller owns the task and aborts it on exit).
    pub fn start(clock: SharedClock) -> (Timers, tokio::task::JoinHandle<()>) {
        let timers = Timers {
            inner: Arc::new(Inner {
                clock,
                queue: Mutex::default(),
                earlier: Notify::new(),
                last_look_ms: AtomicU64::new(0),
                base: tokio::time::Instant::now(),
            }),
        };
        let task = tokio::spawn(fire(timers.inner.clone()));
        (timers, task)
    }

    /// Resolves once the wall clock says `deadline` has come. Dropping it before then takes
    /// the deadline out of the queue.
    pub fn sleep_until(&self, deadline: OffsetDateTime) -> Alarm {
        if self.inner.clock.now() >= deadline {
            return Alarm {
                inner: self.inner.clone(),
                key: None,
                rx: None,
            };
        }
        let (tx, rx) = oneshot::channel();
        let mut queue = self.inner.lock();
        let id = queue.next_id;
        queue.next_id += 1;
        let earliest = queue.deadlines.first_key_value().map(|((at, _), _)| *at);
        queue.deadlines.insert((deadline, id), tx);
        drop(queue);
        if earliest.is_none_or(|earliest| deadline < earliest) {
            self.inner.earlier.notify_one();
        }
        Alarm {
            inner: self.inner.clone(),
            key: Some((deadline, id)),
            rx: Some(rx),
        }
    }

    /// How long since the timer task last looked at the clock: the daemon's heartbeat (it
    /// looks at least once every [`clock::CHUNK`] while the runtime is alive).
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_look_ms.load(Ordering::Relaxed));
        self.inner.base.elapsed().saturating_sub(last)
    }

    /// Deadlines waiting (for tests and the benchmark's sanity).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().deadlines.len()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing in the queue is left half-changed by a panic: a poisoned lock is usable.
        crate::sync::lock(&self.queue)
    }
}

/// The timer task: fires every due deadline, then naps until the earliest one, at most one
/// chunk, or until an earlier deadline arrives.
async fn fire(inner: Arc<Inner>) {
    loop {
        let now = inner.clock.now();
        let ms = inner.base.elapsed().as_millis() as u64;
        inner.last_look_ms.store(ms, Ordering::Relaxed);
        let earliest = {
            let mut queue = inner.lock();
            while let Some(entry) = queue.deadlines.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                // A receiver that is gone was given up; nothing to tell.
                let _ = entry.remove().send(());
            }
            queue.deadlines.first_key_value().map(|((at, _), _)| *at)
        };
        let nap = earliest
            .and_then(|at| clock::next_nap(now, at, clock::CHUNK))
            .unwrap_or(clock::CHUNK);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = inner.earlier.notified() => {}
        }
    }
}

/// One credential's wait (see [`Timers::sleep_until`]).
pub struct Alarm {
    inner: Arc<Inner>,
    key: Option<(OffsetDateTime, u64)>,
    rx: Option<oneshot::Receiver<()>>,
}

impl Future for Alarm {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(());
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.key = None;
                Poll::Ready(())
            }
            // The queue is gone (the daemon is stopping): never fire; the stop ends the wait.
            Poll::Ready(Err(_)) => Poll::Pending,
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.inner.lock().deadlines.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::clock::fake::FakeClock;

    fn minutes(m: i64) -> time::Duration {
        time::Duration::minutes(m)
    }

    #[tokio::test(start_paused = true)]
    async fn without_jumps_the_wait_takes_the_whole_interval() {
        let clock = FakeClock::new();
        let (timers, _task) = Timers::start(clock.clone());
        let started = tokio::time::Instant::now();
        timers.sleep_until(clock.now() + minutes(50)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(50 * 60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_forward_jump_wakes_within_one_chunk() {
        let clock = FakeClock::new();
        let (timers, _task) = Timers::start(clock.clone());
        let deadline = clock.now() + minutes(50);
        let waiting = {
            let timers = timers.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                timers.sleep_until(deadline).await;
                started.elapsed()
            })
        };
        // Ten monotonic minutes pass, then the machine sleeps for two hours.
        tokio::time::sleep(Duration::from_secs(600)).await;
        clock.jump(time::Duration::hours(2));
        let waited = waiting.await.unwrap();
        assert!(
            waited <= Duration::from_secs(600) + clock::CHUNK,
            "woke {waited:?} after start, more than one chunk after the jump"
        );
        assert!(clock.now() >= deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backward_jump_waits_for_the_wall_clock() {
        let clock = FakeClock::new();
        let (timers, _task) = Timers::start(clock.clone());
        let deadline = clock.now() + minutes(5);
        clock.jump(minutes(-5));
        let started = tokio::time::Instant::now();
        timers.sleep_until(deadline).await;
        assert_eq!(started.elapsed(), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn many_deadlines_fire_in_order_each_on_time() {
        let clock = FakeClock::new();
        let (timers, _task) = Timers::start(clock.clone());
        let start = clock.now();
        // Added latest first, so each new one is the earliest and re-plans the nap.
        let mut waits = Vec::new();
        for seconds in [3600, 900, 61, 7, 1] {
            let timers = timers.clone();
            let clock = clock.clone();
            let deadline = start + time::Duration::seconds(seconds);
            waits.push(tokio::spawn(async move {
                timers.sleep_until(deadline).await;
                (deadline, clock.now())
            }));
        }
        for wait in waits {
            let (deadline, woke) = wait.await.unwrap();
            assert_eq!(woke, deadline, "woke late or early");
        }
        assert_eq!(timers.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_leaves_nothing_in_the_queue() {
        let clock = FakeClock::new();
        let (timers, _task) = Timers::start(clock.clone());
        let alarm = timers.sleep_until(clock.now() + minutes(5));
        assert_eq!(timers.len(), 1);
        tokio::select! {
            _ = alarm => panic!("fired early"),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        assert_eq!(timers.len(), 0);
        // A deadline already past resolves at once, without the queue.
        let past = timers.sleep_until(clock.now() - minutes(1));
        assert_eq!(timers.len(), 0);
        past.await;
    }

    #[tokio::test(start_paused = true)]
    async fn idle_the_timer_task_looks_at_the_clock_once_a_chunk() {
        let clock = FakeClock::new();
        let (timers, _task) = Timers::start(clock.clone());
        let _far: Vec<Alarm> = (0..1000)
            .map(|i| timers.sleep_until(clock.now() + time::Duration::hours(1 + i)))
            .collect();
        tokio::task::yield_now().await;
        let before = clock.looks();
        tokio::time::sleep(Duration::from_secs(10 * 60)).await;
        let looks = clock.looks() - before;
        let chunks = (10 * 60 / clock::CHUNK.as_secs()) as usize;
        assert!(
            (chunks - 1..=chunks + 1).contains(&looks),
            "{looks} looks at the clock in 10 idle minutes"
        );
        assert!(timers.silence() <= clock::CHUNK);
    }
}
