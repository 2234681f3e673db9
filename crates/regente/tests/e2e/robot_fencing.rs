//! Robots fenced from each other and from the agent: only three descriptors,
//! private files (run directory, variables, journal, the server's database),
//! a package cache a robot cannot change for another, and, with robot users,
//! no reading of another robot's variables or environment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent_runs::{ended, setup, RUN};
use crate::support::*;

/// Writes its pid, its variables file's path and its directory, then waits for
/// `go` (while the test looks at it from outside).
const HOLDER: &str = r#"d="$REGENTE_VAR_OUT"
echo "$REGENTE_VARIABLES" > "$d/$REGENTE_EXECUTION_ID.vars"
pwd > "$d/$REGENTE_EXECUTION_ID.pwd"
id -u > "$d/$REGENTE_EXECUTION_ID.uid"
chmod 644 "$d/$REGENTE_EXECUTION_ID".*
echo $$ > "$d/$REGENTE_EXECUTION_ID.pid.tmp"
chmod 644 "$d/$REGENTE_EXECUTION_ID.pid.tmp"
mv "$d/$REGENTE_EXECUTION_ID.pid.tmp" "$d/$REGENTE_EXECUTION_ID.pid"
while [ ! -e "$d/go" ]; do sleep 0.05; done
echo "holder done"
"#;

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The descriptors a process has open.
fn open_descriptors(pid: u32) -> BTreeSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the robot's descriptors")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Queues a run with `OUT` set to the directory `out`.
fn queue_with_out(
    server: &TestServer,
    admin: &str,
    runtime: &str,
    robot: &str,
    out: &Path,
) -> String {
    server.queue(
        admin,
        runtime,
        robot,
        Some(&text_vars(&[("OUT", &path_text(out))])),
    )
}

#[test]
fn a_robot_gets_only_stdin_stdout_and_stderr() {
    let (server, admin, runtime, key) = setup();
    // `exec`: the program that runs is the one looked at, with what it inherited.
    let script = "echo $$ > \"$REGENTE_VAR_OUT/pid.tmp\" && mv \"$REGENTE_VAR_OUT/pid.tmp\" \"$REGENTE_VAR_OUT/pid\"\nexec sleep 30\n";
    let robot = upload_shell_robot(&server, &admin, "fds", script, "");
    let _agent = TestAgent::start(&server, &key, 1);
    let out = scratch();
    let id = queue_with_out(&server, &admin, &runtime, &robot, out.path());
    let pid = wait_for_pid_file(&out.path().join("pid"), RUN);
    let descriptors = open_descriptors(pid);
    let targets: Vec<String> = descriptors
        .iter()
        .map(|fd| {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"));
            format!("{fd} -> {link:?}")
        })
        .collect();
    assert_eq!(
        descriptors,
        BTreeSet::from([0, 1, 2]),
        "the robot inherited more than stdin, stdout and stderr: {targets:?}"
    );
    assert!(server.delete(&admin, &runtime, &id).status < 300);
    ended(&server, &admin, &runtime, &id);
}

#[test]
fn the_database_journal_run_directory_and_variables_are_private() {
    // The data directory exists already, open to all, as an operator may make it.
    let data = scratch();
    let data_dir = data.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(
        &data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let server = ServerOptions::new()
        .sqlite()
        .data_dir(&data_dir)
        .env("REGENTE_JWT_SECRET", "")
        .start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "rt-files");
    for name in ["regente.db", "jwt-secret"] {
        assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
    }
    let robot = upload_shell_robot(&server, &admin, "holder", HOLDER, "");
    let agent = TestAgent::start(&server, &key, 1);
    let out = scratch();
    let id = queue_with_out(&server, &admin, &runtime, &robot, out.path());
    wait_for_pid_file(&out.path().join(format!("{id}.pid")), RUN);
    let work = agent.work_dir();
    let variables = PathBuf::from(read_trimmed(&out.path().join(format!("{id}.vars"))));
    let package = PathBuf::from(read_trimmed(&out.path().join(format!("{id}.pwd"))));
    let run_dir = variables.parent().unwrap().to_path_buf();
    let expected = [
        (work.to_path_buf(), 0o700),
        (work.join("journal"), 0o700),
        (
            agent.journal_file_of(&id).expect("the run's journal"),
            0o600,
        ),
        (run_dir.clone(), 0o700),
        (variables.clone(), 0o600),
        (package.clone(), 0o500),
        (package.join("run.sh"), 0o400),
        (package.join("robot.toml"), 0o400),
    ];
    for (path, wanted) in expected {
        assert_eq!(
            mode(&path),
            wanted,
            "{} is {:o}, not {wanted:o}",
            path.display(),
            mode(&path)
        );
    }
    std::fs::write(out.path().join("go"), "").unwrap();
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert!(!run_dir.exists(), "the run directory is removed at the end");
}

#[test]
fn a_robot_cannot_change_the_cached_code_of_another_robot() {
    let (server, admin, runtime, key) = setup();
    let victim = upload_shell_robot(&server, &admin, "victim", "echo \"victim ok\"\n", "");
    // Same OS user as the victim: it may chmod and write whatever the agent's
    // user may. It rewrites the victim's cached run.sh in place, keeping its
    // size and its mtime, as a careful attacker would.
    let attacker_script = r#"for f in "$REGENTE_VAR_CACHE"/*/run.sh; do
  chmod -R u+w "$(dirname "$f")"
  stamp=$(stat -c %Y "$f")
  printf 'echo "pwned!!!"\n' > "$f"
  touch -d "@$stamp" "$f"
  chmod -R a-w "$(dirname "$f")"
  echo "rewrote $f"
done
"#;
    let attacker = upload_shell_robot(&server, &admin, "attacker", attacker_script, "");
    let agent = TestAgent::start(&server, &key, 1);
    let first = ended(
        &server,
        &admin,
        &runtime,
        &server.queue(&admin, &runtime, &victim, None),
    );
    assert_eq!(messages(&first), vec!["victim ok"], "{}", summary(&first));

    let cache = agent.work_dir().join("packages").join(&victim);
    let attack = server.queue(
        &admin,
        &runtime,
        &attacker,
        Some(&text_vars(&[("CACHE", &path_text(&cache))])),
    );
    let attack = ended(&server, &admin, &runtime, &attack);
    assert!(
        messages(&attack).iter().any(|m| m.starts_with("rewrote ")),
        "the attacker reached the victim's cached code: {}",
        summary(&attack)
    );

    let second = ended(
        &server,
        &admin,
        &runtime,
        &server.queue(&admin, &runtime, &victim, None),
    );
    assert_eq!(
        messages(&second),
        vec!["victim ok"],
        "the victim ran code another robot wrote: {}",
        summary(&second)
    );
    agent.wait_log("the cached package was changed on disk", RUN);
}

/// OS users made for a test and removed after it.
struct TestUsers(Vec<String>);

impl TestUsers {
    fn create(names: &[&str]) -> TestUsers {
        for name in names {
            let exists = std::process::Command::new("id")
                .arg(name)
                .output()
                .is_ok_and(|o| o.status.success());
            if !exists {
                let status = std::process::Command::new("useradd")
                    .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
                    .args(["--shell", "/usr/sbin/nologin", name])
                    .status()
                    .expect("useradd");
                assert!(status.success(), "useradd {name}: {status}");
            }
        }
        TestUsers(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("userdel").arg(name).status();
        }
    }
}

#[test]
#[cfg_attr(
    not(regente_root),
    ignore = "SKIPPED: needs root (to create robot users and switch to them)"
)]
fn robots_running_as_users_of_their_own_cannot_read_each_other_nor_change_the_cache() {
    let users = TestUsers::create(&["regente-e2e-robot1", "regente-e2e-robot2"]);
    let (server, admin, _, _) = setup();
    let (runtime, key) = server.create_runtime_with_slots(&admin, "rt-two-users", 2);
    let holder = upload_shell_robot(&server, &admin, "holder", HOLDER, "");
    let snoop_script = r#"echo "uid $(id -u)"
echo "own variables: $(cat "$REGENTE_VARIABLES")"
cat "$REGENTE_VAR_B_VARS" 2>/dev/null || echo "variables: denied"
tr '\000' '\n' < "/proc/$REGENTE_VAR_B_PID/environ" 2>/dev/null || echo "environ: denied"
(echo 'echo pwned' >> "$REGENTE_VAR_B_PKG/run.sh") 2>/dev/null || echo "package: denied"
chmod u+w "$REGENTE_VAR_B_PKG/run.sh" 2>/dev/null || echo "chmod: denied"
touch "$REGENTE_VAR_B_PKG/extra" 2>/dev/null || echo "new file: denied"
ls "$REGENTE_VAR_JOURNAL" >/dev/null 2>&1 || echo "journal: denied"
kill -0 "$REGENTE_VAR_B_PID" 2>/dev/null || echo "signal: denied"
"#;
    let snoop = upload_shell_robot(&server, &admin, "snoop", snoop_script, "");
    let agent = AgentOptions::for_server(&server, &key, 2)
        .robot_users(&users.0.iter().map(String::as_str).collect::<Vec<_>>())
        .start();
    let out = scratch();
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let secret = "the-holders-secret-4f1d";
    let b = server.queue(
        &admin,
        &runtime,
        &holder,
        Some(&text_vars(&[
            ("OUT", &path_text(out.path())),
            ("SECRET", secret),
        ])),
    );
    let b_pid = wait_for_pid_file(&out.path().join(format!("{b}.pid")), RUN);
    let b_vars = read_trimmed(&out.path().join(format!("{b}.vars")));
    let b_package = read_trimmed(&out.path().join(format!("{b}.pwd")));
    let b_uid = read_trimmed(&out.path().join(format!("{b}.uid")));
    let journal = path_text(&agent.work_dir().join("journal"));
    let a = server.queue(
        &admin,
        &runtime,
        &snoop,
        Some(&text_vars(&[
            ("B_PID", &b_pid.to_string()),
            ("B_VARS", &b_vars),
            ("B_PKG", &b_package),
            ("JOURNAL", &journal),
        ])),
    );
    let body = ended(&server, &admin, &runtime, &a);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    let lines = messages(&body);
    let a_uid = lines
        .iter()
        .find_map(|l| l.strip_prefix("uid "))
        .expect("the snoop's uid")
        .to_owned();
    assert!(
        a_uid != "0" && b_uid != "0" && a_uid != b_uid,
        "two robots at once run as two users, neither root: {a_uid} and {b_uid}"
    );
    assert!(
        lines.iter().any(|l| l.contains("own variables: {")),
        "a robot reads its own variables: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(secret)),
        "a robot read another robot's variables: {lines:?}"
    );
    for denied in [
        "variables: denied",
        "environ: denied",
        "package: denied",
        "chmod: denied",
        "new file: denied",
        "journal: denied",
        "signal: denied",
    ] {
        assert!(
            lines.iter().any(|l| l == denied),
            "{denied:?} expected: {lines:?}"
        );
    }
    std::fs::write(out.path().join("go"), "").unwrap();
    let b_body = ended(&server, &admin, &runtime, &b);
    assert_eq!(b_body["status"], "FINISHED", "{}", summary(&b_body));
    // The holder's code is what it was, and its user runs nothing any more.
    let again = queue_with_out(&server, &admin, &runtime, &holder, out.path());
    let again = ended(&server, &admin, &runtime, &again);
    assert_eq!(messages(&again), vec!["holder done"], "{}", summary(&again));
    wait_until(
        Duration::from_secs(10),
        "no process left under the robot users",
        || {
            let left = processes_of_users(&[&a_uid, &b_uid]);
            left.is_empty().then_some(())
        },
    );
}

/// Pids of the processes whose real uid is one of `uids`.
fn processes_of_users(uids: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next().map(str::to_owned));
        if uid.is_some_and(|uid| uids.contains(&uid.as_str())) {
            found.push(pid);
        }
    }
    found
}
