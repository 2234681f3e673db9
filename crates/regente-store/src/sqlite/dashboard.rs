//! The dashboard's hourly rollups on SQLite (kept by a trigger; read here).

use async_trait::async_trait;
use rusqlite::params;

use super::{all, one, SqliteStore};
use crate::dashboard::{TOTALS_ENDED, TOTALS_LIVE, TOTALS_RUNTIMES, TOTALS_TIMES};
use crate::rows::{
    ended_total_from, hour_count_from, hour_times_from, status_count_from, time_total_from,
};
use crate::{DashboardStore, Hours, Millis, Result, Totals};

#[async_trait]
impl DashboardStore for SqliteStore {
    async fn hours(&self, organization_id: &str, from: Millis, to: Millis) -> Result<Hours> {
        let organization_id = organization_id.to_owned();
        // At most a window's hours of rows, read on the primary key's prefix.
        self.read_blocking(move |conn| {
            let counts = all(
                conn,
                "SELECT hour, robot_id, runtime_id, status, reason, runs, busy_ms \
                 FROM execution_hours WHERE organization_id = ?1 AND hour >= ?2 AND hour < ?3",
                params![organization_id, from, to],
                |row| hour_count_from(row),
            )?;
            let times = all(
                conn,
                "SELECT hour, robot_id, kind, bucket, runs FROM execution_hour_times \
                 WHERE organization_id = ?1 AND hour >= ?2 AND hour < ?3",
                params![organization_id, from, to],
                |row| hour_times_from(row),
            )?;
            Ok(Hours { counts, times })
        })
        .await
    }

    async fn totals(&self) -> Result<Totals> {
        self.read_blocking(|conn| {
            let (ended, busy): (Vec<_>, Vec<i64>) =
                all(conn, TOTALS_ENDED, params![], |row| ended_total_from(row))?
                    .into_iter()
                    .unzip();
            let times = all(conn, TOTALS_TIMES, params![], |row| time_total_from(row))?;
            let live = all(conn, TOTALS_LIVE, params![], |row| status_count_from(row))?;
            let runtimes = one(conn, TOTALS_RUNTIMES, params![], |row| {
                crate::rows::RecordRow::int(row, "runtimes")
            })?;
            Ok(Totals {
                ended,
                live,
                busy_ms: busy.iter().sum(),
                times,
                runtimes: runtimes.unwrap_or(0).max(0) as u64,
            })
        })
        .await
    }

    fn commit_times(&self) -> Option<crate::HistogramSnapshot> {
        Some(self.readers.commit_times.snapshot())
    }
}
