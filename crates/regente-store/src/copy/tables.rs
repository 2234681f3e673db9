//! The store's tables as the copy knows them: they must follow the migrations.

use crate::copy::conn::Backend;
use Kind::{Bool, Bytes, Int, Int32, Real, Text};

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

/// Every table of the store, parents before children: its name, its columns
/// and the key its pages are read by, then what sets it apart, if anything.
pub(super) const TABLES: &[Table] = &[
    Table::new(
        "organizations",
        &[
            ("id", Text),
            ("name", Text),
            ("is_root", Bool),
            ("created_at", Int),
        ],
        &["id"],
    ),
    Table::new(
        "users",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("username", Text),
            ("password_hash", Text),
            ("role", Text),
            ("created_at", Int),
        ],
        &["id"],
    ),
    Table::new(
        "runtimes",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("name", Text),
            ("key_hash", Text),
            ("slots", Int),
            ("last_seen", Int),
            ("deleted_at", Int),
            ("created_at", Int),
            ("session_id", Text),
        ],
        &["id"],
    ),
    Table::new(
        "robots",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("name", Text),
            ("created_at", Int),
        ],
        &["id"],
    ),
    Table::new(
        "robot_versions",
        &[
            ("robot_id", Text),
            ("version", Int),
            ("organization_id", Text),
            ("sha256", Text),
            ("manifest", Text),
            ("size", Int),
            ("package", Bytes),
            ("created_at", Int),
        ],
        &["robot_id", "version"],
    )
    .bulky("package"),
    Table::new(
        "executions",
        &[
            ("seq", Int),
            ("id", Text),
            ("organization_id", Text),
            ("runtime_id", Text),
            ("robot_id", Text),
            ("robot_version", Int),
            ("variables", Text),
            ("status", Text),
            ("progress", Real),
            ("init", Int),
            ("started", Int),
            ("end", Int),
            ("return_value", Text),
            ("end_reason", Text),
            ("exit_code", Int32),
            ("submitted_by", Text),
            ("canceled_by", Text),
            ("lease", Text),
            ("attempt", Int),
            ("max_attempts", Int),
            ("last_event_seq", Int),
            ("cancel_requested", Bool),
            ("flow_run_id", Text),
            ("flow_step_id", Text),
            ("schedule_id", Text),
            ("scheduled_for", Int),
        ],
        &["seq"],
    ),
    Table::new(
        "flows",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("name", Text),
            ("created", Int),
        ],
        &["id"],
    ),
    Table::new(
        "flow_versions",
        &[
            ("flow_id", Text),
            ("version", Int),
            ("organization_id", Text),
            ("definition", Text),
            ("created", Int),
            ("created_by", Text),
        ],
        &["flow_id", "version"],
    ),
    Table::new(
        "flow_runs",
        &[
            ("seq", Int),
            ("id", Text),
            ("organization_id", Text),
            ("flow_id", Text),
            ("version", Int),
            ("status", Text),
            ("input", Text),
            ("return_value", Text),
            ("init", Int),
            ("end", Int),
            ("end_reason", Text),
            ("submitted_by", Text),
            ("canceled_by", Text),
            ("revision", Int),
            ("wake_at", Int),
            ("schedule_id", Text),
            ("scheduled_for", Int),
        ],
        &["seq"],
    ),
    Table::new(
        "flow_steps",
        &[
            ("run_id", Text),
            ("position", Int),
            ("step_id", Text),
            ("organization_id", Text),
            ("status", Text),
            ("attempt", Int),
            ("execution_id", Text),
            ("return_value", Text),
            ("reason", Text),
            ("not_before", Int),
            ("deadline", Int),
        ],
        &["run_id", "position"],
    ),
    Table::new(
        "credentials",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("name", Text),
            ("description", Text),
            ("robots", Text),
            ("version", Int),
            ("created_by", Text),
            ("created_at", Int),
            ("updated_by", Text),
            ("updated_at", Int),
        ],
        &["id"],
    ),
    // Ciphertexts as they are: the target's servers need the same master key.
    Table::new(
        "credential_values",
        &[
            ("credential_id", Text),
            ("organization_id", Text),
            ("version", Int),
            ("field", Text),
            ("key_id", Text),
            ("nonce", Bytes),
            ("ciphertext", Bytes),
        ],
        &["credential_id", "field"],
    ),
    Table::new(
        "vault_keys",
        &[
            ("key_id", Text),
            ("check_value", Bytes),
            ("created_at", Int),
        ],
        &["key_id"],
    ),
    // Keys by their hash, as they are: the keys handed out keep working.
    Table::new(
        "api_keys",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("name", Text),
            ("role", Text),
            ("prefix", Text),
            ("key_hash", Text),
            ("created_by", Text),
            ("created_at", Int),
            ("last_used_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
        ],
        &["id"],
    ),
    // Secrets sealed by the vault, as they are: the same master key opens them.
    // A delivery's `event_seq` keeps the source's numbering (it only informs).
    Table::new(
        "webhooks",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("url", Text),
            ("events", Text),
            ("description", Text),
            ("enabled", Bool),
            ("disabled_reason", Text),
            ("secret", Text),
            ("previous_secret", Text),
            ("previous_secret_until", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        &["id"],
    ),
    Table::new(
        "webhook_deliveries",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("webhook_id", Text),
            ("event_type", Text),
            ("event_seq", Int),
            ("payload", Text),
            ("status", Text),
            ("attempts", Int),
            ("round_attempts", Int),
            ("next_attempt_at", Int),
            ("last_status_code", Int),
            ("last_error", Text),
            ("last_duration_ms", Int),
            ("last_attempt_at", Int),
            ("created_at", Int),
        ],
        &["id"],
    )
    .bulky("payload"),
    Table::new(
        "webhook_attempts",
        &[
            ("delivery_id", Text),
            ("attempt", Int),
            ("at", Int),
            ("duration_ms", Int),
            ("status_code", Int),
            ("error", Text),
            ("response", Text),
        ],
        &["delivery_id", "attempt"],
    ),
    Table::new(
        "execution_logs",
        &[
            ("execution_id", Text),
            ("seq", Int),
            ("organization_id", Text),
            ("time", Int),
            ("level", Text),
            ("message", Text),
        ],
        &["execution_id", "seq"],
    ),
    // The dashboard's rollups, copied as they are: the copy's INSERTs of ended
    // executions fire no trigger (only an UPDATE to an end counts one).
    Table::new(
        "execution_hours",
        &[
            ("organization_id", Text),
            ("hour", Int),
            ("robot_id", Text),
            ("runtime_id", Text),
            ("status", Text),
            ("reason", Text),
            ("runs", Int),
            ("busy_ms", Int),
        ],
        &[
            "organization_id",
            "hour",
            "robot_id",
            "runtime_id",
            "status",
            "reason",
        ],
    ),
    Table::new(
        "execution_hour_times",
        &[
            ("organization_id", Text),
            ("hour", Int),
            ("robot_id", Text),
            ("kind", Text),
            ("bucket", Int),
            ("runs", Int),
        ],
        &["organization_id", "hour", "robot_id", "kind", "bucket"],
    ),
    Table::new(
        "idempotency_keys",
        &[
            ("user_id", Text),
            ("key", Text),
            ("fingerprint", Text),
            ("execution_id", Text),
            ("created_at", Int),
        ],
        &["user_id", "key"],
    ),
    Table::new(
        "schedules",
        &[
            ("id", Text),
            ("organization_id", Text),
            ("name", Text),
            ("robot_id", Text),
            ("runtime_id", Text),
            ("flow_id", Text),
            ("variables", Text),
            ("rule", Text),
            ("timezone", Text),
            ("start_at", Int),
            ("end_at", Int),
            ("overlap", Text),
            ("catchup_window_seconds", Int),
            ("misfire", Text),
            ("jitter_seconds", Int),
            ("paused", Bool),
            ("pause_note", Text),
            ("pause_after_failures", Int),
            ("consecutive_failures", Int),
            ("fired", Int),
            ("skipped", Int),
            ("missed", Int),
            ("next_fire_at", Int),
            ("next_due_at", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        &["id"],
    ),
    Table::new(
        "schedule_fires",
        &[
            ("schedule_id", Text),
            ("scheduled_for", Int),
            ("organization_id", Text),
            ("origin", Text),
            ("outcome", Text),
            ("execution_id", Text),
            ("flow_run_id", Text),
            ("reason", Text),
            ("recorded_at", Int),
        ],
        &["schedule_id", "scheduled_for"],
    ),
    Table::new(
        "events",
        &[
            ("seq", Int),
            ("txid", Int),
            ("organization_id", Text),
            ("kind", Text),
            ("subject_id", Text),
            ("time", Int),
            ("data", Text),
        ],
        // Stream order; txid is 0 on SQLite, where seq alone is the order.
        &["txid", "seq"],
    )
    .sqlite_key(&["seq"])
    .rewrite(Rewrite::StreamOrder),
    Table::new(
        "event_cursors",
        &[
            ("consumer", Text),
            ("txid", Int),
            ("seq", Int),
            ("updated_at", Int),
        ],
        &["consumer"],
    )
    .rewrite(Rewrite::Cursors),
    Table::new(
        "audit_records",
        &[
            ("seq", Int),
            ("organization_id", Text),
            ("time", Int),
            ("actor_id", Text),
            ("actor_name", Text),
            ("action", Text),
            ("object_type", Text),
            ("object_id", Text),
            ("address", Text),
            ("summary", Text),
        ],
        &["seq"],
    ),
    Table::new("settings", &[("name", Text), ("value", Bytes)], &["name"]).only_on(
        Backend::Postgres,
        "it holds the token signing secret servers on PostgreSQL share; a server on \
         SQLite keeps its own in its data directory (or takes --jwt-secret), so tokens \
         signed before the move are refused and their users log in again",
    ),
];

/// The migrations' own bookkeeping: each side's is written by its migrator.
pub(super) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// Fixed rows a SQLite migration writes and its triggers read (the dashboard's
/// time buckets): the target's migrations write them too.
pub(super) const SQLITE_MIGRATION_DATA: &str = "execution_time_buckets";

impl Table {
    /// A table on both backends, read by `key` on each, copied as it is.
    const fn new(
        name: &'static str,
        columns: &'static [(&'static str, Kind)],
        key: &'static [&'static str],
    ) -> Table {
        Table {
            name,
            columns,
            key,
            sqlite_key: None,
            rewrite: None,
            bulky: None,
            only_on: None,
        }
    }

    const fn sqlite_key(self, key: &'static [&'static str]) -> Table {
        Table {
            sqlite_key: Some(key),
            ..self
        }
    }

    const fn rewrite(self, rewrite: Rewrite) -> Table {
        Table {
            rewrite: Some(rewrite),
            ..self
        }
    }

    const fn bulky(self, column: &'static str) -> Table {
        Table {
            bulky: Some(column),
            ..self
        }
    }

    const fn only_on(self, backend: Backend, instead: &'static str) -> Table {
        Table {
            only_on: Some((backend, instead)),
            ..self
        }
    }

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
