//! The audit log (admins only): who changed what, newest first.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Client, Result};

/// One record of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// Epoch milliseconds.
    pub time: i64,
    /// A user's id, or `KIND:ID` for the server acting on its own.
    pub actor_id: String,
    pub actor_name: String,
    /// `OBJECT.VERB`, e.g. `user.create`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub address: Option<String>,
    pub summary: Value,
}

/// A page of records, newest first; `next` reads the page after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<String>,
}

/// Which records to read; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// The actor's id or name.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// Epoch milliseconds or ISO-8601 with an offset.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The `next` of the page before.
    pub after: Option<String>,
    /// 1 to 200 (the server's default: 50).
    pub limit: Option<u32>,
}

impl Client {
    /// A page of the organisation's audit records matching `query`, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        let limit = query.limit.map(|n| n.to_string());
        let pairs: Vec<(&str, &String)> = [
            ("actor", query.actor.as_ref()),
            ("action", query.action.as_ref()),
            ("object_type", query.object_type.as_ref()),
            ("object_id", query.object_id.as_ref()),
            ("from", query.from.as_ref()),
            ("to", query.to.as_ref()),
            ("after", query.after.as_ref()),
            ("limit", limit.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect();
        self.call(Method::GET, "/api/admin/audit", |r| r.query(&pairs))
            .await
    }
}
