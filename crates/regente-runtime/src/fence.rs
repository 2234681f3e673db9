//! Self-fencing: an agent that has heard from no server for most of the
//! runtime timeout stops its robots, so that a robot never runs on a cut-off
//! machine while the server, having declared the runtime lost, hands its work
//! (with `retries`) to another copy.
//!
//! The server declares a runtime lost once it has heard nothing from it for the
//! runtime timeout T (at the earliest two sweep periods short of it: T - T/15
//! after the last word while the sweep runs every T/30, see the server's
//! sweeper). Both ends send heartbeats every T/6, so when the network between
//! them goes, the server's last word from the agent is at most T/6 older than
//! the agent's last word from the server. The agent fences at 2T/3 of silence:
//! at least T/3 - T/6 - T/15 = T/10 (3 s with the default 30 s) before the
//! server can act, which is the margin for the kill and for clocks running
//! unevenly. Under 1.5 s the sweep's 50 ms floor takes from it (67 ms are left
//! at 1 s, the tests' shortest timeout). The agent gives up on a silent
//! connection at T/2, so that it can reach another server before it has to
//! fence.

use std::time::Duration;

use tokio::time::Instant;

/// How long before fencing the agent waits for a server's timeout to be known.
const UNKNOWN_TIMEOUT_RECHECK: Duration = Duration::from_secs(1);

/// The silence after which an agent stops its robots, for a runtime timeout.
pub fn fence_after(runtime_timeout: Duration) -> Duration {
    runtime_timeout - runtime_timeout / 3
}

pub struct Fence {
    last_heard: Instant,
    /// Known from the server's welcome.
    after: Option<Duration>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            last_heard: Instant::now(),
            after: None,
        }
    }
}

impl Fence {
    /// A server said something.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// The runtime timeout, as the server's welcome gives it.
    pub fn set_timeout(&mut self, runtime_timeout: Duration) {
        self.after = Some(fence_after(runtime_timeout));
    }

    pub fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Whether the robots must stop now.
    pub fn is_due(&self) -> bool {
        self.after.is_some_and(|after| self.silent_for() >= after)
    }

    /// When to look again: at the fence point of the current silence, or, when
    /// it has passed (robots fenced, or none running, and none can start
    /// without word from a server), one fence period from now.
    pub fn next_check(&self) -> Instant {
        let now = Instant::now();
        match self.after {
            None => now + UNKNOWN_TIMEOUT_RECHECK,
            Some(after) if self.last_heard + after > now => self.last_heard + after,
            Some(after) => now + after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The earliest silence after which the server's sweeper declares a
    /// runtime lost (regente-server's `hub::sweeper::lost_after`: two sweep
    /// periods of T/30, within 50 ms to 1 s, short of the timeout).
    fn server_earliest(timeout: Duration) -> Duration {
        let sweep_period = (timeout / 30).clamp(Duration::from_millis(50), Duration::from_secs(1));
        timeout - 2 * sweep_period
    }

    #[test]
    fn the_fence_comes_before_the_server_can_declare_the_runtime_lost() {
        for seconds in [1.0, 1.5, 3.0, 30.0, 300.0] {
            let timeout = Duration::from_secs_f64(seconds);
            let heartbeat = timeout / 6;
            let server_earliest = server_earliest(timeout);
            // Worst case: the agent heard its last word a heartbeat after the
            // server heard the agent's.
            let fenced = heartbeat + fence_after(timeout);
            assert!(fenced < server_earliest, "{seconds} s");
            if seconds >= 1.5 {
                assert!(
                    fenced + timeout / 10 <= server_earliest,
                    "{seconds} s: a margin of T/10 at least"
                );
            } else {
                assert!(
                    fenced + Duration::from_millis(60) <= server_earliest,
                    "{seconds} s: a margin of 60 ms at least"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn due_only_after_the_fence_point_of_a_known_timeout() {
        let mut fence = Fence::default();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(!fence.is_due(), "no timeout known: no fence");
        fence.set_timeout(Duration::from_secs(30));
        fence.heard();
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(!fence.is_due());
        assert_eq!(fence.next_check(), Instant::now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(fence.is_due());
        fence.heard();
        assert!(!fence.is_due());
    }
}
