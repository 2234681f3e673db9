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

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

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
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

/// A new journal's file and its directory, to be synced together.
pub struct SyncHandle {
    file: File,
    dir: PathBuf,
}

impl SyncHandle {
    /// Syncs the file's content, then the directory that names it: on some
    /// filesystems a synced new file may still be missing after a power loss
    /// when its directory entry was not synced.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()?;
        File::open(&self.dir)?.sync_all()
    }
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

/// What a journal held when the agent started.
pub struct Recovered {
    pub journal: Journal,
    pub assignment: Assignment,
    pub spawned: bool,
    pub events: Vec<Event>,
}

impl Journal {
    /// Starts the journal of a new assignment, in boot `boot` ([`boot_id`]).
    /// Not synced: [`Journal::sync_handle`] gives the handle to sync it with,
    /// away from the agent's task. No robot may be handed over before that
    /// sync succeeds.
    pub fn create(
        dir: &Path,
        assignment: &Assignment,
        boot: Option<String>,
    ) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.jsonl", assignment.execution_id));
        // Variables and logs: readable by the agent's user only.
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            OpenOptions::new().create(true).truncate(true).write(true),
            0o600,
        )
        .open(&path)?;
        let mut journal = Journal { path, file };
        journal.append(
            &[Entry::Assignment(assignment.clone()), Entry::Boot(boot)],
            false,
        )?;
        Ok(journal)
    }

    /// What makes this new journal durable, for another thread.
    pub fn sync_handle(&self) -> std::io::Result<SyncHandle> {
        Ok(SyncHandle {
            file: self.file.try_clone()?,
            dir: self.path.parent().map(Path::to_owned).unwrap_or_default(),
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
        let mut buffer = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut buffer, entry)?;
            buffer.push(b'\n');
        }
        self.file.write_all(&buffer)?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Removes the journal once the server has stored everything in it.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Reads back every journal in `dir`. A torn last line (a crash mid-write)
    /// is ignored: it was never sent, since sending follows the sync. `boot` is
    /// this boot's id ([`boot_id`]).
    pub fn recover_all(dir: &Path, boot: Option<&str>) -> std::io::Result<Vec<Recovered>> {
        let mut recovered = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(recovered),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|ext| ext != "jsonl") {
                continue;
            }
            let mut assignment = None;
            let mut spawned = false;
            let mut events = Vec::new();
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
                    Ok(Entry::Assignment(a)) => assignment = Some(a),
                    Ok(Entry::Spawned) => spawned = true,
                    // Written in another boot (or one not known): the `spawned`
                    // line, not synced, may have been lost with the machine.
                    Ok(Entry::Boot(written)) => {
                        if written.is_none() || written.as_deref() != boot {
                            spawned = true;
                        }
                    }
                    Ok(Entry::Event(event)) => events.push(event),
                    Err(_) => break,
                }
                intact_len += n as u64;
            }
            let Some(assignment) = assignment else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            // Cut a torn tail so that later appends start on a line of their own.
            let file = OpenOptions::new().append(true).open(&path)?;
            file.set_len(intact_len)?;
            recovered.push(Recovered {
                journal: Journal { path, file },
                assignment,
                spawned,
                events,
            });
        }
        Ok(recovered)
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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "regente-journal-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Whether the robot counts as spawned when the journal is read back in
    /// boot `now`, after it was written in boot `written` and, when `mark`,
    /// the spawn mark.
    fn spawned_after(written: Option<&str>, mark: bool, now: Option<&str>) -> bool {
        let dir = scratch("spawned");
        let mut journal =
            Journal::create(&dir, &assignment("e1"), written.map(str::to_owned)).unwrap();
        journal.sync_handle().unwrap().sync().unwrap();
        if mark {
            journal.mark_spawned().unwrap();
        }
        drop(journal);
        let recovered = Journal::recover_all(&dir, now).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(recovered.len(), 1);
        recovered[0].spawned
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
    fn an_older_journal_without_boot_counts_as_spawned_by_its_mark_alone() {
        let dir = scratch("older");
        let write = |id: &str, entries: &[Entry]| {
            let mut text = Vec::new();
            for entry in entries {
                serde_json::to_writer(&mut text, entry).unwrap();
                text.push(b'\n');
            }
            std::fs::write(dir.join(format!("{id}.jsonl")), text).unwrap();
        };
        write("e1", &[Entry::Assignment(assignment("e1"))]);
        write("e2", &[Entry::Assignment(assignment("e2")), Entry::Spawned]);
        let mut recovered = Journal::recover_all(&dir, Some("boot")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        recovered.sort_by(|a, b| a.assignment.execution_id.cmp(&b.assignment.execution_id));
        let spawned: Vec<bool> = recovered.iter().map(|r| r.spawned).collect();
        assert_eq!(spawned, [false, true]);
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
