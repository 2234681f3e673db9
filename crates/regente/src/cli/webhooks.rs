//! `regente webhooks`: create a webhook (its secret printed this once), list,
//! show, update, delete, rotate its secret; its deliveries and replays.

use std::process::ExitCode;

use clap::Subcommand;
use regente_client::{Webhook, WebhookUpdate};

use super::{follow, print, session, table, Common};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Create a webhook; its signing secret is printed this once (alone on its
    /// line in text output) and stored sealed.
    Create {
        /// An http:// or https:// URL.
        url: String,
        /// Event types, comma-separated (e.g. execution.finished,execution.error).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The organisation's webhooks.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One webhook.
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Change a webhook's URL, event types or description; enable or disable it.
    Update {
        id: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a webhook with its deliveries.
    Delete {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// A new signing secret, printed this once; the former one keeps signing
    /// beside it for 24 hours.
    RotateSecret {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// A webhook's deliveries, newest first.
    Deliveries {
        id: String,
        /// How many, 1 to 100.
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the page before.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Send a delivery again now, with the same webhook-id.
    Replay {
        id: String,
        delivery: String,
        #[command(flatten)]
        common: Common,
    },
}

fn describe(webhook: &Webhook) -> String {
    let state = match (&webhook.enabled, &webhook.disabled_reason) {
        (true, _) => "enabled".to_owned(),
        (false, Some(reason)) => format!("disabled ({reason})"),
        (false, None) => "disabled".to_owned(),
    };
    format!(
        "webhook {}\n  url: {}\n  events: {}\n  state: {state}\n  description: {}\n  created: {}",
        webhook.id,
        webhook.url,
        webhook.events.join(","),
        webhook.description.as_deref().unwrap_or("-"),
        follow::local_time(webhook.created_at)
    )
}

pub async fn webhooks(command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhooksCommand::Create {
            url,
            events,
            description,
            common,
        } => {
            let client = session::client(&common)?;
            let created = client
                .create_webhook(&url, &events, description.as_deref())
                .await?;
            if common.output == super::Output::Text {
                eprintln!(
                    "webhook {} created; its signing secret below is shown this once:",
                    created.webhook.id
                );
            }
            print(common.output, &created, || created.secret.clone())
        }
        WebhooksCommand::List { common } => {
            let client = session::client(&common)?;
            let listed = client.webhooks().await?;
            print(common.output, &listed, || {
                table(
                    &["ID", "URL", "EVENTS", "ENABLED", "CREATED"],
                    listed.iter().map(|w| {
                        vec![
                            w.id.clone(),
                            w.url.clone(),
                            w.events.join(","),
                            w.enabled.to_string(),
                            follow::local_time(w.created_at),
                        ]
                    }),
                )
            })
        }
        WebhooksCommand::Show { id, common } => {
            let client = session::client(&common)?;
            let webhook = client.webhook(&id).await?;
            print(common.output, &webhook, || describe(&webhook))
        }
        WebhooksCommand::Update {
            id,
            url,
            events,
            description,
            enable,
            disable,
            common,
        } => {
            let client = session::client(&common)?;
            let update = WebhookUpdate {
                url: url.as_deref(),
                events,
                enabled: (enable || disable).then_some(enable),
                description: description.as_deref(),
            };
            let webhook = client.update_webhook(&id, update).await?;
            print(common.output, &webhook, || describe(&webhook))
        }
        WebhooksCommand::Delete { id, common } => {
            let client = session::client(&common)?;
            client.delete_webhook(&id).await?;
            #[derive(serde::Serialize)]
            struct Deleted<'a> {
                id: &'a str,
                deleted: bool,
            }
            let deleted = Deleted {
                id: &id,
                deleted: true,
            };
            print(common.output, &deleted, || format!("webhook {id} deleted"))
        }
        WebhooksCommand::RotateSecret { id, common } => {
            let client = session::client(&common)?;
            let rotated = client.rotate_webhook_secret(&id).await?;
            if common.output == super::Output::Text {
                eprintln!(
                    "webhook {} has a new signing secret, shown this once; the former one signs beside it for 24 hours:",
                    rotated.webhook.id
                );
            }
            print(common.output, &rotated, || rotated.secret.clone())
        }
        WebhooksCommand::Deliveries {
            id,
            limit,
            cursor,
            common,
        } => {
            let client = session::client(&common)?;
            let page = client
                .webhook_deliveries(&id, cursor.as_deref(), limit)
                .await?;
            let time = |at: Option<i64>| at.map(follow::local_time).unwrap_or_else(|| "-".into());
            print(common.output, &page, || {
                table(
                    &[
                        "ID",
                        "EVENT",
                        "STATUS",
                        "ATTEMPTS",
                        "LAST CODE",
                        "LAST MS",
                        "NEXT ATTEMPT",
                    ],
                    page.deliveries.iter().map(|d| {
                        vec![
                            d.id.clone(),
                            d.event_type.clone(),
                            d.status.clone(),
                            d.attempts.to_string(),
                            d.last_status_code.map_or("-".into(), |c| c.to_string()),
                            d.last_duration_ms.map_or("-".into(), |ms| ms.to_string()),
                            time(d.next_attempt_at),
                        ]
                    }),
                )
            })
        }
        WebhooksCommand::Replay {
            id,
            delivery,
            common,
        } => {
            let client = session::client(&common)?;
            let replayed = client.replay_webhook_delivery(&id, &delivery).await?;
            print(common.output, &replayed, || {
                format!("delivery {} queued again", replayed.id)
            })
        }
    }
}
