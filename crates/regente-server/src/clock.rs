//! The server's one source of time. Everything that decides by the time of day
//! (when a run was submitted, whether a runtime is silent for too long, when a
//! schedule fires) asks the [`Clock`] in the [`Context`](crate::service::Context),
//! so that tests can move time by hand ([`ManualClock`]) instead of waiting.
//!
//! Durations measured for their own sake (a request's latency, how long a
//! token stays remembered) use `Instant`: they never need to be moved.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regente_store::Millis;
use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
    /// Completes once [`Clock::now`] has reached `at`.
    fn sleep_until(&self, at: Millis) -> Sleep;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as Millis)
            .unwrap_or(0)
    }

    fn sleep_until(&self, at: Millis) -> Sleep {
        let wait = Duration::from_millis((at - self.now()).max(0) as u64);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told: for tests of what depends on the time of
/// day (daylight saving changes, catching up after downtime).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
    moved: watch::Sender<Millis>,
}

impl ManualClock {
    pub fn new(start: Millis) -> ManualClock {
        ManualClock {
            now: Arc::new(AtomicI64::new(start)),
            moved: watch::channel(start).0,
        }
    }

    /// Moves the clock to `to` (never backwards) and wakes the sleepers due.
    pub fn set(&self, to: Millis) {
        let now = self.now.fetch_max(to, Ordering::SeqCst).max(to);
        self.moved.send_replace(now);
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by.as_millis() as Millis);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at: Millis) -> Sleep {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            let _ = moved.wait_for(|now| *now >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;

    fn is_done(sleep: &mut Sleep) -> bool {
        sleep
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[test]
    fn a_manual_clock_wakes_a_sleeper_only_once_moved_past_its_time() {
        let clock = ManualClock::new(1_000);
        let mut sleep = clock.sleep_until(1_500);
        assert!(!is_done(&mut sleep));
        clock.advance(Duration::from_millis(499));
        assert!(!is_done(&mut sleep), "woke before its time");
        clock.advance(Duration::from_millis(1));
        assert!(is_done(&mut sleep));
        assert_eq!(clock.now(), 1_500);
    }

    #[test]
    fn a_manual_clock_never_goes_back() {
        let clock = ManualClock::new(5_000);
        clock.set(4_000);
        assert_eq!(clock.now(), 5_000);
    }
}
