//! A broadcast channel that knows whether anyone listens, so producers on the message path
//! build an event only when it will be read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

/// Fan-out of events of type `T` to any number of watchers. Slow watchers lose the oldest
/// events (they are told how many); producers never wait.
#[derive(Debug)]
pub struct Tap<T> {
    tx: broadcast::Sender<T>,
    watchers: Arc<AtomicUsize>,
}

impl<T: Clone> Tap<T> {
    /// A tap whose watchers each buffer up to `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
            watchers: Arc::default(),
        }
    }

    /// Whether anyone watches (one relaxed atomic load).
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Builds and sends an event, only when someone watches.
    pub fn emit(&self, event: impl FnOnce() -> T) {
        if self.watched() {
            let _ = self.tx.send(event());
        }
    }

    /// A new watcher; it sees events emitted from now on.
    pub fn subscribe(&self) -> TapReceiver<T> {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        TapReceiver {
            rx: self.tx.subscribe(),
            watchers: self.watchers.clone(),
        }
    }
}

/// One watcher of a [`Tap`]; dropping it stops the tap's work for it.
#[derive(Debug)]
pub struct TapReceiver<T> {
    rx: broadcast::Receiver<T>,
    watchers: Arc<AtomicUsize>,
}

impl<T: Clone> TapReceiver<T> {
    /// The next event: `Ok(event)`, or `Err(n)` when this watcher fell behind and lost `n`
    /// events. `None` once the tap is gone.
    pub async fn recv(&mut self) -> Option<Result<T, u64>> {
        match self.rx.recv().await {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl<T> Drop for TapReceiver<T> {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_events_only_while_watched() {
        let tap = Tap::<u32>::new(4);
        let mut built = 0;
        tap.emit(|| {
            built += 1;
            1
        });
        assert_eq!(built, 0, "nobody watches: the event is not built");
        let mut rx = tap.subscribe();
        assert!(tap.watched());
        tap.emit(|| 2);
        assert_eq!(rx.recv().await, Some(Ok(2)));
        drop(rx);
        assert!(!tap.watched());
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_what_it_lost() {
        let tap = Tap::<u32>::new(2);
        let mut rx = tap.subscribe();
        for i in 0..5 {
            tap.emit(|| i);
        }
        assert_eq!(rx.recv().await, Some(Err(3)));
        assert_eq!(rx.recv().await, Some(Ok(3)));
    }
}
