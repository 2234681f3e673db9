use super::*;

pub(crate) fn assignment(id: &str) -> Assignment {
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
        start_granted: false,
    }
}

/// The run's end, finished.
fn ended(seq: u64) -> Event {
    Event {
        seq,
        time: 0,
        kind: EventKind::Ended {
            status: regente_proto::EndStatus::Finished,
            exit_code: Some(0),
            reason: String::new(),
        },
    }
}

pub(crate) fn event(seq: u64, line: &str) -> Event {
    Event {
        seq,
        time: 0,
        kind: regente_proto::EventKind::Log {
            level: regente_proto::LogLevel::Info,
            message: line.to_owned(),
        },
    }
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
        Place::Pooled { file, .. } => file.path.clone(),
        Place::Legacy { path } => path.clone(),
    }
}

/// Whether the journal's sync would leave its directory alone.
fn directory_synced(journal: &Journal) -> bool {
    let handle = journal.sync_handle().unwrap();
    handle.dir.unwrap().1.load(Ordering::Acquire)
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
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let mut journal = journals
        .create(&assignment("e1"), written.map(str::to_owned))
        .unwrap();
    journal.sync_handle().unwrap().sync().unwrap();
    if mark {
        journal.mark_spawned().unwrap();
    }
    drop(journal);
    let recovered = read_back(dir, now);
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
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let mut first = journals.create(&assignment("e1"), None).unwrap();
    first.sync_handle().unwrap().sync().unwrap();
    first.mark_spawned().unwrap();
    first
        .append_events(&[event(1, "one"), event(2, "two")])
        .unwrap();
    let recovered = read_back(dir, None);
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].0, "e1");
    assert!(recovered[0].1);
    assert_eq!(recovered[0].2.len(), 2);
    assert!(recovered[0].2[1].contains("two"));

    let files = files_in(dir);
    first.remove();
    assert_eq!(files_in(dir), files, "kept for the next journal");
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes.len(), FILE_BYTES);
    assert!(bytes.iter().all(|&b| b == 0), "the run's lines zeroed");
    assert!(read_back(dir, None).is_empty());

    // The next journal goes into the same file, synced without its directory.
    let second = journals.create(&assignment("e2"), None).unwrap();
    assert!(directory_synced(&second));
    assert_eq!(files_in(dir), files);
    assert_eq!(read_back(dir, None)[0].0, "e2");
}

#[test]
fn lines_an_earlier_journal_left_further_on_in_its_file_are_not_read() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let mut long = journals.create(&assignment("e1"), None).unwrap();
    let lines: Vec<Event> = (1..=50)
        .map(|i| event(i, "an earlier run's line"))
        .collect();
    long.append_events(&lines).unwrap();
    // Given back as a crash would leave it: not zeroed.
    journals.free.lock().unwrap().push(JournalFile {
        path: path_of(&long),
        named_durably: Arc::new(AtomicBool::new(true)),
    });
    drop(long);
    let mut short = journals.create(&assignment("e2"), None).unwrap();
    short.append_events(&[event(1, "its own")]).unwrap();
    let recovered = read_back(dir, None);
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].0, "e2");
    assert_eq!(recovered[0].2.len(), 1, "{:?}", recovered[0].2);
}

#[test]
fn a_torn_line_ends_the_journal_and_the_next_line_is_written_in_its_place() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
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

    let journals = Journals::new(dir);
    let mut recovered = journals.recover_all(None).unwrap();
    assert_eq!(recovered.len(), 1);
    let mut journal = recovered.remove(0);
    assert_eq!(journal.events.len(), 1, "the torn line is not read");
    journal.journal.append_events(&[event(2, "again")]).unwrap();
    drop(journal);
    let back = read_back(dir, None);
    assert_eq!(back[0].2.len(), 2);
    assert!(back[0].2[1].contains("again"));
    // A flipped byte in a line ends the journal there too.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(5).position(|w| w == b"again").unwrap();
    bytes[at] = b'A';
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_back(dir, None)[0].2.len(), 1);
}

#[test]
fn a_journal_that_outgrew_its_file_is_removed_with_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let mut journal = journals.create(&assignment("e1"), None).unwrap();
    assert!(!directory_synced(&journal));
    let long = "x".repeat(1000);
    let lines: Vec<Event> = (1..=100).map(|i| event(i, &long)).collect();
    journal.append_events(&lines).unwrap();
    assert_eq!(read_back(dir, None)[0].2.len(), 100);
    journal.remove();
    assert!(files_in(dir).is_empty());
}

#[test]
fn an_older_agents_journal_files_are_read_back_and_removed_when_done() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
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
    let journals = Journals::new(dir);
    let mut recovered = journals.recover_all(Some("boot")).unwrap();
    recovered.sort_by(|a, b| a.assignment.execution_id.cmp(&b.assignment.execution_id));
    let spawned: Vec<bool> = recovered.iter().map(|r| r.spawned).collect();
    assert_eq!(spawned, [false, true, false]);
    assert_eq!(recovered[2].events.len(), 1);
    let mut e3 = recovered.pop().unwrap();
    e3.journal.append_events(&[event(2, "two")]).unwrap();
    assert_eq!(read_back(dir, Some("boot"))[2].2.len(), 2);
    e3.journal.remove();
    assert!(!dir.join("e3.jsonl").exists());
}

#[test]
fn a_file_whose_first_journal_ended_before_its_sync_has_its_directory_synced_by_the_next() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let first = journals.create(&assignment("e1"), None).unwrap();
    let first_sync = first.sync_handle().unwrap();
    first.remove();
    let second = journals.create(&assignment("e2"), None).unwrap();
    assert!(!directory_synced(&second));
    second.sync_handle().unwrap().sync().unwrap();
    assert!(directory_synced(&second));
    // The first journal's late sync changes nothing.
    first_sync.sync().unwrap();
}

#[test]
fn of_two_journals_of_one_execution_the_later_hand_out_is_kept_and_the_other_removed() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    // The first hand-out ended; its zeroing never reached the disk.
    let mut first = journals.create(&assignment("e1"), None).unwrap();
    first.append_events(&[ended(1)]).unwrap();
    let mut again = assignment("e1");
    again.lease = "lease-2".to_owned();
    again.first_seq = 2;
    let mut later = journals.create(&again, None).unwrap();
    later
        .append_events(&[event(2, "the second attempt")])
        .unwrap();
    drop((first, later));
    let recovered = Journals::new(dir).recover_all(None).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].assignment.lease, "lease-2");
    drop(recovered);
    // The other one is gone from its file: read back again, one journal.
    assert_eq!(read_back(dir, None).len(), 1);
}

#[test]
fn of_two_hand_outs_with_the_same_first_seq_the_one_not_ended_is_kept() {
    // Whichever file the ended one is in: the rule decides, not the order.
    for ended_first in [true, false] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let journals = Journals::new(dir);
        let mut again = assignment("e1");
        again.lease = "lease-2".to_owned();
        let (mut over, running) = if ended_first {
            let over = journals.create(&assignment("e1"), None).unwrap();
            (over, journals.create(&again, None).unwrap())
        } else {
            let running = journals.create(&again, None).unwrap();
            (journals.create(&assignment("e1"), None).unwrap(), running)
        };
        over.append_events(&[ended(1)]).unwrap();
        drop((over, running));
        let recovered = Journals::new(dir).recover_all(None).unwrap();
        assert_eq!(recovered.len(), 1, "ended first: {ended_first}");
        assert_eq!(recovered[0].assignment.lease, "lease-2");
        assert!(recovered[0].events.is_empty());
    }
}

#[test]
fn what_follows_a_torn_line_is_zeroed_when_read_back() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let mut journal = journals.create(&assignment("e1"), None).unwrap();
    let lines: Vec<Event> = (1..=3).map(|i| event(i, "a line")).collect();
    journal.append_events(&lines).unwrap();
    let path = path_of(&journal);
    let end = journal.end as usize;
    drop(journal);
    // The second event's line torn, the third one intact after it.
    let mut bytes = std::fs::read(&path).unwrap();
    let second = bytes.windows(8).position(|w| w == b"\"seq\":2,").unwrap();
    bytes[second] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    let recovered = Journals::new(dir).recover_all(None).unwrap();
    assert_eq!(recovered[0].events.len(), 1);
    let bytes = std::fs::read(&path).unwrap();
    let intact = recovered[0].journal.end as usize;
    assert!(intact < end);
    assert!(bytes[intact..].iter().all(|&b| b == 0), "the rest zeroed");
}

#[test]
fn a_journal_keeps_its_id_within_a_boot_and_a_copy_or_a_reboot_gets_another() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let id = instance_id(dir, Some("boot-a")).unwrap();
    assert_eq!(instance_id(dir, Some("boot-a")).unwrap(), id);
    // A copy of the directory, instance file and all.
    let copied_to = tempfile::tempdir().unwrap();
    let copy = copied_to.path();
    std::fs::copy(dir.join("instance"), copy.join("instance")).unwrap();
    let copied = instance_id(copy, Some("boot-a")).unwrap();
    // The next boot.
    let rebooted = instance_id(dir, Some("boot-b")).unwrap();
    assert_eq!(instance_id(dir, Some("boot-b")).unwrap(), rebooted);
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

#[test]
fn a_free_file_that_cannot_be_opened_is_given_up_and_the_next_journal_gets_a_new_one() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let journals = Journals::new(dir);
    let first = journals.create(&assignment("e1"), None).unwrap();
    let freed = path_of(&first);
    first.remove();
    // Removed behind the agent's back (an operator, a cleaner): it cannot be opened.
    std::fs::remove_file(&freed).unwrap();
    assert!(journals.create(&assignment("e2"), None).is_err());

    // Given up with its error, not offered again.
    let next = journals.create(&assignment("e3"), None).unwrap();
    assert_ne!(path_of(&next), freed);
    next.sync_handle().unwrap().sync().unwrap();
    let recovered = read_back(dir, None);
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].0, "e3");
}
