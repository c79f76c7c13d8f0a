//! Locks shared between threads, taken the one way: a lock whose holder panicked is used
//! anyway. Every value guarded in refreshd is plain data that a panic cannot leave half
//! changed (maps and sets updated by one call, flags, counters), and a panicking task must
//! not take every later user of the lock down with it.
//!
//! Must never: guard a value whose update takes several steps that a panic could split.

use std::sync::{Mutex, MutexGuard};

/// `mutex`, locked, whether or not an earlier holder panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
