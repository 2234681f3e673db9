//! Schedules with a manual clock: the scheduler's pass (planning, then the
//! store's firing transaction) driven through whole days and years of clock
//! changes, downtime and slow robots in a few seconds.
//!
//! Each test runs on SQLite, and on PostgreSQL when `REGENTE_TEST_PG_URL`
//! names a server (a role allowed to create databases; without it they are
//! ignored as `SKIPPED`).

#[path = "../../regente-store/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regente_core::schedule::plan::{parse_instant, Misfire, Overlap};
use regente_core::schedule::{Millis, When};
use regente_core::{ExecutionStatus, RequestVariable, Role};
use regente_server::clock::{Clock, ManualClock};
use regente_server::service::auth::Auth;
use regente_server::service::schedules::{self, ScheduleChanges};
use regente_server::service::{flows, Caller, Context, Error};
use regente_server::supervisor::Supervisor;
use regente_server::{flow_engine, scheduler, ServerConfig};
use regente_store::{
    Change, EventKind, EventRecord, Execution, ExecutionFilter, FireOutcome, FlowRun,
    NewRobotVersion, NewRuntime, Organization, Runtime, ScheduledRun, Store, User,
};
use serde_json::json;

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;

/// Declares a test run once per backend: `sqlite::name` and `postgres::name`,
/// each `async fn name(store: Arc<dyn Store>, url: String)` of this file.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::on_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(regente_pg), ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)")]
                async fn $name() {
                    crate::support::on_postgres(stringify!($name), super::$name).await;
                }
            )*
        }
    };
}

on_both! {
    daily_at_0230_in_new_york_fires_once_a_day_across_both_clock_changes,
    daily_at_0230_in_berlin_fires_once_a_day_across_both_clock_changes,
    every_15_minutes_fires_4_times_in_each_pass_of_the_repeated_hour,
    a_server_down_for_3_hours_fires_per_misfire_and_records_the_rest_as_missed,
    start_at_and_end_at_bound_the_fires,
    overlap_skip_with_a_robot_slower_than_the_period_skips_and_counts,
    the_scheduler_sleeps_until_the_next_fire_and_wakes_for_a_change,
    consecutive_failed_runs_pause_a_schedule_through_the_event_stream,
    a_flow_schedule_starts_flow_runs_under_its_overlap_and_failure_rules,
}

// ---------------------------------------------------------------------------
// A server's context on a manual clock, with an organisation, a runtime and a
// robot.

const ORG: &str = "00000000000000a1";
const RUNTIME: &str = "00000000000000a3";
const ROBOT: &str = "00000000000000a4";

struct Harness {
    ctx: Arc<Context>,
    clock: ManualClock,
    caller: Caller,
    _dir: tempfile::TempDir,
}

async fn world(store: &Arc<dyn Store>) {
    let org = Organization {
        id: ORG.into(),
        name: "acme".into(),
        is_root: true,
        created_at: 0,
    };
    let admin = User {
        id: "00000000000000a2".into(),
        organization_id: ORG.into(),
        username: "admin".into(),
        password_hash: "not a hash".into(),
        role: Role::Admin,
        created_at: 0,
    };
    store.create_organization(&org, &admin, None).await.unwrap();
    store
        .create_runtime(
            &NewRuntime {
                runtime: Runtime {
                    id: RUNTIME.into(),
                    organization_id: ORG.into(),
                    name: "desk".into(),
                    slots: 1,
                    last_seen: None,
                    created_at: 0,
                },
                key_hash: "key hash".into(),
            },
            None,
        )
        .await
        .unwrap();
    let (robot, _) = store
        .add_robot_version(
            &NewRobotVersion {
                organization_id: ORG.into(),
                new_robot_id: ROBOT.into(),
                name: "robot".into(),
                sha256: "digest".into(),
                manifest: "name = \"robot\"\ncommand = [\"true\"]\n".into(),
                package: Vec::new(),
                created_at: 0,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(robot, ROBOT);
}

/// A server on `store` whose clock reads `now`.
fn server(store: Arc<dyn Store>, now: Millis) -> Harness {
    let dir = tempfile::tempdir().expect("a data directory");
    let config = ServerConfig::new(dir.path().to_owned());
    let auth = Auth::new(&[7; 64], config.token_lifetime, config.login_limits.clone());
    let clock = ManualClock::new(now);
    let ctx = Arc::new(Context::new(store, auth, config, Arc::new(clock.clone())));
    let caller = Caller {
        user_id: "00000000000000a2".into(),
        username: "admin".into(),
        organization_id: ORG.into(),
        role: Role::Admin,
        api_key_id: None,
        address: None,
    };
    Harness {
        ctx,
        clock,
        caller,
        _dir: dir,
    }
}

async fn harness(store: Arc<dyn Store>, now: Millis) -> Harness {
    world(&store).await;
    server(store, now)
}

fn at(iso: &str) -> Millis {
    parse_instant("test", iso).unwrap()
}

fn cron(name: &str, pattern: &str, zone: &str) -> ScheduleChanges {
    ScheduleChanges {
        name: Some(name.into()),
        robot_id: Some(ROBOT.into()),
        runtime_id: Some(RUNTIME.into()),
        when: Some(When::Cron(pattern.into())),
        timezone: Some(zone.into()),
        overlap: Some(Overlap::Allow),
        ..ScheduleChanges::default()
    }
}

impl Harness {
    async fn create(&self, changes: ScheduleChanges) -> String {
        schedules::create(&self.ctx, &self.caller, changes)
            .await
            .unwrap()
            .schedule
            .id
    }

    /// Moves the clock to `until` as the scheduler would: to each time a
    /// schedule is due, and every `step` between, firing what is due at each
    /// stop.
    async fn run_until(&self, until: Millis, step: Millis) {
        loop {
            let next = scheduler::fire_due(&self.ctx).await.unwrap();
            let now = self.clock.now();
            if now >= until {
                return;
            }
            let stop = next.map_or(now + step, |due| due.min(now + step));
            self.clock.set(stop.clamp(now + 1, until));
        }
    }

    /// The runs a schedule queued, oldest first.
    async fn runs_of(&self, schedule_id: &str) -> Vec<Execution> {
        let filter = ExecutionFilter {
            schedule_id: Some(schedule_id.into()),
            limit: 10_000,
            ..ExecutionFilter::default()
        };
        let mut runs = self.ctx.store.list_executions(ORG, &filter).await.unwrap();
        runs.reverse();
        runs
    }

    /// The local times (ISO-8601 with offset) of a schedule's runs' fires.
    async fn local_fires(&self, schedule_id: &str) -> Vec<String> {
        let view = schedules::get(&self.ctx, &self.caller, schedule_id)
            .await
            .unwrap();
        self.runs_of(schedule_id)
            .await
            .iter()
            .map(|run| {
                view.rule
                    .local_iso(run.scheduled_for.expect("a scheduled run"))
            })
            .collect()
    }

    async fn counters(&self, schedule_id: &str) -> (u64, u64, u64) {
        let s = self.ctx.store.get_schedule(ORG, schedule_id).await.unwrap();
        (s.fired, s.skipped, s.missed)
    }

    /// Hands the runtime's next run out, starts it, and ends it with `status`
    /// when given; answers (execution id, lease).
    async fn run_robot(&self, ending: Option<ExecutionStatus>) -> (String, String) {
        let store = &self.ctx.store;
        let lease = format!("lease-{}", self.clock.now());
        let claimed = store.claim_next(RUNTIME, &lease).await.unwrap();
        let id = claimed.expect("a run waits").execution_id;
        assert!(store
            .start(RUNTIME, &id, &lease, self.clock.now())
            .await
            .unwrap());
        if let Some(status) = ending {
            self.end_robot(&id, &lease, status).await;
        }
        (id, lease)
    }

    async fn end_robot(&self, id: &str, lease: &str, status: ExecutionStatus) {
        let ended = EventRecord {
            seq: 1,
            time: self.clock.now(),
            change: Change::Ended {
                status,
                exit_code: Some(0),
                reason: format!("ended {status}"),
            },
        };
        self.ctx
            .store
            .record_events(RUNTIME, id, lease, &[ended])
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// Clock changes.

/// A year of a daily 02:30 in `zone`, created at the first local midnight of
/// 2026: one run a day, at 02:30, or right after the gap on the day the clocks
/// spring forward (`spring`), and at the first 02:30 when they fall back.
async fn a_year_of_daily_0230(
    store: Arc<dyn Store>,
    zone: &str,
    start: &str,
    end: &str,
    spring: &str,
    fall: &str,
) {
    let h = harness(store, at(start)).await;
    let id = h.create(cron("daily", "30 2 * * *", zone)).await;
    h.run_until(at(end), 6 * HOUR).await;
    let fires = h.local_fires(&id).await;
    let mut per_day: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for fire in &fires {
        per_day.entry(&fire[..10]).or_default().push(fire);
    }
    assert_eq!(per_day.len(), 365, "{zone}: {per_day:?}");
    assert!(
        per_day.values().all(|fires| fires.len() == 1),
        "{per_day:?}"
    );
    assert!(
        per_day.keys().all(|day| day.starts_with("2026-")),
        "{per_day:?}"
    );
    let spring_day = &spring[..10];
    assert_eq!(per_day[spring_day], [spring], "{zone} springs forward");
    assert_eq!(per_day[&fall[..10]], [fall], "{zone} falls back");
    let others_at_0230 = fires
        .iter()
        .filter(|fire| !fire.starts_with(spring_day))
        .all(|fire| &fire[10..19] == "T02:30:00");
    assert!(others_at_0230, "{fires:?}");
    assert_eq!(h.counters(&id).await, (365, 0, 0));
}

async fn daily_at_0230_in_new_york_fires_once_a_day_across_both_clock_changes(
    store: Arc<dyn Store>,
    _url: String,
) {
    a_year_of_daily_0230(
        store,
        "America/New_York",
        "2026-01-01T00:00:00-05:00",
        "2027-01-01T00:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-11-01T02:30:00-05:00",
    )
    .await;
}

async fn daily_at_0230_in_berlin_fires_once_a_day_across_both_clock_changes(
    store: Arc<dyn Store>,
    _url: String,
) {
    a_year_of_daily_0230(
        store,
        "Europe/Berlin",
        "2026-01-01T00:00:00+01:00",
        "2027-01-01T00:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
    )
    .await;
}

async fn every_15_minutes_fires_4_times_in_each_pass_of_the_repeated_hour(
    store: Arc<dyn Store>,
    _url: String,
) {
    // Berlin, 2026-10-25: 02:00-02:59 happens at +02:00, then at +01:00.
    let h = harness(store, at("2026-10-25T01:00:00+02:00")).await;
    let id = h
        .create(cron("quarterly", "*/15 * * * *", "Europe/Berlin"))
        .await;
    h.run_until(at("2026-10-25T04:00:00+01:00"), 7 * MINUTE)
        .await;
    let fires = h.local_fires(&id).await;
    let repeated: Vec<&String> = fires.iter().filter(|f| f.contains("T02:")).collect();
    let first_pass = repeated.iter().filter(|f| f.ends_with("+02:00")).count();
    let second_pass = repeated.iter().filter(|f| f.ends_with("+01:00")).count();
    assert_eq!((first_pass, second_pass), (4, 4), "{fires:#?}");
    // Real time kept: 01:15 +02:00 to 04:00 +01:00 is 3 h 45 min, a fire each
    // quarter hour.
    let runs = h.runs_of(&id).await;
    assert_eq!(runs.len(), 16, "{fires:#?}");
    let times: Vec<Millis> = runs.iter().map(|r| r.scheduled_for.unwrap()).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 15 * MINUTE));
}

// ---------------------------------------------------------------------------
// Downtime, bounds, overlap.

async fn a_server_down_for_3_hours_fires_per_misfire_and_records_the_rest_as_missed(
    store: Arc<dyn Store>,
    url: String,
) {
    let t0 = at("2026-05-01T00:00:00Z");
    let h = harness(store, t0).await;
    let every_10 = |name: &str, misfire| ScheduleChanges {
        misfire: Some(misfire),
        ..cron(name, "*/10 * * * *", "UTC")
    };
    let latest = h.create(every_10("latest", Misfire::RunLatest)).await;
    let all = h.create(every_10("all", Misfire::RunAll)).await;
    h.run_until(t0 + 30 * MINUTE, MINUTE).await;
    assert_eq!(h.counters(&latest).await, (3, 0, 0));

    // The server stops, and starts again 3 h later on the same store.
    let Harness { ctx, .. } = h;
    ctx.store.close().await;
    let store = ctx.store.clone();
    drop(ctx);
    drop(store);
    let store = regente_store::open(&url).await.unwrap();
    let back = t0 + 3 * HOUR + 30 * MINUTE;
    let h = server(store, back);
    h.run_until(back, MINUTE).await;

    // 18 fires were due while it was down: 11 older than the 1 h window, 7
    // inside it (the last right now).
    let since = |runs: Vec<Execution>| -> Vec<Millis> {
        runs.iter()
            .filter_map(|r| r.scheduled_for)
            .filter(|at| *at > t0 + 30 * MINUTE)
            .collect()
    };
    assert_eq!(since(h.runs_of(&latest).await), [back]);
    assert_eq!(h.counters(&latest).await, (4, 0, 17));
    let window: Vec<Millis> = (0..7).map(|n| back - HOUR + n * 10 * MINUTE).collect();
    assert_eq!(since(h.runs_of(&all).await), window);
    assert_eq!(h.counters(&all).await, (10, 0, 11));

    // Each missed fire is recorded and on the stream, with its reason.
    let view = schedules::get(&h.ctx, &h.caller, &latest).await.unwrap();
    let outcomes: Vec<&str> = view.last_fires.iter().map(|f| f.outcome.as_str()).collect();
    assert_eq!(outcomes[0], "started");
    assert!(
        outcomes[1..18].iter().all(|o| *o == "missed"),
        "{outcomes:?}"
    );
    let missed = support::events_of_kind(&*h.ctx.store, EventKind::ScheduleMissed, 28)
        .await
        .iter()
        .filter(|e| e.subject_id == latest)
        .count();
    assert_eq!(missed, 17);
    assert_eq!(view.schedule.next_fire_at, Some(back + 10 * MINUTE));
}

async fn start_at_and_end_at_bound_the_fires(store: Arc<dyn Store>, _url: String) {
    let t0 = at("2026-05-01T00:00:00Z");
    let h = harness(store, t0).await;
    let id = h
        .create(ScheduleChanges {
            start_at: Some(Some(t0 + 2 * HOUR + 30 * MINUTE)),
            end_at: Some(Some(t0 + 5 * HOUR)),
            ..cron("bounded", "0 * * * *", "UTC")
        })
        .await;
    h.run_until(t0 + 8 * HOUR, 20 * MINUTE).await;
    let times: Vec<Millis> = h
        .runs_of(&id)
        .await
        .iter()
        .map(|r| r.scheduled_for.unwrap())
        .collect();
    assert_eq!(times, [t0 + 3 * HOUR, t0 + 4 * HOUR, t0 + 5 * HOUR]);
    let view = schedules::get(&h.ctx, &h.caller, &id).await.unwrap();
    assert_eq!(view.schedule.next_fire_at, None, "it fires no more");
    assert!(view.next_fires.is_empty());
    assert_eq!(h.counters(&id).await, (3, 0, 0));
}

async fn overlap_skip_with_a_robot_slower_than_the_period_skips_and_counts(
    store: Arc<dyn Store>,
    _url: String,
) {
    let t0 = at("2026-05-01T00:00:00Z");
    let h = harness(store, t0).await;
    let id = h
        .create(ScheduleChanges {
            overlap: None, // skip, the default
            ..cron("minutely", "* * * * *", "UTC")
        })
        .await;
    // The first run waits, then runs for 2 minutes and a half.
    h.run_until(t0 + MINUTE, 10_000).await;
    h.clock.set(t0 + MINUTE + 5_000);
    let (running, lease) = h.run_robot(None).await;
    h.run_until(t0 + 3 * MINUTE + 30_000, 10_000).await;
    h.end_robot(&running, &lease, ExecutionStatus::Finished)
        .await;
    h.run_until(t0 + 4 * MINUTE, 10_000).await;

    assert_eq!(h.counters(&id).await, (2, 2, 0));
    let view = schedules::get(&h.ctx, &h.caller, &id).await.unwrap();
    let fires: Vec<(Millis, &str)> = view
        .last_fires
        .iter()
        .map(|f| (f.scheduled_for - t0, f.outcome.as_str()))
        .collect();
    assert_eq!(
        fires,
        [
            (4 * MINUTE, "started"),
            (3 * MINUTE, "skipped_overlap"),
            (2 * MINUTE, "skipped_overlap"),
            (MINUTE, "started"),
        ]
    );
    let reasons: Vec<String> =
        support::events_of_kind(&*h.ctx.store, EventKind::ScheduleSkipped, 2)
            .await
            .iter()
            .map(|e| e.data["reason"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(reasons, ["overlap", "overlap"]);
}

// ---------------------------------------------------------------------------
// The scheduler's own loop, and the failure count.

async fn the_scheduler_sleeps_until_the_next_fire_and_wakes_for_a_change(
    store: Arc<dyn Store>,
    _url: String,
) {
    let t0 = at("2026-05-01T00:00:30Z");
    let h = harness(store, t0).await;
    let mut supervisor = Supervisor::new(h.ctx.clone());
    supervisor.spawn("scheduler", scheduler::run);
    let hourly = h.create(cron("hourly", "0 * * * *", "UTC")).await;
    let runs = |id: String| {
        let ctx = h.ctx.clone();
        move || {
            let (ctx, id) = (ctx.clone(), id.clone());
            async move {
                let filter = ExecutionFilter {
                    schedule_id: Some(id),
                    limit: 100,
                    ..ExecutionFilter::default()
                };
                ctx.store.list_executions(ORG, &filter).await.unwrap().len()
            }
        }
    };
    let hourly_runs = runs(hourly.clone());
    // The sleeper is woken by the clock at the hour.
    h.clock.set(at("2026-05-01T01:00:00Z"));
    wait_for(&hourly_runs, 1).await;
    // A schedule created while it sleeps until 02:00 wakes it for 01:30.
    let half = h.create(cron("half past", "30 * * * *", "UTC")).await;
    let half_runs = runs(half.clone());
    h.clock.set(at("2026-05-01T01:30:00Z"));
    wait_for(half_runs, 1).await;
    assert_eq!(hourly_runs().await, 1);
    supervisor.stop(Duration::from_secs(5)).await;
}

/// Polls `count` until it reaches `want`, for 10 s at most.
async fn wait_for<F, Fut>(count: F, want: usize)
where
    F: Fn() -> Fut,
    Fut: Future<Output = usize>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = count().await;
        if got >= want {
            assert_eq!(got, want);
            return;
        }
        assert!(Instant::now() < deadline, "{got} of {want} after 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn consecutive_failed_runs_pause_a_schedule_through_the_event_stream(
    store: Arc<dyn Store>,
    _url: String,
) {
    let t0 = at("2026-05-01T00:00:00Z");
    let h = harness(store, t0).await;
    let id = h
        .create(ScheduleChanges {
            pause_after_failures: Some(Some(2)),
            ..cron("fragile", "*/10 * * * *", "UTC")
        })
        .await;
    let count = || scheduler::count_failures(h.ctx.clone());
    // ERROR, FINISHED, ERROR: never 2 in a row.
    for (n, status) in [
        ExecutionStatus::Error,
        ExecutionStatus::Finished,
        ExecutionStatus::Error,
    ]
    .into_iter()
    .enumerate()
    {
        h.run_until(t0 + (n as Millis + 1) * 10 * MINUTE, MINUTE)
            .await;
        h.run_robot(Some(status)).await;
        count().await.unwrap();
    }
    assert!(!h.ctx.store.get_schedule(ORG, &id).await.unwrap().paused);
    // A second ERROR in a row pauses it, with the reason; nothing fires after.
    h.run_until(t0 + 40 * MINUTE, MINUTE).await;
    let (failed, _) = h.run_robot(Some(ExecutionStatus::Error)).await;
    let paused = h.count_failures_until_paused(&id).await;
    assert!(paused.paused);
    let note = paused.pause_note.unwrap();
    assert!(note.contains("2 consecutive runs ended ERROR"), "{note}");
    assert!(note.contains(&failed), "{note}");
    h.run_until(t0 + 2 * HOUR, 10 * MINUTE).await;
    assert_eq!(h.runs_of(&id).await.len(), 4);
    let fires = h.ctx.store.schedule_fires(ORG, &id, 10).await.unwrap();
    assert!(fires
        .iter()
        .all(|f| matches!(f.outcome, FireOutcome::Started { .. })));
}

// ---------------------------------------------------------------------------
// A schedule of a flow.

async fn a_flow_schedule_starts_flow_runs_under_its_overlap_and_failure_rules(
    store: Arc<dyn Store>,
    _url: String,
) {
    let t0 = at("2026-05-01T00:00:00Z");
    let h = harness(store, t0).await;
    let mut supervisor = Supervisor::new(h.ctx.clone());
    supervisor.spawn("flow engine", flow_engine::run);
    let definition = json!({
        "name": "fetch then report",
        "variables": [{"name": "N", "type": "number"}],
        "steps": [
            {"id": "fetch", "robot_id": ROBOT, "runtime_id": RUNTIME, "variables": {"N": "{{ input.N }}"}},
            {"id": "report", "robot_id": ROBOT, "runtime_id": RUNTIME},
        ],
    });
    let flow = flows::save(&h.ctx, &h.caller, &definition).await.unwrap();
    let with_n = |value| {
        Some(vec![RequestVariable {
            name: "N".into(),
            kind: None,
            value,
        }])
    };
    let changes = ScheduleChanges {
        name: Some("flow every 10 minutes".into()),
        flow_id: Some(flow.id.clone()),
        variables: with_n(json!(3)),
        when: Some(When::Cron("*/10 * * * *".into())),
        overlap: Some(Overlap::Skip),
        pause_after_failures: Some(Some(2)),
        ..ScheduleChanges::default()
    };
    // The variables are the flow's inputs, checked as the schedule is saved.
    let refused = schedules::create(
        &h.ctx,
        &h.caller,
        ScheduleChanges {
            variables: with_n(json!("many")),
            ..changes.clone()
        },
    )
    .await;
    assert!(
        matches!(&refused, Err(Error::Invalid(why)) if why.starts_with("variables")),
        "{:?}",
        refused.err()
    );
    let id = h.create(changes).await;

    // Its fire starts a run of the flow, submitted by the schedule, whose first
    // step's execution waits for the runtime.
    h.run_until(t0 + 10 * MINUTE, MINUTE).await;
    let first = h.only_flow_run(&id).await;
    assert_eq!(first.schedule_id.as_deref(), Some(id.as_str()));
    assert_eq!(first.scheduled_for, Some(t0 + 10 * MINUTE));
    assert_eq!(first.submitted_by, format!("schedule:{id}"));
    assert_eq!(first.input, json!({"N": 3}));
    assert_eq!(first.steps[0].status, "RUNNING");
    // While it is live, the next fire is skipped.
    h.run_until(t0 + 20 * MINUTE, MINUTE).await;
    assert_eq!(h.counters(&id).await, (1, 1, 0));

    // The engine runs its steps as for any run.
    let (fetch, _) = h.run_robot(Some(ExecutionStatus::Finished)).await;
    let fetched = h.ctx.store.get_execution(ORG, &fetch).await.unwrap();
    assert_eq!(fetched.flow_run_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(fetched.variables, json!({"N": 3}));
    h.flow_run_reaches(&first.id, |run| run.steps[1].status == "RUNNING")
        .await;
    h.run_robot(Some(ExecutionStatus::Finished)).await;
    h.flow_run_reaches(&first.id, |run| run.status == ExecutionStatus::Finished)
        .await;

    // Two runs ending ERROR in a row pause it, the note naming the last.
    let mut failed = Vec::new();
    for minutes in [30, 40] {
        h.run_until(t0 + minutes * MINUTE, MINUTE).await;
        let run = h.only_flow_run(&id).await;
        h.run_robot(Some(ExecutionStatus::Error)).await;
        h.flow_run_reaches(&run.id, |run| run.status == ExecutionStatus::Error)
            .await;
        failed.push(run.id);
    }
    let paused = h.count_failures_until_paused(&id).await;
    assert!(paused.paused, "{paused:?}");
    assert_eq!(paused.consecutive_failures, 2);
    let note = paused.pause_note.unwrap();
    assert!(note.contains(&format!("flow run {}", failed[1])), "{note}");
    h.run_until(t0 + 2 * HOUR, 10 * MINUTE).await;
    assert_eq!(h.counters(&id).await, (3, 1, 0));
    supervisor.stop(Duration::from_secs(5)).await;
}

impl Harness {
    /// Counts run ends until the schedule is paused (30 s at most: on
    /// PostgreSQL an end shows on the stream once older transactions end);
    /// answers the schedule.
    async fn count_failures_until_paused(&self, id: &str) -> regente_store::Schedule {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            scheduler::count_failures(self.ctx.clone()).await.unwrap();
            let s = self.ctx.store.get_schedule(ORG, id).await.unwrap();
            if s.paused || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The flow run of the schedule's latest fire; it must have started one.
    async fn only_flow_run(&self, schedule_id: &str) -> FlowRun {
        let fires = self
            .ctx
            .store
            .schedule_fires(ORG, schedule_id, 1)
            .await
            .unwrap();
        let Some(FireOutcome::Started(ScheduledRun::FlowRun(run_id))) =
            fires.first().map(|fire| &fire.outcome)
        else {
            panic!("the latest fire started no flow run: {fires:?}");
        };
        self.ctx.store.get_flow_run(ORG, run_id).await.unwrap()
    }

    /// Waits (10 s at most) for the engine to bring the run where `reached` says.
    async fn flow_run_reaches(&self, run_id: &str, reached: impl Fn(&FlowRun) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The engine is woken like a session storing an execution's end wakes it.
            self.ctx.flows.wake.notify_one();
            let run = self.ctx.store.get_flow_run(ORG, run_id).await.unwrap();
            if reached(&run) {
                return;
            }
            assert!(Instant::now() < deadline, "the run stayed at {run:#?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
