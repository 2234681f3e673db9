//! Robot packages: the zip files users upload, holding a `robot.toml` either at
//! their root or inside their single top-level folder (what zipping a folder
//! produces).
//!
//! A package comes from a user and is unpacked on the machines that run robots,
//! so nothing in it is trusted until checked. The threats handled:
//!
//! - **Path traversal ("zip slip")**: entry names with `..` or `.` components,
//!   absolute paths (`/etc/x`, `\x`), backslashes, colons (drive letters such as
//!   `C:`, Windows streams), NUL characters or empty components are refused, by
//!   our own component check and by the zip reader's `enclosed_name`.
//! - **Links and special files**: symbolic links, devices, fifos and sockets are
//!   refused; only regular files and directories are unpacked. Unpacking creates
//!   every file with `create_new` (`O_EXCL`) inside a fresh directory, so nothing
//!   is ever written through an existing link.
//! - **Zip bombs**: the package size, the entry count and the sum of declared
//!   sizes are bounded by [`Limits`]. Declared sizes can lie, so [`inspect`] then
//!   decompresses every file while counting bytes and stops at the limit, and
//!   [`unpack`] counts again as it writes.
//! - **Memory exhaustion while listing**: a zip64 directory declaring more
//!   entries than allowed is refused before the zip reader reserves memory for
//!   them.
//! - **Half-written packages**: [`unpack`] inspects first, so a bad package
//!   writes nothing; it then extracts into a sibling temporary directory, syncs
//!   it and renames it into place, so a crash never leaves a partial package at
//!   the target.
//!
//! Error messages name the offending entry (quoted with `{:?}`) and say what is
//! wrong; [`PackageError::TooLarge`] maps to HTTP 413, the others to 400 (or
//! 500 for [`PackageError::Io`]).

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use regente_core::{ManifestError, RobotManifest};
use sha2::{Digest, Sha256};
use zip::ZipArchive;

const MANIFEST_NAME: &str = "robot.toml";
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
const MIB: u64 = 1024 * 1024;
const COPY_BUFFER_BYTES: usize = 64 * 1024;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Bounds on what a package may hold; exceeding any is [`PackageError::TooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest zip file accepted, in bytes.
    pub max_package_bytes: u64,
    /// Largest total size of the unpacked files, in bytes, counted while decompressing.
    pub max_unpacked_bytes: u64,
    /// Most entries (files and directories) a package may hold.
    pub max_entries: usize,
}

impl Default for Limits {
    /// 64 MiB package, 512 MiB unpacked, 10 000 entries.
    fn default() -> Self {
        Limits {
            max_package_bytes: 64 * MIB,
            max_unpacked_bytes: 512 * MIB,
            max_entries: 10_000,
        }
    }
}

/// A package that passed every check of [`inspect`].
#[derive(Debug, Clone, PartialEq)]
pub struct InspectedPackage {
    /// The parsed and validated `robot.toml`.
    pub manifest: RobotManifest,
    /// `robot.toml` as written (without a leading byte order mark).
    pub manifest_text: String,
    /// Lowercase hex SHA-256 of the whole zip file.
    pub sha256: String,
    /// `""` when `robot.toml` is at the zip root, else the single top-level
    /// folder holding it, with its trailing slash (`"my-robot/"`).
    pub root: String,
}

/// Why a package was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The package or its contents exceed a [`Limits`] bound (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// The package is not a zip, is malformed, unsafe, or lacks `robot.toml` (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// `robot.toml` is present but is not a valid manifest (HTTP 400).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The file system failed while unpacking, or the target is not usable.
    #[error("could not unpack the package: {0}")]
    Io(#[from] io::Error),
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Validates a whole package without writing anything: size, entry count,
/// every entry's name and type, the declared and the actual unpacked size, and
/// `robot.toml`, which it parses.
pub fn inspect(zip_bytes: &[u8], limits: &Limits) -> Result<InspectedPackage, PackageError> {
    examine(zip_bytes, limits).map(|(inspected, _)| inspected)
}

/// Inspects the package, then extracts it into `target_dir`, which must not
/// exist or be an empty directory, so that `robot.toml` lands at
/// `target_dir/robot.toml`. Only regular files and directories are written;
/// executable bits are kept on unix. The package is extracted into a sibling
/// temporary directory first and renamed into place at the end.
pub fn unpack(
    zip_bytes: &[u8],
    target_dir: &Path,
    limits: &Limits,
) -> Result<InspectedPackage, PackageError> {
    let (inspected, entries) = examine(zip_bytes, limits)?;
    ensure_absent_or_empty(target_dir)?;
    let parent = match target_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent)?;
    let staging = create_staging_dir(target_dir, parent)?;
    let result = extract(zip_bytes, &inspected.root, &entries, &staging, limits)
        .and_then(|()| move_into_place(&staging, target_dir, parent));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result.map(|()| inspected)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    /// A regular file, with its `0o111` permission bits.
    File {
        executable_bits: u32,
    },
}

/// An entry that passed the name and type checks.
struct Entry {
    index: usize,
    name: String,
    kind: Kind,
    declared_size: u64,
}

fn examine(
    zip_bytes: &[u8],
    limits: &Limits,
) -> Result<(InspectedPackage, Vec<Entry>), PackageError> {
    let size = zip_bytes.len() as u64;
    if size > limits.max_package_bytes {
        return Err(PackageError::TooLarge(format!(
            "the package is {size} bytes, more than the limit of {} bytes",
            limits.max_package_bytes
        )));
    }
    check_zip64_entry_count(zip_bytes, limits.max_entries)?;
    let mut archive = open_archive(zip_bytes)?;
    if archive.len() > limits.max_entries {
        return Err(PackageError::TooLarge(format!(
            "the package has {} entries, more than the limit of {}",
            archive.len(),
            limits.max_entries
        )));
    }
    check_names_listed_once(zip_bytes, &archive)?;
    let entries = list_entries(&mut archive, limits)?;
    check_file_directory_clashes(&entries)?;
    let (root, manifest) = find_manifest(&entries)?;
    check_actual_sizes(&mut archive, &entries, limits)?;
    let manifest_text = read_manifest(&mut archive, manifest)?;
    let manifest = RobotManifest::parse(&manifest_text)?;
    let inspected = InspectedPackage {
        manifest,
        manifest_text,
        sha256: sha256_hex(zip_bytes),
        root,
    };
    Ok((inspected, entries))
}

fn open_archive(zip_bytes: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>, PackageError> {
    ZipArchive::new(Cursor::new(zip_bytes))
        .map_err(|e| PackageError::Invalid(format!("the package is not a zip archive: {e}")))
}

/// Refuses a zip64 end-of-central-directory record declaring more entries than
/// allowed. The zip reader reserves memory for the declared count before
/// reading any entry, and a zip64 record may declare about one entry per 46
/// bytes of package. Every such record is checked, wherever it is, because the
/// reader searches backwards through the whole file for one it accepts.
fn check_zip64_entry_count(zip_bytes: &[u8], max_entries: usize) -> Result<(), PackageError> {
    const SIGNATURE: &[u8] = b"PK\x06\x06";
    // The record's "total number of entries" is a little-endian u64 at offset 32.
    const COUNT_AT: usize = 32;
    const WORD: usize = 8;
    // Every signature has a 0x06 at its offset 2: look for those bytes, skipping
    // eight bytes at a time when none is there, so the scan stays cheap even in
    // unoptimised builds.
    for (word_index, word) in zip_bytes.chunks(WORD).enumerate() {
        if let Ok(bytes) = <[u8; WORD]>::try_from(word) {
            if !has_byte(u64::from_le_bytes(bytes), 0x06) {
                continue;
            }
        }
        for (offset, &byte) in word.iter().enumerate() {
            let Some(start) = (word_index * WORD + offset).checked_sub(2) else {
                continue;
            };
            if byte != 0x06 || !zip_bytes[start..].starts_with(SIGNATURE) {
                continue;
            }
            if let Some(field) = zip_bytes.get(start + COUNT_AT..start + COUNT_AT + 8) {
                let declared = u64::from_le_bytes(field.try_into().expect("an 8-byte slice"));
                if declared > max_entries as u64 {
                    return Err(PackageError::TooLarge(format!(
                        "the package's zip64 directory declares {declared} entries, more than the limit of {max_entries}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Refuses a name the central directory lists more than once: the zip reader
/// keeps one entry per name (the last), so a second `robot.toml` would
/// silently win. The headers are walked here, as they are in the file.
fn check_names_listed_once(
    zip_bytes: &[u8],
    archive: &ZipArchive<Cursor<&[u8]>>,
) -> Result<(), PackageError> {
    const SIGNATURE: &[u8] = b"PK\x01\x02";
    const FIXED: usize = 46;
    let u16_at = |at: usize| {
        zip_bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let mut at = archive.central_directory_start() as usize;
    let mut names: HashSet<&[u8]> = HashSet::with_capacity(archive.len());
    let mut listed = 0;
    while zip_bytes.get(at..at + 4) == Some(SIGNATURE) {
        let (Some(name_len), Some(extra_len), Some(comment_len)) =
            (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32))
        else {
            break;
        };
        let Some(name) = zip_bytes.get(at + FIXED..at + FIXED + name_len) else {
            break;
        };
        if !names.insert(name) {
            return Err(PackageError::Invalid(format!(
                "entry {:?} appears more than once in the package",
                String::from_utf8_lossy(name)
            )));
        }
        listed += 1;
        at += FIXED + name_len + extra_len + comment_len;
    }
    if listed > archive.len() {
        return Err(PackageError::Invalid(format!(
            "the package lists {listed} entries under {} distinct names",
            archive.len()
        )));
    }
    Ok(())
}

/// Whether any of the eight bytes of `word` equals `byte`.
fn has_byte(word: u64, byte: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_where_equal = word ^ (ONES * u64::from(byte));
    zero_where_equal.wrapping_sub(ONES) & !zero_where_equal & HIGHS != 0
}

fn list_entries(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    limits: &Limits,
) -> Result<Vec<Entry>, PackageError> {
    let mut entries = Vec::with_capacity(archive.len());
    let mut declared_total: u64 = 0;
    for index in 0..archive.len() {
        let file = archive.by_index_raw(index).map_err(|e| {
            PackageError::Invalid(format!("entry number {index} cannot be read: {e}"))
        })?;
        let name = file.name().to_owned();
        if let Some(problem) = name_problem(&name) {
            return Err(PackageError::Invalid(format!("entry {name:?} {problem}")));
        }
        if file.enclosed_name().is_none() {
            return Err(PackageError::Invalid(format!(
                "entry {name:?} is not a safe relative path"
            )));
        }
        if file.encrypted() {
            return Err(PackageError::Invalid(format!(
                "entry {name:?} is encrypted, which packages may not be"
            )));
        }
        let kind = entry_kind(&name, file.unix_mode())?;
        declared_total = declared_total.saturating_add(file.size());
        if declared_total > limits.max_unpacked_bytes {
            return Err(PackageError::TooLarge(format!(
                "entry {name:?} brings the declared unpacked size to {declared_total} bytes, more than the limit of {} bytes",
                limits.max_unpacked_bytes
            )));
        }
        entries.push(Entry {
            index,
            declared_size: file.size(),
            name,
            kind,
        });
    }
    Ok(entries)
}

/// What is wrong with an entry name, if anything, as the end of a sentence
/// starting with the name. Names use `/` as separator; directories end with it.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("has an empty name");
    }
    if name.contains('\0') {
        return Some("contains a NUL character");
    }
    if name.starts_with('/') {
        return Some("is an absolute path");
    }
    if name.contains('\\') {
        return Some("contains a backslash, which could be read as a path separator");
    }
    if name.contains(':') {
        return Some("contains a colon, which could be read as a drive letter such as C:");
    }
    let path = name.strip_suffix('/').unwrap_or(name);
    for component in path.split('/') {
        match component {
            "" => return Some("has an empty path component"),
            "." => return Some("has a '.' path component"),
            ".." => return Some("has a '..' path component, which escapes the package"),
            _ => {}
        }
    }
    None
}

/// Regular file or directory, from the unix mode when the zip records one and
/// from the trailing slash otherwise; anything else is refused.
fn entry_kind(name: &str, unix_mode: Option<u32>) -> Result<Kind, PackageError> {
    let named_as_directory = name.ends_with('/');
    let (file_type, executable_bits) = match unix_mode {
        Some(mode) => (mode & S_IFMT, mode & 0o111),
        None => (0, 0),
    };
    match file_type {
        S_IFDIR => Ok(Kind::Directory),
        0 | S_IFREG if named_as_directory => Ok(Kind::Directory),
        0 | S_IFREG => Ok(Kind::File { executable_bits }),
        S_IFLNK => Err(PackageError::Invalid(format!(
            "entry {name:?} is a symbolic link, which packages may not contain"
        ))),
        other => Err(PackageError::Invalid(format!(
            "entry {name:?} is a special file (type {other:o}), only regular files and directories are allowed"
        ))),
    }
}

/// Refuses two entries with one path (which one would a reader take?), and a
/// file whose path another entry uses as a directory (`a` and `a/b`).
fn check_file_directory_clashes(entries: &[Entry]) -> Result<(), PackageError> {
    let mut paths: HashSet<&str> = HashSet::with_capacity(entries.len());
    for entry in entries {
        if !paths.insert(entry.name.strip_suffix('/').unwrap_or(&entry.name)) {
            return Err(PackageError::Invalid(format!(
                "entry {:?} appears more than once in the package",
                entry.name
            )));
        }
    }
    let mut directories: HashSet<&str> = HashSet::new();
    for entry in entries {
        let path = entry.name.strip_suffix('/').unwrap_or(&entry.name);
        if entry.kind == Kind::Directory {
            directories.insert(path);
        }
        let mut rest = path;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            directories.insert(parent);
            rest = parent;
        }
    }
    match entries
        .iter()
        .find(|e| matches!(e.kind, Kind::File { .. }) && directories.contains(e.name.as_str()))
    {
        Some(entry) => Err(PackageError::Invalid(format!(
            "entry {:?} is a file, but other entries use it as a directory",
            entry.name
        ))),
        None => Ok(()),
    }
}

/// The top-level folder an entry lives in, if any.
fn top_folder(entry: &Entry) -> Option<&str> {
    match entry.name.split_once('/') {
        Some((top, _)) => Some(top),
        None if entry.kind == Kind::Directory => Some(&entry.name),
        None => None,
    }
}

/// The root prefix (`""` or `"folder/"`) and the `robot.toml` entry.
fn find_manifest(entries: &[Entry]) -> Result<(String, &Entry), PackageError> {
    let manifest_in = |root: &str| {
        entries.iter().find(|e| {
            matches!(e.kind, Kind::File { .. }) && e.name.strip_prefix(root) == Some(MANIFEST_NAME)
        })
    };
    if let Some(entry) = manifest_in("") {
        return Ok((String::new(), entry));
    }
    if let Some(top) = entries.first().and_then(top_folder) {
        if entries.iter().all(|e| top_folder(e) == Some(top)) {
            let root = format!("{top}/");
            if let Some(entry) = manifest_in(&root) {
                return Ok((root, entry));
            }
        }
    }
    Err(PackageError::Invalid(
        "the package has no robot.toml at its root or in its single top-level folder".into(),
    ))
}

/// Decompresses every file, counting bytes against the limit instead of
/// trusting declared sizes, and checks each against its declared size.
fn check_actual_sizes(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entries: &[Entry],
    limits: &Limits,
) -> Result<(), PackageError> {
    let mut buffer = vec![0; COPY_BUFFER_BYTES];
    let mut used = 0;
    for entry in entries {
        if entry.kind == Kind::Directory {
            continue;
        }
        let mut file = archive
            .by_index(entry.index)
            .map_err(|e| unreadable(&entry.name, e))?;
        let size = copy_bounded(
            &entry.name,
            &mut file,
            None,
            &mut used,
            limits.max_unpacked_bytes,
            &mut buffer,
        )?;
        check_declared_size(entry, size)?;
    }
    Ok(())
}

fn unreadable(name: &str, error: zip::result::ZipError) -> PackageError {
    PackageError::Invalid(format!("entry {name:?} cannot be read: {error}"))
}

fn check_declared_size(entry: &Entry, size: u64) -> Result<(), PackageError> {
    if size == entry.declared_size {
        Ok(())
    } else {
        Err(PackageError::Invalid(format!(
            "entry {:?} unpacks to {size} bytes but declares {}",
            entry.name, entry.declared_size
        )))
    }
}

/// Copies `source` to `sink` (or nowhere), adding to `used` and failing with
/// [`PackageError::TooLarge`] as soon as it passes `max`. Returns the entry's size.
fn copy_bounded(
    name: &str,
    source: &mut dyn Read,
    mut sink: Option<&mut File>,
    used: &mut u64,
    max: u64,
    buffer: &mut [u8],
) -> Result<u64, PackageError> {
    let mut copied: u64 = 0;
    loop {
        let read = match source.read(buffer) {
            Ok(0) => return Ok(copied),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(PackageError::Invalid(format!(
                    "entry {name:?} is corrupt: {e}"
                )))
            }
        };
        copied += read as u64;
        *used += read as u64;
        if *used > max {
            return Err(PackageError::TooLarge(format!(
                "entry {name:?} unpacks past the limit of {max} bytes for the whole package"
            )));
        }
        if let Some(out) = sink.as_mut() {
            out.write_all(&buffer[..read])?;
        }
    }
}

fn read_manifest(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &Entry,
) -> Result<String, PackageError> {
    let too_large = || {
        PackageError::Invalid(format!(
            "entry {:?} is larger than {} KiB, the limit for robot.toml",
            entry.name,
            MAX_MANIFEST_BYTES / 1024
        ))
    };
    if entry.declared_size > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    let file = archive
        .by_index(entry.index)
        .map_err(|e| unreadable(&entry.name, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PackageError::Invalid(format!("entry {:?} is corrupt: {e}", entry.name)))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| PackageError::Invalid(format!("entry {:?} is not valid utf-8", entry.name)))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(without_bom) => without_bom.to_owned(),
        None => text,
    })
}

fn ensure_absent_or_empty(target_dir: &Path) -> Result<(), PackageError> {
    let exists = |what: &str| {
        PackageError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{target_dir:?} already exists and {what}"),
        ))
    };
    match fs::symlink_metadata(target_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
        Ok(metadata) if metadata.is_dir() => {
            if fs::read_dir(target_dir)?.next().is_none() {
                Ok(())
            } else {
                Err(exists("is not empty"))
            }
        }
        Ok(_) => Err(exists("is not a directory")),
    }
}

/// Creates `<target_dir>.tmp-<pid>-<unique>` next to the target.
fn create_staging_dir(target_dir: &Path, parent: &Path) -> Result<PathBuf, PackageError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(file_name) = target_dir.file_name() else {
        return Err(PackageError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{target_dir:?} does not end with a directory name"),
        )));
    };
    let mut attempts = 0;
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut name = OsString::from(file_name);
        name.push(format!(
            ".tmp-{}-{nanos:08x}{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let staging = parent.join(name);
        match fs::create_dir(&staging) {
            Ok(()) => return Ok(staging),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 10 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The part of an entry name below the package root, without trailing slash.
fn relative_name<'a>(name: &'a str, root: &str) -> Result<&'a str, PackageError> {
    let name = name.strip_suffix('/').unwrap_or(name);
    if root.is_empty() {
        return Ok(name);
    }
    if name == root.trim_end_matches('/') {
        return Ok("");
    }
    name.strip_prefix(root).ok_or_else(|| {
        PackageError::Invalid(format!(
            "entry {name:?} is outside the package folder {root:?}"
        ))
    })
}

fn extract(
    zip_bytes: &[u8],
    root: &str,
    entries: &[Entry],
    staging: &Path,
    limits: &Limits,
) -> Result<(), PackageError> {
    let mut archive = open_archive(zip_bytes)?;
    let mut buffer = vec![0; COPY_BUFFER_BYTES];
    let mut used = 0;
    let mut directories = BTreeSet::from([staging.to_path_buf()]);
    for entry in entries {
        let relative = relative_name(&entry.name, root)?;
        if relative.is_empty() {
            continue;
        }
        let mut path = staging.to_path_buf();
        path.extend(relative.split('/'));
        match entry.kind {
            Kind::Directory => create_directories(staging, &path, &mut directories)?,
            Kind::File { executable_bits } => {
                let parent = path.parent().expect("a path below the staging directory");
                create_directories(staging, parent, &mut directories)?;
                let mut out = create_new_file(&path, executable_bits)?;
                let mut source = archive
                    .by_index(entry.index)
                    .map_err(|e| unreadable(&entry.name, e))?;
                let size = copy_bounded(
                    &entry.name,
                    &mut source,
                    Some(&mut out),
                    &mut used,
                    limits.max_unpacked_bytes,
                    &mut buffer,
                )?;
                check_declared_size(entry, size)?;
                out.sync_all()?;
            }
        }
    }
    for directory in directories.iter().rev() {
        sync_directory(directory)?;
    }
    Ok(())
}

/// Creates `path` and its missing parents below `staging`, remembering them to
/// sync later. The staging directory is fresh and only ever receives regular
/// files and directories, so no link can be followed here.
fn create_directories(
    staging: &Path,
    path: &Path,
    directories: &mut BTreeSet<PathBuf>,
) -> Result<(), PackageError> {
    fs::create_dir_all(path)?;
    let mut current = path;
    while current != staging && current.starts_with(staging) {
        if !directories.insert(current.to_path_buf()) {
            break;
        }
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    Ok(())
}

/// Creates a new file, failing if anything (a link included) is already there.
fn create_new_file(path: &Path, executable_bits: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o644 | executable_bits);
    }
    #[cfg(not(unix))]
    let _ = executable_bits;
    options.open(path)
}

#[cfg(unix)]
fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_path: &Path) -> io::Result<()> {
    Ok(())
}

fn move_into_place(staging: &Path, target_dir: &Path, parent: &Path) -> Result<(), PackageError> {
    // An empty directory may already be there; a non-empty one makes this fail.
    match fs::remove_dir(target_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    fs::rename(staging, target_dir)?;
    // Best effort: the package is in place; this only makes the rename durable sooner.
    let _ = sync_directory(parent);
    Ok(())
}

#[cfg(test)]
mod tests;
