//! The event stream on PostgreSQL.
//!
//! `seq` is drawn when an event is inserted, before its transaction commits, so
//! transactions commit out of `seq` order: reading by `seq` alone, a consumer
//! could store the cursor of a later event and never see an earlier one that
//! committed after. Each event also carries its transaction's id (`txid`), and
//! a read answers only events of transactions below its snapshot's xmin, every
//! one of which has ended, in (`txid`, `seq`) order. A transaction that commits
//! later has an id at least that xmin, so it sorts after every cursor answered
//! so far. An open transaction holds the horizon back (consumers wait for it);
//! it never makes them skip an event.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{fetch_optional, other, PgQuery, PostgresStore, UNSYNCED};
use crate::events::{NewEvent, PRUNE_BATCH};
use crate::rows::{event_row_from, events_read, stored_event_from, EVENT_COLUMNS};
use crate::{
    EventCursor, EventFilter, EventKind, EventStore, EventsRead, Millis, Result, StoredEvent,
};

/// Every transaction with a smaller id has ended.
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// Writes events in the caller's transaction, with the change they report;
/// `txid` is the transaction's own id (the column's default).
pub(super) async fn insert_events(conn: &mut PgConnection, events: &[NewEvent]) -> Result<()> {
    static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| events_from_arrays(1));
    if events.is_empty() {
        return Ok(());
    }
    bind_events(sqlx::query(&INSERT_EVENTS), events)
        .execute(conn)
        .await
        .map(drop)
        .map_err(other)
}

/// The `INSERT` of events given as five arrays from `$first` on (organisation,
/// kind, subject, time, data; bound by [`bind_events`]). WITH ORDINALITY: seqs
/// drawn in the events' order.
pub(super) fn events_from_arrays(first: usize) -> String {
    let [organizations, kinds, subjects, times, data] = [0, 1, 2, 3, 4].map(|at| first + at);
    format!(
        "INSERT INTO events (organization_id, kind, subject_id, time, data) \
         SELECT e.organization_id, e.kind, e.subject_id, e.time, e.data \
         FROM UNNEST(${organizations}::TEXT[], ${kinds}::TEXT[], ${subjects}::TEXT[], \
             ${times}::BIGINT[], ${data}::TEXT[]) \
             WITH ORDINALITY AS e(organization_id, kind, subject_id, time, data, n) \
         ORDER BY e.n"
    )
}

/// Binds `events` as the arrays of [`events_from_arrays`], next in `query`.
pub(super) fn bind_events<'q>(query: PgQuery<'q>, events: &'q [NewEvent]) -> PgQuery<'q> {
    query
        .bind(
            events
                .iter()
                .map(|event| event.organization_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|event| event.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|event| event.subject_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|event| event.time).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|event| event.data.to_string())
                .collect::<Vec<_>>(),
        )
}

/// The statement that moves a consumer's cursor forward (never back), taking
/// its row from `source`.
fn upsert_cursor(source: &str) -> String {
    format!(
        "INSERT INTO event_cursors (consumer, txid, seq, updated_at) {source} \
         ON CONFLICT (consumer) DO UPDATE SET txid = EXCLUDED.txid, seq = EXCLUDED.seq, \
         updated_at = EXCLUDED.updated_at \
         WHERE (event_cursors.txid, event_cursors.seq) < (EXCLUDED.txid, EXCLUDED.seq)"
    )
}

/// Saves a consumer's cursor in the caller's transaction, so that a store
/// operation can commit a consumer's own change and its progress together. A
/// cursor never moves back.
pub(super) async fn save_cursor_in(
    conn: &mut PgConnection,
    consumer: &str,
    cursor: EventCursor,
    now: Millis,
) -> Result<()> {
    sqlx::query(&upsert_cursor("VALUES ($1, $2, $3, $4)"))
        .bind(consumer)
        .bind(cursor.txid)
        .bind(cursor.seq)
        .bind(now)
        .execute(conn)
        .await
        .map_err(other)?;
    Ok(())
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn events_of_kinds_after(
        &self,
        after: EventCursor,
        limit: u32,
        kinds: &[EventKind],
    ) -> Result<EventsRead> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (txid, seq) > ($1, $2) AND txid < {HORIZON} \
             ORDER BY txid, seq LIMIT $3"
        ))
        .bind(after.txid)
        .bind(after.seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter()
            .map(|row| event_row_from(row, kinds))
            .collect::<Result<Vec<_>>>()
            .map(events_read)
    }

    async fn organization_events_after(
        &self,
        organization_id: &str,
        after: EventCursor,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let kinds: Vec<&str> = filter.kinds.iter().map(|kind| kind.as_str()).collect();
        let rows: Vec<PgRow> = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE organization_id = $1 AND (txid, seq) > ($2, $3) AND txid < {HORIZON} \
             AND (cardinality($4::TEXT[]) = 0 OR kind = ANY($4)) \
             AND ($5::TEXT IS NULL OR subject_id = $5) \
             ORDER BY txid, seq LIMIT $6"
        ))
        .bind(organization_id)
        .bind(after.txid)
        .bind(after.seq)
        .bind(&kinds)
        .bind(filter.subject_id.as_deref())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(stored_event_from).collect()
    }

    async fn load_cursor(&self, consumer: &str) -> Result<EventCursor> {
        let saved = fetch_optional(
            &self.pool,
            "SELECT txid, seq FROM event_cursors WHERE consumer = $1",
            &[consumer],
            |row| {
                Ok(EventCursor {
                    txid: row.try_get("txid").map_err(other)?,
                    seq: row.try_get("seq").map_err(other)?,
                })
            },
        )
        .await?;
        Ok(saved.unwrap_or(EventCursor::START))
    }

    async fn save_cursor(&self, consumer: &str, cursor: EventCursor, now: Millis) -> Result<()> {
        // Committed without waiting for the WAL flush: only the cursor moves
        // (see the trait).
        static UNSYNCED_UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            upsert_cursor(&format!(
                "SELECT $1::text, $2::bigint, $3::bigint, $4::bigint FROM {UNSYNCED}"
            ))
        });
        sqlx::query(&UNSYNCED_UPSERT)
            .bind(consumer)
            .bind(cursor.txid)
            .bind(cursor.seq)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn prune_events(&self, older_than: Millis) -> Result<u64> {
        prune_older(&self.pool, "events", older_than).await
    }
}

/// Deletes the rows of `table` (numbered by `seq`, dated by `time`) older than
/// `older_than`, [`PRUNE_BATCH`] per transaction: no long lock, no long
/// transaction holding the stream's horizon back. How many.
pub(super) async fn prune_older(
    pool: &sqlx::PgPool,
    table: &'static str,
    older_than: Millis,
) -> Result<u64> {
    let sql = format!(
        "DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} WHERE time < $1 LIMIT $2)"
    );
    let mut pruned = 0;
    loop {
        let deleted = sqlx::query(&sql)
            .bind(older_than)
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await
            .map_err(other)?
            .rows_affected();
        pruned += deleted;
        if (deleted as i64) < PRUNE_BATCH {
            return Ok(pruned);
        }
    }
}
