//! The flow engine: on the leader only, a consumer of the event stream (cursor
//! `flows`) that advances a flow run each time one of its steps' executions ends,
//! and the runs whose time came (a retry's backoff, a step's timeout).
//!
//! It reads `execution.ended` events; for one whose execution is a flow step it
//! records the end and applies the engine's decisions in one store transaction
//! that also saves its cursor (`service::flows::advance`). Other events only move
//! the cursor, saved every [`SAVE_EVERY`] events, or when idle as
//! [`crate::cursor_saves`] says, and when the engine stops. Killed anywhere,
//! it reads again from its saved cursor: an event whose change committed finds
//! its step already recorded (no change), one whose change did not commit is
//! handled as if for the first time, and the run's revision refuses a decision
//! made from a state that changed meanwhile. So each step is queued once.
//!
//! It waits for: a wake-up when this server stores an execution's end (or hears
//! that another server did), the soonest `wake_at` of the waiting runs, and a
//! safety net re-read every [`SAFETY_NET`].

use std::sync::Arc;
use std::time::Duration;

use regente_store::{EventCursor, EventKind, StoredEvent};
use tracing::{debug, warn};

use crate::cursor_saves::SavedCursor;
use crate::service::{flows, Context};
use crate::supervisor::StopSignal;

/// The engine's name in the event stream's cursors.
pub const CONSUMER: &str = "flows";
/// Events read at a time.
const BATCH: u32 = 500;
/// Events passed over before the cursor is saved however recently it was.
const SAVE_EVERY: usize = 1_000;
/// How often the engine looks without being told.
const SAFETY_NET: Duration = Duration::from_secs(1);
/// Runs with a due `wake_at` handled per look.
const WAKING_PER_LOOK: u32 = 100;

pub async fn run(ctx: Arc<Context>, mut stop: StopSignal) {
    if !ctx.config.flow_engine {
        return;
    }
    let mut engine = Engine::default();
    while !stop.is_requested() {
        let pause = match engine.look(&ctx).await {
            Ok(Look::More) => continue,
            Ok(Look::Idle { wake_at }) => wake_at,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "the flow engine failed; it looks again shortly"
                );
                // Reload the cursor: what failed is read again.
                engine.cursor = None;
                None
            }
        };
        let clock = ctx.clock.clone();
        let timer = async move {
            match pause {
                Some(at) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.requested() => {}
            _ = ctx.flows.wake.notified() => {}
            _ = tokio::time::sleep(SAFETY_NET) => {}
            _ = timer => {}
        }
    }
    engine.save(&ctx, true).await;
}

enum Look {
    /// A full batch was read: read on at once.
    More,
    /// Nothing more for now; look again at `wake_at` at the latest.
    Idle { wake_at: Option<i64> },
}

#[derive(Default)]
struct Engine {
    /// Where the engine is; `None` until loaded (and after a failure or a lost
    /// leadership, when the saved one is what counts).
    cursor: Option<EventCursor>,
    /// Events passed over since the cursor was last saved.
    unsaved: usize,
    /// The cursor as last saved (or loaded), and when.
    saved: SavedCursor,
}

impl Engine {
    async fn look(&mut self, ctx: &Context) -> anyhow::Result<Look> {
        if !ctx.store.lead().await? {
            self.cursor = None;
            return Ok(Look::Idle { wake_at: None });
        }
        let after = match self.cursor {
            Some(cursor) => cursor,
            None => {
                let loaded = ctx.store.load_cursor(CONSUMER).await?;
                self.saved.saved(loaded, ctx.clock.now());
                loaded
            }
        };
        self.cursor = Some(after);
        let read = ctx
            .store
            .events_of_kinds_after(after, BATCH, &[EventKind::ExecutionEnded])
            .await?;
        let full = read.read == BATCH as usize;
        for event in read.events {
            self.handle(ctx, &event).await?;
            self.cursor = Some(event.cursor);
        }
        // Past the events of other kinds too.
        self.unsaved += read.read;
        self.cursor = read.through.or(self.cursor);
        let now = ctx.clock.now();
        let waking = ctx.store.waking_flow_runs(WAKING_PER_LOOK).await?;
        for run in waking.iter().filter(|run| run.wake_at <= now) {
            debug!(run = %run.run_id, "a flow run's time came");
            flows::advance(ctx, &run.organization_id, &run.run_id, None, None).await?;
        }
        if full {
            self.save(ctx, false).await;
            return Ok(Look::More);
        }
        self.save(ctx, false).await;
        let later = ctx.store.waking_flow_runs(WAKING_PER_LOOK).await?;
        Ok(Look::Idle {
            wake_at: flows::soonest(&later),
        })
    }

    async fn handle(&mut self, ctx: &Context, event: &StoredEvent) -> anyhow::Result<()> {
        if !may_end_a_step(event) {
            return Ok(());
        }
        let execution = match ctx
            .store
            .get_execution(&event.organization_id, &event.subject_id)
            .await
        {
            Err(regente_store::Error::NotFound) => return Ok(()),
            execution => execution?,
        };
        let Some(run_id) = &execution.flow_run_id else {
            return Ok(());
        };
        let cursor = Some((CONSUMER.to_owned(), event.cursor));
        let changed = flows::advance(
            ctx,
            &event.organization_id,
            run_id,
            Some(&execution),
            cursor,
        )
        .await?;
        if changed {
            // Saved with the change.
            self.unsaved = 0;
            self.saved.saved(event.cursor, ctx.clock.now());
        }
        Ok(())
    }

    /// Saves the cursor if events were passed over since it was saved: when
    /// `stopping`, after [`SAVE_EVERY`] events, or when due.
    async fn save(&mut self, ctx: &Context, stopping: bool) {
        let Some(cursor) = self.cursor.filter(|_| self.unsaved > 0) else {
            return;
        };
        let anyway = stopping || self.unsaved >= SAVE_EVERY;
        let saved = self
            .saved
            .save_when_due(&*ctx.store, CONSUMER, cursor, ctx.clock.now(), anyway)
            .await;
        match saved {
            Ok(()) if !self.saved.is_behind(cursor) => self.unsaved = 0,
            Ok(()) => {}
            Err(e) => warn!(
                error = format!("{e:#}"),
                "cannot save the flow engine's cursor"
            ),
        }
    }
}

/// Whether an `execution.ended` event may be a flow step's: it names its flow
/// run, null for none (events of earlier versions do not say: maybe).
fn may_end_a_step(event: &StoredEvent) -> bool {
    event
        .data
        .get("flow_run_id")
        .is_none_or(|flow_run_id| !flow_run_id.is_null())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use regente_store::Millis;

    use super::*;
    use crate::clock::ManualClock;

    const START: Millis = 1_000_000;

    #[tokio::test]
    async fn a_cursor_that_only_moved_is_saved_once_due_and_at_the_stop() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::new(START));
        let ctx = Context::for_tests(dir.path(), clock.clone(), |_| {}).await;
        // Events the engine reads past: they ask nothing of it.
        let runtime = ctx.runtime_for_tests().await;
        ctx.runtime_came_and_went(&runtime, "s1").await;
        let mut engine = Engine::default();
        let loaded = ctx.store.load_cursor(CONSUMER).await.unwrap();
        engine.look(&ctx).await.unwrap();
        let passed = engine.cursor.expect("a cursor");
        assert!(passed > loaded, "the engine read past the events");
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), loaded);

        // Idle, once the last save is old enough: saved.
        clock.advance(Duration::from_millis(
            crate::cursor_saves::SAVE_EVERY_MS as u64,
        ));
        engine.look(&ctx).await.unwrap();
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), passed);

        // More events, then the stop: saved at once.
        ctx.runtime_came_and_went(&runtime, "s2").await;
        engine.look(&ctx).await.unwrap();
        let passed_again = engine.cursor.expect("a cursor");
        assert!(passed_again > passed);
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), passed);
        engine.save(&ctx, true).await;
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), passed_again);
    }

    #[tokio::test]
    async fn only_ends_that_may_be_a_steps_wake_the_engine() {
        use futures_util::FutureExt;
        use regente_store::Notice;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let ctx = Context::for_tests(dir.path(), Arc::new(ManualClock::new(START)), |_| {}).await;
        let ended = |flow_step| Notice::ExecutionEnded {
            execution_id: "e".into(),
            flow_step,
        };
        crate::service::apply(&ctx, &ended(false));
        assert!(ctx.flows.wake.notified().now_or_never().is_none());
        crate::service::apply(&ctx, &ended(true));
        assert!(ctx.flows.wake.notified().now_or_never().is_some());
    }

    #[test]
    fn an_end_naming_no_flow_run_is_passed_over_unread() {
        let ended = |data| StoredEvent {
            cursor: EventCursor::START,
            organization_id: "o".into(),
            kind: EventKind::ExecutionEnded,
            subject_id: "e".into(),
            time: START,
            data,
        };
        let status = serde_json::json!("FINISHED");
        let of_no_flow = ended(serde_json::json!({"status": status, "flow_run_id": null}));
        assert!(!may_end_a_step(&of_no_flow));
        let of_a_flow = ended(serde_json::json!({"status": status, "flow_run_id": "r"}));
        assert!(may_end_a_step(&of_a_flow));
        // Written by an earlier version: it does not say.
        assert!(may_end_a_step(&ended(
            serde_json::json!({"status": status})
        )));
    }
}
