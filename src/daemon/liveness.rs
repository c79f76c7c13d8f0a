//! What the watchdog looks at, kept up to date as things happen so that a look costs the
//! same with ten credentials or ten thousand: the rotations in progress ordered by when they
//! started, and the credential tasks that ended without being asked to (a panic).
//!
//! It only records: it never stops, restarts or pings anything.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;

#[derive(Default)]
pub struct Liveness {
    in_flight: Mutex<BTreeSet<(Instant, u64, String)>>,
    next_id: AtomicU64,
    died: Mutex<BTreeSet<String>>,
}

impl Liveness {
    /// Marks a rotation of `name` in progress until the guard is dropped.
    pub fn rotating(self: &Arc<Self>, name: &str) -> Rotating {
        let key = (
            Instant::now(),
            self.next_id.fetch_add(1, Ordering::Relaxed),
            name.to_owned(),
        );
        lock(&self.in_flight).insert(key.clone());
        Rotating {
            liveness: self.clone(),
            key,
        }
    }

    /// The rotation in progress for the longest time, and for how long.
    pub fn oldest_rotation(&self) -> Option<(String, Duration)> {
        lock(&self.in_flight)
            .first()
            .map(|(started, _, name)| (name.clone(), started.elapsed()))
    }

    /// A guard for the task of `name`: unless [`Alive::stopped`] is called, dropping it
    /// (the task panicked) records the task as dead.
    pub fn alive(self: &Arc<Self>, name: &str) -> Alive {
        lock(&self.died).remove(name);
        Alive {
            liveness: self.clone(),
            name: name.to_owned(),
            stopped: false,
        }
    }

    /// Credentials whose task ended without being asked to.
    pub fn dead(&self) -> Vec<String> {
        lock(&self.died).iter().cloned().collect()
    }
}

pub struct Rotating {
    liveness: Arc<Liveness>,
    key: (Instant, u64, String),
}

impl Drop for Rotating {
    fn drop(&mut self) {
        lock(&self.liveness.in_flight).remove(&self.key);
    }
}

pub struct Alive {
    liveness: Arc<Liveness>,
    name: String,
    stopped: bool,
}

impl Alive {
    /// The task ends because it was asked to.
    pub fn stopped(mut self) {
        self.stopped = true;
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        if !self.stopped {
            lock(&self.liveness.died).insert(std::mem::take(&mut self.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_oldest_rotation_in_progress_is_named() {
        let liveness = Arc::new(Liveness::default());
        assert_eq!(liveness.oldest_rotation(), None);
        let first = liveness.rotating("a");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let second = liveness.rotating("b");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            liveness.oldest_rotation(),
            Some(("a".to_owned(), Duration::from_secs(6)))
        );
        drop(first);
        assert_eq!(
            liveness.oldest_rotation(),
            Some(("b".to_owned(), Duration::from_secs(1)))
        );
        drop(second);
        assert_eq!(liveness.oldest_rotation(), None);
    }

    #[tokio::test]
    async fn a_task_that_panics_is_dead_one_that_stops_is_not() {
        let liveness = Arc::new(Liveness::default());
        let alive = liveness.alive("stops");
        tokio::spawn(async move { alive.stopped() }).await.unwrap();
        let alive = liveness.alive("panics");
        let panicked = tokio::spawn(async move {
            let _alive = alive;
            panic!("a bug");
        })
        .await;
        assert!(panicked.is_err());
        assert_eq!(liveness.dead(), vec!["panics".to_owned()]);
        // Started again (a reload), it is alive again.
        let _again = liveness.alive("panics");
        assert!(liveness.dead().is_empty());
    }
}
