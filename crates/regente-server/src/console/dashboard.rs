//! The dashboard: a window's figures as SVG charts, each with its table.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::charts;
use super::format;
use super::pages::{render, Chrome, PageResult};
use super::session::{cookie, AdminViewer};
use crate::service::dashboard::{self, Dashboard, Period, WINDOWS};
use crate::service::Context;

#[derive(Deserialize)]
pub struct DashboardQuery {
    window: Option<String>,
}

/// One period's row of the runs table.
pub struct PeriodRow {
    pub start: String,
    pub finished: u64,
    pub error: u64,
    pub canceled: u64,
    pub success: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    windows: Vec<(&'static str, &'static str, bool)>,
    figures: Dashboard,
    zone: String,
    period: &'static str,
    rows: Vec<PeriodRow>,
    runs_chart: String,
    success_chart: String,
    robot_chart: String,
    runtime_chart: String,
    reason_chart: String,
    heat_chart: String,
    heat_rows: Vec<(&'static str, Vec<u64>)>,
}

impl DashboardPage {
    fn success(&self) -> String {
        self.figures
            .totals
            .success_rate()
            .map_or_else(|| "no data".to_owned(), format::percent)
    }

    fn time(&self, ms: &Option<i64>) -> String {
        ms.map_or_else(|| "no data".to_owned(), format::duration)
    }

    fn span(&self, ms: &i64) -> String {
        format::duration(*ms)
    }

    fn start_html(&self) -> String {
        format::time_html(self.figures.from)
    }

    fn end_html(&self) -> String {
        format::time_html(self.figures.to)
    }

    fn share(&self, value: Option<f64>) -> String {
        value.map_or_else(|| "no data".to_owned(), format::percent)
    }
}

/// The browser's offset from UTC in minutes and its zone's name, as the
/// console's script keeps them in a cookie (`"120~Europe/Berlin"`); UTC without.
fn zone_of(headers: &HeaderMap) -> (i64, String) {
    let Some(value) = cookie(headers, "regente_tz") else {
        return (0, "UTC".to_owned());
    };
    let (offset, name) = value.split_once('~').unwrap_or((value, ""));
    let offset: i64 = offset.parse().unwrap_or(0).clamp(-14 * 60, 14 * 60);
    let name: String = percent_decode(name)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/_-+".contains(*c))
        .take(64)
        .collect();
    let sign = if offset < 0 { '-' } else { '+' };
    let label = format!("UTC{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60);
    let zone = if name.is_empty() {
        label
    } else {
        format!("{name} ({label})")
    };
    (offset, zone)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A period's label in the browser's zone: `14:00` by the hour, `12-05` by the day.
fn label(start: i64, offset_minutes: i64, period_hours: i64) -> String {
    let local = format::utc(start + offset_minutes * 60_000);
    if period_hours == 1 {
        local[11..16].to_owned()
    } else {
        local[5..10].to_owned()
    }
}

pub async fn page(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    Query(query): Query<DashboardQuery>,
) -> PageResult {
    let window = query.window.unwrap_or_else(|| "24h".to_owned());
    let (offset, zone) = zone_of(&headers);
    let figures = dashboard::figures(&ctx, viewer.caller(), &window, offset)
        .await
        .map_err(viewer.fail())?;
    let period = if figures.period_hours == 1 {
        "hour"
    } else {
        "day"
    };
    let labelled = |p: &Period| label(p.start, offset, figures.period_hours);
    let runs: Vec<(String, [u64; 3])> = figures
        .periods
        .iter()
        .map(|p| (labelled(p), [p.finished, p.error, p.canceled]))
        .collect();
    let success: Vec<(String, Option<f64>)> = figures
        .periods
        .iter()
        .map(|p| (labelled(p), p.success_rate()))
        .collect();
    let rows = figures
        .periods
        .iter()
        .map(|p| PeriodRow {
            start: format::time_html(p.start),
            finished: p.finished,
            error: p.error,
            canceled: p.canceled,
            success: p
                .success_rate()
                .map_or_else(|| "no data".to_owned(), format::percent),
        })
        .collect();
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let page = DashboardPage {
        windows: WINDOWS
            .iter()
            .map(|(value, label, ..)| (*value, *label, *value == figures.window))
            .collect(),
        runs_chart: charts::stacked_runs(&format!("Runs per {period} by status"), &runs),
        success_chart: charts::shares(&format!("Success rate per {period}"), &success),
        robot_chart: charts::ranking("Failures by robot", &figures.failures_by_robot),
        runtime_chart: charts::ranking("Failures by runtime", &figures.failures_by_runtime),
        reason_chart: charts::ranking("Failures by reason", &figures.failures_by_reason),
        heat_chart: charts::heat_map("Failures by day and hour", &figures.heat),
        heat_rows: days
            .iter()
            .zip(figures.heat.iter())
            .map(|(day, hours)| (*day, hours.to_vec()))
            .collect(),
        rows,
        period,
        zone,
        figures,
        chrome: viewer.chrome,
    };
    Ok(render(&page))
}
