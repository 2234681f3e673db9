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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use regente_proto::{Assignment, Event};
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
    free: Mutex<Vec<(PathBuf, File)>>,
    next_number: AtomicU64,
}

/// What makes a new journal durable, for another thread.
pub struct SyncHandle {
    file: File,
    /// The directory, when the file is new: it must be synced too.
    new_in: Option<PathBuf>,
}

impl SyncHandle {
    /// Syncs the file's content, then, for a new file, the directory that names
    /// it: on some filesystems a synced new file may still be missing after a
    /// power loss when its directory entry was not synced.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()?;
        match &self.new_in {
            Some(dir) => File::open(dir)?.sync_all(),
            None => Ok(()),
        }
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
        path: PathBuf,
        tag: u64,
        journals: Arc<Journals>,
        new_file: bool,
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
        let (path, file, new_file) = match free {
            Some((path, file)) => (path, file, false),
            None => {
                let (path, file) = self.new_file()?;
                (path, file, true)
            }
        };
        let mut journal = Journal {
            file,
            end: 0,
            place: Place::Pooled {
                path,
                tag: rand::random(),
                journals: self.clone(),
                new_file,
            },
        };
        journal.append(
            &[Entry::Assignment(assignment.clone()), Entry::Boot(boot)],
            false,
        )?;
        Ok(journal)
    }

    /// A new file of zeros, written, not synced (see [`SyncHandle::sync`]).
    fn new_file(&self) -> std::io::Result<(PathBuf, File)> {
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
            file.write_all_at(&ZEROS, 0)?;
            return Ok((path, file));
        }
    }

    /// Takes a file back for the next journal, its content zeroed (it held
    /// the run's variables and logs); a file that grew is removed instead.
    fn give_back(&self, path: PathBuf, file: File) {
        let reusable = file.metadata().is_ok_and(|m| m.len() == FILE_BYTES as u64)
            && file.write_all_at(&ZEROS, 0).is_ok();
        if reusable {
            self.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((path, file));
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Reads back every journal in the directory; the files holding none are
    /// kept for new journals. A torn last line (a crash mid-write) is ignored:
    /// it was never sent, since sending follows the sync. `boot` is this
    /// boot's id ([`boot_id`]).
    pub fn recover_all(self: &Arc<Self>, boot: Option<&str>) -> std::io::Result<Vec<Recovered>> {
        let mut recovered = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(recovered),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let extension = path.extension().and_then(|ext| ext.to_str());
            let found = match extension {
                Some("journal") => {
                    let number = path
                        .file_stem()
                        .and_then(|stem| stem.to_str()?.parse::<u64>().ok());
                    if let Some(number) = number {
                        self.next_number.fetch_max(number + 1, Ordering::Relaxed);
                    }
                    self.recover_pooled(path)?
                }
                Some("jsonl") => recover_legacy(path)?,
                _ => None,
            };
            if let Some((journal, entries)) = found {
                recovered.extend(Recovered::from_entries(journal, entries, boot));
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
        let holds_a_run = entries.iter().any(|e| matches!(e, Entry::Assignment(_)));
        match tag {
            Some(tag) if holds_a_run => Ok(Some((
                Journal {
                    file,
                    end: intact_len as u64,
                    place: Place::Pooled {
                        path,
                        tag,
                        journals: self.clone(),
                        new_file: false,
                    },
                },
                entries,
            ))),
            _ => {
                self.give_back(path, file);
                Ok(None)
            }
        }
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
        let new_in = match &self.place {
            Place::Pooled {
                path,
                new_file: true,
                ..
            } => Some(path.parent().map(Path::to_owned).unwrap_or_default()),
            _ => None,
        };
        Ok(SyncHandle {
            file: self.file.try_clone()?,
            new_in,
        })
    }

    /// Written, not synced, just before the robot is handed over: see the
    /// module's documentation.
    pub fn mark_spawned(&mut self) -> std::io::Result<()> {
        self.append(&[Entry::Spawned], false)
    }

    pub fn append_events(&mut self, events: &[Event]) -> std::io::Result<()> {
        let entries: Vec<Entry> = events.iter().cloned().map(Entry::Event).collect();
        self.append(&entries, true)
    }

    fn append(&mut self, entries: &[Entry], sync: bool) -> std::io::Result<()> {
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
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Ends the journal once the server has stored everything in it. Not
    /// synced: a journal found again after a power loss is sent again, and the
    /// server keeps each event once.
    pub fn remove(self) {
        match self.place {
            Place::Pooled { path, journals, .. } => journals.give_back(path, self.file),
            Place::Legacy { path } => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(id: &str) -> Assignment {
        Assignment {
            execution_id: id.to_owned(),
            lease: "lease".to_owned(),
            robot_id: "robot".to_owned(),
            robot_version: 1,
            sha256: "00".to_owned(),
            manifest: "name = \"r\"\ncommand = [\"true\"]\n".to_owned(),
            variables: serde_json::json!({}),
            first_seq: 1,
            credentials: Default::default(),
            secret_variables: Default::default(),
        }
    }

    fn event(seq: u64, line: &str) -> Event {
        Event {
            seq,
            time: 0,
            kind: regente_proto::EventKind::Log {
                level: regente_proto::LogLevel::Info,
                message: line.to_owned(),
            },
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "regente-journal-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The journals read back from `dir` as a restarted agent would, by
    /// execution id: whether spawned, and the events' messages.
    fn read_back(dir: &Path, boot: Option<&str>) -> Vec<(String, bool, Vec<String>)> {
        let mut found: Vec<_> = Journals::new(dir)
            .recover_all(boot)
            .unwrap()
            .into_iter()
            .map(|r| {
                let lines = r.events.iter().map(|e| format!("{:?}", e.kind)).collect();
                (r.assignment.execution_id, r.spawned, lines)
            })
            .collect();
        found.sort();
        found
    }

    fn path_of(journal: &Journal) -> PathBuf {
        match &journal.place {
            Place::Pooled { path, .. } | Place::Legacy { path } => path.clone(),
        }
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// Whether the robot counts as spawned when the journal is read back in
    /// boot `now`, after it was written in boot `written` and, when `mark`,
    /// the spawn mark.
    fn spawned_after(written: Option<&str>, mark: bool, now: Option<&str>) -> bool {
        let dir = scratch("spawned");
        let journals = Journals::new(&dir);
        let mut journal = journals
            .create(&assignment("e1"), written.map(str::to_owned))
            .unwrap();
        journal.sync_handle().unwrap().sync().unwrap();
        if mark {
            journal.mark_spawned().unwrap();
        }
        drop(journal);
        let recovered = read_back(&dir, now);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(recovered.len(), 1);
        recovered[0].1
    }

    #[test]
    fn a_journal_without_the_spawn_mark_counts_as_spawned_only_after_a_reboot() {
        // Same boot: the written (unsynced) mark would be there had the robot been handed over.
        assert!(!spawned_after(Some("boot-a"), false, Some("boot-a")));
        assert!(spawned_after(Some("boot-a"), true, Some("boot-a")));
        // Another boot, or a boot not known: the mark may have been lost.
        assert!(spawned_after(Some("boot-a"), false, Some("boot-b")));
        assert!(spawned_after(None, false, None));
        assert!(spawned_after(Some("boot-a"), false, None));
        assert!(spawned_after(None, false, Some("boot-a")));
    }

    #[test]
    fn a_journal_reads_back_its_events_and_a_removed_one_leaves_its_file_zeroed_for_the_next() {
        let dir = scratch("reuse");
        let journals = Journals::new(&dir);
        let mut first = journals.create(&assignment("e1"), None).unwrap();
        first.sync_handle().unwrap().sync().unwrap();
        first.mark_spawned().unwrap();
        first
            .append_events(&[event(1, "one"), event(2, "two")])
            .unwrap();
        let recovered = read_back(&dir, None);
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].0, "e1");
        assert!(recovered[0].1);
        assert_eq!(recovered[0].2.len(), 2);
        assert!(recovered[0].2[1].contains("two"));

        let files = files_in(&dir);
        first.remove();
        assert_eq!(files_in(&dir), files, "kept for the next journal");
        let bytes = std::fs::read(&files[0]).unwrap();
        assert_eq!(bytes.len(), FILE_BYTES);
        assert!(bytes.iter().all(|&b| b == 0), "the run's lines zeroed");
        assert!(read_back(&dir, None).is_empty());

        // The next journal goes into the same file, synced without its directory.
        let second = journals.create(&assignment("e2"), None).unwrap();
        assert!(second.sync_handle().unwrap().new_in.is_none());
        assert_eq!(files_in(&dir), files);
        assert_eq!(read_back(&dir, None)[0].0, "e2");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_an_earlier_journal_left_further_on_in_its_file_are_not_read() {
        let dir = scratch("stale");
        let journals = Journals::new(&dir);
        let mut long = journals.create(&assignment("e1"), None).unwrap();
        let lines: Vec<Event> = (1..=50)
            .map(|i| event(i, "an earlier run's line"))
            .collect();
        long.append_events(&lines).unwrap();
        // Given back as a crash would leave it: not zeroed.
        journals
            .free
            .lock()
            .unwrap()
            .push((path_of(&long), long.file.try_clone().unwrap()));
        drop(long);
        let mut short = journals.create(&assignment("e2"), None).unwrap();
        short.append_events(&[event(1, "its own")]).unwrap();
        let recovered = read_back(&dir, None);
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].0, "e2");
        assert_eq!(recovered[0].2.len(), 1, "{:?}", recovered[0].2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_line_ends_the_journal_and_the_next_line_is_written_in_its_place() {
        let dir = scratch("torn");
        let journals = Journals::new(&dir);
        let mut journal = journals.create(&assignment("e1"), None).unwrap();
        journal
            .append_events(&[event(1, "one"), event(2, "two")])
            .unwrap();
        // A crash mid-write: the second event's line half there.
        let path = path_of(&journal);
        let mut bytes = std::fs::read(&path).unwrap();
        let last_line_start = bytes[..journal.end as usize - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        let middle = (last_line_start + journal.end as usize) / 2;
        bytes[middle..journal.end as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        drop(journal);

        let journals = Journals::new(&dir);
        let mut recovered = journals.recover_all(None).unwrap();
        assert_eq!(recovered.len(), 1);
        let mut journal = recovered.remove(0);
        assert_eq!(journal.events.len(), 1, "the torn line is not read");
        journal.journal.append_events(&[event(2, "again")]).unwrap();
        drop(journal);
        let back = read_back(&dir, None);
        assert_eq!(back[0].2.len(), 2);
        assert!(back[0].2[1].contains("again"));
        // A flipped byte in a line ends the journal there too.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(5).position(|w| w == b"again").unwrap();
        bytes[at] = b'A';
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_back(&dir, None)[0].2.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_that_outgrew_its_file_is_removed_with_it() {
        let dir = scratch("grown");
        let journals = Journals::new(&dir);
        let mut journal = journals.create(&assignment("e1"), None).unwrap();
        assert!(journal.sync_handle().unwrap().new_in.is_some());
        let long = "x".repeat(1000);
        let lines: Vec<Event> = (1..=100).map(|i| event(i, &long)).collect();
        journal.append_events(&lines).unwrap();
        assert_eq!(read_back(&dir, None)[0].2.len(), 100);
        journal.remove();
        assert!(files_in(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_agents_journal_files_are_read_back_and_removed_when_done() {
        let dir = scratch("older");
        let write = |id: &str, entries: &[Entry]| {
            let mut text = Vec::new();
            for entry in entries {
                serde_json::to_writer(&mut text, entry).unwrap();
                text.push(b'\n');
            }
            std::fs::write(dir.join(format!("{id}.jsonl")), text).unwrap();
        };
        // Without a boot line (older still), the spawn mark alone counts.
        write("e1", &[Entry::Assignment(assignment("e1"))]);
        write("e2", &[Entry::Assignment(assignment("e2")), Entry::Spawned]);
        write(
            "e3",
            &[
                Entry::Assignment(assignment("e3")),
                Entry::Boot(Some("boot".to_owned())),
                Entry::Event(event(1, "one")),
            ],
        );
        let journals = Journals::new(&dir);
        let mut recovered = journals.recover_all(Some("boot")).unwrap();
        recovered.sort_by(|a, b| a.assignment.execution_id.cmp(&b.assignment.execution_id));
        let spawned: Vec<bool> = recovered.iter().map(|r| r.spawned).collect();
        assert_eq!(spawned, [false, true, false]);
        assert_eq!(recovered[2].events.len(), 1);
        let mut e3 = recovered.pop().unwrap();
        e3.journal.append_events(&[event(2, "two")]).unwrap();
        assert_eq!(read_back(&dir, Some("boot"))[2].2.len(), 2);
        e3.journal.remove();
        assert!(!dir.join("e3.jsonl").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_keeps_its_id_within_a_boot_and_a_copy_or_a_reboot_gets_another() {
        let dir = scratch("instance");
        let id = instance_id(&dir, Some("boot-a")).unwrap();
        assert_eq!(instance_id(&dir, Some("boot-a")).unwrap(), id);
        // A copy of the directory, instance file and all.
        let copy = scratch("instance-copy");
        std::fs::copy(dir.join("instance"), copy.join("instance")).unwrap();
        let copied = instance_id(&copy, Some("boot-a")).unwrap();
        // The next boot.
        let rebooted = instance_id(&dir, Some("boot-b")).unwrap();
        assert_eq!(instance_id(&dir, Some("boot-b")).unwrap(), rebooted);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&copy);
        assert_ne!(copied, id);
        assert_ne!(rebooted, id);
    }

    #[test]
    fn the_boot_id_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            let id = boot_id().expect("a boot id");
            assert_eq!(boot_id(), Some(id));
        }
    }
}
