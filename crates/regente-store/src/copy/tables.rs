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
    /// Unique and indexed: pages are read in its order.
    pub(super) key: &'static [&'static str],
    /// The key on SQLite, when another one is indexed there.
    pub(super) sqlite_key: Option<&'static [&'static str]>,
    /// How the rows change on the way, if they do.
    pub(super) rewrite: Option<Rewrite>,
    /// A column whose bytes dominate the row: pages are also bounded by its size.
    pub(super) bulky: Option<&'static str>,
    /// The one backend that has this table, and what the other does instead.
    pub(super) only_on: Option<(Backend, &'static str)>,
}

/// How a table's rows change on the way to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rewrite {
    /// Events, read in stream order, are numbered 1, 2, ... with `txid` 0: the
    /// target's transaction ids have nothing to do with the source's, and every
    /// event the target writes itself must come after the copied ones (its own
    /// ids are above 0, or, on SQLite, its `seq`s above theirs).
    StreamOrder,
    /// Consumers' cursors follow that numbering: (0, the number of events up to
    /// the cursor), so each consumer goes on with the event it would have read
    /// next on the source.
    Cursors,
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
        sqlite_key: None,
        rewrite: None,
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
        sqlite_key: None,
        rewrite: None,
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
            ("deleted_at", Kind::Int),
            ("created_at", Kind::Int),
            ("session_id", Kind::Text),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
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
        sqlite_key: None,
        rewrite: None,
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
        sqlite_key: None,
        rewrite: None,
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
            ("flow_run_id", Kind::Text),
            ("flow_step_id", Kind::Text),
            ("schedule_id", Kind::Text),
            ("scheduled_for", Kind::Int),
        ],
        key: &["seq"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "flows",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("created", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "flow_versions",
        columns: &[
            ("flow_id", Kind::Text),
            ("version", Kind::Int),
            ("organization_id", Kind::Text),
            ("definition", Kind::Text),
            ("created", Kind::Int),
            ("created_by", Kind::Text),
        ],
        key: &["flow_id", "version"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "flow_runs",
        columns: &[
            ("seq", Kind::Int),
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("flow_id", Kind::Text),
            ("version", Kind::Int),
            ("status", Kind::Text),
            ("input", Kind::Text),
            ("return_value", Kind::Text),
            ("init", Kind::Int),
            ("end", Kind::Int),
            ("end_reason", Kind::Text),
            ("submitted_by", Kind::Text),
            ("canceled_by", Kind::Text),
            ("revision", Kind::Int),
            ("wake_at", Kind::Int),
            ("schedule_id", Kind::Text),
            ("scheduled_for", Kind::Int),
        ],
        key: &["seq"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "flow_steps",
        columns: &[
            ("run_id", Kind::Text),
            ("position", Kind::Int),
            ("step_id", Kind::Text),
            ("organization_id", Kind::Text),
            ("status", Kind::Text),
            ("attempt", Kind::Int),
            ("execution_id", Kind::Text),
            ("return_value", Kind::Text),
            ("reason", Kind::Text),
            ("not_before", Kind::Int),
            ("deadline", Kind::Int),
        ],
        key: &["run_id", "position"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "credentials",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("description", Kind::Text),
            ("robots", Kind::Text),
            ("version", Kind::Int),
            ("created_by", Kind::Text),
            ("created_at", Kind::Int),
            ("updated_by", Kind::Text),
            ("updated_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    // Ciphertexts as they are: the target's servers need the same master key.
    Table {
        name: "credential_values",
        columns: &[
            ("credential_id", Kind::Text),
            ("organization_id", Kind::Text),
            ("version", Kind::Int),
            ("field", Kind::Text),
            ("key_id", Kind::Text),
            ("nonce", Kind::Bytes),
            ("ciphertext", Kind::Bytes),
        ],
        key: &["credential_id", "field"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "vault_keys",
        columns: &[
            ("key_id", Kind::Text),
            ("check_value", Kind::Bytes),
            ("created_at", Kind::Int),
        ],
        key: &["key_id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    // Keys by their hash, as they are: the keys handed out keep working.
    Table {
        name: "api_keys",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("role", Kind::Text),
            ("prefix", Kind::Text),
            ("key_hash", Kind::Text),
            ("created_by", Kind::Text),
            ("created_at", Kind::Int),
            ("last_used_at", Kind::Int),
            ("expires_at", Kind::Int),
            ("revoked_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    // Secrets sealed by the vault, as they are: the same master key opens them.
    // A delivery's `event_seq` keeps the source's numbering (it only informs).
    Table {
        name: "webhooks",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("url", Kind::Text),
            ("events", Kind::Text),
            ("description", Kind::Text),
            ("enabled", Kind::Bool),
            ("disabled_reason", Kind::Text),
            ("secret", Kind::Text),
            ("previous_secret", Kind::Text),
            ("previous_secret_until", Kind::Int),
            ("created_at", Kind::Int),
            ("updated_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "webhook_deliveries",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("webhook_id", Kind::Text),
            ("event_type", Kind::Text),
            ("event_seq", Kind::Int),
            ("payload", Kind::Text),
            ("status", Kind::Text),
            ("attempts", Kind::Int),
            ("round_attempts", Kind::Int),
            ("next_attempt_at", Kind::Int),
            ("last_status_code", Kind::Int),
            ("last_error", Kind::Text),
            ("last_duration_ms", Kind::Int),
            ("last_attempt_at", Kind::Int),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: Some("payload"),
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "webhook_attempts",
        columns: &[
            ("delivery_id", Kind::Text),
            ("attempt", Kind::Int),
            ("at", Kind::Int),
            ("duration_ms", Kind::Int),
            ("status_code", Kind::Int),
            ("error", Kind::Text),
            ("response", Kind::Text),
        ],
        key: &["delivery_id", "attempt"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
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
        sqlite_key: None,
        rewrite: None,
    },
    // The dashboard's rollups, copied as they are: the copy's INSERTs of ended
    // executions fire no trigger (only an UPDATE to an end counts one).
    Table {
        name: "execution_hours",
        columns: &[
            ("organization_id", Kind::Text),
            ("hour", Kind::Int),
            ("robot_id", Kind::Text),
            ("runtime_id", Kind::Text),
            ("status", Kind::Text),
            ("reason", Kind::Text),
            ("runs", Kind::Int),
            ("busy_ms", Kind::Int),
        ],
        key: &[
            "organization_id",
            "hour",
            "robot_id",
            "runtime_id",
            "status",
            "reason",
        ],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "execution_hour_times",
        columns: &[
            ("organization_id", Kind::Text),
            ("hour", Kind::Int),
            ("robot_id", Kind::Text),
            ("kind", Kind::Text),
            ("bucket", Kind::Int),
            ("runs", Kind::Int),
        ],
        key: &["organization_id", "hour", "robot_id", "kind", "bucket"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
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
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "schedules",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("robot_id", Kind::Text),
            ("runtime_id", Kind::Text),
            ("flow_id", Kind::Text),
            ("variables", Kind::Text),
            ("rule", Kind::Text),
            ("timezone", Kind::Text),
            ("start_at", Kind::Int),
            ("end_at", Kind::Int),
            ("overlap", Kind::Text),
            ("catchup_window_seconds", Kind::Int),
            ("misfire", Kind::Text),
            ("jitter_seconds", Kind::Int),
            ("paused", Kind::Bool),
            ("pause_note", Kind::Text),
            ("pause_after_failures", Kind::Int),
            ("consecutive_failures", Kind::Int),
            ("fired", Kind::Int),
            ("skipped", Kind::Int),
            ("missed", Kind::Int),
            ("next_fire_at", Kind::Int),
            ("next_due_at", Kind::Int),
            ("created_at", Kind::Int),
            ("updated_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "schedule_fires",
        columns: &[
            ("schedule_id", Kind::Text),
            ("scheduled_for", Kind::Int),
            ("organization_id", Kind::Text),
            ("origin", Kind::Text),
            ("outcome", Kind::Text),
            ("execution_id", Kind::Text),
            ("flow_run_id", Kind::Text),
            ("reason", Kind::Text),
            ("recorded_at", Kind::Int),
        ],
        key: &["schedule_id", "scheduled_for"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
    },
    Table {
        name: "events",
        columns: &[
            ("seq", Kind::Int),
            ("txid", Kind::Int),
            ("organization_id", Kind::Text),
            ("kind", Kind::Text),
            ("subject_id", Kind::Text),
            ("time", Kind::Int),
            ("data", Kind::Text),
        ],
        // Stream order; txid is 0 on SQLite, where seq alone is the order.
        key: &["txid", "seq"],
        sqlite_key: Some(&["seq"]),
        bulky: None,
        only_on: None,
        rewrite: Some(Rewrite::StreamOrder),
    },
    Table {
        name: "event_cursors",
        columns: &[
            ("consumer", Kind::Text),
            ("txid", Kind::Int),
            ("seq", Kind::Int),
            ("updated_at", Kind::Int),
        ],
        key: &["consumer"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: Some(Rewrite::Cursors),
    },
    Table {
        name: "audit_records",
        columns: &[
            ("seq", Kind::Int),
            ("organization_id", Kind::Text),
            ("time", Kind::Int),
            ("actor_id", Kind::Text),
            ("actor_name", Kind::Text),
            ("action", Kind::Text),
            ("object_type", Kind::Text),
            ("object_id", Kind::Text),
            ("address", Kind::Text),
            ("summary", Kind::Text),
        ],
        key: &["seq"],
        bulky: None,
        only_on: None,
        sqlite_key: None,
        rewrite: None,
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
        sqlite_key: None,
        rewrite: None,
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

    /// The key pages are read by on `backend`.
    pub(super) fn key_on(&self, backend: Backend) -> &'static [&'static str] {
        match (backend, self.sqlite_key) {
            (Backend::Sqlite, Some(key)) => key,
            _ => self.key,
        }
    }

    pub(super) fn key_list(&self, backend: Backend) -> String {
        quoted_list(self.key_on(backend).iter().copied())
    }

    /// Where each key column on `backend` sits in a row.
    pub(super) fn key_positions(&self, backend: Backend) -> Vec<usize> {
        self.key_on(backend)
            .iter()
            .map(|key| self.position(key))
            .collect()
    }

    /// Where `column` sits in a row.
    pub(super) fn position(&self, column: &str) -> usize {
        self.columns
            .iter()
            .position(|(name, _)| *name == column)
            .expect("a column of the table")
    }
}

pub(super) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

pub(super) fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(quoted).collect::<Vec<_>>().join(", ")
}
