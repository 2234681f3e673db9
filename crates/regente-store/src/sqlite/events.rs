//! The event stream on SQLite. The single writer commits transactions one after
//! the other and `seq` grows with each insert, so `seq` order is commit order:
//! a read after a cursor needs no horizon. `txid` is always 0 here.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};

use super::engine::Durability;
use super::{all, change, one, SqliteStore};
use crate::events::{NewEvent, PRUNE_BATCH};
use crate::rows::{event_row_from, events_read, stored_event_from, RecordRow, EVENT_COLUMNS};
use crate::{
    EventCursor, EventFilter, EventKind, EventStore, EventsRead, Millis, Result, StoredEvent,
};

const INSERT_EVENT: &str = "INSERT INTO events (organization_id, kind, subject_id, time, data) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// Writes events in the caller's transaction, with the change they report.
pub(super) fn insert_events(conn: &Connection, events: &[NewEvent]) -> Result<()> {
    for event in events {
        change(
            conn,
            INSERT_EVENT,
            params![
                event.organization_id,
                event.kind.as_str(),
                event.subject_id,
                event.time,
                event.data.to_string()
            ],
        )?;
    }
    Ok(())
}

/// Saves a consumer's cursor in the caller's transaction, so that a store
/// operation can commit a consumer's own change and its progress together. A
/// cursor never moves back.
pub(super) fn save_cursor_in(
    conn: &Connection,
    consumer: &str,
    cursor: EventCursor,
    now: Millis,
) -> Result<()> {
    change(
        conn,
        "INSERT INTO event_cursors (consumer, txid, seq, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (consumer) DO UPDATE SET txid = excluded.txid, seq = excluded.seq, \
         updated_at = excluded.updated_at \
         WHERE (event_cursors.txid, event_cursors.seq) < (excluded.txid, excluded.seq)",
        params![consumer, cursor.txid, cursor.seq, now],
    )
    .map(drop)
}

/// The cursor `consumer` saved last, read in the caller's transaction;
/// [`EventCursor::START`] if none.
pub(super) fn cursor_in(conn: &Connection, consumer: &str) -> Result<EventCursor> {
    let saved = one(
        conn,
        "SELECT txid, seq FROM event_cursors WHERE consumer = ?1",
        [consumer],
        |row| {
            Ok(EventCursor {
                txid: row.int("txid")?,
                seq: row.int("seq")?,
            })
        },
    )?;
    Ok(saved.unwrap_or(EventCursor::START))
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_of_kinds_after(
        &self,
        after: EventCursor,
        limit: u32,
        kinds: &[EventKind],
    ) -> Result<EventsRead> {
        let kinds = kinds.to_vec();
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                params![after.seq, limit],
                |row| event_row_from(row, &kinds),
            )
            .map(events_read)
        })
        .await
    }

    async fn organization_events_after(
        &self,
        organization_id: &str,
        after: EventCursor,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE organization_id = ? AND seq > ?");
        let mut values = vec![
            SqlValue::Text(organization_id.to_owned()),
            SqlValue::Integer(after.seq),
        ];
        if !filter.kinds.is_empty() {
            let marks = vec!["?"; filter.kinds.len()].join(", ");
            sql.push_str(&format!(" AND kind IN ({marks})"));
            values.extend(
                filter
                    .kinds
                    .iter()
                    .map(|kind| SqlValue::Text(kind.as_str().to_owned())),
            );
        }
        if let Some(subject_id) = &filter.subject_id {
            sql.push_str(" AND subject_id = ?");
            values.push(SqlValue::Text(subject_id.clone()));
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        values.push(SqlValue::Integer(limit.into()));
        self.read_blocking(move |conn| {
            all(conn, &sql, params_from_iter(values), |row| {
                stored_event_from(row)
            })
        })
        .await
    }

    async fn load_cursor(&self, consumer: &str) -> Result<EventCursor> {
        self.readers.with(|conn| cursor_in(conn, consumer))
    }

    async fn save_cursor(&self, consumer: &str, cursor: EventCursor, now: Millis) -> Result<()> {
        let consumer = consumer.to_owned();
        self.send_write(
            move |conn| save_cursor_in(conn, &consumer, cursor, now),
            Durability::Written,
        )
        .await
    }

    async fn prune_events(&self, older_than: Millis) -> Result<u64> {
        // Events are numbered in commit order, so the lowest `seq` are the
        // oldest, give or take the moments between stamping and committing:
        // they are walked in `seq` order rather than through an index on time
        // that every write would keep up. An event stamped earlier than the
        // ones before it (a clock set back) is pruned once they are.
        self.prune_batches(
            "DELETE FROM events WHERE seq IN \
             (SELECT seq FROM events ORDER BY seq LIMIT ?2) AND time < ?1",
            older_than,
        )
        .await
    }
}

impl SqliteStore {
    /// Runs `sql`, a delete of at most `?2` rows older than `?1`, until it
    /// deletes fewer: a batch per write, so that other writes go on in
    /// between. How many were deleted.
    pub(super) async fn prune_batches(&self, sql: &'static str, older_than: Millis) -> Result<u64> {
        let mut pruned = 0;
        loop {
            let deleted = self
                .write(move |conn| change(conn, sql, params![older_than, PRUNE_BATCH]))
                .await?;
            pruned += deleted as u64;
            if (deleted as i64) < PRUNE_BATCH {
                return Ok(pruned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    #[tokio::test]
    async fn pruning_goes_on_past_a_full_batch() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("regente.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let event = |time| NewEvent {
            organization_id: "0000000000000001".into(),
            kind: EventKind::RuntimeOnline,
            subject_id: "0000000000000002".into(),
            time,
            data: serde_json::json!({}),
        };
        let old = 2 * PRUNE_BATCH as usize + 1;
        let mut events: Vec<NewEvent> = (0..old).map(|n| event(n as Millis)).collect();
        events.push(event(1_000_000));
        store
            .write(move |conn| insert_events(conn, &events))
            .await
            .unwrap();
        assert_eq!(store.prune_events(1_000_000).await.unwrap(), old as u64);
        let left = store.events_after(EventCursor::START, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].time, 1_000_000);
    }
}
