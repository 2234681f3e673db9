//! What `/metrics` shows, in Prometheus' text format. Two sources:
//!
//! - the store's figures, the same on every replica (scrape one, or aggregate
//!   replicas with `max`): ended executions by organisation and status, how
//!   long their robots ran, what waits and runs now. Ended runs are counted by
//!   the rollups that the transaction ending each execution updates, so a
//!   counter never misses a run nor goes back after a restart;
//! - this server's own: its answers by status code and its connected runtimes,
//!   counted since it started.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use regente_store::dashboard::TIME_BUCKETS;
use regente_store::{StatusCount, TimeKind};

use super::{Context, Result};

/// HTTP status codes counted: 100 to 599.
const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// This server's answers by status code.
pub struct HttpCounts {
    by_code: Box<[AtomicU64]>,
}

impl Default for HttpCounts {
    fn default() -> HttpCounts {
        HttpCounts {
            by_code: (0..CODES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl HttpCounts {
    pub fn count(&self, code: u16) {
        if let Some(counter) = code
            .checked_sub(FIRST_CODE)
            .and_then(|i| self.by_code.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The codes answered at least once, with their counts.
    fn answered(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.by_code.iter().enumerate().filter_map(|(i, counter)| {
            let count = counter.load(Ordering::Relaxed);
            (count > 0).then(|| (FIRST_CODE + i as u16, count))
        })
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
        "Executions ended, by organisation and final status (the store's, on every replica).",
    );
    statuses(&mut out, "regente_executions_ended_total", &totals.ended);
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
    let mut buckets = vec![0u64; TIME_BUCKETS.len() + 1];
    for (kind, bucket, runs) in &totals.times {
        if *kind == TimeKind::Duration {
            if let Some(slot) = buckets.get_mut(*bucket) {
                *slot += runs;
            }
        }
    }
    let mut cumulative = 0;
    for (bound, runs) in TIME_BUCKETS.iter().zip(&buckets) {
        cumulative += runs;
        let le = *bound as f64 / 1000.0;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += buckets[TIME_BUCKETS.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", totals.busy_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {cumulative}");

    family(
        &mut out,
        "regente_http_responses_total",
        "counter",
        "Answers of this server by HTTP status code, since it started.",
    );
    for (code, count) in ctx.http_counts.answered() {
        let _ = writeln!(
            out,
            "regente_http_responses_total{{code=\"{code}\"}} {count}"
        );
    }
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
    let _ = writeln!(out, "regente_runtime_connections {}", ctx.hub.connected());
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

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
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
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_range_are_ignored_and_the_others_counted() {
        let counts = HttpCounts::default();
        for code in [200, 200, 404, 99, 600, 599, 100] {
            counts.count(code);
        }
        let answered: Vec<_> = counts.answered().collect();
        assert_eq!(answered, [(100, 1), (200, 2), (404, 1), (599, 1)]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
