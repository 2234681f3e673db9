//! The agent's state and main loop. One task owns everything; the connection,
//! package preparations and robots talk to it through channels.
//!
//! An assignment's life on the agent: `Assign` -> journal created, package
//! prepared -> `Start` sent -> `Started` received -> journal marks it spawned,
//! robot runs -> its reports become numbered events, journaled (synced) before
//! they are sent -> `Ack`s trim them -> once the `Ended` event is acknowledged
//! the journal is removed.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use regente_core::RobotManifest;
use regente_proto::{
    AgentMessage, Assignment, EndStatus, Event, EventKind, HeldLease, LogLevel, ServerMessage,
    PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::connection::{self, Inbound};
use crate::executor::{self, Report, RobotRun, Stop};
use crate::journal::Journal;
use crate::packages::PackageCache;
use crate::robot_output::log;

/// Events per message, so that a chatty robot's backlog goes in bounded pieces.
const MAX_EVENTS_PER_MESSAGE: usize = 1000;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Server base URLs (`http://host:port`), tried in turn.
    pub servers: Vec<String>,
    pub key: String,
    pub work_dir: PathBuf,
    /// Robots run at once; 0 leaves it to the runtime's setting on the server.
    pub slots: u32,
    /// The `regente` executable, used as each robot's guard process.
    pub guard: Option<PathBuf>,
}

/// One execution the agent holds.
struct Held {
    assignment: Assignment,
    journal: Journal,
    next_seq: u64,
    /// Sent (or to send) and not acknowledged yet, in order.
    unacked: Vec<Event>,
    spawned: bool,
    ended: bool,
    /// Where the package was unpacked, once prepared.
    package_dir: Option<PathBuf>,
    stop: Option<oneshot::Sender<Stop>>,
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
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the agent until `shutdown` completes.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.servers.is_empty(),
        "at least one server address is needed"
    );
    let journal_dir = config.work_dir.join("journal");
    std::fs::create_dir_all(&journal_dir).with_context(|| {
        format!(
            "cannot create the work directory {}",
            config.work_dir.display()
        )
    })?;
    let (inbound_tx, mut inbound) = mpsc::unbounded_channel();
    let (reports_tx, mut reports) = mpsc::channel::<Report>(8192);
    let (prepared_tx, mut prepared) = mpsc::unbounded_channel();
    let mut agent = Agent {
        packages: Arc::new(PackageCache::new(
            config.work_dir.join("packages"),
            config.key.clone(),
        )),
        config,
        held: HashMap::new(),
        outbound: None,
        server: None,
        reports: reports_tx,
        prepared: prepared_tx,
    };
    agent.recover(&journal_dir)?;
    let link = tokio::spawn(connection::maintain(
        agent.config.servers.clone(),
        agent.config.key.clone(),
        inbound_tx,
    ));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(message) = inbound.recv() => agent.on_inbound(message),
            Some(report) = reports.recv() => {
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
        }
    }
    link.abort();
    info!("agent stopped");
    Ok(())
}

impl Agent {
    /// Reads back the journals of a previous run of the agent. A robot that was
    /// running died with that agent: its end is recorded as an error.
    fn recover(&mut self, journal_dir: &std::path::Path) -> anyhow::Result<()> {
        for recovered in Journal::recover_all(journal_dir)? {
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
            let mut held = Held {
                assignment,
                journal: recovered.journal,
                next_seq,
                unacked: recovered.events,
                spawned: recovered.spawned,
                ended,
                package_dir: None,
                stop: None,
            };
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
                    slots: self.config.slots,
                    held,
                });
                for held in self.held.values() {
                    self.send_events(held, &held.unacked);
                }
            }
            Inbound::Disconnected => {
                self.outbound = None;
            }
            Inbound::Message(message) => self.on_message(message),
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
            ServerMessage::Welcome { runtime_id, .. } => {
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
                if held.ended && held.unacked.is_empty() {
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
                    held.journal.remove();
                }
            }
        }
    }

    fn on_assign(&mut self, assignment: Assignment) {
        if self.held.contains_key(&assignment.execution_id) {
            warn!(execution = %assignment.execution_id, "assignment for an execution already held ignored");
            return;
        }
        let journal = match Journal::create(&self.config.work_dir.join("journal"), &assignment) {
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
        self.held.insert(
            execution_id.clone(),
            Held {
                next_seq: assignment.first_seq,
                assignment,
                journal,
                unacked: Vec::new(),
                spawned: false,
                ended: false,
                package_dir: None,
                stop: None,
            },
        );
        tokio::spawn(async move {
            let outcome = async {
                let manifest = RobotManifest::parse(&manifest).map_err(|e| {
                    format!("the robot's manifest is not valid on this runtime: {e}")
                })?;
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
        let Some(held) = self.holding(&done.execution_id, &done.lease) else {
            return;
        };
        match done.outcome {
            Ok((dir, _)) => {
                held.package_dir = Some(dir);
                self.send(AgentMessage::Start {
                    execution_id: done.execution_id,
                    lease: done.lease,
                });
            }
            Err(why) => {
                warn!(execution = %done.execution_id, why, "the robot cannot start");
                let reports = [
                    log(LogLevel::Error, why.clone()),
                    EventKind::Ended {
                        status: EndStatus::Error,
                        exit_code: None,
                        reason: why,
                    },
                ];
                self.on_reports(
                    reports
                        .into_iter()
                        .map(|kind| Report {
                            execution_id: done.execution_id.clone(),
                            kind,
                        })
                        .collect(),
                );
            }
        }
    }

    fn on_started(&mut self, execution_id: &str, lease: &str) {
        let guard = self.config.guard.clone();
        let run_dir = self.config.work_dir.join("runs").join(execution_id);
        let reports = self.reports.clone();
        let Some(held) = self.holding(execution_id, lease) else {
            return;
        };
        if held.spawned {
            return;
        }
        let (Some(package_dir), Ok(manifest)) = (
            held.package_dir.clone(),
            RobotManifest::parse(&held.assignment.manifest),
        ) else {
            return;
        };
        // Recorded before the spawn: after a crash, the agent knows the robot may
        // have run, and never reports it as unstarted.
        if let Err(e) = held.journal.mark_spawned() {
            warn!(execution = %execution_id, error = %e, "cannot journal a start; the robot is not started");
            return;
        }
        held.spawned = true;
        let (stop, stopped) = oneshot::channel();
        held.stop = Some(stop);
        let run = RobotRun {
            execution_id: execution_id.to_owned(),
            package_dir,
            run_dir,
            manifest,
            variables: held.assignment.variables.clone(),
            guard,
        };
        info!(execution = %execution_id, "robot starting");
        tokio::spawn(executor::run(run, reports, stopped));
    }

    fn on_reports(&mut self, batch: Vec<Report>) {
        let mut touched: Vec<(String, Vec<Event>)> = Vec::new();
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
            if let Err(e) = held.journal.append_events(&events) {
                warn!(execution = %execution_id, error = %e, "cannot journal events; they are sent unjournaled");
            }
            held.unacked.extend(events.iter().cloned());
            let held = &self.held[&execution_id];
            self.send_events(held, &events);
        }
    }
}

impl Held {
    fn number(&mut self, kind: EventKind) -> Event {
        let event = Event {
            seq: self.next_seq,
            time: now_millis(),
            kind,
        };
        self.next_seq += 1;
        event
    }
}
