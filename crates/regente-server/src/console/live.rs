//! Server-Sent Events for the live pages: an execution's new log lines, status
//! and progress until it ends; the runtimes' online state and slots in use.
//!
//! A stream wakes when this server stores something for what it watches (the
//! hub's change notices), and reads the store again every second anyway, so that
//! what another server sharing the store records shows up too.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::format;
use super::pages::PageResult;
use super::session::{AdminViewer, Viewer};
use crate::hub::Changed;
use crate::service::{runs, runtimes, Caller, Context};

/// The longest a stream waits before reading the store again.
const REREAD: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
pub struct LiveQuery {
    #[serde(default)]
    after: i64,
}

struct Watch {
    ctx: Arc<Context>,
    caller: Caller,
    execution_id: String,
    changes: broadcast::Receiver<Changed>,
    after: i64,
    last_state: Option<Value>,
    queued: VecDeque<Event>,
    first: bool,
    /// The last read filled a page: read on without waiting.
    more: bool,
    done: bool,
}

/// Waits for a change that concerns `wanted` (or any, when `None`), at most
/// [`REREAD`].
async fn next_change(changes: &mut broadcast::Receiver<Changed>, wanted: Option<&str>) {
    let wait = async {
        loop {
            match changes.recv().await {
                Ok(Changed::Execution(id)) if wanted.is_none_or(|w| w == id) => return,
                Ok(Changed::Runtimes) if wanted.is_none() => return,
                Ok(_) => continue,
                // Missed some: read again to be sure.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(REREAD, wait).await;
}

impl Watch {
    /// Reads what is new and queues its events.
    async fn look(&mut self) {
        let execution = match runs::get_any(&self.ctx, &self.caller, &self.execution_id).await {
            Ok(execution) => execution,
            Err(e) => {
                tracing::debug!(error = %e, "a live execution page stops");
                self.done = true;
                return;
            }
        };
        let lines = runs::logs_after(&self.ctx, &self.caller, &execution, self.after).await;
        self.more = matches!(&lines, Ok(lines) if lines.len() == runs::LOG_PAGE as usize);
        match lines {
            Ok(lines) if !lines.is_empty() => {
                self.after = lines.last().map_or(self.after, |line| line.seq);
                let lines: Vec<Value> = lines
                    .iter()
                    .map(|line| {
                        json!({"seq": line.seq, "time": line.time, "level": line.level, "message": line.message})
                    })
                    .collect();
                self.queued.push_back(
                    Event::default()
                        .event("log")
                        .id(self.after.to_string())
                        .data(Value::Array(lines).to_string()),
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read a live execution's log"),
        }
        let state = json!({
            "status": execution.status.as_str(),
            "progress": execution.progress,
            "started": execution.started,
            "end": execution.end,
            "exit_code": execution.exit_code,
            "end_reason": execution.end_reason,
            "return_value": execution.return_value.as_ref().map(format::json),
            "duration": match (execution.started, execution.end) {
                (Some(started), Some(end)) => Some(format::duration(end - started)),
                _ => None,
            },
            "queue_wait": execution.started.map(|s| format::duration(s - execution.init)),
        });
        if self.last_state.as_ref() != Some(&state) {
            self.queued
                .push_back(Event::default().event("state").data(state.to_string()));
            self.last_state = Some(state);
        }
        if execution.status.is_ended() && !self.more {
            self.queued
                .push_back(Event::default().event("end").data("{}"));
            self.done = true;
        }
    }
}

pub async fn execution(
    viewer: Viewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(query): Query<LiveQuery>,
    headers: HeaderMap,
) -> PageResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let caller = viewer.caller().clone();
    // Subscribed before the first read, so nothing falls between.
    let changes = ctx.hub.watch();
    let execution = runs::get_any(&ctx, &caller, &id)
        .await
        .map_err(viewer.fail())?;
    // A reconnecting EventSource says where it was.
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(query.after);
    let watch = Watch {
        ctx,
        caller,
        execution_id: execution.id,
        changes,
        after,
        last_state: None,
        queued: VecDeque::new(),
        first: true,
        more: false,
        done: false,
    };
    let events = stream::unfold(watch, |mut watch| async move {
        loop {
            if let Some(event) = watch.queued.pop_front() {
                return Some((Ok(event), watch));
            }
            if watch.done {
                return None;
            }
            if !watch.first && !watch.more {
                let id = watch.execution_id.clone();
                next_change(&mut watch.changes, Some(&id)).await;
            }
            watch.first = false;
            watch.look().await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The runtimes' state as the runtimes page shows it.
async fn runtimes_state(ctx: &Context, caller: &Caller) -> Option<Value> {
    let states = runtimes::states(ctx, caller).await.ok()?;
    Some(Value::Array(
        states
            .iter()
            .map(|state| {
                json!({
                    "id": state.runtime.id,
                    "online": state.online,
                    "last_seen": state.runtime.last_seen,
                    "busy": state.running.len(),
                    "slots": state.runtime.slots,
                    "running": state.running.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

pub async fn runtimes(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let caller = viewer.caller().clone();
    let changes = ctx.hub.watch();
    let state = (ctx, caller, changes, None::<Value>, true);
    let events = stream::unfold(
        state,
        |(ctx, caller, mut changes, last, first)| async move {
            let mut last = last;
            let mut first = first;
            loop {
                if !first {
                    next_change(&mut changes, None).await;
                }
                first = false;
                let Some(now) = runtimes_state(&ctx, &caller).await else {
                    continue;
                };
                if last.as_ref() != Some(&now) {
                    let event = Event::default().event("runtimes").data(now.to_string());
                    last = Some(now);
                    return Some((Ok(event), (ctx, caller, changes, last, first)));
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
