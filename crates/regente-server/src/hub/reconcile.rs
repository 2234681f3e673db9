//! A reconnecting agent's leases, settled against the store's.

use regente_core::ExecutionStatus;
use regente_proto::{HeldLease, ServerMessage};

use super::{Handed, Session};

impl Session {
    /// Settles what the agent holds against what the store says it holds, after
    /// a reconnect or an agent restart.
    pub(super) async fn reconcile(&mut self, held: Vec<HeldLease>) -> anyhow::Result<()> {
        let store = self.ctx.store.clone();
        let now = self.ctx.clock.now();
        let leases = store.leases_of_runtime(&self.runtime.id).await?;
        for lease in &leases {
            let holding = held
                .iter()
                .find(|h| h.execution_id == lease.execution_id && h.lease == lease.lease);
            match (lease.status, holding) {
                (ExecutionStatus::Running, Some(h)) if h.spawned => {
                    self.busy.insert(
                        lease.execution_id.clone(),
                        Handed {
                            lease: lease.lease.clone(),
                            spawned: true,
                            start_committed: true,
                            cancel_requested: false,
                            start_granted: false,
                            flow_step: true,
                        },
                    );
                    if lease.cancel_requested {
                        self.send(&ServerMessage::Cancel {
                            execution_id: lease.execution_id.clone(),
                            lease: lease.lease.clone(),
                        })
                        .await?;
                    }
                }
                (status, holding) => {
                    // Handed out but never spawned (the agent says so, or it never
                    // asked to start, or it never journaled a start granted to
                    // this very journal), or spawned and forgotten by the agent.
                    let spawned = status == ExecutionStatus::Running
                        && holding.is_none()
                        && !self.granted_to_this_journal(&lease.lease);
                    let reason = "the runtime no longer holds this execution: its agent restarted without it";
                    store
                        .end_lease(&lease.execution_id, &lease.lease, spawned, reason, now)
                        .await?;
                    if holding.is_some() {
                        self.revoke(
                            &lease.execution_id,
                            &lease.lease,
                            "handed out again after a reconnect",
                        )
                        .await?;
                    }
                }
            }
        }
        for h in &held {
            let known = leases
                .iter()
                .any(|l| l.execution_id == h.execution_id && l.lease == h.lease);
            if known {
                continue;
            }
            // An ended execution under the same lease: the agent resends its last
            // events and gets them acknowledged. Any other lease is over.
            if store
                .lease_status(&h.execution_id, &h.lease)
                .await?
                .is_none()
            {
                self.revoke(
                    &h.execution_id,
                    &h.lease,
                    "the server ended this lease while the runtime was away",
                )
                .await?;
            }
        }
        Ok(())
    }
}
