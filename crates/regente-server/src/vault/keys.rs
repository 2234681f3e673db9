//! Where the master keys come from.
//!
//! - `REGENTE_MASTER_KEY` (base64 of 32 bytes), with `REGENTE_MASTER_KEY_PREVIOUS`
//!   during a rotation: what servers sharing a PostgreSQL store use, all with the
//!   same keys.
//! - Else the data directory's `master-key` file, created (0600) at the first
//!   start of a server on its own store. It holds `current BASE64` and, during a
//!   rotation, `previous BASE64`; `regente vault rotate-key` rewrites it, and the
//!   server reads it again before sealing and when it meets a key id it lacks.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Keyring, MasterKey};
use crate::config::ServerConfig;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "master-key";

const KEY_FILE_HEADER: &str = "# Regente's vault master key. Back it up apart from the database: \
without it the vault's values cannot be opened.\n";

/// Where a server's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Environment,
    File(PathBuf),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Environment => "REGENTE_MASTER_KEY".into(),
            KeySource::File(path) => path.display().to_string(),
        }
    }

    /// The keys as the file says now; `None` for the environment.
    pub(super) fn reread(&self) -> anyhow::Result<Option<Keyring>> {
        match self {
            KeySource::Environment => Ok(None),
            KeySource::File(path) => read_key_file(path).map(Some),
        }
    }
}

/// The keys a server starts with. `None` only on a shared store without
/// `REGENTE_MASTER_KEY`: servers sharing a store must share the key, which a
/// file of one server's own cannot do.
pub fn load(config: &ServerConfig, shared: bool) -> anyhow::Result<Option<(KeySource, Keyring)>> {
    if let Some(current) = &config.master_key {
        let current = MasterKey::from_base64(current.expose(), "REGENTE_MASTER_KEY")?;
        let previous = config
            .master_key_previous
            .as_ref()
            .map(|text| MasterKey::from_base64(text.expose(), "REGENTE_MASTER_KEY_PREVIOUS"))
            .transpose()?;
        let keyring = Keyring {
            current,
            previous: previous.into_iter().collect(),
        };
        return Ok(Some((KeySource::Environment, keyring)));
    }
    anyhow::ensure!(
        config.master_key_previous.is_none(),
        "REGENTE_MASTER_KEY_PREVIOUS is set without REGENTE_MASTER_KEY"
    );
    if shared {
        return Ok(None);
    }
    let path = config.data_dir.join(KEY_FILE);
    if !path.exists() {
        let (_, text) = MasterKey::generate();
        write_key_file(&path, &text, None)?;
    }
    let keyring = read_key_file(&path)?;
    Ok(Some((KeySource::File(path), keyring)))
}

/// Reads a key file: `current BASE64`, then optionally `previous BASE64`.
pub fn read_key_file(path: &Path) -> anyhow::Result<Keyring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the master key file {}", path.display()))?;
    let (mut current, mut previous) = (None, Vec::new());
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let what = format!("the master key file {}", path.display());
        match line.split_once(' ') {
            Some(("current", key)) => current = Some(MasterKey::from_base64(key, &what)?),
            Some(("previous", key)) => previous.push(MasterKey::from_base64(key, &what)?),
            _ => anyhow::bail!(
                "{what} has a line that is neither `current BASE64` nor `previous BASE64`"
            ),
        }
    }
    let current = current.with_context(|| {
        format!(
            "the master key file {} has no `current` key",
            path.display()
        )
    })?;
    Ok(Keyring { current, previous })
}

/// Writes a key file readable by its owner only, whole or not at all (written
/// aside, synced, renamed over).
pub fn write_key_file(path: &Path, current: &str, previous: Option<&str>) -> anyhow::Result<()> {
    let aside = path.with_extension("new");
    let _ = std::fs::remove_file(&aside);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&aside)
        .with_context(|| format!("cannot create {}", aside.display()))?;
    let mut text = format!("{KEY_FILE_HEADER}current {current}\n");
    if let Some(previous) = previous {
        text.push_str(&format!("previous {previous}\n"));
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&aside, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Text that never shows in `Debug` output or logs: a master key in the
/// configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(text: String) -> SecretText {
        SecretText(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().to_path_buf());
        let (_, first) = load(&config, false).unwrap().unwrap();
        let path = dir.path().join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, again) = load(&config, false).unwrap().unwrap();
        assert_eq!(again.current.id(), first.current.id(), "kept across starts");
        assert!(load(&config, true).unwrap().is_none(), "shared: none");

        let (new, new_text) = MasterKey::generate();
        let (_, old_text) = MasterKey::generate();
        write_key_file(&path, &new_text, Some(&old_text)).unwrap();
        let keyring = read_key_file(&path).unwrap();
        assert_eq!(keyring.current.id(), new.id());
        assert_eq!(keyring.previous.len(), 1);

        config.master_key = Some(SecretText::new(new_text));
        let (source, keyring) = load(&config, true).unwrap().unwrap();
        assert!(matches!(source, KeySource::Environment));
        assert_eq!(keyring.current.id(), new.id());
        assert_eq!(format!("{:?}", config.master_key), "Some(SecretText(***))");
    }
}
