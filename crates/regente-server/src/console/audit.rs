//! The audit log (admins only): the newest records, filtered as the API
//! filters them, older pages by cursor. Read only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};

use super::format;
use super::pages::{render, Chrome, PageResult};
use super::session::AdminViewer;
use crate::api::error::ApiError;
use crate::service::{audit, Context};

pub struct AuditRow {
    pub time: String,
    pub actor: String,
    /// The actor's kind, as data (`user`, `api_key`, ...) and as shown.
    pub actor_kind: &'static str,
    pub actor_kind_label: &'static str,
    pub action: String,
    pub object: String,
    pub address: String,
    pub summary: String,
}

/// The filters as given, each empty when not.
#[derive(Default)]
pub struct Filters {
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub from: String,
    pub to: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    filters: Filters,
    rows: Vec<AuditRow>,
    /// The query string of the next (older) page.
    next: Option<String>,
    /// Whether this is a later page (a link to the newest is shown).
    paged: bool,
}

pub async fn list(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    Query(params): Query<HashMap<String, String>>,
) -> PageResult {
    // A form sends its empty fields: they filter nothing.
    let params: BTreeMap<String, String> = params
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let filter = crate::api::audit::parse_query(&params.clone().into_iter().collect())
        .map_err(|ApiError(e)| viewer.fail()(e))?;
    let page = audit::list(&ctx, viewer.caller(), filter)
        .await
        .map_err(viewer.fail())?;
    let next = page.next.map(|after| {
        let mut query: Vec<(&str, String)> = params
            .iter()
            .filter(|(name, _)| *name != "after")
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        query.push(("after", after.to_string()));
        serde_urlencoded::to_string(query).unwrap_or_default()
    });
    let given = |name: &str| params.get(name).cloned().unwrap_or_default();
    let kinds = audit::actor_kinds(&ctx, viewer.caller(), &page.records)
        .await
        .map_err(viewer.fail())?;
    let rows = page
        .records
        .into_iter()
        .zip(kinds)
        .map(|(record, kind)| {
            let entry = record.entry;
            AuditRow {
                time: format::time_html(entry.time),
                actor: entry.actor_name,
                actor_kind: kind.as_str(),
                actor_kind_label: kind.label(),
                action: entry.action,
                object: format!("{} {}", entry.object_type, entry.object_id),
                address: entry.address.unwrap_or_default(),
                summary: entry.summary.to_string(),
            }
        })
        .collect();
    Ok(render(&AuditPage {
        chrome: viewer.chrome,
        filters: Filters {
            actor: given("actor"),
            action: given("action"),
            object_type: given("object_type"),
            object_id: given("object_id"),
            from: given("from"),
            to: given("to"),
        },
        rows,
        next,
        paged: params.contains_key("after"),
    }))
}
