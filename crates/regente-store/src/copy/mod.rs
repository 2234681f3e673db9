//! `regente store copy`: moves a whole store, history included, from one database
//! to another, typically from the embedded SQLite file to PostgreSQL.
//!
//! - The source is read in one read-only snapshot (a read transaction on SQLite,
//!   `REPEATABLE READ READ ONLY` on PostgreSQL), so a server still running on it
//!   cannot make the copy inconsistent; what it writes after the snapshot is not
//!   copied, so stop the servers first. A source whose schema is older than this
//!   binary's is first migrated through the normal open path; a newer one is refused.
//! - The target is opened (created and migrated) through the normal open path, so
//!   its schema is current, then written in one transaction: it must hold no row
//!   at all (else the copy is refused, naming the tables that hold some), and a
//!   failed copy leaves it empty. On PostgreSQL its tables are locked against
//!   writers for the duration.
//! - Every table is copied column by column with its exact values (ids, times, JSON
//!   text, NULLs, package bytes, runtime key hashes, execution `seq`s), in
//!   dependency order, page by page in primary-key order with multi-row INSERTs, so
//!   memory stays bounded however long the history is. On PostgreSQL the execution,
//!   event, flow run and audit sequences are then set past the largest copied `seq`.
//! - But the event stream's places: the target's transaction ids have nothing to
//!   do with the source's, so events are copied in stream order, numbered 1, 2,
//!   ... with `txid` 0 (before anything the target writes), and each consumer's
//!   cursor is moved onto that numbering. Each consumer goes on with the event it
//!   would have read next.
//! - PostgreSQL text cannot hold NUL: copying to it, each NUL in text becomes
//!   U+FFFD, as the PostgreSQL store does with what runtimes report.
//! - A table only one backend has (`settings`, the token secret servers on
//!   PostgreSQL share) is copied between two such stores, left empty on a target
//!   coming from the other backend, and reported as left behind when the target
//!   has no place for it.
//!
//! The list of tables and columns below must follow the migrations: the copy checks
//! both databases against it first and refuses to run (rather than silently leave
//! data behind) when a table or a column is unknown to it. The migrations' own
//! tables (their bookkeeping, and the fixed rows a SQLite trigger reads) are
//! written by each side's migrations and not compared.
//!
//! - `mod.rs` (here): the copy itself, its checks and its report.
//! - `tables.rs`: every table and column the copy knows, in dependency order.
//! - `conn.rs`: a connection to either backend, and its paged reads and writes.

mod conn;
mod tables;

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{bail, Context as _};
use tracing::info;

use crate::redact;
use conn::{Backend, Cell, Conn};
use tables::{quoted_list, Rewrite, Table, TABLES};

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied, per table, in the order the tables were copied.
    pub tables: Vec<TableCount>,
    /// Tables of the source's backend that the target's has no place for, with
    /// their rows (not copied) and why that is fine.
    pub left_behind: Vec<(TableCount, &'static str)>,
    /// The source's schema was older than this binary's and was migrated first.
    pub source_migrated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub rows: u64,
}

impl CopyReport {
    /// Rows copied into `table`, if it is one of the store's tables.
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.rows)
    }
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
        for (i, t) in self.tables.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{:<width$}  {:>10}", t.table, t.rows)?;
        }
        for (t, why) in &self.left_behind {
            write!(f, "\n{} not copied ({} rows): {why}", t.table, t.rows)?;
        }
        Ok(())
    }
}

/// Copies the whole store at `from_url` into the empty store at `to_url` (see the
/// module's documentation). Either URL may be `sqlite://PATH` or `postgres://...`.
pub async fn copy(from_url: &str, to_url: &str) -> anyhow::Result<CopyReport> {
    Backend::of(from_url).context("--from")?;
    Backend::of(to_url).context("--to")?;
    anyhow::ensure!(
        from_url != to_url,
        "the source and the target are the same database"
    );

    let (mut source, source_migrated) = open_source(from_url).await?;
    // The normal open path creates the target if needed and brings its schema to
    // this binary's; the store itself is not used further.
    drop(
        crate::open(to_url)
            .await
            .with_context(|| format!("cannot open the target database {}", redact(to_url)))?,
    );
    let mut target = Conn::target(to_url).await?;

    let outcome = copy_between(&mut source, &mut target).await;
    let outcome = match outcome {
        Ok(copied) => target
            .run("COMMIT")
            .await
            .context("cannot commit the copy")
            .map(|()| copied),
        Err(e) => {
            let _ = target.run("ROLLBACK").await;
            Err(e)
        }
    };
    let _ = source.run("ROLLBACK").await;
    source.close().await;
    target.close().await;
    let (tables, left_behind) = outcome?;
    Ok(CopyReport {
        tables,
        left_behind,
        source_migrated,
    })
}

/// Opens the source read-only, after migrating it if its schema is older than
/// this binary's. Returns whether it was migrated.
async fn open_source(url: &str) -> anyhow::Result<(Conn, bool)> {
    let mut source = Conn::source(url).await?;
    let applied = source
        .migrations()
        .await
        .with_context(|| format!("cannot read the source database {}", redact(url)))?;
    let Some(applied) = applied else {
        bail!(
            "the source database {} holds no Regente store (it has no schema)",
            redact(url)
        );
    };
    if let Some((version, _)) = applied.iter().find(|(_, success)| !success) {
        bail!(
            "the source database {} has a migration that did not complete (version {version}): \
             start a Regente server on it to finish it first",
            redact(url)
        );
    }
    let known: BTreeSet<i64> = source
        .backend()
        .migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some((version, _)) = applied.iter().find(|(v, _)| !known.contains(v)) {
        bail!(
            "the source database {} was written by a newer Regente (schema version {version}): \
             copy it with that version or newer",
            redact(url)
        );
    }
    let applied: BTreeSet<i64> = applied.into_iter().map(|(v, _)| v).collect();
    if applied == known {
        return Ok((source, false));
    }
    source.close().await;
    info!("the source's schema is older than this binary's: migrating it first");
    drop(crate::open(url).await.with_context(|| {
        format!(
            "cannot migrate the source database {} to the current schema",
            redact(url)
        )
    })?);
    Ok((Conn::source(url).await?, true))
}

/// Copies every table inside a transaction on `target` that the caller ends.
/// Returns the rows copied per table, and those left behind.
async fn copy_between(source: &mut Conn, target: &mut Conn) -> anyhow::Result<Copied> {
    // One snapshot of the source, however long the copy takes.
    match source.backend() {
        Backend::Sqlite => source.run("BEGIN").await?,
        Backend::Postgres => {
            source
                .run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?
        }
    }
    match target.backend() {
        // Takes the write lock now, so nothing is written between the check that
        // the target is empty and the copy.
        Backend::Sqlite => target.run("BEGIN IMMEDIATE").await?,
        Backend::Postgres => {
            target.run("BEGIN").await?;
            let names = quoted_list(
                TABLES
                    .iter()
                    .filter(|t| t.exists_on(Backend::Postgres))
                    .map(|t| t.name),
            );
            // Readers may go on; writers (a server started too early) wait.
            target
                .run(&format!("LOCK TABLE {names} IN EXCLUSIVE MODE"))
                .await
                .context("cannot lock the target's tables")?;
        }
    }

    check_schema(source, "source").await?;
    check_schema(target, "target").await?;

    let (from, to) = (source.backend(), target.backend());
    let mut not_empty = Vec::new();
    for table in TABLES.iter().filter(|t| t.exists_on(to)) {
        if !target.is_empty(table).await? {
            not_empty.push(table.name);
        }
    }
    if !not_empty.is_empty() {
        bail!(
            "the target database is not empty (rows in {}): store copy writes only into an empty store",
            not_empty.join(", ")
        );
    }

    let mut counts = Vec::with_capacity(TABLES.len());
    let mut left_behind = Vec::new();
    for table in TABLES.iter().filter(|t| t.exists_on(from)) {
        if !table.exists_on(to) {
            let rows = source.count(table).await?;
            if let Some((_, why)) = table.only_on {
                left_behind.push((
                    TableCount {
                        table: table.name,
                        rows,
                    },
                    why,
                ));
            }
            continue;
        }
        let rows = copy_table(source, target, table)
            .await
            .with_context(|| format!("cannot copy the table {}", table.name))?;
        info!(table = table.name, rows, "copied");
        counts.push(TableCount {
            table: table.name,
            rows,
        });
    }

    if target.backend() == Backend::Postgres {
        // The next run queued on the target comes after every copied one. (setval
        // is not undone by a rollback: a failed copy leaves at worst a higher start.)
        for table in ["executions", "events", "flow_runs", "audit_records"] {
            target
                .run(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), \
                     COALESCE(MAX(seq), 0) + 1, false) FROM {table}"
                ))
                .await
                .with_context(|| format!("cannot advance the {table} sequence"))?;
        }
    }
    Ok((counts, left_behind))
}

type Copied = (Vec<TableCount>, Vec<(TableCount, &'static str)>);

/// Checks that the database has exactly the tables and columns the copy knows.
async fn check_schema(conn: &mut Conn, side: &str) -> anyhow::Result<()> {
    let tables: Vec<&Table> = TABLES
        .iter()
        .filter(|t| t.exists_on(conn.backend()))
        .collect();
    let known: BTreeSet<String> = tables.iter().map(|t| t.name.to_owned()).collect();
    let found = conn.tables().await?;
    if let Some(table) = found.difference(&known).next() {
        bail!("the {side} has a table {table:?} that this version of store copy does not know");
    }
    if let Some(table) = known.difference(&found).next() {
        bail!("the {side} has no table {table:?}");
    }
    for table in tables {
        let found = conn.columns(table.name).await?;
        let known: BTreeSet<String> = table.columns.iter().map(|(c, _)| c.to_string()).collect();
        if let Some(column) = found.difference(&known).next() {
            bail!(
                "the {side}'s table {} has a column {column:?} that this version of store copy does not know",
                table.name
            );
        }
        if let Some(column) = known.difference(&found).next() {
            bail!("the {side}'s table {} has no column {column:?}", table.name);
        }
    }
    Ok(())
}

async fn copy_table(source: &mut Conn, target: &mut Conn, table: &Table) -> anyhow::Result<u64> {
    let key_positions = table.key_positions(source.backend());
    let mut after: Option<Vec<Cell>> = None;
    let mut copied = 0u64;
    loop {
        let limit = source.page_rows(table, after.as_deref()).await?;
        let mut rows = source.fetch_page(table, after.as_deref(), limit).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(key_positions.iter().map(|&i| last[i].clone()).collect());
        let count = rows.len();
        match table.rewrite {
            None => {}
            Some(Rewrite::StreamOrder) => {
                for (row, number) in rows.iter_mut().zip(copied + 1..) {
                    row[table.position("seq")] = Cell::Int(Some(number as i64));
                    row[table.position("txid")] = Cell::Int(Some(0));
                }
            }
            Some(Rewrite::Cursors) => {
                for row in &mut rows {
                    let (Cell::Int(Some(txid)), Cell::Int(Some(seq))) =
                        (&row[table.position("txid")], &row[table.position("seq")])
                    else {
                        bail!("a cursor without its place in the stream");
                    };
                    let events = source.events_up_to(*txid, *seq).await?;
                    row[table.position("seq")] = Cell::Int(Some(events as i64));
                    row[table.position("txid")] = Cell::Int(Some(0));
                }
            }
        }
        target.insert(table, rows).await?;
        copied += count as u64;
        if copied % 100_000 < count as u64 {
            info!(table = table.name, rows = copied, "copying");
        }
        if count < limit {
            break;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_listed_once_with_keys_among_their_columns() {
        let names: BTreeSet<&str> = TABLES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), TABLES.len());
        for table in TABLES {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                assert_eq!(
                    table.key_positions(backend).len(),
                    table.key_on(backend).len()
                );
            }
            if let Some(bulky) = table.bulky {
                assert!(table.columns.iter().any(|(name, _)| *name == bulky));
            }
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "\"postgres://u:***@h:5432/db\""
        );
        assert_eq!(redact("sqlite://./a.db"), "\"sqlite://./a.db\"");
    }

    #[test]
    fn report_prints_one_line_per_table() {
        let report = CopyReport {
            tables: vec![
                TableCount {
                    table: "users",
                    rows: 3,
                },
                TableCount {
                    table: "execution_logs",
                    rows: 12,
                },
            ],
            left_behind: vec![(
                TableCount {
                    table: "settings",
                    rows: 1,
                },
                "why",
            )],
            source_migrated: false,
        };
        assert_eq!(
            report.to_string(),
            "users                    3\nexecution_logs          12\nsettings not copied (1 rows): why"
        );
        assert_eq!(report.rows("execution_logs"), Some(12));
        assert_eq!(report.rows("nope"), None);
    }
}
