//! What `/metrics` shows, in Prometheus' text format. Two sources:
//!
//! - the store's figures, the same on every replica (scrape one, or aggregate
//!   replicas with `max`): ended executions by organisation and status, how
//!   long their robots ran, what waits and runs now. Ended runs are counted by
//!   the rollups that the transaction ending each execution updates, so a
//!   counter never misses a run nor goes back after a restart;
//! - this server's own, counted since it started: its answers by route (see
//!   [`super::http_metrics`]), its connected runtimes, the leases its sweeper
//!   ended, the schedule fires it made, and the store's commit times as this
//!   process saw them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regente_store::dashboard::TIME_BUCKETS;
use regente_store::{Histogram, HistogramSnapshot, StatusCount, TimeKind};

use super::{Context, Result};

/// Upper bounds of the schedule fire lag buckets, in seconds.
const FIRE_LAG_BOUNDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// This server's counts of its background work, since it started.
pub struct WorkCounts {
    /// Runs whose runtime went silent, requeued or ended by the sweeper.
    pub leases_expired: AtomicU64,
    /// Schedule fires by outcome.
    pub fires_started: AtomicU64,
    pub fires_skipped: AtomicU64,
    pub fires_missed: AtomicU64,
    /// Fire time minus scheduled time, of the fires that started a run.
    pub fire_lag: Histogram,
}

impl Default for WorkCounts {
    fn default() -> WorkCounts {
        WorkCounts {
            leases_expired: AtomicU64::new(0),
            fires_started: AtomicU64::new(0),
            fires_skipped: AtomicU64::new(0),
            fires_missed: AtomicU64::new(0),
            fire_lag: Histogram::new(FIRE_LAG_BOUNDS),
        }
    }
}

impl WorkCounts {
    /// Counts a fire started `lag_ms` after its scheduled time.
    pub fn fired(&self, lag_ms: i64) {
        self.fires_started.fetch_add(1, Ordering::Relaxed);
        let lag = Duration::from_millis(u64::try_from(lag_ms).unwrap_or(0));
        self.fire_lag.observe(lag);
    }
}

/// The whole exposition, read now.
pub async fn render(ctx: &Context) -> Result<String> {
    let totals = ctx.store.totals().await?;
    let mut out = String::new();
    family(
        &mut out,
        "regente_executions_ended_total",
        "counter",
        "Executions ended, by organisation, robot and final status (the store's, on every \
         replica).",
    );
    for ended in &totals.ended {
        let _ = writeln!(
            out,
            "regente_executions_ended_total{{organization=\"{}\",robot=\"{}\",status=\"{}\"}} {}",
            label(&ended.organization_id),
            label(&ended.robot_id),
            ended.status.as_str(),
            ended.count
        );
    }
    family(
        &mut out,
        "regente_executions",
        "gauge",
        "Executions PENDENT (queued) or RUNNING now, by organisation (the store's).",
    );
    statuses(&mut out, "regente_executions", &totals.live);

    let name = "regente_execution_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "How long ended executions' robots ran, start to end (the store's).",
    );
    let durations = store_times(&totals.times, TimeKind::Duration);
    let durations = HistogramSnapshot {
        sum: Some(totals.busy_ms as f64 / 1000.0),
        ..durations
    };
    histogram(&mut out, name, "", &durations);
    let name = "regente_execution_queue_wait_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "How long ended executions waited, queued to started (the store's; no sum: the store \
         keeps only the buckets).",
    );
    histogram(
        &mut out,
        name,
        "",
        &store_times(&totals.times, TimeKind::Wait),
    );

    ctx.http_metrics.render(&mut out);
    family(
        &mut out,
        "regente_webhook_deliveries_total",
        "counter",
        "Webhook attempts of this server since it started, by result: succeeded, retrying (failed, \
         tried again later), failed (for good: attempts exhausted or 410 Gone).",
    );
    let counts = &ctx.webhook_counts;
    for (result, count) in [
        ("succeeded", &counts.succeeded),
        ("retrying", &counts.retrying),
        ("failed", &counts.failed),
    ] {
        let _ = writeln!(
            out,
            "regente_webhook_deliveries_total{{result=\"{result}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
    family(
        &mut out,
        "regente_webhook_deliveries_pending",
        "gauge",
        "Webhook deliveries waiting to be sent or sent again (the store's).",
    );
    let pending = ctx.store.pending_webhook_deliveries().await?;
    let _ = writeln!(out, "regente_webhook_deliveries_pending {pending}");
    family(
        &mut out,
        "regente_runtime_connections",
        "gauge",
        "Runtime agents connected to this server now.",
    );
    let connected = ctx.hub.connected() as u64;
    let _ = writeln!(out, "regente_runtime_connections {connected}");
    family(
        &mut out,
        "regente_runtimes",
        "gauge",
        "Runtimes registered in the store, by state: online (connected to this server) or \
         offline (the others: with several replicas, connected to another one or to none; sum \
         the online ones of every replica).",
    );
    let online = connected.min(totals.runtimes);
    let _ = writeln!(out, "regente_runtimes{{state=\"online\"}} {online}");
    let offline = totals.runtimes - online;
    let _ = writeln!(out, "regente_runtimes{{state=\"offline\"}} {offline}");
    work(&mut out, &ctx.work_counts);
    if let Some(commits) = ctx.store.commit_times() {
        let name = "regente_store_commit_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "How long this server's write transactions to the store took, BEGIN to COMMIT, \
             since it started (SQLite only).",
        );
        histogram(&mut out, name, "", &commits);
    }
    family(
        &mut out,
        "regente_build_info",
        "gauge",
        "This server's version.",
    );
    let _ = writeln!(
        out,
        "regente_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    Ok(out)
}

/// The leases this server's sweeper ended and the fires its scheduler made.
fn work(out: &mut String, counts: &WorkCounts) {
    family(
        out,
        "regente_leases_expired_total",
        "counter",
        "Runs whose runtime went silent, requeued or ended by this server's sweeper since it \
         started.",
    );
    let expired = counts.leases_expired.load(Ordering::Relaxed);
    let _ = writeln!(out, "regente_leases_expired_total {expired}");
    let name = "regente_schedule_fires_total";
    family(
        out,
        name,
        "counter",
        "Schedule fires of this server's scheduler since it started, by outcome: fired (a run \
         started), skipped (overlap rule or a run that could not be queued), missed (due while \
         nobody could fire it).",
    );
    for (outcome, count) in [
        ("fired", &counts.fires_started),
        ("skipped", &counts.fires_skipped),
        ("missed", &counts.fires_missed),
    ] {
        let count = count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {count}");
    }
    let name = "regente_schedule_fire_lag_seconds";
    family(
        out,
        name,
        "histogram",
        "How late this server's scheduler started runs: fire time minus scheduled time.",
    );
    histogram(out, name, "", &counts.fire_lag.snapshot());
}

/// The store's time buckets of one kind, as a histogram in seconds (no sum).
fn store_times(times: &[(TimeKind, usize, u64)], wanted: TimeKind) -> HistogramSnapshot {
    let mut counts = vec![0u64; TIME_BUCKETS.len() + 1];
    for (kind, bucket, runs) in times {
        if *kind == wanted {
            if let Some(slot) = counts.get_mut(*bucket) {
                *slot += runs;
            }
        }
    }
    HistogramSnapshot {
        bounds: TIME_BUCKETS.iter().map(|ms| *ms as f64 / 1000.0).collect(),
        counts,
        sum: None,
    }
}

/// A histogram's lines: cumulative buckets, sum (when known) and count, each
/// with `labels` (`name="value"` pairs, or empty) and the bucket's `le`.
pub(super) fn histogram(out: &mut String, name: &str, labels: &str, snapshot: &HistogramSnapshot) {
    let comma = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, count) in snapshot.bounds.iter().zip(&snapshot.counts) {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{comma}le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += snapshot
        .counts
        .get(snapshot.bounds.len())
        .copied()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{comma}le=\"+Inf\"}} {cumulative}"
    );
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    if let Some(sum) = snapshot.sum {
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
    }
    let _ = writeln!(out, "{name}_count{braced} {cumulative}");
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn statuses(out: &mut String, name: &str, counts: &[StatusCount]) {
    for count in counts {
        let _ = writeln!(
            out,
            "{name}{{organization=\"{}\",status=\"{}\"}} {}",
            label(&count.organization_id),
            count.status.as_str(),
            count.count
        );
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the format wants.
pub(super) fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_their_labels() {
        let snapshot = HistogramSnapshot {
            bounds: vec![0.5, 2.0],
            counts: vec![1, 0, 2],
            sum: None,
        };
        let mut out = String::new();
        histogram(&mut out, "h", "a=\"b\"", &snapshot);
        assert_eq!(
            out,
            "h_bucket{a=\"b\",le=\"0.5\"} 1\nh_bucket{a=\"b\",le=\"2\"} 1\n\
             h_bucket{a=\"b\",le=\"+Inf\"} 3\nh_count{a=\"b\"} 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
