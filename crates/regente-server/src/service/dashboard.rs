//! The dashboard's figures for a window of hours, from the store's hourly
//! rollups (never from the executions themselves): runs by status over time,
//! the success rate, failures by robot, runtime, reason and hour of the week,
//! durations and queue waits, and the runtimes' utilisation.

use std::collections::{BTreeMap, HashMap};

use regente_core::ExecutionStatus;
use regente_store::dashboard::{quantile, TIME_BUCKETS};
use regente_store::{Millis, TimeKind};

use super::{Caller, Context, Result};

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

/// The windows a dashboard covers: value, label, hours, hours per chart bar.
pub const WINDOWS: &[(&str, &str, i64, i64)] = &[
    ("24h", "24 hours", 24, 1),
    ("7d", "7 days", 7 * 24, 24),
    ("30d", "30 days", 30 * 24, 24),
];

/// Ended runs of one period of the chart.
#[derive(Debug, Clone, Default)]
pub struct Period {
    pub start: Millis,
    pub finished: u64,
    pub error: u64,
    pub canceled: u64,
}

impl Period {
    /// FINISHED over FINISHED and ERROR; `None` when neither ended (no data,
    /// not 0 %). Canceled runs say nothing of the robot's success.
    pub fn success_rate(&self) -> Option<f64> {
        let judged = self.finished + self.error;
        (judged > 0).then(|| self.finished as f64 / judged as f64)
    }
}

#[derive(Debug, Clone)]
pub struct RobotTimes {
    pub robot: String,
    pub runs: u64,
    pub p50: Option<Millis>,
    pub p95: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct Utilisation {
    pub runtime: String,
    pub slots: u32,
    pub busy_ms: i64,
    pub available_ms: i64,
}

impl Utilisation {
    pub fn ratio(&self) -> Option<f64> {
        (self.available_ms > 0).then(|| (self.busy_ms as f64 / self.available_ms as f64).min(1.0))
    }
}

#[derive(Debug, Clone)]
pub struct Dashboard {
    pub window: &'static str,
    pub from: Millis,
    pub to: Millis,
    /// Hours per period of `periods`.
    pub period_hours: i64,
    pub periods: Vec<Period>,
    pub totals: Period,
    pub failures_by_robot: Vec<(String, u64)>,
    pub failures_by_runtime: Vec<(String, u64)>,
    pub failures_by_reason: Vec<(String, u64)>,
    pub durations: Vec<RobotTimes>,
    pub wait_p95: Option<Millis>,
    pub utilisation: Vec<Utilisation>,
    /// ERROR runs by day of the week (0 = Monday) and hour of the day, in the
    /// zone `utc_offset_minutes` from UTC.
    pub heat: [[u64; 24]; 7],
}

fn sorted_desc(counts: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut list: Vec<(String, u64)> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

/// The figures of the window named `window` (see [`WINDOWS`]) ending with the
/// current hour.
pub async fn figures(
    ctx: &Context,
    caller: &Caller,
    window: &str,
    utc_offset_minutes: i64,
) -> Result<Dashboard> {
    let (name, _, hours, period_hours) = WINDOWS
        .iter()
        .copied()
        .find(|(value, ..)| *value == window)
        .ok_or_else(|| {
            super::Error::Invalid(format!("{window:?} is no window: use 24h, 7d or 30d"))
        })?;
    let now = ctx.clock.now();
    let to = now - now.rem_euclid(HOUR) + HOUR;
    let from = to - hours * HOUR;
    let rollups = ctx.store.hours(&caller.organization_id, from, to).await?;
    let robots: HashMap<String, String> = super::robots::list(ctx, caller)
        .await?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    let runtimes = super::runtimes::list(ctx, caller).await?;
    let robot_name = |id: &str| robots.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let runtime_name = |id: &str| {
        runtimes
            .iter()
            .find(|r| r.id == id)
            .map_or_else(|| id.to_owned(), |r| r.name.clone())
    };

    let period = period_hours * HOUR;
    let mut periods: Vec<Period> = (0..hours / period_hours)
        .map(|i| Period {
            start: from + i * period,
            ..Period::default()
        })
        .collect();
    let mut totals = Period::default();
    let (mut by_robot, mut by_runtime, mut by_reason) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let mut busy: HashMap<&str, i64> = HashMap::new();
    let mut heat = [[0u64; 24]; 7];
    let offset = utc_offset_minutes.clamp(-14 * 60, 14 * 60) * 60_000;
    for count in &rollups.counts {
        let index = ((count.hour - from) / period) as usize;
        let Some(slot) = periods.get_mut(index) else {
            continue;
        };
        for target in [slot, &mut totals] {
            match count.status {
                ExecutionStatus::Finished => target.finished += count.runs,
                ExecutionStatus::Error => target.error += count.runs,
                ExecutionStatus::Canceled => target.canceled += count.runs,
                _ => {}
            }
        }
        *busy.entry(count.runtime_id.as_str()).or_default() += count.busy_ms;
        if count.status == ExecutionStatus::Error {
            *by_robot.entry(robot_name(&count.robot_id)).or_default() += count.runs;
            *by_runtime
                .entry(runtime_name(&count.runtime_id))
                .or_default() += count.runs;
            let reason = if count.reason.is_empty() {
                "(no reason given)".to_owned()
            } else {
                count.reason.clone()
            };
            *by_reason.entry(reason).or_default() += count.runs;
            let local = count.hour + offset;
            let day = (local.div_euclid(DAY) + 3).rem_euclid(7) as usize;
            let hour = (local.rem_euclid(DAY) / HOUR) as usize;
            heat[day][hour] += count.runs;
        }
    }

    let buckets = TIME_BUCKETS.len() + 1;
    let mut durations: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut waits = vec![0u64; buckets];
    for times in &rollups.times {
        let histogram = match times.kind {
            TimeKind::Duration => durations
                .entry(robot_name(&times.robot_id))
                .or_insert_with(|| vec![0; buckets]),
            TimeKind::Wait => &mut waits,
        };
        if let Some(slot) = histogram.get_mut(times.bucket) {
            *slot += times.runs;
        }
    }
    let durations = durations
        .into_iter()
        .map(|(robot, histogram)| RobotTimes {
            robot,
            runs: histogram.iter().sum(),
            p50: quantile(&histogram, 0.5),
            p95: quantile(&histogram, 0.95),
        })
        .collect();

    let mut utilisation: Vec<Utilisation> = runtimes
        .iter()
        .map(|runtime| {
            let since = runtime.created_at.max(from);
            Utilisation {
                runtime: runtime.name.clone(),
                slots: runtime.slots,
                busy_ms: busy.get(runtime.id.as_str()).copied().unwrap_or(0),
                available_ms: (now.min(to) - since).max(0) * i64::from(runtime.slots),
            }
        })
        .collect();
    utilisation.sort_by(|a, b| a.runtime.cmp(&b.runtime));

    Ok(Dashboard {
        window: name,
        from,
        to,
        period_hours,
        periods,
        totals,
        failures_by_robot: sorted_desc(by_robot),
        failures_by_runtime: sorted_desc(by_runtime),
        failures_by_reason: sorted_desc(by_reason),
        durations,
        wait_p95: quantile(&waits, 0.95),
        utilisation,
        heat,
    })
}
