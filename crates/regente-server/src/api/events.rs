//! `GET /api/integration/v2/executions/{id}/events`: an execution as it goes,
//! as Server-Sent Events: each log line once and in order, then the progress,
//! the return value and the status whenever they change, ending after the
//! final status. Every event's `id` is the sequence number of the last log
//! line sent, so a client that reconnects with `Last-Event-ID` (or `?after=`)
//! gets the lines after it, then the current state.
//!
//! The stream sleeps on the execution's own wake-up (this server's changes,
//! other servers' end notices) and reads the store again every second anyway,
//! so what another server records shows up too. It holds no thread.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use regente_store::Execution;
use serde_json::{json, Value};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Authenticated;
use crate::service::{runs, Caller, Context};

/// The longest a stream waits before reading the store again.
const REREAD: Duration = Duration::from_secs(1);

pub fn router() -> Router<Arc<Context>> {
    Router::new().route(
        "/api/integration/v2/executions/{execution_id}/events",
        get(events),
    )
}

/// Streams an execution's log lines, progress, return value and status.
#[utoipa::path(get, path = "/api/integration/v2/executions/{execution_id}/events", tag = "integration",
    params(("execution_id" = String, Path),
           ("after" = Option<i64>, Query, minimum = 0,
            description = "Send the log lines after this sequence number (as Last-Event-ID does)"),
           ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received")),
    responses(
        (status = 200, content_type = "text/event-stream",
         description = "Events `log` {seq,time,level,message}, `progress` {progress}, `return` {returnValue} \
                        and `status` {status,end,end_reason}; the stream ends after the final status"),
        (status = 400, description = "A bad after or Last-Event-ID", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown execution", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn events(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(execution_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let after = match (query.get("after"), headers.get("last-event-id")) {
        (Some(text), _) => parse_after("query parameter after", text)?,
        (None, Some(value)) => parse_after(
            "the Last-Event-ID header",
            value
                .to_str()
                .map_err(|_| ApiError::invalid("the Last-Event-ID header is not text"))?,
        )?,
        (None, None) => 0,
    };
    // Unknown or another organisation's: a 404 now, not an empty stream.
    runs::get_any(&ctx, &caller, &execution_id).await?;
    let woken = ctx.hub.executions.watch(&execution_id);
    let follow = Follow {
        ctx,
        caller,
        execution_id,
        woken,
        armed: None,
        after,
        sent: Sent::default(),
        queued: VecDeque::new(),
        first: true,
        more: false,
        done: false,
    };
    let stream = stream::unfold(follow, |mut follow| async move {
        follow.next().await.map(|event| (Ok(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A log sequence number, as the stream's event ids are.
fn parse_after(what: &str, text: &str) -> ApiResult<i64> {
    let after = super::whole_number(what, text.trim(), 0..=i64::MAX as u64)?;
    Ok(after as i64)
}

/// What the client has been told of the execution's state.
#[derive(Default)]
struct Sent {
    progress: Option<f64>,
    return_value: Option<Value>,
    status: Option<&'static str>,
}

struct Follow {
    ctx: Arc<Context>,
    caller: Caller,
    execution_id: String,
    woken: Arc<Notify>,
    /// The wake-up registered before the last read.
    armed: Option<Pin<Box<OwnedNotified>>>,
    /// The last log line sent.
    after: i64,
    sent: Sent,
    queued: VecDeque<Event>,
    first: bool,
    /// The last read filled a page of the log: read on without waiting.
    more: bool,
    done: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if !self.first && !self.more {
                if let Some(armed) = self.armed.take() {
                    let _ = tokio::time::timeout(REREAD, armed).await;
                }
            }
            self.first = false;
            // Armed before the read: a change after it wakes the next wait,
            // even one made while the events read are being sent.
            let mut armed = Box::pin(self.woken.clone().notified_owned());
            armed.as_mut().enable();
            self.armed = Some(armed);
            self.look().await;
        }
    }

    /// Reads what is new and queues its events.
    async fn look(&mut self) {
        let execution = match runs::get_any(&self.ctx, &self.caller, &self.execution_id).await {
            Ok(execution) => execution,
            Err(e) => {
                tracing::debug!(error = %e, "an execution's event stream stops");
                self.done = true;
                return;
            }
        };
        let lines = match runs::logs_after(&self.ctx, &self.caller, &execution, self.after).await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(error = %e, "an execution's event stream cannot read its log");
                return;
            }
        };
        self.more = lines.len() == runs::LOG_PAGE as usize;
        for line in lines {
            self.after = line.seq;
            let data = json!({"seq": line.seq, "time": line.time, "level": line.level, "message": line.message});
            self.queue("log", &data);
        }
        if !self.more {
            self.queue_state(&execution);
        }
    }

    /// The progress, return value and status, when they changed; after the
    /// final status, nothing more.
    fn queue_state(&mut self, execution: &Execution) {
        if self.sent.progress != Some(execution.progress) {
            self.sent.progress = Some(execution.progress);
            self.queue("progress", &json!({"progress": execution.progress}));
        }
        if execution.return_value.is_some() && self.sent.return_value != execution.return_value {
            self.sent.return_value = execution.return_value.clone();
            self.queue("return", &json!({"returnValue": execution.return_value}));
        }
        let status = execution.status.as_str();
        if self.sent.status != Some(status) {
            self.sent.status = Some(status);
            let data =
                json!({"status": status, "end": execution.end, "end_reason": execution.end_reason});
            self.queue("status", &data);
        }
        self.done = execution.status.is_ended();
    }

    fn queue(&mut self, kind: &str, data: &Value) {
        self.queued.push_back(
            Event::default()
                .event(kind)
                .id(self.after.to_string())
                .data(data.to_string()),
        );
    }
}
