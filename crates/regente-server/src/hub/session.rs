//! One connected runtime agent: the server's side of `regente-proto`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use regente_core::ExecutionStatus;
use regente_proto::{AgentMessage, EventKind, HeldLease, ServerMessage, PROTOCOL_VERSION};
use regente_store::{Change, Claimed, EventRecord, EventsOutcome, Runtime};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Command, LeaseOrder};
use crate::service::credentials::{self, shown_variables, Handout, RunToHand};
use crate::service::{new_id, Context};

#[path = "reconcile.rs"]
mod reconcile;

/// How long an agent has to say hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session ended, for the log.
type Closed = Result<&'static str, anyhow::Error>;

struct Session {
    ctx: Arc<Context>,
    runtime: Runtime,
    socket: WebSocket,
    slots: usize,
    /// The agent's journal id, when its hello names one: the start of each
    /// hand-out is then committed as it is handed out, while the agent
    /// journals the assignment, and the agent's `Start` is answered at once.
    /// Such leases are `{instance}.{id}` (see `granted_to_this_journal`).
    granting_to: Option<String>,
    /// Executions handed to the agent and not ended.
    busy: HashMap<String, Handed>,
    /// When the agent was last heard from (the store's clock): written as the
    /// runtime's last sight at each heartbeat period and when the session ends,
    /// so that the lost-runtime sweep counts the silence from the last word.
    last_heard_at: regente_store::Millis,
}

struct Handed {
    lease: String,
    /// Whether the server granted the start: the robot may have been spawned.
    spawned: bool,
    /// The store has it RUNNING, committed as it was handed out: the agent's
    /// `Start` is answered at once. Until that answer the agent cannot have
    /// spawned it, so a session ending before it releases the run.
    start_committed: bool,
    /// Canceled before the agent asked to start it: its `Start` ends it
    /// CANCELED instead (see `note_cancel`).
    cancel_requested: bool,
    /// Its assignment granted the start (`spawned` from its send on). An agent
    /// that predates that field asks anyway, and is answered as for a start
    /// committed at the hand-out: a cancel before that `Start` ends it.
    start_granted: bool,
    /// A step of a flow run (or, when not known, maybe one): its end wakes the
    /// flow engine.
    flow_step: bool,
}

impl Handed {
    /// A run just claimed: nothing granted yet, its start maybe committed (its
    /// assignment then grants it: see `hand_out`).
    fn claimed(claimed: &Claimed) -> Handed {
        Handed {
            lease: claimed.lease.clone(),
            spawned: false,
            start_committed: claimed.started,
            cancel_requested: false,
            start_granted: false,
            flow_step: claimed.flow_step,
        }
    }
}

/// Serves one agent connection, made with the key whose hash is `key_hash`,
/// until it closes.
pub async fn serve(ctx: Arc<Context>, runtime: Runtime, key_hash: String, mut socket: WebSocket) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<AgentMessage>(&text).ok(),
        _ => None,
    };
    let Some(AgentMessage::Hello {
        protocol,
        slots,
        held,
        agent_version,
        instance,
    }) = hello
    else {
        close(&mut socket, "expected a hello message first").await;
        return;
    };
    if protocol != PROTOCOL_VERSION {
        let reason = format!(
            "protocol version {protocol} is not supported: this server speaks version {PROTOCOL_VERSION}"
        );
        warn!(runtime = %runtime.id, %agent_version, "{reason}");
        close(&mut socket, &reason).await;
        return;
    }
    // Seen before registered: the lost-runtime check skips a runtime that is either.
    // The session's id tells the store which connection holds the runtime online.
    let session_id = new_id();
    if let Err(e) = ctx
        .store
        .runtime_connected(&runtime.id, &session_id, ctx.clock.now())
        .await
    {
        warn!(runtime = %runtime.id, error = format!("{e:#}"), "cannot record a runtime's visit");
    }
    let (connection, commands) = ctx.hub.register(&runtime.id);
    // A key replaced between the upgrade and the registration: its notice
    // found no session to close, so the key is looked at again.
    let key_replaced =
        !crate::service::runtimes::key_is_current(&ctx, &runtime.id, &key_hash).await;
    info!(runtime = %runtime.id, %agent_version, slots, "runtime connected");
    let runtime_id = runtime.id.clone();
    // The admin's setting is the most an agent gets; it may ask for fewer.
    let runtime_slots = runtime.slots.max(1);
    if slots > runtime_slots {
        warn!(runtime = %runtime_id, asked = slots, allowed = runtime_slots, "the agent asked for more slots than the runtime is set for: capped");
    }
    let mut session = Session {
        ctx: ctx.clone(),
        runtime,
        socket,
        slots: match slots {
            0 => runtime_slots,
            asked => asked.min(runtime_slots),
        } as usize,
        granting_to: instance.filter(|id| is_instance_id(id)),
        busy: HashMap::new(),
        last_heard_at: ctx.clock.now(),
    };
    let closed = if key_replaced {
        close(
            &mut session.socket,
            "the runtime's key was replaced: this key is no longer valid",
        )
        .await;
        Ok("its key was replaced")
    } else {
        session.run(held, commands).await
    };
    // Written before the session leaves the hub: from then on the sweep goes by it.
    if let Err(e) = ctx
        .store
        .touch_runtime(&runtime_id, session.last_heard_at)
        .await
    {
        warn!(runtime = %runtime_id, error = format!("{e:#}"), "cannot record a runtime's last word");
    }
    ctx.hub.unregister(&runtime_id, connection);
    // Hand-outs this connection made that never started go back to the queue
    // now: the agent will not ask to start them over a dead connection. (A start
    // committed as the run was handed out counts as not started until the
    // agent's `Start` was answered: without `Started` no robot runs.)
    for (execution_id, handed) in session.busy.iter().filter(|(_, h)| !h.spawned) {
        let reason = "the runtime disconnected before starting it";
        let released = ctx
            .store
            .end_lease(execution_id, &handed.lease, false, reason, ctx.clock.now())
            .await;
        if let Err(e) = released {
            warn!(execution = %execution_id, error = format!("{e:#}"), "cannot release an unstarted lease");
        }
    }
    // Offline unless another connection of the runtime (here or on another
    // server) has taken over meanwhile.
    let reason = match &closed {
        Ok(why) => format!("disconnected: {why}"),
        Err(e) => format!("disconnected: the session failed: {e:#}"),
    };
    let left = ctx
        .store
        .runtime_disconnected(&runtime_id, &session_id, &reason, ctx.clock.now())
        .await;
    if let Err(e) = left {
        warn!(runtime = %runtime_id, error = format!("{e:#}"), "cannot record a runtime's departure");
    }
    ctx.hub.wake(&runtime_id);
    match closed {
        Ok(why) => info!(runtime = %runtime_id, why, "runtime disconnected"),
        Err(e) => warn!(runtime = %runtime_id, error = format!("{e:#}"), "runtime session failed"),
    }
    // A runtime that left may have freed the queue for nobody, but its pending
    // work stays queued until it (or another connection of it) comes back.
}

/// A journal id as agents make them (see `regente_runtime::journal`): folded
/// into leases, so kept short and plain.
fn is_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn close(socket: &mut WebSocket, reason: &str) {
    let frame = CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: reason.chars().take(120).collect::<String>().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

impl Session {
    /// Whether `lease` was granted with its assignment to the journal this
    /// agent reported: then a robot of it could only have started after the
    /// journal held it (see `regente_runtime::journal::instance_id`).
    fn granted_to_this_journal(&self, lease: &str) -> bool {
        self.granting_to.as_deref().is_some_and(|instance| {
            lease
                .strip_prefix(instance)
                .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    async fn run(
        &mut self,
        held: Vec<HeldLease>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Closed {
        let timeout = self.ctx.config.runtime_timeout;
        let heartbeat = timeout / 6;
        self.send(&ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            runtime_id: self.runtime.id.clone(),
            heartbeat_ms: heartbeat.as_millis() as u64,
            runtime_timeout_ms: Some(timeout.as_millis() as u64),
        })
        .await?;
        self.reconcile(held).await?;
        self.dispatch().await?;
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut heard_since_tick = true;
        // Silent this long, the session ends and the sweep takes over at once
        // (see `sweeper::lost_after`).
        let silence_limit = super::sweeper::lost_after(timeout);
        let silence = tokio::time::sleep(silence_limit);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                message = self.socket.recv() => {
                    let text = match message {
                        None | Some(Ok(Message::Close(_))) => return Ok("the agent closed the connection"),
                        Some(Err(e)) => return Err(e.into()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(_)) => continue,
                    };
                    last_heard = Instant::now();
                    self.last_heard_at = self.ctx.clock.now();
                    heard_since_tick = true;
                    match serde_json::from_str::<AgentMessage>(&text) {
                        Ok(message) => self.handle(message).await?,
                        Err(e) => warn!(runtime = %self.runtime.id, error = %e, "unreadable agent message ignored"),
                    }
                }
                command = commands.recv() => match command {
                    None | Some(Command::Replaced) => {
                        close(&mut self.socket, "another connection of this runtime took over").await;
                        return Ok("replaced by a newer connection");
                    }
                    Some(Command::KeyChanged) => {
                        close(&mut self.socket, "the runtime's key was replaced: this key is no longer valid").await;
                        return Ok("its key was replaced");
                    }
                    Some(command) => self.command(command).await?,
                },
                _ = &mut silence => {
                    if last_heard.elapsed() >= silence_limit {
                        close(&mut self.socket, "no heartbeat").await;
                        return Ok("no heartbeat within the runtime timeout");
                    }
                    silence.as_mut().reset((last_heard + silence_limit).into());
                }
                _ = tick.tick() => {
                    if heard_since_tick {
                        self.ctx.store.touch_runtime(&self.runtime.id, self.last_heard_at).await?;
                        heard_since_tick = false;
                    }
                    self.send(&ServerMessage::Heartbeat).await?;
                }
            }
        }
    }

    async fn send(&mut self, message: &ServerMessage) -> anyhow::Result<()> {
        let text = serde_json::to_string(message)?;
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    async fn revoke(
        &mut self,
        execution_id: &str,
        lease: &str,
        reason: &str,
    ) -> anyhow::Result<()> {
        // Only this lease's hand-out: the execution may be handed out again
        // under another (an old lease's late report is revoked after that).
        if self
            .busy
            .get(execution_id)
            .is_some_and(|handed| handed.lease == lease)
        {
            self.busy.remove(execution_id);
        }
        self.send(&ServerMessage::Revoked {
            execution_id: execution_id.to_owned(),
            lease: lease.to_owned(),
            reason: reason.to_owned(),
        })
        .await
    }

    /// Hands out queued executions while slots are free. To an agent that
    /// names its journal, each start is then committed at once, while the agent
    /// journals the assignment and prepares the run, so that its `Start` is
    /// answered without a commit on the way; the agent still spawns nothing
    /// before that answer. A run started with the end that freed its slot
    /// comes with its start granted instead: the agent asks nothing.
    async fn dispatch(&mut self) -> anyhow::Result<()> {
        self.dispatch_with(None).await
    }

    /// [`Session::dispatch`], handing out `claimed` first: a run claimed for
    /// this runtime with the end that freed its slot.
    async fn dispatch_with(&mut self, mut claimed: Option<Claimed>) -> anyhow::Result<()> {
        loop {
            let to_start = self.hand_out(claimed.take()).await?;
            if to_start.is_empty() {
                return Ok(());
            }
            let now = self.ctx.clock.now();
            let (store, runtime_id) = (self.ctx.store.clone(), self.runtime.id.clone());
            // Committed together (one group commit, one fsync).
            let outcomes = futures_util::future::join_all(
                to_start
                    .iter()
                    .map(|(id, lease)| store.start(&runtime_id, id, lease, now)),
            )
            .await;
            let mut refused = false;
            for ((execution_id, lease), outcome) in to_start.into_iter().zip(outcomes) {
                if !outcome? {
                    refused = true;
                    self.started(execution_id, lease, false).await?;
                    continue;
                }
                if let Some(handed) = self.busy.get_mut(&execution_id) {
                    handed.start_committed = true;
                }
                self.ctx
                    .hub
                    .changed(super::Changed::Execution(execution_id));
            }
            // A refused start freed its slot.
            if !refused {
                return Ok(());
            }
        }
    }

    /// Claims and assigns queued executions while slots are free; the runs the
    /// server is to start itself (execution and lease).
    async fn hand_out(
        &mut self,
        mut first: Option<Claimed>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut to_start = Vec::new();
        // A run claimed already is handed out whatever the count: its slot was
        // freed for it.
        while first.is_some() || self.busy.len() < self.slots {
            let claimed = match first.take() {
                Some(claimed) => claimed,
                None => {
                    let lease = self.new_lease();
                    let claimed = self.ctx.store.claim_next(&self.runtime.id, &lease).await?;
                    let Some(claimed) = claimed else { break };
                    claimed
                }
            };
            debug!(execution = %claimed.execution_id, runtime = %self.runtime.id, "assigned");
            let (credentials, secret_variables) =
                match vault_handout(&self.ctx, &self.runtime, &claimed).await? {
                    Handout::Ready {
                        credentials,
                        secret_variables,
                    } => (credentials, secret_variables),
                    Handout::Refused(why) => {
                        self.busy.remove(&claimed.execution_id);
                        self.refuse(&claimed, &why).await?;
                        continue;
                    }
                };
            let mut handed = Handed::claimed(&claimed);
            // An assignment that grants the start may start the robot from the
            // moment it may have left: from then on only the agent's journal
            // (at a reconnect) or the lost-runtime sweep ends the run.
            handed.spawned = claimed.started;
            handed.start_granted = claimed.started;
            self.busy.insert(claimed.execution_id.clone(), handed);
            if self.granting_to.is_some() && !claimed.started {
                to_start.push((claimed.execution_id.clone(), claimed.lease.clone()));
            }
            self.send(&ServerMessage::Assign(regente_proto::Assignment {
                execution_id: claimed.execution_id,
                lease: claimed.lease,
                robot_id: claimed.robot_id,
                robot_version: claimed.robot_version,
                sha256: claimed.sha256,
                manifest: claimed.manifest,
                variables: shown_variables(&claimed.variables),
                first_seq: claimed.first_seq,
                credentials,
                secret_variables,
                start_granted: claimed.started,
            }))
            .await?;
        }
        Ok(to_start)
    }

    /// Notes a cancel of a run whose start was committed at the hand-out (or
    /// granted with it) and not asked for yet: should the agent ask, its
    /// `Start` then ends the run instead of starting it.
    fn note_cancel(&mut self, execution_id: &str, lease: &str) {
        if let Some(handed) = self
            .busy
            .get_mut(execution_id)
            .filter(|h| h.lease == lease && (!h.spawned || h.start_granted))
        {
            handed.cancel_requested = true;
        }
    }

    /// Answers a start the store committed (`Started`), or refused because the
    /// lease ended meanwhile (`Revoked`); whether it started.
    async fn started(
        &mut self,
        execution_id: String,
        lease: String,
        started: bool,
    ) -> anyhow::Result<bool> {
        if !started {
            warn!(execution = %execution_id, runtime = %self.runtime.id, "start refused: the lease has ended");
            self.revoke(
                &execution_id,
                &lease,
                "the execution was canceled or handed out again before it started",
            )
            .await?;
            return Ok(false);
        }
        let flow_step = self.is_flow_step(&execution_id);
        self.busy.insert(
            execution_id.clone(),
            Handed {
                lease: lease.clone(),
                spawned: true,
                start_committed: true,
                cancel_requested: false,
                start_granted: false,
                flow_step,
            },
        );
        self.ctx
            .hub
            .changed(super::Changed::Execution(execution_id.clone()));
        self.send(&ServerMessage::Started {
            execution_id,
            lease,
        })
        .await?;
        Ok(true)
    }

    /// A lease for a hand-out: to an agent that names its journal, one that
    /// says so (see [`Session::granted_to_this_journal`]).
    fn new_lease(&self) -> String {
        match &self.granting_to {
            Some(instance) => format!("{instance}.{}", new_id()),
            None => new_id(),
        }
    }

    /// Whether a run's end concerns the flow engine: when this session did not
    /// hand it out, maybe.
    fn is_flow_step(&self, execution_id: &str) -> bool {
        self.busy.get(execution_id).is_none_or(|h| h.flow_step)
    }

    /// Ends a handed-out run ERROR before its robot starts.
    async fn refuse(&mut self, claimed: &Claimed, why: &str) -> anyhow::Result<()> {
        warn!(execution = %claimed.execution_id, runtime = %self.runtime.id, reason = why, "run refused before its start");
        let outcome = self
            .ctx
            .store
            .refuse_start(
                &claimed.execution_id,
                &claimed.lease,
                why,
                self.ctx.clock.now(),
            )
            .await?;
        if matches!(outcome, regente_store::LostOutcome::Ended(_)) {
            let execution_id = &claimed.execution_id;
            crate::service::execution_ended(&self.ctx, execution_id, claimed.flow_step).await;
        }
        Ok(())
    }

    async fn command(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Wake => self.dispatch().await,
            Command::Resync => {
                let leases = self.ctx.store.leases_of_runtime(&self.runtime.id).await?;
                for lease in leases.into_iter().filter(|l| l.cancel_requested) {
                    self.note_cancel(&lease.execution_id, &lease.lease);
                    let running_here = self
                        .busy
                        .get(&lease.execution_id)
                        .is_some_and(|h| h.spawned && h.lease == lease.lease);
                    if running_here {
                        self.send(&ServerMessage::Cancel {
                            execution_id: lease.execution_id,
                            lease: lease.lease,
                        })
                        .await?;
                    }
                }
                self.dispatch().await
            }
            Command::Cancel(order) => {
                let LeaseOrder {
                    execution_id,
                    lease,
                    ..
                } = *order;
                self.note_cancel(&execution_id, &lease);
                self.send(&ServerMessage::Cancel {
                    execution_id,
                    lease,
                })
                .await
            }
            Command::Revoke(order) => {
                self.revoke(&order.execution_id, &order.lease, &order.reason)
                    .await?;
                self.dispatch().await
            }
            Command::Replaced | Command::KeyChanged => Ok(()),
        }
    }

    async fn handle(&mut self, message: AgentMessage) -> anyhow::Result<()> {
        let store = self.ctx.store.clone();
        match message {
            AgentMessage::Hello { .. } => {
                warn!(runtime = %self.runtime.id, "second hello ignored");
            }
            AgentMessage::Heartbeat => {}
            AgentMessage::Start {
                execution_id,
                lease,
            } => {
                let handed = self.busy.get(&execution_id).filter(|h| h.lease == lease);
                let committed = handed.is_some_and(|h| h.start_committed);
                if committed && handed.is_some_and(|h| h.cancel_requested) {
                    let reason = "the runtime had not started it yet";
                    let now = self.ctx.clock.now();
                    let outcome = store
                        .end_lease(&execution_id, &lease, false, reason, now)
                        .await?;
                    if matches!(outcome, regente_store::LostOutcome::Ended(_)) {
                        let flow_step = self.is_flow_step(&execution_id);
                        crate::service::execution_ended(&self.ctx, &execution_id, flow_step).await;
                    }
                    self.revoke(&execution_id, &lease, reason).await?;
                    return self.dispatch().await;
                }
                let started = committed || {
                    let now = self.ctx.clock.now();
                    store
                        .start(&self.runtime.id, &execution_id, &lease, now)
                        .await?
                };
                if !self.started(execution_id, lease, started).await? {
                    self.dispatch().await?;
                }
            }
            AgentMessage::Events {
                execution_id,
                lease,
                events,
            } => {
                // A `lost` event ends the batch: what precedes it is stored as
                // usual, and the attempt is then ended the way a lost runtime's is.
                let mut events = events;
                let lost = events
                    .iter()
                    .position(|e| matches!(e.kind, EventKind::Lost { .. }))
                    .map(|at| events.drain(at..).next().expect("the lost event"));
                let records: Vec<EventRecord> = events.into_iter().filter_map(record_of).collect();
                // Should the batch end a run this session handed out, its slot
                // is filled in the same commit, unless a `lost` event has more
                // to do first; to an agent that names its journal, the run
                // claimed is started in that commit too (see `dispatch`).
                let fill_slot = lost.is_none() && self.busy.contains_key(&execution_id);
                let (outcome, claimed) = if fill_slot {
                    let next_lease = self.new_lease();
                    let start_at = self.granting_to.is_some().then(|| self.ctx.clock.now());
                    store
                        .record_events_and_claim(
                            &self.runtime.id,
                            &execution_id,
                            &lease,
                            &records,
                            &next_lease,
                            start_at,
                        )
                        .await?
                } else {
                    let stored = store
                        .record_events(&self.runtime.id, &execution_id, &lease, &records)
                        .await?;
                    (stored, None)
                };
                if let Some(claimed) = &claimed {
                    // Held from now on: should the connection break before its
                    // hand-out, the session's end puts it back in the queue.
                    let handed = Handed::claimed(claimed);
                    self.busy.insert(claimed.execution_id.clone(), handed);
                    if claimed.started {
                        let id = claimed.execution_id.clone();
                        self.ctx.hub.changed(super::Changed::Execution(id));
                    }
                }
                match outcome {
                    EventsOutcome::Stored {
                        mut acked,
                        mut ended,
                    } => {
                        if let Some(lost) = lost.filter(|l| !ended && l.seq == acked + 1) {
                            let EventKind::Lost { reason } = lost.kind else {
                                unreachable!()
                            };
                            let outcome = store
                                .end_lease(
                                    &execution_id,
                                    &lease,
                                    true,
                                    &reason,
                                    self.ctx.clock.now(),
                                )
                                .await?;
                            info!(execution = %execution_id, ?outcome, "the agent lost its robot");
                            acked = lost.seq;
                            ended = true;
                        }
                        self.ctx
                            .hub
                            .changed(super::Changed::Execution(execution_id.clone()));
                        self.send(&ServerMessage::Ack {
                            execution_id: execution_id.clone(),
                            lease,
                            seq: acked,
                        })
                        .await?;
                        if ended {
                            let flow_step = self.is_flow_step(&execution_id);
                            crate::service::execution_ended(&self.ctx, &execution_id, flow_step)
                                .await;
                            self.busy.remove(&execution_id);
                            self.dispatch_with(claimed).await?;
                        }
                    }
                    EventsOutcome::Revoked => {
                        // Recorded, never written: a stale agent must not change an
                        // execution whose lease has ended.
                        warn!(
                            execution = %execution_id,
                            runtime = %self.runtime.id,
                            lease = %lease,
                            n_events = records.len(),
                            "events refused: the lease has ended"
                        );
                        self.revoke(&execution_id, &lease, "this lease has ended")
                            .await?;
                        self.dispatch().await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The store's form of an event; `None` for `lost`, which is no change of its own.
fn record_of(event: regente_proto::Event) -> Option<EventRecord> {
    let change = match event.kind {
        EventKind::Log { level, message } => Change::Log {
            level: level.as_str().to_owned(),
            message,
        },
        EventKind::Progress { value } => Change::Progress(value),
        EventKind::Return { value } => Change::Return(value),
        EventKind::Ended {
            status,
            exit_code,
            reason,
        } => Change::Ended {
            status: match status {
                regente_proto::EndStatus::Finished => ExecutionStatus::Finished,
                regente_proto::EndStatus::Error => ExecutionStatus::Error,
                regente_proto::EndStatus::Canceled => ExecutionStatus::Canceled,
            },
            exit_code,
            reason,
        },
        EventKind::Lost { .. } => return None,
    };
    Some(EventRecord {
        seq: event.seq,
        time: event.time,
        change,
    })
}

/// What the vault hands this run: its robot's credentials and its secret
/// variables, resolved now (never when queued), or why it cannot start.
async fn vault_handout(
    ctx: &Context,
    runtime: &Runtime,
    claimed: &Claimed,
) -> anyhow::Result<Handout> {
    let manifest = match ctx.manifests.parse_text(&claimed.sha256, &claimed.manifest) {
        Ok(manifest) => manifest,
        // The agent says so in words when it parses it.
        Err(_) => {
            return Ok(Handout::Ready {
                credentials: Default::default(),
                secret_variables: Default::default(),
            })
        }
    };
    let run = RunToHand {
        organization_id: &runtime.organization_id,
        runtime_id: &runtime.id,
        execution_id: &claimed.execution_id,
        robot_id: &claimed.robot_id,
        manifest: &manifest,
        variables: &claimed.variables,
    };
    credentials::resolve_for_run(ctx, run)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve a run's credentials: {e}"))
}
