//! The store's tables as the copy knows them: they must follow the migrations.

use crate::copy::conn::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    /// 64-bit integer (BIGINT on PostgreSQL).
    Int,
    /// 32-bit integer (INTEGER on PostgreSQL).
    Int32,
    Real,
    /// INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL.
    Bool,
    Bytes,
}

pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [(&'static str, Kind)],
    /// The primary key: pages are read in its order.
    pub(super) key: &'static [&'static str],
    /// A column whose bytes dominate the row: pages are also bounded by its size.
    pub(super) bulky: Option<&'static str>,
    /// The one backend that has this table, and what the other does instead.
    pub(super) only_on: Option<(Backend, &'static str)>,
}

/// Every table of the store, parents before children.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "organizations",
        columns: &[
            ("id", Kind::Text),
            ("name", Kind::Text),
            ("is_root", Kind::Bool),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "users",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("username", Kind::Text),
            ("password_hash", Kind::Text),
            ("role", Kind::Text),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "runtimes",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("key_hash", Kind::Text),
            ("slots", Kind::Int),
            ("last_seen", Kind::Int),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "robots",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "robot_versions",
        columns: &[
            ("robot_id", Kind::Text),
            ("version", Kind::Int),
            ("organization_id", Kind::Text),
            ("sha256", Kind::Text),
            ("manifest", Kind::Text),
            ("size", Kind::Int),
            ("package", Kind::Bytes),
            ("created_at", Kind::Int),
        ],
        key: &["robot_id", "version"],
        bulky: Some("package"),
        only_on: None,
    },
    Table {
        name: "executions",
        columns: &[
            ("seq", Kind::Int),
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("runtime_id", Kind::Text),
            ("robot_id", Kind::Text),
            ("robot_version", Kind::Int),
            ("variables", Kind::Text),
            ("status", Kind::Text),
            ("progress", Kind::Real),
            ("init", Kind::Int),
            ("started", Kind::Int),
            ("end", Kind::Int),
            ("return_value", Kind::Text),
            ("end_reason", Kind::Text),
            ("exit_code", Kind::Int32),
            ("submitted_by", Kind::Text),
            ("canceled_by", Kind::Text),
            ("lease", Kind::Text),
            ("attempt", Kind::Int),
            ("max_attempts", Kind::Int),
            ("last_event_seq", Kind::Int),
            ("cancel_requested", Kind::Bool),
        ],
        key: &["seq"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "execution_logs",
        columns: &[
            ("execution_id", Kind::Text),
            ("seq", Kind::Int),
            ("organization_id", Kind::Text),
            ("time", Kind::Int),
            ("level", Kind::Text),
            ("message", Kind::Text),
        ],
        key: &["execution_id", "seq"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "idempotency_keys",
        columns: &[
            ("user_id", Kind::Text),
            ("key", Kind::Text),
            ("fingerprint", Kind::Text),
            ("execution_id", Kind::Text),
            ("created_at", Kind::Int),
        ],
        key: &["user_id", "key"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "settings",
        columns: &[("name", Kind::Text), ("value", Kind::Bytes)],
        key: &["name"],
        bulky: None,
        only_on: Some((
            Backend::Postgres,
            "it holds the token signing secret servers on PostgreSQL share; a server on \
             SQLite keeps its own in its data directory (or takes --jwt-secret), so tokens \
             signed before the move are refused and their users log in again",
        )),
    },
];

/// The migrations' own bookkeeping: each side's is written by its migrator.
pub(super) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

impl Table {
    pub(super) fn exists_on(&self, backend: Backend) -> bool {
        self.only_on.is_none_or(|(only, _)| only == backend)
    }

    pub(super) fn column_list(&self) -> String {
        quoted_list(self.columns.iter().map(|(name, _)| *name))
    }

    pub(super) fn key_list(&self) -> String {
        quoted_list(self.key.iter().copied())
    }

    /// Where each key column sits in a row.
    pub(super) fn key_positions(&self) -> Vec<usize> {
        self.key
            .iter()
            .map(|key| {
                self.columns
                    .iter()
                    .position(|(name, _)| name == key)
                    .expect("key columns are columns")
            })
            .collect()
    }
}

pub(super) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

pub(super) fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(quoted).collect::<Vec<_>>().join(", ")
}
