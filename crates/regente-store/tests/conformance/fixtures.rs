//! What the conformance tests share: records to store, a populated world, and
//! the imports every module uses.

pub use std::collections::{BTreeSet, HashSet};
pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::Arc;

pub use regente_core::{ExecutionStatus, Role};
pub use regente_store::prelude::*;
pub use regente_store::{
    CancelOutcome, Change, Enqueued, Error, EventCursor, EventRecord, EventsOutcome, Execution,
    ExecutionFilter, IdempotencyKey, LostOutcome, Millis, NewExecution, NewRobotVersion,
    NewRuntime, Notice, Organization, Robot, RunTarget, Runtime, RuntimeDeletion, StoredEvent,
    User,
};
pub use serde_json::json;

pub fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn organization(name: &str, is_root: bool, created_at: Millis) -> Organization {
    Organization {
        id: new_id(),
        name: name.to_owned(),
        is_root,
        created_at,
    }
}

pub fn user(organization_id: &str, username: &str, role: Role, created_at: Millis) -> User {
    User {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        username: username.to_owned(),
        password_hash: format!("$argon2id$v=19$hash-of-{username}"),
        role,
        created_at,
    }
}

pub fn new_runtime(organization_id: &str, name: &str, created_at: Millis) -> NewRuntime {
    NewRuntime {
        runtime: Runtime {
            id: new_id(),
            organization_id: organization_id.to_owned(),
            name: name.to_owned(),
            slots: 2,
            last_seen: None,
            created_at,
        },
        key_hash: format!("key-hash-{}", new_id()),
    }
}

pub fn robot_upload(organization_id: &str, name: &str, package: Vec<u8>) -> NewRobotVersion {
    NewRobotVersion {
        organization_id: organization_id.to_owned(),
        new_robot_id: new_id(),
        name: name.to_owned(),
        sha256: format!("sha-of-{name}-{}", package.len()),
        manifest: format!("name = \"{name}\"\ncommand = [\"run\"]\n"),
        package,
        created_at: 100,
    }
}

/// An organisation with its admin, a runtime and a robot at version 1.
pub struct World {
    pub store: Arc<dyn Store>,
    pub org: Organization,
    pub admin: User,
    pub runtime: Runtime,
    pub robot_id: String,
}

pub async fn world(store: Arc<dyn Store>) -> World {
    let org = organization("acme", true, 10);
    let admin = user(&org.id, "admin", Role::Admin, 10);
    store.create_organization(&org, &admin, None).await.unwrap();
    let runtime = add_runtime(&store, &org.id, "desk-1").await;
    let (robot_id, version) = store
        .add_robot_version(
            &robot_upload(&org.id, "invoices", b"PK\x03\x04zip".to_vec()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(version, 1);
    World {
        store,
        org,
        admin,
        runtime,
        robot_id,
    }
}

/// A second organisation ("other", not root) with its admin, to show that
/// another organisation sees nothing of the first.
pub async fn other_organization(store: &Arc<dyn Store>) -> Organization {
    let other = organization("other", false, 10);
    store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10), None)
        .await
        .unwrap();
    other
}

pub async fn add_runtime(store: &Arc<dyn Store>, organization_id: &str, name: &str) -> Runtime {
    let new = new_runtime(organization_id, name, 20);
    store.create_runtime(&new, None).await.unwrap();
    new.runtime
}

impl World {
    pub fn execution(&self, runtime_id: &str, init: Millis, max_attempts: u32) -> NewExecution {
        NewExecution {
            id: new_id(),
            organization_id: self.org.id.clone(),
            runtime_id: runtime_id.to_owned(),
            robot_id: self.robot_id.clone(),
            robot_version: 1,
            variables: json!({"N": 1}),
            init,
            submitted_by: self.admin.id.clone(),
            max_attempts,
            flow_run_id: None,
            flow_step_id: None,
            schedule_id: None,
            scheduled_for: None,
        }
    }

    /// Queues a run on `runtime_id`; returns its id.
    pub async fn enqueue_on(&self, runtime_id: &str, init: Millis, max_attempts: u32) -> String {
        let new = self.execution(runtime_id, init, max_attempts);
        assert_eq!(
            self.store.enqueue(&new, None).await.unwrap(),
            Enqueued::Created
        );
        new.id
    }

    pub async fn enqueue(&self, init: Millis) -> String {
        self.enqueue_on(&self.runtime.id, init, 1).await
    }

    /// The stream's events that `wanted`, once at least `count` show (on
    /// PostgreSQL an event shows once every older transaction has ended), and
    /// never more.
    pub async fn events_where(
        &self,
        count: usize,
        wanted: impl Fn(&StoredEvent) -> bool,
    ) -> Vec<StoredEvent> {
        let mut seen = 0;
        let mut after = EventCursor::START;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut found = Vec::new();
        loop {
            for event in self.store.events_after(after, 1_000).await.unwrap() {
                after = event.cursor;
                seen += 1;
                if wanted(&event) {
                    found.push(event);
                }
            }
            if found.len() >= count {
                assert_eq!(found.len(), count, "{found:?} ({seen} events)");
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {found:?} showed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub async fn get(&self, id: &str) -> Execution {
        self.store.get_execution(&self.org.id, id).await.unwrap()
    }

    /// Claims the runtime's next run under a fresh lease; returns (id, lease).
    pub async fn claim(&self) -> (String, String) {
        let lease = format!("lease-{}", new_id());
        let claimed = self
            .store
            .claim_next(&self.runtime.id, &lease)
            .await
            .unwrap()
            .expect("a run to claim");
        (claimed.execution_id, lease)
    }

    /// Queues, claims and starts a run; returns (id, lease).
    pub async fn running(&self, max_attempts: u32) -> (String, String) {
        let id = self.enqueue_on(&self.runtime.id, 1_000, max_attempts).await;
        let (claimed, lease) = self.claim().await;
        assert_eq!(claimed, id, "the queue was expected to be empty before");
        assert!(self
            .store
            .start(&self.runtime.id, &id, &lease, 2_000)
            .await
            .unwrap());
        (id, lease)
    }

    pub async fn report(&self, id: &str, lease: &str, events: &[EventRecord]) -> EventsOutcome {
        self.store
            .record_events(&self.runtime.id, id, lease, events)
            .await
            .unwrap()
    }

    pub async fn logs(&self, id: &str) -> Vec<(i64, String, String)> {
        self.store
            .execution_logs(&self.org.id, id)
            .await
            .unwrap()
            .into_iter()
            .map(|line| (line.seq, line.level, line.message))
            .collect()
    }
}

pub fn log(seq: u64, message: &str) -> EventRecord {
    EventRecord {
        seq,
        time: 5_000 + seq as Millis,
        change: Change::Log {
            level: "INFO".into(),
            message: message.into(),
        },
    }
}

pub fn progress(seq: u64, value: f64) -> EventRecord {
    EventRecord {
        seq,
        time: 5_000 + seq as Millis,
        change: Change::Progress(value),
    }
}

pub fn ended(
    seq: u64,
    time: Millis,
    status: ExecutionStatus,
    exit_code: Option<i32>,
) -> EventRecord {
    EventRecord {
        seq,
        time,
        change: Change::Ended {
            status,
            exit_code,
            reason: format!("ended {status}"),
        },
    }
}

pub fn stored(acked: u64, ended: bool) -> EventsOutcome {
    EventsOutcome::Stored { acked, ended }
}

pub fn is_not_found<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::NotFound))
}

pub fn is_conflict<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::Conflict(_)))
}
