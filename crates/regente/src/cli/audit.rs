//! `regente audit list`: the organisation's audit log, newest first (admins,
//! as in the API).

use std::process::ExitCode;

use clap::Subcommand;
use regente_client::{AuditQuery, AuditRecord};

use super::follow::local_time;
use super::{print, session, table, Common};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The newest records: when, who, what, which object, from where.
    List {
        /// Only this actor's (a user's name or id, or KIND:ID for the server).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. user.create, schedule.pause, auth.login_failed.
        #[arg(long)]
        action: Option<String>,
        /// Only records about objects of this type (user, runtime, robot, ...).
        #[arg(long)]
        object_type: Option<String>,
        /// Only records about this object.
        #[arg(long)]
        object_id: Option<String>,
        /// At or after this time: epoch milliseconds or ISO-8601 with an offset.
        #[arg(long)]
        from: Option<String>,
        /// Before this time.
        #[arg(long)]
        to: Option<String>,
        /// How many records, 1 to 200.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::List {
        actor,
        action,
        object_type,
        object_id,
        from,
        to,
        limit,
        common,
    } = command;
    let client = session::client(&common)?;
    let query = AuditQuery {
        actor,
        action,
        object_type,
        object_id,
        from,
        to,
        after: None,
        limit: Some(limit),
    };
    let page = client.audit(&query).await?;
    print(common.output, &page.records, || text(&page.records))
}

fn text(records: &[AuditRecord]) -> String {
    table(
        &["TIME", "ACTOR", "ACTION", "OBJECT", "ADDRESS", "SUMMARY"],
        records.iter().map(|r| {
            vec![
                local_time(r.time),
                r.actor_name.clone(),
                r.action.clone(),
                format!("{} {}", r.object_type, r.object_id),
                r.address.clone().unwrap_or_default(),
                r.summary.to_string(),
            ]
        }),
    )
}
