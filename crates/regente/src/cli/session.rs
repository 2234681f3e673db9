//! The signed-in session of the command line: the server and token of the last
//! `regente login` (a user's token, or an API key with `--api-key`), kept in
//! the user's config folder, readable by them only. `REGENTE_API_KEY`, when
//! set, is sent instead of the kept token, and is never written anywhere.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use regente_client::Client;
use serde::{Deserialize, Serialize};

use super::Common;

#[derive(Serialize, Deserialize)]
pub struct Saved {
    pub server: String,
    pub username: String,
    pub token: String,
}

/// `$REGENTE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/regente`, else `~/.config/regente`.
fn folder() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("REGENTE_CONFIG_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("regente"));
    }
    let home = std::env::var_os("HOME").context("neither HOME nor REGENTE_CONFIG_DIR is set")?;
    Ok(PathBuf::from(home).join(".config").join("regente"))
}

fn file() -> anyhow::Result<PathBuf> {
    Ok(folder()?.join("session.json"))
}

/// Keeps the session (mode 0600 in a 0700 folder); answers where.
pub fn save(saved: &Saved) -> anyhow::Result<PathBuf> {
    let folder = folder()?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let path = file()?;
    // Written beside, then renamed: a reader never sees half a file.
    let partial = path.with_extension("json.partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    out.write_all(serde_json::to_string_pretty(saved)?.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// The variable holding an API key to use instead of the saved session.
pub const API_KEY_VARIABLE: &str = "REGENTE_API_KEY";

/// A client of `--server` (or the saved server), with `REGENTE_API_KEY` or
/// the saved token.
pub fn client(common: &Common) -> anyhow::Result<Client> {
    let path = file()?;
    let saved: Option<Saved> = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a saved session", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let server = match (&common.server, &saved) {
        (Some(server), _) => server.trim_end_matches('/').to_owned(),
        (None, Some(saved)) => saved.server.clone(),
        (None, None) => {
            anyhow::bail!("not signed in: run `regente login --server URL --username NAME` (or set --server and {API_KEY_VARIABLE})")
        }
    };
    let client = connect(&server, common.ca_file.as_deref())?;
    if let Some(key) = std::env::var(API_KEY_VARIABLE)
        .ok()
        .filter(|k| !k.is_empty())
    {
        return Ok(client.with_token(key.trim()));
    }
    Ok(match saved {
        // A token is only sent to the server it came from.
        Some(saved) if saved.server == server => client.with_token(&saved.token),
        _ => client,
    })
}

/// A client of `server`, trusting the system's roots and `ca_file` for TLS.
pub fn connect(server: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<Client> {
    if regente_runtime::tls::sends_key_in_clear(server) {
        eprintln!(
            "warning: {server} is plain HTTP beyond this machine: passwords, tokens and API keys \
             cross the network unencrypted; use https://"
        );
    }
    let tls = regente_runtime::tls::client_config(ca_file, [server])?;
    Ok(Client::new(server, Some((*tls).clone()))?)
}

/// A secret (`what`: "password for NAME", "API key"): asked on the terminal
/// without echo, or the first line of standard input when it is not a terminal
/// (for scripts).
pub fn read_secret(what: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("{what}: "))
            .with_context(|| format!("cannot read the {what}"));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
