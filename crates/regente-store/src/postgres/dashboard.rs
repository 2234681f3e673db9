//! The dashboard's hourly rollups on PostgreSQL (kept by a trigger; read here).

use async_trait::async_trait;

use super::{fetch_all, other, PostgresStore, NO_ARGS};
use crate::dashboard::{TOTALS_ENDED, TOTALS_LIVE, TOTALS_RUNTIMES, TOTALS_TIMES};
use crate::rows::{
    ended_total_from, hour_count_from, hour_times_from, status_count_from, time_total_from,
};
use crate::{DashboardStore, Hours, Millis, Result, Totals};

#[async_trait]
impl DashboardStore for PostgresStore {
    async fn hours(&self, organization_id: &str, from: Millis, to: Millis) -> Result<Hours> {
        let counts = sqlx::query(
            "SELECT hour, robot_id, runtime_id, status, reason, runs, busy_ms \
             FROM execution_hours WHERE organization_id = $1 AND hour >= $2 AND hour < $3",
        )
        .bind(organization_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?
        .iter()
        .map(hour_count_from)
        .collect::<Result<_>>()?;
        let times = sqlx::query(
            "SELECT hour, robot_id, kind, bucket, runs FROM execution_hour_times \
             WHERE organization_id = $1 AND hour >= $2 AND hour < $3",
        )
        .bind(organization_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?
        .iter()
        .map(hour_times_from)
        .collect::<Result<_>>()?;
        Ok(Hours { counts, times })
    }

    async fn totals(&self) -> Result<Totals> {
        let (ended, busy): (Vec<_>, Vec<i64>) =
            fetch_all(&self.pool, TOTALS_ENDED, NO_ARGS, ended_total_from)
                .await?
                .into_iter()
                .unzip();
        let times = fetch_all(&self.pool, TOTALS_TIMES, NO_ARGS, time_total_from).await?;
        let live = fetch_all(&self.pool, TOTALS_LIVE, NO_ARGS, status_count_from).await?;
        let runtimes: i64 = sqlx::query_scalar(TOTALS_RUNTIMES)
            .fetch_one(&self.pool)
            .await
            .map_err(other)?;
        Ok(Totals {
            ended,
            live,
            busy_ms: busy.iter().sum(),
            times,
            runtimes: runtimes.max(0) as u64,
        })
    }
}
