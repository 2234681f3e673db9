//! The SQLite store's files are private to their owner, whatever the umask of
//! the process that opened them and the mode of the directory they are in.

use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn a_new_database_and_its_wal_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("regente.db");
    let store = regente_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // A write, so that the WAL and its index exist.
    let _ = store.set_password("nobody", "x").await;
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        seen.push((entry.file_name().to_string_lossy().into_owned(), mode));
    }
    store.close().await;
    seen.sort();
    assert!(
        seen.iter().any(|(name, _)| name == "regente.db"),
        "{seen:?}"
    );
    for (name, mode) in &seen {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}: {seen:?}");
    }
}
