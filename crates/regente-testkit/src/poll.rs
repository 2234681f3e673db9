//! Waiting without sleeping to synchronise: every wait polls with a deadline.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often [`wait_for`] and [`wait_until`] look again.
pub const POLL: Duration = Duration::from_millis(50);

/// Calls `probe` every `every` until it answers `Some`; `None` once `timeout`
/// has passed since the first call (the probe runs at least once).
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `probe` every `every` until it answers `Ok`, and panics after
/// `timeout` with what was awaited and the last `Err` it answered.
pub fn wait_for_every<T, O: Debug>(
    every: Duration,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, O>,
) -> T {
    let started = Instant::now();
    let mut last = None;
    let found = poll(timeout, every, || match probe() {
        Ok(value) => Some(value),
        Err(observed) => {
            last = Some(observed);
            None
        }
    });
    found.unwrap_or_else(|| {
        panic!(
            "timed out after {:.1} s waiting for {what}; last observed: {:#?}",
            started.elapsed().as_secs_f64(),
            last.expect("a probe that failed")
        )
    })
}

/// [`wait_for_every`] at the usual pace ([`POLL`]).
pub fn wait_for<T, O: Debug>(
    timeout: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, O>,
) -> T {
    wait_for_every(POLL, timeout, what, probe)
}

/// Polls `probe` until it answers `Some`, and panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_for(timeout, what, || probe().ok_or("nothing yet (None)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_answers_the_first_ok() {
        let mut calls = 0;
        let found = wait_for(Duration::from_secs(10), "the third call", || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(calls)
            }
        });
        assert_eq!(found, 3);
    }

    #[test]
    fn wait_for_says_what_it_waited_for_and_what_it_saw_last() {
        let panic = std::panic::catch_unwind(|| {
            wait_for_every(
                Duration::from_millis(1),
                Duration::ZERO,
                "a miracle",
                || Err::<(), _>("still nothing"),
            )
        })
        .expect_err("a timeout");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("waiting for a miracle"), "{message}");
        assert!(message.contains("still nothing"), "{message}");
    }

    #[test]
    fn poll_runs_the_probe_once_even_without_time() {
        let mut calls = 0;
        let found: Option<()> = poll(Duration::ZERO, Duration::from_millis(1), || {
            calls += 1;
            None
        });
        assert_eq!((found, calls), (None, 1));
    }
}
