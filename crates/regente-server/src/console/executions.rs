//! Executions: the list (filters, cursor paging), one execution (with its live
//! log) and cancelling one.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use regente_core::{is_valid_id, ExecutionStatus};
use regente_store::{Execution, ExecutionFilter, LogLine};
use serde::Deserialize;

use super::format;
use super::pages::{render, Chrome, PageResult};
use super::session::{Posted, Viewer};
use crate::service::{self, robots, runs, runtimes, users, Context};

const PAGE: u32 = 50;

/// The windows the list can be narrowed to: value, label, milliseconds.
pub const WINDOWS: &[(&str, &str, i64)] = &[
    ("1h", "Last hour", 3_600_000),
    ("24h", "Last 24 hours", 86_400_000),
    ("7d", "Last 7 days", 7 * 86_400_000),
    ("30d", "Last 30 days", 30 * 86_400_000),
];

pub const STATUSES: &[&str] = &["PENDENT", "RUNNING", "FINISHED", "ERROR", "CANCELED"];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    robot: String,
    #[serde(default)]
    runtime: String,
    #[serde(default)]
    window: String,
    #[serde(default)]
    cursor: String,
}

/// Names of robots and runtimes by id, for showing executions.
pub struct Names {
    pub robots: Vec<(String, String)>,
    pub runtimes: Vec<(String, String)>,
}

impl Names {
    pub async fn load(ctx: &Context, viewer: &Viewer) -> service::Result<Names> {
        let mut robots: Vec<(String, String)> = robots::list(ctx, viewer.caller())
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect();
        let mut runtimes: Vec<(String, String)> = runtimes::list(ctx, viewer.caller())
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect();
        robots.sort_by(|a, b| a.1.cmp(&b.1));
        runtimes.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(Names { robots, runtimes })
    }

    fn name<'a>(list: &'a [(String, String)], id: &'a str) -> &'a str {
        list.iter()
            .find(|(known, _)| known == id)
            .map_or(id, |(_, name)| name.as_str())
    }

    pub fn robot<'a>(&'a self, id: &'a str) -> &'a str {
        Self::name(&self.robots, id)
    }

    pub fn runtime<'a>(&'a self, id: &'a str) -> &'a str {
        Self::name(&self.runtimes, id)
    }
}

/// One row of the list.
pub struct Row {
    pub id: String,
    pub robot: String,
    pub version: u32,
    pub runtime: String,
    pub status: &'static str,
    pub progress: f64,
    pub submitted: String,
    pub took: String,
}

impl Row {
    pub fn new(execution: &Execution, names: &Names) -> Row {
        Row {
            id: execution.id.clone(),
            robot: names.robot(&execution.robot_id).to_owned(),
            version: execution.robot_version,
            runtime: names.runtime(&execution.runtime_id).to_owned(),
            status: execution.status.as_str(),
            progress: execution.progress,
            submitted: format::time_html(execution.init),
            took: match (execution.started, execution.end) {
                (Some(started), Some(end)) => format::duration(end - started),
                _ => String::new(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ListPage {
    chrome: Chrome,
    names: Names,
    rows: Vec<Row>,
    query: ListQuery,
    /// The query string of the next page, when there is one.
    next: Option<String>,
    statuses: &'static [&'static str],
    windows: &'static [(&'static str, &'static str, i64)],
}

fn optional_id(text: &str, what: &str) -> service::Result<Option<String>> {
    match text {
        "" => Ok(None),
        id if is_valid_id(id) => Ok(Some(id.to_owned())),
        other => Err(service::Error::Invalid(format!(
            "{other:?} is no {what} id"
        ))),
    }
}

fn filter_of(ctx: &Context, query: &ListQuery) -> service::Result<ExecutionFilter> {
    let status =
        match query.status.as_str() {
            "" => None,
            text => Some(ExecutionStatus::parse(text).ok_or_else(|| {
                service::Error::Invalid(format!("{text:?} is no execution status"))
            })?),
        };
    let from = match query.window.as_str() {
        "" => None,
        value => {
            let (_, _, span) = WINDOWS
                .iter()
                .find(|(known, _, _)| *known == value)
                .ok_or_else(|| service::Error::Invalid(format!("{value:?} is no window")))?;
            Some(ctx.clock.now() - span)
        }
    };
    let before_seq = match query.cursor.as_str() {
        "" => None,
        text => Some(
            text.parse::<i64>()
                .map_err(|_| service::Error::Invalid(format!("{text:?} is no page cursor")))?,
        ),
    };
    Ok(ExecutionFilter {
        status,
        robot_id: optional_id(&query.robot, "robot")?,
        runtime_id: optional_id(&query.runtime, "runtime")?,
        from,
        to: None,
        schedule_id: None,
        before_seq,
        limit: PAGE,
    })
}

pub async fn list(
    viewer: Viewer,
    State(ctx): State<Arc<Context>>,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let framed = viewer.fail();
    let filter = filter_of(&ctx, &query).map_err(&framed)?;
    let names = Names::load(&ctx, &viewer).await.map_err(&framed)?;
    let executions = runs::list(&ctx, viewer.caller(), &filter)
        .await
        .map_err(&framed)?;
    let next = (executions.len() == PAGE as usize)
        .then(|| executions.last())
        .flatten()
        .map(|last| {
            serde_urlencoded::to_string([
                ("status", query.status.as_str()),
                ("robot", &query.robot),
                ("runtime", &query.runtime),
                ("window", &query.window),
                ("cursor", &last.seq.to_string()),
            ])
            .unwrap_or_default()
        });
    let rows = executions.iter().map(|e| Row::new(e, &names)).collect();
    Ok(render(&ListPage {
        chrome: viewer.chrome,
        names,
        rows,
        query,
        next,
        statuses: STATUSES,
        windows: WINDOWS,
    }))
}

#[derive(Template)]
#[template(path = "execution.html")]
struct DetailPage {
    chrome: Chrome,
    execution: Execution,
    robot: String,
    runtime: String,
    submitted_by: String,
    canceled_by: Option<String>,
    variables: Vec<(String, String)>,
    return_value: Option<String>,
    log: Vec<LogLine>,
    /// The last log line's number, where the live updates start.
    last_seq: i64,
    queue_position: Option<u64>,
    duration: String,
    queue_wait: String,
}

impl DetailPage {
    /// Whether the page follows the execution live: it runs, or its log goes
    /// on past the first page.
    fn live(&self) -> bool {
        !self.execution.status.is_ended() || self.log.len() == runs::LOG_PAGE as usize
    }

    fn ended(&self) -> bool {
        self.execution.status.is_ended()
    }

    fn time(&self, ms: &Option<i64>) -> String {
        format::maybe_time_html(*ms)
    }

    fn submitted(&self) -> String {
        format::time_html(self.execution.init)
    }

    fn line_time(&self, line: &LogLine) -> String {
        format::time_html(line.time)
    }
}

/// Who did something, as the console names them.
pub(super) async fn who(ctx: &Context, viewer: &Viewer, id: &str) -> service::Result<String> {
    if id.contains(':') {
        return Ok(id.to_owned());
    }
    Ok(users::name_of(ctx, viewer.caller(), id)
        .await?
        .unwrap_or_else(|| format!("deleted user {id}")))
}

/// Who did something (saved a flow, started a run, created a key), each
/// user read once per page.
pub(super) struct People<'a> {
    ctx: &'a Context,
    viewer: &'a Viewer,
    known: HashMap<String, String>,
}

impl<'a> People<'a> {
    pub(super) fn new(ctx: &'a Context, viewer: &'a Viewer) -> People<'a> {
        People {
            ctx,
            viewer,
            known: HashMap::new(),
        }
    }

    pub(super) async fn name(&mut self, id: &str) -> service::Result<String> {
        if let Some(name) = self.known.get(id) {
            return Ok(name.clone());
        }
        let name = who(self.ctx, self.viewer, id).await?;
        self.known.insert(id.to_owned(), name.clone());
        Ok(name)
    }
}

pub async fn detail(
    viewer: Viewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> PageResult {
    let framed = viewer.fail();
    let execution = runs::get_any(&ctx, viewer.caller(), &id)
        .await
        .map_err(&framed)?;
    // The first page; the live stream brings the rest, page by page.
    let log = runs::logs_after(&ctx, viewer.caller(), &execution, 0)
        .await
        .map_err(&framed)?;
    let names = Names::load(&ctx, &viewer).await.map_err(&framed)?;
    let queue_position = runs::queue_position(&ctx, &execution)
        .await
        .map_err(&framed)?;
    let submitted_by = match &execution.submitted_by {
        Some(id) => who(&ctx, &viewer, id).await.map_err(&framed)?,
        None => "—".to_owned(),
    };
    let canceled_by = match &execution.canceled_by {
        Some(id) => Some(who(&ctx, &viewer, id).await.map_err(&framed)?),
        None => None,
    };
    let variables = execution
        .variables
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(name, value)| (name.clone(), format::json(value)))
                .collect()
        })
        .unwrap_or_default();
    let page = DetailPage {
        robot: names.robot(&execution.robot_id).to_owned(),
        runtime: names.runtime(&execution.runtime_id).to_owned(),
        submitted_by,
        canceled_by,
        variables,
        return_value: execution.return_value.as_ref().map(format::json),
        last_seq: log.last().map_or(0, |line| line.seq),
        log,
        queue_position,
        duration: match (execution.started, execution.end) {
            (Some(started), Some(end)) => format::duration(end - started),
            _ => "—".to_owned(),
        },
        queue_wait: execution
            .started
            .map_or_else(|| "—".to_owned(), |s| format::duration(s - execution.init)),
        execution,
        chrome: viewer.chrome,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct CancelForm {}

pub async fn cancel(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, CancelForm {}): Posted<CancelForm>,
) -> PageResult {
    let framed = viewer.fail();
    let execution = runs::get_any(&ctx, viewer.caller(), &id)
        .await
        .map_err(&framed)?;
    match runs::cancel(&ctx, viewer.caller(), &execution.runtime_id, &execution.id).await {
        // Ended meanwhile: the page shows how.
        Ok(()) | Err(service::Error::Conflict(_)) => {}
        Err(e) => return Err(framed(e)),
    }
    Ok(Redirect::to(&format!("/executions/{}", execution.id)).into_response())
}
