//! Locks that outlive a panic: state behind a std mutex stays usable after a thread panicked
//! while holding it (every writer leaves it whole between statements), so busbar never
//! propagates lock poisoning.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the guard back from a poisoned lock.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
