//! The agent's on-disk journal: per execution, the assignment, whether the robot
//! may have been spawned, and every event, appended and synced before it is
//! sent. After a crash or restart the agent reads the journals back and sends
//! again whatever the server may not have stored; the server keeps each event
//! once.
//!
//! Whether the robot may have been spawned is never underestimated: the server
//! puts an execution the agent reports unspawned back in the queue. Two lines
//! say it, so that no sync waits between the server's `Started` and the spawn:
//! - `boot`, the machine's boot id, written with the assignment; the agent syncs
//!   both on a blocking thread as soon as they are written, while it prepares
//!   the package and waits for `Started`, and hands no robot over before that
//!   sync succeeded;
//! - `spawned`, written (not synced) just before the robot is handed over.
//!
//! A written line survives a crash of the agent process, not one of the machine.
//! So, read back in the same boot, the absence of `spawned` proves the robot was
//! not started; read back after a reboot (or with no boot known), a journal
//! with a `boot` line counts as spawned. The server decides by its own record
//! what "spawned" means for a run it never marked RUNNING: back to the queue.
//! A journal without its `boot` line was never synced, so its robot never ran.
//!
//! A journal lives in one of the directory's files (`N.journal`), which holds
//! one journal after another: created once, as zeros, then written over in
//! place (see [`Journals`]). Agents before these files wrote a file per
//! execution (`{execution}.jsonl`); those are still read back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use regente_proto::{Assignment, Event, EventKind};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Assignment(Assignment),
    Boot(Option<String>),
    Spawned,
    Event(Event),
}

/// The size a journal file is made with, in zeros: most journals are written
/// within it, so that their syncs write data only. A new file, or one that
/// grows, also makes the file system commit its metadata (and, new, its
/// directory must be synced too): about four times the cost on ext4.
const FILE_BYTES: usize = 64 * 1024;
/// What each line of a journal file begins with: the tag of the journal that
/// wrote it (a file holds one journal after another) and the line's CRC-32,
/// both in hex. A line counts only if both match: what an earlier journal left
/// further on in the file, and a line torn by a crash, end the journal.
const PREFIX_BYTES: usize = 16 + 8;

static ZEROS: [u8; FILE_BYTES] = [0; FILE_BYTES];

/// The id of this journal directory in this boot (`boot`, see [`boot_id`]),
/// made (and synced) on first use. The agent sends it in its hello, and the
/// server folds it into the leases it commits the start of at the hand-out: a
/// lease of this id that the journal does not hold was never journaled here, so
/// its robot never started (a robot starts only after its journal is synced),
/// and the server may queue it again. A lease of another id may have run: the
/// server never queues that one again.
///
/// So the id must name one journal's unbroken history. It is made anew after a
/// reboot (a disk snapshot rolled back loses entries) and for a directory that
/// is not the one it was made in (a copy: a VM template, a restored backup),
/// which the directory's device and inode numbers tell.
pub fn instance_id(dir: &Path, boot: Option<&str>) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join("instance");
    let place = std::fs::metadata(dir)?;
    let made_for = format!("{} {}:{}", boot.unwrap_or("-"), place.dev(), place.ino());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Some((id, stored_for)) = text.trim().split_once('\n') {
                if !id.is_empty() && stored_for == made_for {
                    return Ok(id.to_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let partial = dir.join("instance.partial");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(format!("{id}\n{made_for}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(id)
}

/// This boot of the machine, as the kernel names it; `None` where unknown.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The journal directory: its files (`N.journal`), each holding one journal at
/// a time and used again once that journal is removed, so that a new journal
/// is written into a file that exists, synced and as large as it needs.
pub struct Journals {
    dir: PathBuf,
    free: Mutex<Vec<JournalFile>>,
    next_number: AtomicU64,
}

/// One of the directory's files.
struct JournalFile {
    path: PathBuf,
    /// Whether the directory entry is known synced; until then each journal's
    /// sync syncs the directory too (a file made by a crashed agent, or one
    /// whose first journal ended before its sync ran, is not known synced).
    named_durably: Arc<AtomicBool>,
}

/// What makes a new journal durable, for another thread.
pub struct SyncHandle {
    file: File,
    /// The directory, with whether its entry for the file is known synced.
    dir: Option<(PathBuf, Arc<AtomicBool>)>,
}

impl SyncHandle {
    /// Syncs the file's content, then, until it is known done, the directory
    /// that names it: on some filesystems a synced new file may still be
    /// missing after a power loss when its directory entry was not synced.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()?;
        if let Some((dir, named_durably)) = &self.dir {
            if !named_durably.load(Ordering::Acquire) {
                File::open(dir)?.sync_all()?;
                named_durably.store(true, Ordering::Release);
            }
        }
        Ok(())
    }
}

pub struct Journal {
    file: File,
    /// Where the next line goes.
    end: u64,
    place: Place,
}

enum Place {
    /// A file of [`Journals`], its lines tagged with `tag`.
    Pooled {
        file: JournalFile,
        tag: u64,
        journals: Arc<Journals>,
    },
    /// A file per execution of earlier agents (`{execution}.jsonl`, lines
    /// without tags), read back after an upgrade and removed once done.
    Legacy { path: PathBuf },
}

/// What a journal held when the agent started.
pub struct Recovered {
    pub journal: Journal,
    pub assignment: Assignment,
    pub spawned: bool,
    pub events: Vec<Event>,
}

impl Journals {
    pub fn new(dir: &Path) -> Arc<Journals> {
        Arc::new(Journals {
            dir: dir.to_owned(),
            free: Mutex::new(Vec::new()),
            next_number: AtomicU64::new(0),
        })
    }

    /// Starts the journal of a new assignment, in boot `boot` ([`boot_id`]).
    /// Not synced: [`Journal::sync_handle`] gives the handle to sync it with,
    /// away from the agent's task. No robot may be handed over before that
    /// sync succeeds.
    pub fn create(
        self: &Arc<Self>,
        assignment: &Assignment,
        boot: Option<String>,
    ) -> std::io::Result<Journal> {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (journal_file, file) = match free {
            // Opened anew: a sync still running for the file's previous journal
            // (another open file) cannot take an error of this one's writes.
            Some(journal_file) => {
                let opened = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&journal_file.path);
                match opened {
                    Ok(file) => (journal_file, file),
                    Err(e) => {
                        let _ = std::fs::remove_file(&journal_file.path);
                        return Err(e);
                    }
                }
            }
            None => self.new_file()?,
        };
        let mut journal = Journal {
            file,
            end: 0,
            place: Place::Pooled {
                file: journal_file,
                tag: rand::random(),
                journals: self.clone(),
            },
        };
        let written = journal.append(&[Entry::Assignment(assignment.clone()), Entry::Boot(boot)]);
        match written {
            Ok(()) => Ok(journal),
            Err(e) => {
                journal.remove();
                Err(e)
            }
        }
    }

    /// A new file of zeros, written, not synced (see [`SyncHandle::sync`]).
    fn new_file(&self) -> std::io::Result<(JournalFile, File)> {
        std::fs::create_dir_all(&self.dir)?;
        loop {
            let number = self.next_number.fetch_add(1, Ordering::Relaxed);
            let path = self.dir.join(format!("{number}.journal"));
            // Variables and logs: readable by the agent's user only.
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let journal_file = JournalFile {
                path,
                named_durably: Arc::new(AtomicBool::new(false)),
            };
            if let Err(e) = file.write_all_at(&ZEROS, 0) {
                let _ = std::fs::remove_file(&journal_file.path);
                return Err(e);
            }
            return Ok((journal_file, file));
        }
    }

    /// Takes a file back for the next journal once its first `written` bytes
    /// are zeroed (they held a run's variables and logs; the rest is zeros).
    fn give_back(&self, journal_file: JournalFile, file: File, written: usize) {
        if file.write_all_at(&ZEROS[..written], 0).is_ok() {
            self.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(journal_file);
        } else {
            let _ = std::fs::remove_file(&journal_file.path);
        }
    }

    /// Reads back every journal in the directory; the files holding none are
    /// kept for new journals. A torn last line (a crash mid-write) is ignored:
    /// it was never sent, since sending follows the sync. `boot` is this
    /// boot's id ([`boot_id`]).
    ///
    /// Two journals of one execution (the first one's end zeroed in memory, the
    /// machine lost before that reached the disk, the execution handed out
    /// here again): the later attempt's is kept, the other removed.
    pub fn recover_all(self: &Arc<Self>, boot: Option<&str>) -> std::io::Result<Vec<Recovered>> {
        let mut recovered: Vec<Recovered> = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(recovered),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let path = entry.path();
            let found = match path.extension().and_then(|ext| ext.to_str()) {
                Some("journal") => {
                    let number = path
                        .file_stem()
                        .and_then(|stem| stem.to_str()?.parse::<u64>().ok());
                    // Not one of ours: left alone.
                    let Some(number) = number else { continue };
                    self.next_number
                        .fetch_max(number.saturating_add(1), Ordering::Relaxed);
                    self.recover_pooled(path)?
                }
                Some("jsonl") => recover_legacy(path)?,
                _ => None,
            };
            let Some(found) = found
                .and_then(|(journal, entries)| Recovered::from_entries(journal, entries, boot))
            else {
                continue;
            };
            let same = recovered
                .iter()
                .position(|r| r.assignment.execution_id == found.assignment.execution_id);
            match same {
                Some(at) if found.is_later_than(&recovered[at]) => {
                    std::mem::replace(&mut recovered[at], found)
                        .journal
                        .remove();
                }
                Some(_) => found.journal.remove(),
                None => recovered.push(found),
            }
        }
        Ok(recovered)
    }

    fn recover_pooled(
        self: &Arc<Self>,
        path: PathBuf,
    ) -> std::io::Result<Option<(Journal, Vec<Entry>)>> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes)?;
        let (tag, entries, intact_len) = read_tagged(&bytes);
        let journal_file = JournalFile {
            path,
            named_durably: Arc::new(AtomicBool::new(false)),
        };
        let holds_a_run = entries.iter().any(|e| matches!(e, Entry::Assignment(_)));
        let Some(tag) = tag.filter(|_| holds_a_run) else {
            if bytes.len() == FILE_BYTES {
                self.give_back(journal_file, file, FILE_BYTES);
            } else {
                let _ = std::fs::remove_file(&journal_file.path);
            }
            return Ok(None);
        };
        // Past a torn line, a power loss may have left lines of this journal
        // that reached the disk before it: zeroed, so that no later line
        // written here ends exactly where one of them begins.
        let rest = bytes.len().min(FILE_BYTES).saturating_sub(intact_len);
        file.write_all_at(&ZEROS[..rest], intact_len as u64)?;
        if bytes.len() > FILE_BYTES.max(intact_len) {
            file.set_len(FILE_BYTES.max(intact_len) as u64)?;
        }
        let journal = Journal {
            file,
            end: intact_len as u64,
            place: Place::Pooled {
                file: journal_file,
                tag,
                journals: self.clone(),
            },
        };
        Ok(Some((journal, entries)))
    }
}

/// The lines of one journal at the start of a journal file: its tag, its
/// entries, and the length they take.
fn read_tagged(bytes: &[u8]) -> (Option<u64>, Vec<Entry>, usize) {
    let mut tag = None;
    let mut entries = Vec::new();
    let mut intact_len = 0;
    while let Some(line_len) = bytes[intact_len..].iter().position(|&b| b == b'\n') {
        let Some((line_tag, entry)) = tagged_entry(&bytes[intact_len..intact_len + line_len])
        else {
            break;
        };
        if *tag.get_or_insert(line_tag) != line_tag {
            break;
        }
        entries.push(entry);
        intact_len += line_len + 1;
    }
    (tag, entries, intact_len)
}

fn tagged_entry(line: &[u8]) -> Option<(u64, Entry)> {
    let prefix = std::str::from_utf8(line.get(..PREFIX_BYTES)?).ok()?;
    let json = &line[PREFIX_BYTES..];
    let tag = u64::from_str_radix(prefix.get(..16)?, 16).ok()?;
    let crc = u32::from_str_radix(prefix.get(16..)?, 16).ok()?;
    if line_crc(tag, json) != crc {
        return None;
    }
    Some((tag, serde_json::from_slice(json).ok()?))
}

fn line_crc(tag: u64, json: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&tag.to_le_bytes());
    hasher.update(json);
    hasher.finalize()
}

/// A journal of an earlier agent, one JSON line per entry.
fn recover_legacy(path: PathBuf) -> std::io::Result<Option<(Journal, Vec<Entry>)>> {
    let mut entries = Vec::new();
    let mut reader = BufReader::new(File::open(&path)?);
    let mut line = String::new();
    let mut intact_len = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<Entry>(&line) {
            Ok(entry) => entries.push(entry),
            Err(_) => break,
        }
        intact_len += n as u64;
    }
    if !entries.iter().any(|e| matches!(e, Entry::Assignment(_))) {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    // Cut a torn tail so that later lines start on a line of their own.
    let file = OpenOptions::new().write(true).open(&path)?;
    file.set_len(intact_len)?;
    let journal = Journal {
        file,
        end: intact_len,
        place: Place::Legacy { path },
    };
    Ok(Some((journal, entries)))
}

impl Recovered {
    /// Whether this journal is of a later hand-out of its execution than
    /// `other`: a later attempt's events start further on, and of two with the
    /// same start, an ended one was over before the other was handed out.
    fn is_later_than(&self, other: &Recovered) -> bool {
        let ended = |r: &Recovered| {
            r.events
                .iter()
                .any(|e| matches!(e.kind, EventKind::Ended { .. } | EventKind::Lost { .. }))
        };
        (self.assignment.first_seq, !ended(self)) > (other.assignment.first_seq, !ended(other))
    }

    fn from_entries(
        journal: Journal,
        entries: Vec<Entry>,
        boot: Option<&str>,
    ) -> Option<Recovered> {
        let mut assignment = None;
        let mut spawned = false;
        let mut events = Vec::new();
        for entry in entries {
            match entry {
                Entry::Assignment(a) => assignment = Some(a),
                Entry::Spawned => spawned = true,
                // Written in another boot (or one not known): the `spawned`
                // line, not synced, may have been lost with the machine.
                Entry::Boot(written) => {
                    if written.is_none() || written.as_deref() != boot {
                        spawned = true;
                    }
                }
                Entry::Event(event) => events.push(event),
            }
        }
        Some(Recovered {
            journal,
            assignment: assignment?,
            spawned,
            events,
        })
    }
}

impl Journal {
    /// What makes this new journal durable, for another thread.
    pub fn sync_handle(&self) -> std::io::Result<SyncHandle> {
        let dir = match &self.place {
            Place::Pooled { file, journals, .. } => {
                Some((journals.dir.clone(), file.named_durably.clone()))
            }
            Place::Legacy { .. } => None,
        };
        Ok(SyncHandle {
            file: self.file.try_clone()?,
            dir,
        })
    }

    /// Written, not synced, just before the robot is handed over: see the
    /// module's documentation.
    pub fn mark_spawned(&mut self) -> std::io::Result<()> {
        self.append(&[Entry::Spawned])
    }

    /// Written and synced.
    pub fn append_events(&mut self, events: &[Event]) -> std::io::Result<()> {
        self.write_events(events)?;
        self.file.sync_data()
    }

    /// Written, not synced: a [`SyncHandle::sync`] begun after this makes
    /// the events durable; they are sent only then.
    pub fn write_events(&mut self, events: &[Event]) -> std::io::Result<()> {
        let entries: Vec<Entry> = events.iter().cloned().map(Entry::Event).collect();
        self.append(&entries)
    }

    fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let tag = match &self.place {
            Place::Pooled { tag, .. } => Some(*tag),
            Place::Legacy { .. } => None,
        };
        let mut buffer = Vec::new();
        for entry in entries {
            let line_start = buffer.len();
            if tag.is_some() {
                buffer.extend_from_slice(&[b'0'; PREFIX_BYTES]);
            }
            serde_json::to_writer(&mut buffer, entry)?;
            if let Some(tag) = tag {
                let crc = line_crc(tag, &buffer[line_start + PREFIX_BYTES..]);
                buffer[line_start..line_start + PREFIX_BYTES]
                    .copy_from_slice(format!("{tag:016x}{crc:08x}").as_bytes());
            }
            buffer.push(b'\n');
        }
        self.file.write_all_at(&buffer, self.end)?;
        self.end += buffer.len() as u64;
        Ok(())
    }

    /// Ends the journal once the server has stored everything in it. Not
    /// synced: a journal found again after a power loss is sent again, and the
    /// server keeps each event once. Its file is used again unless the journal
    /// made it grow (a file is never longer than `max(FILE_BYTES, end)`: read
    /// back, it is cut to that).
    pub fn remove(self) {
        match self.place {
            Place::Pooled { file, journals, .. } => match usize::try_from(self.end) {
                Ok(written) if written <= FILE_BYTES => {
                    journals.give_back(file, self.file, written)
                }
                _ => {
                    let _ = std::fs::remove_file(&file.path);
                }
            },
            Place::Legacy { path } => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
pub(crate) mod tests;
