//! The agent's state and main loop. One task owns everything; the connection,
//! package preparations and robots talk to it through channels.
//!
//! An assignment's life on the agent: `Assign` -> journal created (synced on a
//! blocking thread meanwhile), package prepared -> `Start` sent; while the server
//! answers, the run is prepared (run directory, variables file, program looked
//! up) -> `Started` received and the journal sync done -> journal marks it
//! spawned, the command goes to an idle guard from the pool, which starts the
//! robot -> its reports become numbered events, journaled and synced (on a
//! blocking thread, one sync at a time per journal: the loop goes on
//! meanwhile) before they are sent -> `Ack`s trim them -> once the `Ended`
//! event is acknowledged the journal is removed. As this agent names its
//! journal in its hello, the
//! server commits each start as it hands the run out: the `Start` is answered
//! at once. A run the server claimed and started in the commit of the end that
//! freed its slot comes with its start granted: no `Start`, no `Started`; it is
//! launched once prepared and journaled.
//!
//! The guard pool holds guards already exec'd (see [`crate::guard`]): one, or
//! one per run being prepared when more. They are no robots: the server
//! never hears of them, and they leave with the agent.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use regente_core::RobotManifest;
use regente_proto::{
    AgentMessage, Assignment, EndStatus, Event, EventKind, HeldLease, LogLevel, ServerMessage,
    PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub use crate::config::AgentConfig;
use crate::config::{clear_runs, create_work_dirs};
use crate::connection::{self, Inbound};
use crate::executor::{self, Report, Stop};
use crate::fence::Fence;
use crate::guards::GuardPool;
use crate::held::{Held, JournalSync, SyncOf, Synced};
use crate::journal::{self, Journals};
use crate::packages::PackageCache;
use crate::robot_output::log;
use crate::robot_user::Pool;
use crate::run_setup::{HeldUser, RobotRun, RunParts, RunSecrets};

/// Events per message, so that a chatty robot's backlog goes in bounded pieces.
const MAX_EVENTS_PER_MESSAGE: usize = 1000;

/// Events written and waiting for their journal's sync, at most: past it, the
/// robots' reports wait (and, their channel full, the robots' output), as
/// when a slow disk's sync held the loop.
const MAX_UNSYNCED_EVENTS: usize = 10 * MAX_EVENTS_PER_MESSAGE;

/// A run to prepare once its `Start` is out.
struct Deferred {
    execution_id: String,
    package_dir: PathBuf,
    manifest: RobotManifest,
    run_dir: PathBuf,
}

/// A package preparation that finished.
struct Prepared {
    execution_id: String,
    lease: String,
    outcome: Result<(PathBuf, RobotManifest), String>,
}

struct Agent {
    config: AgentConfig,
    held: HashMap<String, Held>,
    outbound: Option<mpsc::UnboundedSender<AgentMessage>>,
    server: Option<String>,
    packages: Arc<PackageCache>,
    reports: mpsc::Sender<Report>,
    prepared: mpsc::UnboundedSender<Prepared>,
    synced: mpsc::UnboundedSender<Synced>,
    guards: GuardPool,
    /// The most executions held at once so far: as many guards may wait.
    most_held: usize,
    /// This boot's id, recorded in each journal.
    boot: Option<String>,
    /// Runs to prepare once the `Start`s just sent are out.
    deferred: Vec<Deferred>,
    /// Robot users not running a robot.
    users: Arc<Mutex<Pool>>,
    /// When a server was last heard from, and when robots must stop without.
    fence: Fence,
    /// The journal's id (see [`journal::instance_id`]).
    instance: String,
    /// The journal directory's files.
    journals: Arc<Journals>,
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    mut config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.servers.is_empty(),
        "at least one server address is needed"
    );
    // A robot runs from its package's directory: a relative work directory would
    // make the paths it is given (its variables file) point nowhere.
    config.work_dir = std::path::absolute(&config.work_dir).with_context(|| {
        format!(
            "cannot resolve the work directory {}",
            config.work_dir.display()
        )
    })?;
    info!(work_dir = %config.work_dir.display(), "runtime agent starting");
    for server in &config.servers {
        if crate::tls::sends_key_in_clear(server) {
            warn!(
                server,
                "INSECURE: the runtime key, every variable and every package go to this server \
                 unencrypted over plain HTTP; anyone on the network path can read them and act as \
                 this runtime. Use https:// (see README, Security)"
            );
        }
    }
    let tls = crate::tls::client_config(
        config.ca_file.as_deref(),
        config.servers.iter().map(String::as_str),
    )?;
    let journal_dir = config.work_dir.join("journal");
    let shared = !config.robot_users.is_empty();
    create_work_dirs(&config.work_dir, shared).with_context(|| {
        format!(
            "cannot create the work directory {}",
            config.work_dir.display()
        )
    })?;
    let boot = journal::boot_id();
    let instance = journal::instance_id(&journal_dir, boot.as_deref()).with_context(|| {
        format!(
            "cannot read or create the journal's id in {}",
            journal_dir.display()
        )
    })?;
    let guards = GuardPool::new(config.guard.clone());
    let (inbound_tx, mut inbound) = mpsc::unbounded_channel();
    let (reports_tx, mut reports) = mpsc::channel::<Report>(8192);
    let (prepared_tx, mut prepared) = mpsc::unbounded_channel();
    let (synced_tx, mut synced) = mpsc::unbounded_channel();
    let mut agent = Agent {
        packages: Arc::new(PackageCache::new(
            config.work_dir.join("packages"),
            config.key.clone(),
            &tls,
            shared,
        )?),
        users: Arc::new(Mutex::new(Pool::new(config.robot_users.clone()))),
        fence: Fence::default(),
        instance,
        journals: Journals::new(&journal_dir),
        config,
        held: HashMap::new(),
        outbound: None,
        server: None,
        reports: reports_tx,
        prepared: prepared_tx,
        synced: synced_tx,
        guards,
        most_held: 0,
        boot,
        deferred: Vec::new(),
    };
    agent.recover()?;
    agent.balance_guards();
    let mut link = tokio::spawn(connection::maintain(
        agent.config.servers.clone(),
        agent.config.key.clone(),
        tls,
        inbound_tx,
    ));
    // The loop runs as a task of its own, not in the caller's `block_on`: a
    // message between it and the connection's task then wakes the other task on
    // the same worker thread rather than across threads. Guards are spawned from
    // it, so from worker threads, which live as long as the runtime (the
    // parent-death signal follows the spawning thread).
    let (stop, mut stopped) = oneshot::channel::<()>();
    let mut looping = tokio::spawn(async move {
        let fence_check = tokio::time::sleep_until(agent.fence.next_check());
        tokio::pin!(fence_check);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = &mut fence_check => {
                    agent.fence_if_due();
                    fence_check.as_mut().reset(agent.fence.next_check());
                }
                Some(message) = inbound.recv() => agent.on_inbound(message),
                Some(report) = reports.recv(), if agent.unsynced_events() < MAX_UNSYNCED_EVENTS => {
                    let mut batch = vec![report];
                    while batch.len() < MAX_EVENTS_PER_MESSAGE {
                        match reports.try_recv() {
                            Ok(report) => batch.push(report),
                            Err(_) => break,
                        }
                    }
                    agent.on_reports(batch);
                }
                Some(done) = prepared.recv() => agent.on_prepared(done),
                Some(done) = synced.recv() => agent.on_synced(done),
            }
            if !agent.deferred.is_empty() {
                tokio::task::yield_now().await;
                agent.prepare_deferred();
            }
        }
        agent
    });
    tokio::pin!(shutdown);
    let ended = tokio::select! {
        _ = &mut shutdown => {
            let _ = stop.send(());
            (&mut looping).await
        }
        // Only a panic ends the loop on its own: it goes on up, as before.
        ended = &mut looping => ended,
    };
    let mut agent = match ended {
        Ok(agent) => agent,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => return Err(e.into()),
    };
    // Dropping the outbound side lets the connection close the WebSocket
    // cleanly; a connection that is down or stuck is cut.
    agent.outbound = None;
    if tokio::time::timeout(connection::CLOSE_TIMEOUT, &mut link)
        .await
        .is_err()
    {
        link.abort();
    }
    agent.guards.retire_all().await;
    info!("agent stopped");
    Ok(())
}

impl Agent {
    /// Reads back the journals of a previous run of the agent. A robot that was
    /// running died with that agent: its end is recorded as an error.
    fn recover(&mut self) -> anyhow::Result<()> {
        // No robot outlives its agent: what earlier robots left may hold credentials.
        clear_runs(&self.config.work_dir)?;
        for recovered in self.journals.recover_all(self.boot.as_deref())? {
            let assignment = recovered.assignment;
            let next_seq = recovered
                .events
                .last()
                .map_or(assignment.first_seq, |e| e.seq + 1);
            let ended = recovered
                .events
                .iter()
                .any(|e| matches!(e.kind, EventKind::Ended { .. } | EventKind::Lost { .. }));
            let execution_id = assignment.execution_id.clone();
            let sync_handle = recovered.journal.sync_handle()?;
            let mut held = Held::new(
                assignment,
                RunSecrets::default(),
                recovered.journal,
                sync_handle,
            );
            held.next_seq = next_seq;
            held.unacked = recovered.events;
            held.spawned = recovered.spawned;
            held.ended = ended;
            held.journal_synced = JournalSync::Done;
            if held.spawned && !held.ended {
                let reason = "the runtime agent stopped while the robot was running; the robot was stopped with it".to_owned();
                let event = held.number(EventKind::Lost { reason });
                held.journal.append_events(std::slice::from_ref(&event))?;
                held.unacked.push(event);
                held.ended = true;
            }
            info!(execution = %execution_id, spawned = held.spawned, "recovered from the journal");
            self.held.insert(execution_id, held);
        }
        Ok(())
    }

    fn send(&self, message: AgentMessage) {
        if let Some(outbound) = &self.outbound {
            let _ = outbound.send(message);
        }
    }

    fn send_events(&self, held: &Held, events: &[Event]) {
        for chunk in events.chunks(MAX_EVENTS_PER_MESSAGE) {
            self.send(AgentMessage::Events {
                execution_id: held.assignment.execution_id.clone(),
                lease: held.assignment.lease.clone(),
                events: chunk.to_vec(),
            });
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Connected { outbound, server } => {
                self.fence.heard();
                self.outbound = Some(outbound);
                self.server = Some(server);
                let held = self
                    .held
                    .values()
                    .map(|h| HeldLease {
                        execution_id: h.assignment.execution_id.clone(),
                        lease: h.assignment.lease.clone(),
                        spawned: h.spawned,
                    })
                    .collect();
                self.send(AgentMessage::Hello {
                    protocol: PROTOCOL_VERSION,
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                    slots: self.config.slots_asked(),
                    held,
                    instance: Some(self.instance.clone()),
                });
                for held in self.held.values() {
                    self.send_events(held, &held.unacked);
                }
            }
            Inbound::Disconnected => {
                self.outbound = None;
            }
            Inbound::Message(message) => {
                self.fence.heard();
                self.on_message(message)
            }
        }
    }

    /// Stops every running robot when no server has been heard from for the
    /// fence point (see [`crate::fence`]). Each ends ERROR, journaled, and is
    /// reported once a server is reached again.
    fn fence_if_due(&mut self) {
        if !self.fence.is_due() {
            return;
        }
        let silent_for = self.fence.silent_for();
        for (execution_id, held) in &mut self.held {
            if let Some(stop) = held.stop.take() {
                warn!(
                    execution = %execution_id,
                    silent_ms = silent_for.as_millis() as u64,
                    "no word from any server: stopping the robot (fenced)"
                );
                let _ = stop.send(Stop::Fence { silent_for });
            }
        }
    }

    /// The execution, if the lease is the one the agent holds it under.
    fn holding(&mut self, execution_id: &str, lease: &str) -> Option<&mut Held> {
        self.held
            .get_mut(execution_id)
            .filter(|h| h.assignment.lease == lease)
    }

    fn on_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                runtime_id,
                heartbeat_ms,
                runtime_timeout_ms,
                ..
            } => {
                // A server that does not say sends heartbeats every sixth of it.
                let timeout = runtime_timeout_ms.unwrap_or(heartbeat_ms.saturating_mul(6));
                self.fence
                    .set_timeout(std::time::Duration::from_millis(timeout.max(100)));
                info!(runtime = %runtime_id, "welcomed by the server")
            }
            ServerMessage::Heartbeat => {}
            ServerMessage::Assign(assignment) => self.on_assign(assignment),
            ServerMessage::Started {
                execution_id,
                lease,
            } => self.on_started(&execution_id, &lease),
            ServerMessage::Ack {
                execution_id,
                lease,
                seq,
            } => {
                let Some(held) = self.holding(&execution_id, &lease) else {
                    return;
                };
                held.unacked.retain(|e| e.seq > seq);
                if held.delivered() {
                    if let Some(held) = self.held.remove(&execution_id) {
                        held.journal.remove();
                    }
                }
            }
            ServerMessage::Cancel {
                execution_id,
                lease,
            } => {
                let Some(held) = self.holding(&execution_id, &lease) else {
                    return;
                };
                if let Some(stop) = held.stop.take() {
                    info!(execution = %execution_id, "canceling the robot");
                    let _ = stop.send(Stop::Cancel);
                } else if held.spawned && !held.ended {
                    // Granted, not launched yet: the launch ends it instead.
                    held.cancel_before_launch = true;
                }
            }
            ServerMessage::Revoked {
                execution_id,
                lease,
                reason,
            } => {
                if self.holding(&execution_id, &lease).is_none() {
                    return;
                }
                warn!(execution = %execution_id, reason, "lease revoked by the server");
                if let Some(mut held) = self.held.remove(&execution_id) {
                    if let Some(stop) = held.stop.take() {
                        let _ = stop.send(Stop::Revoke);
                    }
                    if let Some(Ok(run)) = held.ready.take() {
                        run.discard();
                    }
                    held.journal.remove();
                }
                self.balance_guards();
            }
        }
    }

    fn on_assign(&mut self, assignment: Assignment) {
        if self.held.contains_key(&assignment.execution_id) {
            warn!(execution = %assignment.execution_id, "assignment for an execution already held ignored");
            return;
        }
        // Credentials and secrets stay in memory: never journaled. An agent that
        // restarts before the start gives the assignment back (it never started),
        // and the next hand-out resolves them again.
        let secrets = RunSecrets::from_assignment(&assignment);
        let assignment = assignment.without_secrets();
        let journal = self
            .journals
            .create(&assignment, self.boot.clone())
            .and_then(|journal| match journal.sync_handle() {
                Ok(handle) => Ok((handle, journal)),
                Err(e) => {
                    journal.remove();
                    Err(e)
                }
            });
        let (sync_handle, journal) = match journal {
            Ok(journal) => journal,
            Err(e) => {
                // Without a journal nothing can be promised: leave it unstarted,
                // and the server hands it out again after a reconnect.
                warn!(execution = %assignment.execution_id, error = %e, "cannot journal an assignment");
                return;
            }
        };
        let execution_id = assignment.execution_id.clone();
        let lease = assignment.lease.clone();
        let packages = self.packages.clone();
        let server = self.server.clone().unwrap_or_default();
        let prepared = self.prepared.clone();
        let (robot_id, version, sha256, manifest) = (
            assignment.robot_id.clone(),
            assignment.robot_version,
            assignment.sha256.clone(),
            assignment.manifest.clone(),
        );
        let mut held = Held::new(assignment, secrets, journal, sync_handle);
        // Granted with the assignment: launched once prepared and journaled,
        // without a `Start` (a restart before the launch finds no spawn mark in
        // the journal, and the server then hands the run out again).
        held.spawned = held.assignment.start_granted;
        // Synced while the package is prepared and the start asked for: the
        // hand-over of the robot waits for it (see `journal`).
        self.sync_journal(&held, held.sync_handle.clone(), SyncOf::Creation);
        self.held.insert(execution_id.clone(), held);
        let parse = |manifest: &str| {
            RobotManifest::parse(manifest)
                .map_err(|e| format!("the robot's manifest is not valid on this runtime: {e}"))
        };
        if let Some(dir) = self.packages.cached(&robot_id, version, &sha256) {
            let outcome = parse(&manifest).map(|manifest| (dir, manifest));
            return self.on_prepared(Prepared {
                execution_id,
                lease,
                outcome,
            });
        }
        tokio::spawn(async move {
            let outcome = async {
                let manifest = parse(&manifest)?;
                let dir = packages
                    .prepare(&server, &robot_id, version, &sha256)
                    .await?;
                Ok((dir, manifest))
            }
            .await;
            let _ = prepared.send(Prepared {
                execution_id,
                lease,
                outcome,
            });
        });
    }

    fn on_prepared(&mut self, done: Prepared) {
        let run_dir = self.config.work_dir.join("runs").join(&done.execution_id);
        if self.holding(&done.execution_id, &done.lease).is_none() {
            return;
        }
        let (package_dir, manifest) = match done.outcome {
            Ok(prepared) => prepared,
            Err(why) => return self.fail(&done.execution_id, why),
        };
        let granted = self
            .held
            .get(&done.execution_id)
            .is_some_and(|held| held.assignment.start_granted);
        if !granted {
            self.send(AgentMessage::Start {
                execution_id: done.execution_id.clone(),
                lease: done.lease.clone(),
            });
        }
        self.deferred.push(Deferred {
            execution_id: done.execution_id,
            package_dir,
            manifest,
            run_dir,
        });
    }

    /// Prepares the runs whose start was just asked for, while the server
    /// answers, and launches those granted with their assignment. The loop
    /// calls it after letting the connection's task send the `Start`s: that
    /// task waits for this one's turn on the worker thread.
    fn prepare_deferred(&mut self) {
        let mut granted = Vec::new();
        for run in std::mem::take(&mut self.deferred) {
            let Some(held) = self.held.get_mut(&run.execution_id) else {
                continue;
            };
            let user = if self.config.robot_users.is_empty() {
                Ok(None)
            } else {
                HeldUser::take(&self.users).map(Some).ok_or_else(|| {
                    "cannot start the robot: every robot user runs a robot already".to_owned()
                })
            };
            held.ready = Some(user.and_then(|user| {
                let parts = RunParts {
                    package_dir: &run.package_dir,
                    manifest: &run.manifest,
                    variables: &held.assignment.variables,
                    secrets: &held.secrets,
                };
                RobotRun::prepare(
                    &run.execution_id,
                    run.run_dir,
                    parts,
                    self.config.robot_path.as_deref(),
                    user,
                )
            }));
            if held.spawned {
                granted.push(run.execution_id);
            }
        }
        self.balance_guards();
        // Granted already: launched now, or once the journal is synced.
        for execution_id in granted {
            self.launch(&execution_id);
        }
    }

    /// Syncs a journal on a blocking thread; [`Agent::on_synced`] hears the outcome.
    fn sync_journal(&self, held: &Held, handle: Arc<journal::SyncHandle>, of: SyncOf) {
        let synced = self.synced.clone();
        let execution_id = held.assignment.execution_id.clone();
        let lease = held.assignment.lease.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = handle.sync();
            let _ = synced.send(Synced {
                execution_id,
                lease,
                of,
                outcome,
            });
        });
    }

    fn on_synced(&mut self, done: Synced) {
        if let SyncOf::Events = done.of {
            return self.on_events_synced(done);
        }
        let Some(held) = self.holding(&done.execution_id, &done.lease) else {
            return;
        };
        held.journal_synced = match done.outcome {
            Ok(()) => JournalSync::Done,
            Err(e) => JournalSync::Failed(e.to_string()),
        };
        self.launch(&done.execution_id);
    }

    fn on_started(&mut self, execution_id: &str, lease: &str) {
        let Some(held) = self.holding(execution_id, lease) else {
            return;
        };
        if held.spawned || held.ready.is_none() {
            return;
        }
        // From here on the robot counts as started, on a reconnect too.
        held.spawned = true;
        self.launch(execution_id);
    }

    /// Hands the robot over to a guard once the server granted the start and the
    /// journal is synced, whichever comes last.
    fn launch(&mut self, execution_id: &str) {
        let Some(held) = self.held.get_mut(execution_id) else {
            return;
        };
        if !held.spawned || held.ended || held.ready.is_none() {
            return;
        }
        match &held.journal_synced {
            JournalSync::Done => {}
            JournalSync::Pending => return,
            JournalSync::Failed(e) => {
                let why = format!("cannot journal the start of the robot: {e}");
                if let Some(Ok(run)) = held.ready.take() {
                    run.discard();
                }
                return self.fail(execution_id, why);
            }
        }
        let run = match held.ready.take() {
            Some(Ok(run)) => run,
            Some(Err(why)) => return self.fail(execution_id, why),
            None => return,
        };
        if held.cancel_before_launch {
            run.discard();
            let why = "canceled before the robot started".to_owned();
            return self.report_end(execution_id, LogLevel::Warn, EndStatus::Canceled, why);
        }
        // Written before the hand-over: after a crash of the agent alone, its
        // absence proves the robot was not started (see `journal`).
        if let Err(e) = held.journal.mark_spawned() {
            run.discard();
            let why = format!("cannot journal the start of the robot: {e}");
            return self.fail(execution_id, why);
        }
        let (stop, stopped) = oneshot::channel();
        held.stop = Some(stop);
        let guard = match self.guards.take() {
            Ok(guard) => guard,
            Err(why) => {
                run.discard();
                return self.fail(execution_id, why);
            }
        };
        executor::start(run, guard, self.reports.clone(), stopped);
        info!(execution = %execution_id, "robot started");
        // The pool is refilled when a robot ends (see `on_reports`), not now: a
        // guard starting now would take CPU from the robot starting.
    }

    /// Keeps one idle guard, or one per run being prepared when more. Guards
    /// that come back from a run are kept for the next ones, up to the most
    /// runs held at once (runs often end together: a guard ended then would be
    /// started again for the next run). Called when a run is being prepared,
    /// ends or is revoked.
    fn balance_guards(&mut self) {
        let waiting = self.held.values().filter(|h| h.ready.is_some()).count();
        self.most_held = self.most_held.max(self.held.len());
        let least = waiting.max(1);
        self.guards.keep(least, self.most_held.max(least));
    }

    /// Ends an execution whose robot cannot start.
    fn fail(&mut self, execution_id: &str, why: String) {
        warn!(execution = %execution_id, why, "the robot cannot start");
        self.report_end(execution_id, LogLevel::Error, EndStatus::Error, why);
    }

    fn report_end(&mut self, execution_id: &str, level: LogLevel, status: EndStatus, why: String) {
        let reports = [
            log(level, why.clone()),
            EventKind::Ended {
                status,
                exit_code: None,
                reason: why,
            },
        ];
        self.on_reports(
            reports
                .into_iter()
                .map(|kind| Report {
                    execution_id: execution_id.to_owned(),
                    kind,
                })
                .collect(),
        );
    }

    /// Events written to the journals and not synced yet.
    fn unsynced_events(&self) -> usize {
        self.held.values().map(|held| held.unsynced.len()).sum()
    }

    /// Sends the events a journal sync made durable, and syncs those written
    /// meanwhile.
    fn on_events_synced(&mut self, done: Synced) {
        let Some(held) = self.holding(&done.execution_id, &done.lease) else {
            return;
        };
        if let Err(e) = &done.outcome {
            warn!(execution = %done.execution_id, error = %e, "cannot journal events; they are sent unjournaled");
        }
        let events = held.events_synced();
        let next = held.start_events_sync();
        let held = &self.held[&done.execution_id];
        self.send_events(held, &events);
        if let Some(handle) = next {
            self.sync_journal(held, handle, SyncOf::Events);
        }
    }

    fn on_reports(&mut self, batch: Vec<Report>) {
        let mut touched: Vec<(String, Vec<Event>)> = Vec::new();
        let mut any_ended = false;
        for report in batch {
            let Some(held) = self.held.get_mut(&report.execution_id) else {
                continue; // Revoked meanwhile: its robot's last words are dropped.
            };
            if held.ended {
                continue;
            }
            if matches!(
                report.kind,
                EventKind::Ended { .. } | EventKind::Lost { .. }
            ) {
                held.ended = true;
                held.stop = None;
                any_ended = true;
            }
            let event = held.number(report.kind);
            match touched
                .iter_mut()
                .find(|(id, _)| *id == report.execution_id)
            {
                Some((_, events)) => events.push(event),
                None => touched.push((report.execution_id, vec![event])),
            }
        }
        for (execution_id, events) in touched {
            let Some(held) = self.held.get_mut(&execution_id) else {
                continue;
            };
            if let Err(e) = held.journal.write_events(&events) {
                warn!(execution = %execution_id, error = %e, "cannot journal events; they are sent unjournaled");
            }
            held.unsynced.extend(events);
            if let Some(handle) = held.start_events_sync() {
                let held = &self.held[&execution_id];
                self.sync_journal(held, handle, SyncOf::Events);
            }
        }
        if any_ended {
            self.balance_guards();
        }
    }
}
