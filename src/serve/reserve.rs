//! The places kept for the probes once a listener's general places are all taken: a few
//! connections, each answered only if it is a probe, and each evicting the oldest when none
//! is free.
//!
//! Why eviction rather than a second limit: any fixed number of places can be held by
//! whoever opens that many connections and sends nothing. A probe sends its request as soon
//! as it connects and is answered from memory, so it lives about a millisecond; a connection
//! that holds a reserved place for long is one that sends nothing. Evicting the oldest makes
//! such holders cost a connection per eviction: to refuse a probe, a client must open
//! [`Reserve::places`] connections within that millisecond, not merely keep some open.
//!
//! It never decides what a connection is answered; it only keeps and evicts places.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;

/// How many connections the reserve keeps, and how long each may take to send its request.
#[derive(Debug, Clone, Copy)]
pub struct Reserve {
    pub places: usize,
    /// Time for the request head of a reserved connection (a probe's is a few bytes sent at
    /// once), and again for its answer.
    pub head: Duration,
}

/// The reserved connections in the order they came, each by its task.
#[derive(Clone, Default)]
pub struct Reserved {
    held: Arc<Mutex<VecDeque<(u64, AbortHandle)>>>,
}

impl Reserved {
    /// Takes a place for the connection numbered `id`, served by the task `spawn` starts,
    /// evicting (aborting, which closes its socket) the oldest when `places` are taken. The
    /// task is started under the lock, so its [`Reserved::give_back`] comes after.
    pub fn take(&self, places: usize, id: u64, spawn: impl FnOnce() -> AbortHandle) {
        let mut held = crate::sync::lock(&self.held);
        while held.len() >= places.max(1) {
            if let Some((_, oldest)) = held.pop_front() {
                oldest.abort();
            }
        }
        held.push_back((id, spawn()));
    }

    /// Gives `id`'s place back (its connection ended).
    pub fn give_back(&self, id: u64) {
        crate::sync::lock(&self.held).retain(|(held, _)| *held != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_is_evicted_when_the_reserve_is_full() {
        let reserved = Reserved::default();
        let idle = || tokio::spawn(std::future::pending::<()>());
        let tasks: Vec<_> = (0..3).map(|_| idle()).collect();
        for (id, task) in tasks.iter().enumerate() {
            reserved.take(2, id as u64, || task.abort_handle());
        }
        tokio::task::yield_now().await;
        assert!(tasks[0].is_finished(), "the oldest keeps its place");
        assert!(!tasks[1].is_finished() && !tasks[2].is_finished());
        // A place given back is not evicted again.
        reserved.give_back(1);
        let fourth = idle();
        reserved.take(2, 3, || fourth.abort_handle());
        tokio::task::yield_now().await;
        assert!(!tasks[2].is_finished() && !fourth.is_finished());
        tasks[1].abort();
    }
}
