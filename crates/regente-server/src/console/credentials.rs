//! The vault's credentials (admins only), read-only: names, fields, the robots
//! allowed, versions and who changed them last. Values never reach a page: the
//! service hands none out here, and they are written with `regente credentials
//! set` or the admin API.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;

use super::format;
use super::pages::{render, Chrome, PageResult};
use super::session::AdminViewer;
use crate::service::{credentials, robots, Context};

pub struct CredentialRow {
    pub name: String,
    pub description: String,
    pub fields: String,
    /// The robots' names, or "every robot".
    pub robots: String,
    pub version: u32,
    pub updated: String,
    pub updated_by: String,
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    chrome: Chrome,
    credentials: Vec<CredentialRow>,
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    let caller = viewer.caller();
    let list = credentials::list(&ctx, caller)
        .await
        .map_err(viewer.fail())?;
    let robot_names: HashMap<String, String> = robots::list(&ctx, caller)
        .await
        .map_err(viewer.fail())?
        .into_iter()
        .map(|robot| (robot.id, robot.name))
        .collect();
    let mut rows: Vec<CredentialRow> = list
        .into_iter()
        .map(|credential| CredentialRow {
            robots: match &credential.robots {
                None => "every robot".to_owned(),
                // A robot deleted since shows by its id.
                Some(ids) => ids
                    .iter()
                    .map(|id| robot_names.get(id).unwrap_or(id).as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            name: credential.name,
            description: credential.description.unwrap_or_default(),
            fields: credential.fields.join(", "),
            version: credential.version,
            updated: format::time_html(credential.updated_at),
            updated_by: credential.updated_by,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(render(&CredentialsPage {
        chrome: viewer.chrome,
        credentials: rows,
    }))
}
