//! `regente credentials`: store a credential's values in the vault (write-only:
//! nothing shows them again) and list the credentials.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::{print, session, table, Common};

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Store a credential (a new one, or the next version of the one of that name).
    ///
    /// Values are read from standard input with --field-stdin (one line each, in
    /// order; without echo on a terminal), so that they stay off the command line,
    /// which every local user can see. --field NAME=VALUE is for values that are
    /// not secret.
    Set {
        name: String,
        /// A field whose value is read from standard input (repeat, in order).
        #[arg(long = "field-stdin", value_name = "FIELD")]
        from_stdin: Vec<String>,
        /// A field given on the command line, as FIELD=VALUE (visible to local users).
        #[arg(long = "field", value_name = "FIELD=VALUE")]
        given: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// A robot allowed to have it, by name or id (repeat); default: every robot.
        #[arg(long = "robot", value_name = "ROBOT")]
        robots: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The credentials: names, fields and who changed them, never values.
    List {
        #[command(flatten)]
        common: Common,
    },
}

pub async fn credentials(command: CredentialsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CredentialsCommand::Set {
            name,
            from_stdin,
            given,
            description,
            robots,
            common,
        } => {
            let mut fields = BTreeMap::new();
            for pair in &given {
                let (field, value) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--field takes FIELD=VALUE"))?;
                fields.insert(field.to_owned(), value.to_owned());
            }
            for field in &from_stdin {
                fields.insert(field.clone(), read_value(field)?);
            }
            anyhow::ensure!(
                !fields.is_empty(),
                "give the values with --field-stdin FIELD (or --field FIELD=VALUE)"
            );
            let client = session::client(&common)?;
            let robots = if robots.is_empty() {
                None
            } else {
                let mut ids = Vec::new();
                for robot in &robots {
                    ids.push(client.find_robot(robot).await?);
                }
                Some(ids)
            };
            let credential = client
                .set_credential(&name, &fields, description.as_deref(), robots.as_deref())
                .await?;
            print(common.output, &credential, || {
                format!(
                    "credential {} stored (version {}, fields {})",
                    credential.name,
                    credential.version,
                    credential.fields.join(", ")
                )
            })
        }
        CredentialsCommand::List { common } => {
            let client = session::client(&common)?;
            let list = client.credentials().await?;
            print(common.output, &list, || {
                table(
                    &["ID", "NAME", "FIELDS", "ROBOTS", "VERSION", "UPDATED BY"],
                    list.iter().map(|c| {
                        vec![
                            c.id.clone(),
                            c.name.clone(),
                            c.fields.join(","),
                            c.robots
                                .as_ref()
                                .map_or("all".to_owned(), |ids| ids.join(",")),
                            c.version.to_string(),
                            c.updated_by.clone(),
                        ]
                    }),
                )
            })
        }
    }
}

/// One value from standard input: without echo on a terminal.
fn read_value(field: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("{field}: "))
            .with_context(|| format!("cannot read {field}"));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read {field} from standard input"))?;
    anyhow::ensure!(!line.is_empty(), "standard input ended before {field}");
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
