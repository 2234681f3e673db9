//! Who waits for which execution: a result asked with `?wait=`, an event
//! stream. Each waits on its execution's own `Notify`, so a change wakes only
//! the waiters of that execution, however many wait for others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// Past this many entries, a new watch first drops those nobody holds.
const PRUNE_ABOVE: usize = 256;

#[derive(Default)]
pub struct ExecutionWatchers {
    watched: Mutex<HashMap<String, Weak<Notify>>>,
}

impl ExecutionWatchers {
    /// The `Notify` of an execution, shared by all its waiters. Create the
    /// `notified()` future (and `enable` it) before reading the execution, so
    /// that a change between the read and the wait is not missed.
    pub fn watch(&self, execution_id: &str) -> Arc<Notify> {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = watched.get(execution_id).and_then(Weak::upgrade) {
            return notify;
        }
        if watched.len() > PRUNE_ABOVE {
            watched.retain(|_, notify| notify.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        watched.insert(execution_id.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes the waiters of an execution, if any.
    pub fn changed(&self, execution_id: &str) {
        let notify = {
            let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            watched.get(execution_id).and_then(Weak::upgrade)
        };
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn a_change_wakes_the_waiters_of_its_execution_only() {
        let watchers = ExecutionWatchers::default();
        let (a, b) = (watchers.watch("a"), watchers.watch("b"));
        let (mut on_a, mut on_b) = (Box::pin(a.notified()), Box::pin(b.notified()));
        on_a.as_mut().enable();
        on_b.as_mut().enable();
        watchers.changed("a");
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(on_a.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(on_b.as_mut().poll(&mut cx), Poll::Pending);
    }

    #[test]
    fn entries_nobody_holds_are_dropped() {
        let watchers = ExecutionWatchers::default();
        for n in 0..=PRUNE_ABOVE + 1 {
            drop(watchers.watch(&n.to_string()));
        }
        let held = watchers.watch("held");
        assert!(watchers.watched.lock().unwrap().len() <= 2);
        assert!(Arc::ptr_eq(&held, &watchers.watch("held")));
    }
}
