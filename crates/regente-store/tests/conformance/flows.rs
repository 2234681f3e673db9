//! Flows: definitions in versions, runs started with their first execution,
//! decisions written whole and only from the revision they were made from,
//! cancels, and the runs the engine must wake for.

use crate::fixtures::*;
use regente_store::{
    CancelOutcome, Enqueued, EventKind, FlowAdvance, FlowCancelOutcome, FlowRun, FlowStep,
    IdempotencyKey, LostOutcome, NewFlowRun, NewFlowVersion,
};

conformance!(store: [
    flows_are_saved_in_versions_under_their_name,
    a_run_starts_with_its_first_execution_and_its_events,
    an_idempotency_key_answers_the_run_it_started,
    a_decision_from_an_old_revision_is_refused,
    a_retry_brings_an_ended_run_back,
    a_cancel_ends_the_run_once_and_names_the_running_execution,
    runs_waiting_for_a_time_are_listed_for_the_engine,
    a_flows_recent_runs_are_listed_newest_first_in_its_organisation,
    a_steps_claim_and_each_way_it_ends_name_its_run,
]);

fn new_flow(w: &World, organization_id: &str, name: &str, n: i64) -> NewFlowVersion {
    NewFlowVersion {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        name: name.to_owned(),
        definition: json!({"name": name, "n": n}),
        created: 1_000 + n,
        created_by: w.admin.id.clone(),
    }
}

fn step(position: u32, id: &str) -> FlowStep {
    FlowStep {
        position,
        step_id: id.to_owned(),
        status: "PENDENT".into(),
        attempt: 0,
        execution_id: None,
        return_value: None,
        reason: None,
        not_before: None,
        deadline: None,
    }
}

/// A run of a new flow whose first step's execution is queued with it.
async fn started_run(w: &World) -> (FlowRun, String) {
    let flow = w
        .store
        .save_flow(&new_flow(w, &w.org.id, "f", 0), None)
        .await
        .unwrap();
    let mut execution = w.execution(&w.runtime.id, 5_000, 1);
    let mut first = step(0, "fetch");
    first.status = "RUNNING".into();
    first.attempt = 1;
    first.execution_id = Some(execution.id.clone());
    let run = FlowRun {
        id: new_id(),
        organization_id: w.org.id.clone(),
        flow_id: flow.id,
        version: flow.version,
        status: ExecutionStatus::Running,
        input: json!({"MIN": 1}),
        return_value: None,
        init: 5_000,
        end: None,
        end_reason: None,
        submitted_by: w.admin.id.clone(),
        canceled_by: None,
        revision: 0,
        wake_at: None,
        schedule_id: None,
        scheduled_for: None,
        steps: vec![first, step(1, "report")],
        seq: 0,
    };
    execution.flow_run_id = Some(run.id.clone());
    execution.flow_step_id = Some("fetch".into());
    let new = NewFlowRun {
        run: run.clone(),
        enqueue: Some(execution.clone()),
    };
    assert_eq!(
        w.store.start_flow_run(&new, None).await.unwrap(),
        Enqueued::Created
    );
    (run, execution.id)
}

/// The advance that records step 0's end and starts step 1.
fn next_step(w: &World, run: &FlowRun, revision: i64) -> (FlowAdvance, String) {
    let mut execution = w.execution(&w.runtime.id, 6_000, 1);
    execution.flow_run_id = Some(run.id.clone());
    execution.flow_step_id = Some("report".into());
    let mut done = run.steps[0].clone();
    done.status = "FINISHED".into();
    done.return_value = Some(json!({"count": 3}));
    let mut second = step(1, "report");
    second.status = "RUNNING".into();
    second.attempt = 1;
    second.execution_id = Some(execution.id.clone());
    second.deadline = Some(9_000);
    let id = execution.id.clone();
    let advance = FlowAdvance {
        audit: None,
        organization_id: run.organization_id.clone(),
        run_id: run.id.clone(),
        revision,
        status: ExecutionStatus::Running,
        return_value: None,
        end: None,
        end_reason: None,
        wake_at: Some(9_000),
        steps: vec![done, second],
        enqueue: Some(execution),
        cursor: Some(("flows".into(), EventCursor { txid: 0, seq: 1 })),
        now: 6_000,
    };
    (advance, id)
}

/// The run's flow events, once at least `count` show, and never more.
async fn flow_events(w: &World, run_id: &str, count: usize) -> Vec<(EventKind, serde_json::Value)> {
    let flow_kinds = [EventKind::FlowRunStarted, EventKind::FlowRunEnded];
    w.events_where(count, |event| {
        flow_kinds.contains(&event.kind) && event.subject_id == run_id
    })
    .await
    .into_iter()
    .map(|event| (event.kind, event.data))
    .collect()
}

async fn flows_are_saved_in_versions_under_their_name(store: Arc<dyn Store>) {
    let w = world(store).await;
    let first = w
        .store
        .save_flow(&new_flow(&w, &w.org.id, "nightly", 1), None)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = w
        .store
        .save_flow(&new_flow(&w, &w.org.id, "nightly", 2), None)
        .await
        .unwrap();
    assert_eq!((second.id.as_str(), second.version), (first.id.as_str(), 2));
    assert_eq!(second.definition, json!({"name": "nightly", "n": 2}));
    assert_eq!(
        w.store.get_flow(&w.org.id, &first.id).await.unwrap(),
        second
    );
    let old = w.store.flow_version(&w.org.id, &first.id, 1).await.unwrap();
    assert_eq!(old.definition, json!({"name": "nightly", "n": 1}));
    assert!(matches!(
        w.store.flow_version(&w.org.id, &first.id, 3).await,
        Err(regente_store::Error::NotFound)
    ));
    // Another organisation: its own flow under the same name, and no access to this one.
    let other = organization("other", false, 1);
    w.store
        .create_organization(
            &other,
            &user(&other.id, "other-admin", Role::Admin, 1),
            None,
        )
        .await
        .unwrap();
    let theirs = w
        .store
        .save_flow(&new_flow(&w, &other.id, "nightly", 1), None)
        .await
        .unwrap();
    assert_ne!(theirs.id, first.id);
    assert_eq!(theirs.version, 1);
    assert!(matches!(
        w.store.get_flow(&other.id, &first.id).await,
        Err(regente_store::Error::NotFound)
    ));
    w.store
        .save_flow(&new_flow(&w, &w.org.id, "a-first", 1), None)
        .await
        .unwrap();
    let names: Vec<(String, u32)> = w
        .store
        .list_flows(&w.org.id)
        .await
        .unwrap()
        .into_iter()
        .map(|flow| (flow.name, flow.version))
        .collect();
    assert_eq!(names, [("a-first".into(), 1), ("nightly".into(), 2)]);
}

async fn a_run_starts_with_its_first_execution_and_its_events(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (run, execution_id) = started_run(&w).await;
    let stored = w.store.get_flow_run(&w.org.id, &run.id).await.unwrap();
    assert_eq!(
        FlowRun {
            seq: 0,
            ..stored.clone()
        },
        run
    );
    let execution = w
        .store
        .get_execution(&w.org.id, &execution_id)
        .await
        .unwrap();
    assert_eq!(execution.flow_run_id.as_deref(), Some(run.id.as_str()));
    assert_eq!(execution.flow_step_id.as_deref(), Some("fetch"));
    assert_eq!(execution.status, ExecutionStatus::Pendent);
    let events = flow_events(&w, &run.id, 1).await;
    assert_eq!(events[0].0, EventKind::FlowRunStarted);
    assert_eq!(events[0].1["resumed"], json!(false));
    assert!(matches!(
        w.store.get_flow_run("0000000000000000", &run.id).await,
        Err(regente_store::Error::NotFound)
    ));
}

async fn an_idempotency_key_answers_the_run_it_started(store: Arc<dyn Store>) {
    let w = world(store).await;
    let flow = w
        .store
        .save_flow(&new_flow(&w, &w.org.id, "f", 0), None)
        .await
        .unwrap();
    let key = IdempotencyKey {
        user_id: w.admin.id.clone(),
        key: "once".into(),
        fingerprint: "flow-a".into(),
        expired_before: 0,
    };
    let run = |id: String| NewFlowRun {
        run: FlowRun {
            id,
            organization_id: w.org.id.clone(),
            flow_id: flow.id.clone(),
            version: 1,
            status: ExecutionStatus::Running,
            input: json!({}),
            return_value: None,
            init: 7_000,
            end: None,
            end_reason: None,
            submitted_by: w.admin.id.clone(),
            canceled_by: None,
            revision: 0,
            wake_at: Some(8_000),
            schedule_id: None,
            scheduled_for: None,
            steps: vec![step(0, "a")],
            seq: 0,
        },
        enqueue: None,
    };
    let first = run(new_id());
    assert_eq!(
        w.store.start_flow_run(&first, Some(&key)).await.unwrap(),
        Enqueued::Created
    );
    assert_eq!(
        w.store
            .start_flow_run(&run(new_id()), Some(&key))
            .await
            .unwrap(),
        Enqueued::Existing(first.run.id.clone())
    );
    let other = IdempotencyKey {
        fingerprint: "flow-b".into(),
        ..key.clone()
    };
    assert_eq!(
        w.store
            .start_flow_run(&run(new_id()), Some(&other))
            .await
            .unwrap(),
        Enqueued::KeyReused
    );
}

async fn a_decision_from_an_old_revision_is_refused(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (run, _) = started_run(&w).await;
    let (advance, second) = next_step(&w, &run, 0);
    assert!(w.store.advance_flow_run(&advance).await.unwrap());
    let after = w.store.get_flow_run(&w.org.id, &run.id).await.unwrap();
    assert_eq!(after.revision, 1);
    assert_eq!(after.wake_at, Some(9_000));
    assert_eq!(after.steps[0].status, "FINISHED");
    assert_eq!(after.steps[0].return_value, Some(json!({"count": 3})));
    assert_eq!(
        after.steps[1].execution_id.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(after.steps[1].deadline, Some(9_000));
    let queued = w.store.get_execution(&w.org.id, &second).await.unwrap();
    assert_eq!(queued.flow_step_id.as_deref(), Some("report"));
    assert_eq!(
        w.store.load_cursor("flows").await.unwrap(),
        EventCursor { txid: 0, seq: 1 }
    );
    // The same decision again (a crash re-read its event, or another server made
    // it): refused, nothing queued twice.
    let (again, third) = next_step(&w, &run, 0);
    assert!(!w.store.advance_flow_run(&again).await.unwrap());
    assert_eq!(
        w.store.get_flow_run(&w.org.id, &run.id).await.unwrap(),
        after
    );
    assert!(matches!(
        w.store.get_execution(&w.org.id, &third).await,
        Err(regente_store::Error::NotFound)
    ));
}

async fn a_retry_brings_an_ended_run_back(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (run, _) = started_run(&w).await;
    let mut failed = run.steps[0].clone();
    failed.status = "ERROR".into();
    failed.reason = Some("exit 1".into());
    let end = FlowAdvance {
        audit: None,
        organization_id: w.org.id.clone(),
        run_id: run.id.clone(),
        revision: 0,
        status: ExecutionStatus::Error,
        return_value: None,
        end: Some(6_000),
        end_reason: Some("step \"fetch\" failed: exit 1".into()),
        wake_at: None,
        steps: vec![failed],
        enqueue: None,
        cursor: None,
        now: 6_000,
    };
    assert!(w.store.advance_flow_run(&end).await.unwrap());
    let ended = w.store.get_flow_run(&w.org.id, &run.id).await.unwrap();
    assert_eq!(ended.status, ExecutionStatus::Error);
    assert_eq!(ended.end, Some(6_000));
    let (mut retry, execution) = next_step(&w, &run, 1);
    retry.steps = vec![{
        let mut again = step(0, "fetch");
        again.status = "RUNNING".into();
        again.attempt = 1;
        again.execution_id = Some(execution.clone());
        again
    }];
    retry.cursor = None;
    assert!(w.store.advance_flow_run(&retry).await.unwrap());
    let resumed = w.store.get_flow_run(&w.org.id, &run.id).await.unwrap();
    assert_eq!(resumed.status, ExecutionStatus::Running);
    assert_eq!((resumed.end, resumed.end_reason), (None, None));
    let kinds = flow_events(&w, &run.id, 3).await;
    assert_eq!(kinds[1].0, EventKind::FlowRunEnded);
    assert_eq!(kinds[1].1["status"], json!("ERROR"));
    assert_eq!(kinds[2].0, EventKind::FlowRunStarted);
    assert_eq!(kinds[2].1["resumed"], json!(true));
}

async fn a_cancel_ends_the_run_once_and_names_the_running_execution(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (run, execution_id) = started_run(&w).await;
    assert!(matches!(
        w.store
            .cancel_flow_run("0000000000000000", &run.id, "someone", 7_000, None)
            .await,
        Err(regente_store::Error::NotFound)
    ));
    assert_eq!(
        w.store
            .cancel_flow_run(&w.org.id, &run.id, &w.admin.id, 7_000, None)
            .await
            .unwrap(),
        FlowCancelOutcome::Canceled {
            running_execution: Some(execution_id)
        }
    );
    let canceled = w.store.get_flow_run(&w.org.id, &run.id).await.unwrap();
    assert_eq!(canceled.status, ExecutionStatus::Canceled);
    assert_eq!(canceled.canceled_by.as_deref(), Some(w.admin.id.as_str()));
    assert_eq!(canceled.end, Some(7_000));
    assert_eq!(canceled.revision, 1);
    assert_eq!(
        w.store
            .cancel_flow_run(&w.org.id, &run.id, &w.admin.id, 8_000, None)
            .await
            .unwrap(),
        FlowCancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    );
    let events = flow_events(&w, &run.id, 2).await;
    assert_eq!(events[1].1["status"], json!("CANCELED"));
}

async fn runs_waiting_for_a_time_are_listed_for_the_engine(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (run, _) = started_run(&w).await;
    assert!(w.store.waking_flow_runs(10).await.unwrap().is_empty());
    let (advance, _) = next_step(&w, &run, 0);
    assert!(w.store.advance_flow_run(&advance).await.unwrap());
    let waking = w.store.waking_flow_runs(10).await.unwrap();
    assert_eq!(waking.len(), 1);
    assert_eq!(
        (waking[0].run_id.as_str(), waking[0].wake_at),
        (run.id.as_str(), 9_000)
    );
    w.store
        .cancel_flow_run(&w.org.id, &run.id, &w.admin.id, 7_000, None)
        .await
        .unwrap();
    assert!(w.store.waking_flow_runs(10).await.unwrap().is_empty());
}

async fn a_flows_recent_runs_are_listed_newest_first_in_its_organisation(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (first, _) = started_run(&w).await;
    // The same flow (saved again under its name), run a second time.
    let (second, _) = started_run(&w).await;
    assert_eq!(first.flow_id, second.flow_id);
    let ids = |runs: Vec<FlowRun>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let recent = w
        .store
        .recent_flow_runs(&w.org.id, &first.flow_id, 10)
        .await
        .unwrap();
    assert!(recent.iter().all(|run| run.steps.is_empty()));
    assert_eq!(ids(recent), [second.id.clone(), first.id.clone()]);
    let latest = w
        .store
        .recent_flow_runs(&w.org.id, &first.flow_id, 1)
        .await
        .unwrap();
    assert_eq!(ids(latest), [second.id]);
    let other = organization("other", false, 10);
    assert!(w
        .store
        .recent_flow_runs(&other.id, &first.flow_id, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The session learns from the claim whether a run is a flow step, and each end
/// says which flow run it ends a step of (null for none), so that the flow engine
/// neither wakes nor reads for the other runs.
async fn a_steps_claim_and_each_way_it_ends_name_its_run(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (run, reported) = started_run(&w).await;
    let plain = w.enqueue(5_001).await;
    let claimed = w.store.claim_next(&w.runtime.id, "l1").await.unwrap();
    let claimed = claimed.expect("the step");
    assert_eq!(
        (claimed.execution_id.as_str(), claimed.flow_step),
        (reported.as_str(), true)
    );
    let claimed = w.store.claim_next(&w.runtime.id, "l2").await.unwrap();
    let claimed = claimed.expect("the plain run");
    assert_eq!(
        (claimed.execution_id.as_str(), claimed.flow_step),
        (plain.as_str(), false)
    );
    // Ended by its report, by its lost lease, and by a cancel before its start.
    let finished = ended(1, 6_000, ExecutionStatus::Finished, Some(0));
    assert_eq!(
        w.report(&reported, "l1", &[finished]).await,
        stored(1, true)
    );
    assert!(w
        .store
        .start(&w.runtime.id, &plain, "l2", 6_000)
        .await
        .unwrap());
    let lost = w
        .store
        .end_lease(&plain, "l2", true, "lost", 6_500)
        .await
        .unwrap();
    assert!(matches!(lost, LostOutcome::Ended(ExecutionStatus::Error)));
    let (second_run, canceled) = started_run(&w).await;
    let outcome = w
        .store
        .cancel(&w.org.id, &canceled, &w.admin.id, 7_000, None)
        .await;
    assert!(matches!(outcome.unwrap(), CancelOutcome::Canceled { .. }));

    let ends: Vec<(String, serde_json::Value)> = w
        .events_where(3, |event| {
            event.kind == EventKind::ExecutionEnded && event.organization_id == w.org.id
        })
        .await
        .into_iter()
        .map(|event| (event.subject_id, event.data["flow_run_id"].clone()))
        .collect();
    assert_eq!(
        ends,
        [
            (reported, json!(run.id)),
            (plain, json!(null)),
            (canceled, json!(second_run.id)),
        ]
    );
}
