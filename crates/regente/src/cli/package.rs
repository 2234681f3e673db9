//! A robot's folder as the zip the server takes.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Every regular file under `dir`, by its path inside `dir`; a folder without a
/// `robot.toml` at its top is refused before anything is sent.
pub fn zip_folder(dir: &Path) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        dir.join("robot.toml").is_file(),
        "{} has no robot.toml: a robot's folder holds its robot.toml at the top",
        dir.display()
    );
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let kind = entry.file_type()?;
            let inside = path.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let mode =
                    std::os::unix::fs::PermissionsExt::mode(&entry.metadata()?.permissions());
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .unix_permissions(mode & 0o755);
                zip.start_file(inside, options)?;
                zip.write_all(&std::fs::read(&path)?)?;
            } else {
                anyhow::bail!(
                    "{} is neither a file nor a folder (links are not packed)",
                    path.display()
                );
            }
        }
    }
    Ok(zip.finish()?.into_inner())
}
