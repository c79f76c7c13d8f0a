//! Locking shared in-memory values: the one way refreshd takes a `std::sync::Mutex`.
//! It must never guard a value that a panicking holder could leave half-changed: such a
//! value needs a `Mutex` whose poisoning is acted on, not [`lock`].

use std::sync::{Mutex, MutexGuard};

/// Takes `mutex`, recovering the value if a thread panicked while holding it.
///
/// Sound because every value refreshd guards this way is plain data that each critical
/// section changes by whole assignments (a cache slot, a set, a counter), never left
/// half-changed: the value a panicking holder left is one some thread meant to store. A
/// panic elsewhere then costs no more than that thread, instead of spreading to every
/// later holder of the lock.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_value() {
        let mutex = std::sync::Arc::new(Mutex::new(7));
        let held = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 8);
    }
}
