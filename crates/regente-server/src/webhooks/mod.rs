//! Webhooks: on the leader only, a consumer of the event stream (cursor
//! `webhooks`) that turns each event into one delivery per matching enabled
//! webhook, and a sender that POSTs due deliveries, signed per Standard
//! Webhooks, retrying on a schedule.
//!
//! - **Never lost, never doubled when queued**: the deliveries of a batch of
//!   events and the consumer's cursor after it are written in one transaction
//!   (`WebhookStore::queue_webhook_deliveries`). Killed before, the batch is
//!   read again; after, it is not. A batch that queues nothing only moves the
//!   cursor, saved as [`crate::cursor_saves`] says.
//! - **Sent at least once**: a delivery is claimed before its POST (its due
//!   time moved past the POST's time bound), and its attempt recorded after.
//!   A server killed in between sends it again once the claim ends: receivers
//!   see the same `webhook-id` and can drop the duplicate.
//! - One loop does both: read events, queue; start due deliveries up to
//!   [`sender::MAX_IN_FLIGHT`] (at most [`sender::PER_ENDPOINT`] per webhook);
//!   wait for a send to end, a wake-up (a replay, a change of webhook), or
//!   [`LOOK_EVERY`].

pub mod sender;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use regente_store::{
    DeliveryStatus, EventCursor, EventKind, Execution, StoredEvent, Webhook, WebhookDelivery,
};
use serde_json::{json, Map, Value};
use tracing::warn;

use crate::cursor_saves::SavedCursor;
use crate::service::{new_id, Context};
use crate::supervisor::StopSignal;

/// The consumer's name in the event stream's cursors.
pub const CONSUMER: &str = "webhooks";
/// The retry schedule, in seconds: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_RETRY_DELAYS: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// Events read at a time.
const BATCH: u32 = 500;
/// How often the loop looks for new events and due deliveries unprompted.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// How often a server that does not lead asks whether it does now.
const FOLLOWER_LOOK_EVERY: Duration = Duration::from_secs(1);

/// The event types a webhook can ask for.
pub const EVENT_TYPES: [&str; 14] = [
    "execution.queued",
    "execution.started",
    "execution.finished",
    "execution.error",
    "execution.canceled",
    "execution.requeued",
    "runtime.online",
    "runtime.offline",
    "flow_run.started",
    "flow_run.ended",
    "schedule.fired",
    "schedule.skipped",
    "schedule.missed",
    "schedule.paused",
];

/// The webhook event type a stream event is sent as, if any. An execution's
/// end is sent by its final status; a cancel is sent when the execution has
/// ended CANCELED (its `execution.ended`), never at the request, so a canceled
/// run gives one `execution.canceled`.
pub fn event_type(event: &StoredEvent) -> Option<&'static str> {
    match event.kind {
        EventKind::ExecutionEnded => match event.data["status"].as_str()? {
            "FINISHED" => Some("execution.finished"),
            "CANCELED" => Some("execution.canceled"),
            _ => Some("execution.error"),
        },
        kind => types_of(kind).first().copied(),
    }
}

/// The webhook event types an event of `kind` may be sent as.
fn types_of(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::ExecutionEnded => &EVENT_TYPES[2..5],
        EventKind::ExecutionCanceled => &[],
        kind => {
            let at = EVENT_TYPES.iter().position(|name| *name == kind.as_str());
            at.map_or(&[], |at| &EVENT_TYPES[at..=at])
        }
    }
}

/// The event kinds that may make a delivery to one of `webhooks`: the stream's
/// other events are read past without being decoded.
fn kinds_wanted(webhooks: &[Webhook]) -> Vec<EventKind> {
    EventKind::ALL
        .into_iter()
        .filter(|&kind| {
            types_of(kind).iter().any(|name| {
                webhooks
                    .iter()
                    .any(|webhook| webhook.events.iter().any(|wanted| wanted == name))
            })
        })
        .collect()
}

/// The `data` sent: the event's own data with the ids an integrator needs.
fn event_data(event: &StoredEvent, execution: Option<&Execution>) -> Value {
    let mut data = match &event.data {
        Value::Object(object) => object.clone(),
        _ => Map::new(),
    };
    // An end says `flow_run_id` null when the execution is no flow step; the
    // body names the flow run only when there is one.
    if data.get("flow_run_id").is_some_and(Value::is_null) {
        data.remove("flow_run_id");
    }
    let subject = Value::from(event.subject_id.clone());
    let subject_key = match event.kind.as_str().split('.').next() {
        Some("execution") => "execution_id",
        Some("runtime") => "runtime_id",
        Some("flow_run") => "flow_run_id",
        _ => "schedule_id",
    };
    data.insert(subject_key.to_owned(), subject);
    if let Some(execution) = execution {
        let mut add = |key: &str, value: Value| {
            if !value.is_null() {
                data.entry(key.to_owned()).or_insert(value);
            }
        };
        add("runtime_id", execution.runtime_id.clone().into());
        add("robot_id", execution.robot_id.clone().into());
        add("robot_version", execution.robot_version.into());
        add("status", execution.status.as_str().into());
        add("flow_run_id", execution.flow_run_id.clone().into());
        add("flow_step_id", execution.flow_step_id.clone().into());
        add("schedule_id", execution.schedule_id.clone().into());
        add("submitted_by", execution.submitted_by.clone().into());
        add("canceled_by", execution.canceled_by.clone().into());
    }
    Value::Object(data)
}

/// The body sent for an event: `{type, timestamp, data}`.
fn payload(kind: &str, event: &StoredEvent, execution: Option<&Execution>) -> String {
    json!({
        "type": kind,
        "timestamp": crate::console::format::iso(event.time),
        "data": event_data(event, execution),
    })
    .to_string()
}

pub async fn run(ctx: Arc<Context>, mut stop: StopSignal) {
    let mut sender = match sender::Sender::new(&ctx.config) {
        Ok(sender) => sender,
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "webhooks are off: their allowed hosts are invalid"
            );
            return;
        }
    };
    let mut cursor: Option<EventCursor> = None;
    let mut saved = SavedCursor::default();
    while !stop.is_requested() {
        let more = match look(&ctx, &mut cursor, &mut saved, &mut sender).await {
            Ok(more) => more,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "webhooks failed; they look again shortly"
                );
                cursor = None;
                false
            }
        };
        if more {
            continue;
        }
        // Not leading (or failed): ask again less often.
        let pause = if cursor.is_some() {
            LOOK_EVERY
        } else {
            FOLLOWER_LOOK_EVERY
        };
        tokio::select! {
            _ = stop.requested() => {}
            _ = ctx.webhooks_wake.notified() => {}
            _ = sender.one_ended() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    save_at_stop(&ctx, cursor, &mut saved).await;
}

/// Saves where the webhooks read to, if it moved since the last save.
async fn save_at_stop(ctx: &Context, cursor: Option<EventCursor>, saved: &mut SavedCursor) {
    if let Some(cursor) = cursor {
        let now = ctx.clock.now();
        if let Err(e) = saved
            .save_when_due(&*ctx.store, CONSUMER, cursor, now, true)
            .await
        {
            warn!(error = %e, "cannot save the webhooks' cursor");
        }
    }
}

/// One look: queue what new events call for, start due deliveries. True when
/// a full batch was read (look again at once).
async fn look(
    ctx: &Arc<Context>,
    cursor: &mut Option<EventCursor>,
    saved: &mut SavedCursor,
    sender: &mut sender::Sender,
) -> anyhow::Result<bool> {
    if !ctx.store.lead().await? {
        *cursor = None;
        return Ok(false);
    }
    let after = match *cursor {
        Some(cursor) => cursor,
        None => {
            let loaded = ctx.store.load_cursor(CONSUMER).await?;
            saved.saved(loaded, ctx.clock.now());
            loaded
        }
    };
    *cursor = Some(after);
    let kinds = kinds_wanted(&ctx.store.enabled_webhooks().await?);
    let read = ctx
        .store
        .events_of_kinds_after(after, BATCH, &kinds)
        .await?;
    if let Some(through) = read.through {
        // Read after the events, so that a webhook made meanwhile is seen:
        // should it want kinds that were read past, read again with them.
        let webhooks = ctx.store.enabled_webhooks().await?;
        if kinds_wanted(&webhooks)
            .iter()
            .any(|kind| !kinds.contains(kind))
        {
            return Ok(true);
        }
        let deliveries = deliveries_for(ctx, &webhooks, &read.events).await?;
        let now = ctx.clock.now();
        if !deliveries.is_empty() || saved.due(through, now) {
            ctx.store
                .queue_webhook_deliveries(&deliveries, CONSUMER, through, now)
                .await?;
            saved.saved(through, now);
        }
        *cursor = Some(through);
    } else {
        let now = ctx.clock.now();
        saved
            .save_when_due(&*ctx.store, CONSUMER, after, now, false)
            .await?;
    }
    sender.start_due(ctx).await?;
    Ok(read.read == BATCH as usize)
}

/// One delivery per event and enabled webhook of its organisation asking for
/// its type, created before it happened.
async fn deliveries_for(
    ctx: &Context,
    webhooks: &[Webhook],
    events: &[StoredEvent],
) -> anyhow::Result<Vec<WebhookDelivery>> {
    let now = ctx.clock.now();
    let mut deliveries = Vec::new();
    for event in events {
        let Some(kind) = event_type(event) else {
            continue;
        };
        let targets: Vec<&Webhook> = webhooks
            .iter()
            .filter(|webhook| {
                webhook.organization_id == event.organization_id
                    && webhook.created_at <= event.time
                    && webhook.events.iter().any(|wanted| wanted == kind)
            })
            .collect();
        if targets.is_empty() {
            continue;
        }
        let execution = if kind.starts_with("execution.") {
            match ctx
                .store
                .get_execution(&event.organization_id, &event.subject_id)
                .await
            {
                Ok(execution) => Some(execution),
                Err(regente_store::Error::NotFound) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let body = payload(kind, event, execution.as_ref());
        for webhook in targets {
            deliveries.push(WebhookDelivery {
                id: new_id(),
                organization_id: webhook.organization_id.clone(),
                webhook_id: webhook.id.clone(),
                event_type: kind.to_owned(),
                event_seq: event.cursor.seq,
                payload: body.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                round_attempts: 0,
                next_attempt_at: Some(now),
                last_status_code: None,
                last_error: None,
                last_duration_ms: None,
                last_attempt_at: None,
                created_at: now,
            });
        }
    }
    Ok(deliveries)
}

/// [`DEFAULT_RETRY_DELAYS`] as `--webhook-retry-delays` takes them, each in
/// the largest unit that holds it whole: the flag's default.
pub fn default_retry_delays_text() -> String {
    DEFAULT_RETRY_DELAYS
        .iter()
        .map(|&seconds| match seconds {
            _ if seconds % 3600 == 0 => format!("{}h", seconds / 3600),
            _ if seconds % 60 == 0 => format!("{}m", seconds / 60),
            _ => format!("{seconds}s"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads `--webhook-retry-delays`: comma-separated durations (`5s`, `5m`,
/// `2h`, or plain seconds).
pub fn parse_retry_delays(text: &str) -> anyhow::Result<Vec<Duration>> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (number, unit) = part
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .map_or((part, "s"), |at| part.split_at(at));
            let number: f64 = number.parse().map_err(|_| {
                anyhow::anyhow!("--webhook-retry-delays: {part:?} is no duration (e.g. 5s, 5m, 2h)")
            })?;
            let seconds = match unit {
                "ms" => number / 1000.0,
                "s" => number,
                "m" => number * 60.0,
                "h" => number * 3600.0,
                _ => anyhow::bail!(
                    "--webhook-retry-delays: {part:?} has an unknown unit (ms, s, m, h)"
                ),
            };
            anyhow::ensure!(
                seconds.is_finite() && (0.0..=7.0 * 86_400.0).contains(&seconds),
                "--webhook-retry-delays: {part:?} is out of 0 to 7 days"
            );
            Ok(Duration::from_secs_f64(seconds))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use regente_store::Millis;

    use super::*;
    use crate::clock::ManualClock;

    const START: Millis = 1_000_000;

    #[tokio::test]
    async fn a_cursor_that_only_moved_is_saved_once_due_and_at_the_stop() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::new(START));
        let ctx = Arc::new(Context::for_tests(dir.path(), clock.clone(), |_| {}).await);
        // Events no webhook asks for: read past, nothing queued.
        let runtime = ctx.runtime_for_tests().await;
        ctx.runtime_came_and_went(&runtime, "s1").await;
        let mut sender = sender::Sender::new(&ctx.config).unwrap();
        let (mut cursor, mut saved) = (None, SavedCursor::default());
        let loaded = ctx.store.load_cursor(CONSUMER).await.unwrap();
        look(&ctx, &mut cursor, &mut saved, &mut sender)
            .await
            .unwrap();
        let passed = cursor.expect("a cursor");
        assert!(passed > loaded, "the webhooks read past the events");
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), loaded);

        // Idle, once the last save is old enough: saved.
        clock.advance(std::time::Duration::from_millis(
            crate::cursor_saves::SAVE_EVERY_MS as u64,
        ));
        look(&ctx, &mut cursor, &mut saved, &mut sender)
            .await
            .unwrap();
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), passed);

        // More events, then the stop: saved at once.
        ctx.runtime_came_and_went(&runtime, "s2").await;
        look(&ctx, &mut cursor, &mut saved, &mut sender)
            .await
            .unwrap();
        let passed_again = cursor.expect("a cursor");
        assert!(passed_again > passed);
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), passed);
        save_at_stop(&ctx, cursor, &mut saved).await;
        assert_eq!(ctx.store.load_cursor(CONSUMER).await.unwrap(), passed_again);
    }

    fn event(kind: EventKind, data: Value) -> StoredEvent {
        StoredEvent {
            cursor: EventCursor::START,
            organization_id: "o".into(),
            kind,
            subject_id: "e1".into(),
            time: 0,
            data,
        }
    }

    #[test]
    fn a_webhook_wants_the_kinds_whose_events_it_is_sent() {
        let webhook = |events: &[&str]| Webhook {
            id: "w".into(),
            organization_id: "o".into(),
            url: "https://example.com".into(),
            events: events.iter().map(|name| name.to_string()).collect(),
            description: None,
            enabled: true,
            disabled_reason: None,
            secret: "s".into(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: 0,
            updated_at: 0,
        };
        assert!(kinds_wanted(&[]).is_empty());
        // Every type comes from exactly the kind `event_type` sends it for.
        for name in EVENT_TYPES {
            let from: Vec<EventKind> = EventKind::ALL
                .into_iter()
                .filter(|&kind| {
                    ["FINISHED", "ERROR", "CANCELED"].into_iter().any(|status| {
                        event_type(&event(kind, json!({ "status": status }))) == Some(name)
                    })
                })
                .collect();
            assert_eq!(kinds_wanted(&[webhook(&[name])]), from, "{name}");
        }
        assert_eq!(
            kinds_wanted(&[
                webhook(&["execution.error"]),
                webhook(&["runtime.offline", "execution.finished"])
            ]),
            [EventKind::ExecutionEnded, EventKind::RuntimeOffline]
        );
    }

    #[test]
    fn an_end_is_sent_by_its_status_and_a_cancel_once() {
        let ended = |status| event(EventKind::ExecutionEnded, json!({ "status": status }));
        assert_eq!(event_type(&ended("FINISHED")), Some("execution.finished"));
        assert_eq!(event_type(&ended("ERROR")), Some("execution.error"));
        assert_eq!(event_type(&ended("CANCELED")), Some("execution.canceled"));
        assert_eq!(
            event_type(&event(EventKind::ExecutionCanceled, json!({}))),
            None
        );
        for kind in EventKind::ALL {
            if let Some(name) = event_type(&event(kind, json!({ "status": "ERROR" }))) {
                assert!(EVENT_TYPES.contains(&name), "{name}");
            }
        }
        let data = event_data(
            &event(EventKind::RuntimeOnline, json!({"session_id": "s"})),
            None,
        );
        assert_eq!(data, json!({"session_id": "s", "runtime_id": "e1"}));
    }

    #[test]
    fn retry_delays_read_with_units() {
        let delays = parse_retry_delays("1s, 500ms,2m,1h,3").unwrap();
        let seconds: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(seconds, vec![1.0, 0.5, 120.0, 3600.0, 3.0]);
        assert!(parse_retry_delays("1x").is_err());
        assert!(parse_retry_delays("-1s").is_err());
        assert!(parse_retry_delays("").unwrap().is_empty());
    }

    #[test]
    fn the_default_delays_read_back_as_they_are() {
        let text = default_retry_delays_text();
        assert_eq!(text, "5s,5m,30m,2h,5h,10h,10h");
        let seconds: Vec<u64> = parse_retry_delays(&text)
            .unwrap()
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(seconds, DEFAULT_RETRY_DELAYS);
    }
}
