//! The dashboard's figures: per hour, per robot and runtime, how many executions
//! ended how, how long their robots ran, and histograms of their durations and
//! queue waits. The stores keep them up to date in the transaction that ends an
//! execution (a trigger on each backend; see the `execution_hours` migrations),
//! so reading a window costs its hours, not its executions.

use async_trait::async_trait;
use regente_core::ExecutionStatus;

use crate::{Millis, Result};

/// One hour's count of executions that ended one way.
#[derive(Debug, Clone, PartialEq)]
pub struct HourCount {
    /// The hour's first millisecond (UTC).
    pub hour: Millis,
    pub robot_id: String,
    pub runtime_id: String,
    /// FINISHED, ERROR or CANCELED.
    pub status: ExecutionStatus,
    /// Why an ERROR ended (its first 200 characters); empty otherwise.
    pub reason: String,
    pub runs: u64,
    /// How long their robots ran, together (0 for runs that never started).
    pub busy_ms: i64,
}

/// Which time a histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeKind {
    /// From start to end.
    Duration,
    /// From queued to started.
    Wait,
}

impl TimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeKind::Duration => "duration",
            TimeKind::Wait => "wait",
        }
    }

    pub fn parse(text: &str) -> Option<TimeKind> {
        match text {
            "duration" => Some(TimeKind::Duration),
            "wait" => Some(TimeKind::Wait),
            _ => None,
        }
    }
}

/// How many runs of a robot that ended in the hour took a time in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct HourTimes {
    pub hour: Millis,
    pub robot_id: String,
    pub kind: TimeKind,
    /// See [`TIME_BUCKETS`].
    pub bucket: usize,
    pub runs: u64,
}

/// The figures of the hours in a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hours {
    pub counts: Vec<HourCount>,
    pub times: Vec<HourTimes>,
}

/// Bucket `k` holds times (ms) under `TIME_BUCKETS[k]` (and at least the
/// bound before it); bucket `TIME_BUCKETS.len()` holds the longer ones. The
/// bounds are round-up(100 x 1.25^k): as the migrations' CASE expressions and
/// SQLite's `execution_time_buckets` say.
pub const TIME_BUCKETS: [i64; 76] = [
    100, 125, 157, 196, 245, 306, 382, 477, 597, 746, 932, 1165, 1456, 1819, 2274, 2843, 3553,
    4441, 5552, 6939, 8674, 10843, 13553, 16941, 21176, 26470, 33088, 41360, 51699, 64624, 80780,
    100975, 126218, 157773, 197216, 246520, 308149, 385186, 481483, 601854, 752317, 940396,
    1175495, 1469368, 1836710, 2295888, 2869860, 3587325, 4484156, 5605194, 7006493, 8758116,
    10947645, 13684556, 17105695, 21382118, 26727648, 33409559, 41761949, 52202436, 65253045,
    81566306, 101957883, 127447353, 159309192, 199136489, 248920612, 311150764, 388938455,
    486173069, 607716336, 759645420, 949556775, 1186945969, 1483682461, 1854603076,
];

/// The bucket a time falls in.
pub fn time_bucket(ms: Millis) -> usize {
    TIME_BUCKETS.partition_point(|&bound| bound <= ms)
}

/// The time under which `quantile` (0..=1) of the runs counted by bucket
/// fall, read as the bucket's upper bound; `None` without runs.
pub fn quantile(buckets: &[u64], quantile: f64) -> Option<Millis> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let wanted = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, runs) in buckets.iter().enumerate() {
        seen += runs;
        if seen >= wanted {
            let last = TIME_BUCKETS[TIME_BUCKETS.len() - 1];
            return Some(TIME_BUCKETS.get(bucket).copied().unwrap_or(last));
        }
    }
    None
}

/// The store's figures since it began, every organisation, for `/metrics`:
/// counters that only grow (the rollups outlive the executions they count)
/// and how many executions wait and run now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Ended executions by organisation, robot and status (FINISHED, ERROR,
    /// CANCELED).
    pub ended: Vec<EndedCount>,
    /// Executions PENDENT or RUNNING now, by organisation and status.
    pub live: Vec<StatusCount>,
    /// How long the robots of ended executions ran, together (ms).
    pub busy_ms: i64,
    /// Ended executions by time bucket (see [`TIME_BUCKETS`]), per kind.
    pub times: Vec<(TimeKind, usize, u64)>,
    /// Runtimes registered now, every organisation.
    pub runtimes: u64,
}

/// Ended executions of one robot with one final status.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedCount {
    pub organization_id: String,
    pub robot_id: String,
    pub status: ExecutionStatus,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusCount {
    pub organization_id: String,
    pub status: ExecutionStatus,
    pub count: u64,
}

#[async_trait]
pub trait DashboardStore: Send + Sync {
    /// The organisation's figures of the hours from `from` (inclusive) to `to`
    /// (exclusive), both hour starts.
    async fn hours(&self, organization_id: &str, from: Millis, to: Millis) -> Result<Hours>;

    /// Every organisation's figures since the store began (the rollups summed)
    /// and its live executions (read on the status index).
    async fn totals(&self) -> Result<Totals>;

    /// How long this process's write transactions took to commit, since the
    /// store was opened; `None` where the backend does not time them.
    fn commit_times(&self) -> Option<crate::HistogramSnapshot> {
        None
    }
}

/// The queries of [`DashboardStore::totals`], the same on both backends: the
/// ended counts with the robots' busy time, the time buckets, the live counts.
pub(crate) const TOTALS_ENDED: &str = "SELECT organization_id, robot_id, status, \
     CAST(sum(runs) AS BIGINT) AS count, CAST(sum(busy_ms) AS BIGINT) AS busy_ms \
     FROM execution_hours GROUP BY organization_id, robot_id, status";
pub(crate) const TOTALS_TIMES: &str = "SELECT kind, bucket, CAST(sum(runs) AS BIGINT) AS runs \
     FROM execution_hour_times GROUP BY kind, bucket";
pub(crate) const TOTALS_LIVE: &str = "SELECT organization_id, status, count(*) AS count \
     FROM executions WHERE status IN ('PENDENT', 'RUNNING') GROUP BY organization_id, status";
pub(crate) const TOTALS_RUNTIMES: &str = "SELECT count(*) AS runtimes FROM runtimes";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        assert_eq!(time_bucket(0), 0);
        assert_eq!(time_bucket(99), 0);
        assert_eq!(time_bucket(100), 1);
        assert_eq!(time_bucket(124), 1);
        assert_eq!(time_bucket(125), 2);
        assert_eq!(time_bucket(i64::MAX), TIME_BUCKETS.len());
        for pair in TIME_BUCKETS.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[1] as f64 <= pair[0] as f64 * 1.25 + 1.0);
        }
        let mut buckets = vec![0u64; TIME_BUCKETS.len() + 1];
        buckets[time_bucket(1_000)] += 95;
        buckets[time_bucket(60_000)] += 5;
        assert_eq!(
            quantile(&buckets, 0.5),
            Some(TIME_BUCKETS[time_bucket(1_000)])
        );
        assert_eq!(
            quantile(&buckets, 0.95),
            Some(TIME_BUCKETS[time_bucket(1_000)])
        );
        assert_eq!(
            quantile(&buckets, 0.96),
            Some(TIME_BUCKETS[time_bucket(60_000)])
        );
        assert_eq!(quantile(&[0, 0], 0.5), None);
    }

    #[test]
    fn the_migrations_bucket_as_the_code_does() {
        let sqlite = include_str!("../migrations/sqlite/0016_execution_time_buckets.sql");
        for (bucket, bound) in TIME_BUCKETS.iter().enumerate() {
            assert!(sqlite.contains(&format!("({bound}, {bucket})")), "{bound}");
        }
        let fallback = format!("LIMIT 1), {})", TIME_BUCKETS.len());
        assert_eq!(sqlite.matches(&fallback).count(), 2, "{fallback}");
        for migration in [
            include_str!("../migrations/sqlite/0006_execution_hours.sql"),
            include_str!("../migrations/postgres/0007_execution_hours.sql"),
        ] {
            for (bucket, bound) in TIME_BUCKETS.iter().enumerate() {
                let clause = format!("< {bound} THEN {bucket}");
                let found = [" ", "\n"]
                    .iter()
                    .any(|end| migration.contains(&format!("{clause}{end}")));
                assert!(found, "{clause}");
            }
            assert!(migration.contains(&format!("ELSE {} END", TIME_BUCKETS.len())));
        }
    }
}
