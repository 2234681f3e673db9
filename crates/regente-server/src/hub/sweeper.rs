//! Ends the leases of runtimes that stopped answering, so that an execution never
//! stays RUNNING for long after its runtime died, and records those runtimes
//! offline.
//!
//! A runtime is lost once silent for the runtime timeout T: the sweep runs every
//! p = T/30 (at most 1 s) and ends the leases of a runtime silent for T - 2p, so
//! that they end between T - 2p and T - p after the runtime's last word (28 to
//! 29 s with the default 30 s), within T even when the sweep runs late. Its
//! session ends at the same silence (or at once when the connection drops) and
//! records that last word first. Agents stop their robots well before (see
//! `regente_runtime::fence`).

use std::sync::Arc;
use std::time::Duration;

use regente_core::ExecutionStatus;
use regente_store::{LostOutcome, Millis};
use tracing::{error, warn};

use crate::service::Context;
use crate::supervisor::StopSignal;

/// How often the sweep runs, for a runtime timeout.
pub fn period(timeout: Duration) -> Duration {
    (timeout / 30).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// The silence after which a runtime's leases end: two periods short of the
/// timeout, so that the sweep that ends them, late by up to a period, still
/// does within the timeout.
pub fn lost_after(timeout: Duration) -> Duration {
    timeout.saturating_sub(2 * period(timeout))
}

pub async fn run(ctx: Arc<Context>, mut stop: StopSignal) {
    let timeout = ctx.config.runtime_timeout;
    let period = period(timeout);
    // A stall shorter than a heartbeat period cannot make a live runtime look
    // lost: it is answered within the rest of the timeout.
    let stall = (3 * period).max(timeout / 6);
    // Runtimes get a full timeout to reconnect from here on.
    let mut grace_from = ctx.hub.started_at;
    let mut last_sweep = ctx.clock.now();
    while stop.wait(period).await {
        let now = ctx.clock.now();
        // A server that was not running (stopped by SIGSTOP, a VM pause, a long
        // stall) heard nobody meanwhile: that says nothing about its runtimes, so
        // they get a fresh grace period, as after a restart.
        if now - last_sweep > stall.as_millis() as i64 {
            warn!(
                stalled_ms = now - last_sweep,
                "the server was stalled; runtimes get a new grace period"
            );
            grace_from = now;
        }
        last_sweep = now;
        if let Err(e) = sweep(&ctx, timeout, grace_from).await {
            error!(error = format!("{e:#}"), "cannot check for lost runtimes");
        }
    }
}

async fn sweep(ctx: &Context, timeout: Duration, grace_from: Millis) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    let timeout_ms = timeout.as_millis() as i64;
    if now - grace_from < timeout_ms {
        return Ok(());
    }
    // With several servers on one store, one of them checks for everybody.
    if !ctx.store.lead().await? {
        return Ok(());
    }
    let seen_before = now - lost_after(timeout).as_millis() as i64;
    for lease in ctx.store.leases_seen_before(seen_before).await? {
        if ctx.hub.is_connected(&lease.runtime_id) {
            continue;
        }
        let reason = format!(
            "runtime lost: no word from runtime {} for {} s",
            lease.runtime_id,
            timeout.as_secs_f64()
        );
        // RUNNING means the start was granted: the robot may have been spawned.
        let spawned = lease.status == ExecutionStatus::Running;
        let outcome = ctx
            .store
            .end_lease(&lease.execution_id, &lease.lease, spawned, &reason, now)
            .await?;
        if outcome != LostOutcome::Stale {
            let expired = &ctx.work_counts.leases_expired;
            expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(execution = %lease.execution_id, runtime = %lease.runtime_id, ?outcome, "runtime lost");
        }
        if let LostOutcome::Ended(_) = outcome {
            // The lease does not say whether it is a flow step: maybe.
            crate::service::execution_ended(ctx, &lease.execution_id, true).await;
        }
    }
    // Given up: offline, unless a connection of it came back meanwhile.
    for silent in ctx.store.silent_runtimes(seen_before).await? {
        if ctx.hub.is_connected(&silent.runtime_id) {
            continue;
        }
        let reason = format!(
            "runtime lost: no word from it for {} s",
            timeout.as_secs_f64()
        );
        if ctx
            .store
            .runtime_disconnected(&silent.runtime_id, &silent.session_id, &reason, now)
            .await?
        {
            warn!(runtime = %silent.runtime_id, "runtime offline: lost");
        }
    }
    Ok(())
}
