//! `regente api-keys`: create an organisation API key (printed this once),
//! list the keys, revoke one. A key is used by setting `REGENTE_API_KEY` (or
//! with `regente login --api-key`).

use std::process::ExitCode;

use clap::Subcommand;

use super::{follow, print, session, table, Common};

#[derive(Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; the key is printed this once (on standard output, alone on
    /// its line in text output), and only its hash is kept.
    Create {
        /// 1 to 100 characters, unique among the organisation's keys not revoked.
        name: String,
        /// What the key may do: admin or integration.
        #[arg(long)]
        role: String,
        /// When it stops working: epoch milliseconds or ISO-8601 with an
        /// offset (2027-01-31T18:00:00Z); default: never.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The organisation's keys (never the keys themselves), revoked ones included.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key, by name (a key not revoked) or id: refused from now on.
    Revoke {
        key: String,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn api_keys(command: ApiKeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeysCommand::Create {
            name,
            role,
            expires,
            common,
        } => {
            let client = session::client(&common)?;
            let created = client
                .create_api_key(&name, &role, expires.as_deref())
                .await?;
            let key = &created.api_key;
            if common.output == super::Output::Text {
                eprintln!(
                    "API key {:?} ({}, {}) created; the key below is shown this once:",
                    key.name, key.id, key.role
                );
            }
            print(common.output, &created, || created.key.clone())
        }
        ApiKeysCommand::List { common } => {
            let client = session::client(&common)?;
            let keys = client.api_keys().await?;
            let time = |at: Option<i64>| at.map(follow::local_time).unwrap_or_else(|| "-".into());
            print(common.output, &keys, || {
                table(
                    &[
                        "ID",
                        "NAME",
                        "ROLE",
                        "PREFIX",
                        "CREATED",
                        "LAST USED",
                        "EXPIRES",
                        "REVOKED",
                    ],
                    keys.iter().map(|k| {
                        vec![
                            k.id.clone(),
                            k.name.clone(),
                            k.role.clone(),
                            format!("rgk_{}...", k.prefix),
                            follow::local_time(k.created_at),
                            time(k.last_used_at),
                            time(k.expires_at),
                            time(k.revoked_at),
                        ]
                    }),
                )
            })
        }
        ApiKeysCommand::Revoke { key, common } => {
            let client = session::client(&common)?;
            let id = client.find_api_key(&key).await?;
            client.revoke_api_key(&id).await?;
            #[derive(serde::Serialize)]
            struct Revoked<'a> {
                id: &'a str,
                revoked: bool,
            }
            let revoked = Revoked {
                id: &id,
                revoked: true,
            };
            print(common.output, &revoked, || format!("API key {id} revoked"))
        }
    }
}
