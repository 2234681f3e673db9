//! The agent's on-disk journal: per execution, the assignment, whether the robot
//! was spawned, and every event, appended and synced before it is sent. After a
//! crash or restart the agent reads the journals back and sends again whatever
//! the server may not have stored; the server keeps each event once.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use regente_proto::{Assignment, Event};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Assignment(Assignment),
    Spawned,
    Event(Event),
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
    /// Starts the journal of a new assignment.
    pub fn create(dir: &Path, assignment: &Assignment) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.jsonl", assignment.execution_id));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let mut journal = Journal { path, file };
        // Not synced: an assignment lost in a crash was never started, and the
        // server hands it out again. The sync of the spawn mark covers it.
        journal.append(&[Entry::Assignment(assignment.clone())], false)?;
        Ok(journal)
    }

    pub fn mark_spawned(&mut self) -> std::io::Result<()> {
        self.append(&[Entry::Spawned], true)
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
    /// is ignored: it was never sent, since sending follows the sync.
    pub fn recover_all(dir: &Path) -> std::io::Result<Vec<Recovered>> {
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
