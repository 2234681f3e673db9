//! Several servers on one PostgreSQL database: notices through LISTEN/NOTIFY,
//! the shared token secret, and the leader's advisory lock.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::{PgListener, PgPool};
use sqlx::Connection as _;
use tokio::sync::broadcast;
use tracing::warn;

use super::group::{GroupFailed, Grouping};
use super::{other, PostgresStore};
use crate::{ClusterStore, Notice, Result};

/// The LISTEN/NOTIFY channel servers announce work, cancels and revocations on.
const NOTICE_CHANNEL: &str = "regente_notices";
/// The advisory lock whose holder runs the once-per-cluster duties.
const LEADER_LOCK: i64 = 0x5245_4745_4e54_4501;

/// Listens for notices and relays them. NOTIFY reaches only sessions listening at
/// commit time and is never replayed, so every (re)start of the listener is
/// followed by a `Resync`, which makes each session look at the queue again.
pub(super) async fn relay_notices(pool: PgPool, notices: broadcast::Sender<Notice>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(NOTICE_CHANNEL).await {
                Ok(()) => {
                    let _ = notices.send(Notice::Resync);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(notification)) => {
                                if let Some(notice) = decode_notice(notification.payload()) {
                                    let _ = notices.send(notice);
                                }
                            }
                            // The connection was lost; the next call reconnects.
                            Ok(None) => {
                                let _ = notices.send(Notice::Resync);
                            }
                            Err(e) => {
                                warn!(error = %e, "lost the notice listener");
                                break;
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot listen for notices"),
            },
            Err(e) => warn!(error = %e, "cannot connect the notice listener"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn encode_notice(notice: &Notice) -> String {
    let value = match notice {
        Notice::Work { runtime_id } => json!({"kind": "work", "runtime_id": runtime_id}),
        Notice::Cancel {
            runtime_id,
            execution_id,
            lease,
        } => {
            json!({"kind": "cancel", "runtime_id": runtime_id, "execution_id": execution_id, "lease": lease})
        }
        Notice::Revoke {
            runtime_id,
            execution_id,
            lease,
            reason,
        } => {
            json!({"kind": "revoke", "runtime_id": runtime_id, "execution_id": execution_id, "lease": lease, "reason": reason})
        }
        Notice::UserDeleted { user_id } => json!({"kind": "user_deleted", "user_id": user_id}),
        Notice::ApiKeyRevoked { key_id } => json!({"kind": "api_key_revoked", "key_id": key_id}),
        Notice::RuntimeKeyChanged { runtime_id } => {
            json!({"kind": "runtime_key_changed", "runtime_id": runtime_id})
        }
        Notice::SchedulesChanged => json!({"kind": "schedules_changed"}),
        Notice::Resync => json!({"kind": "resync"}),
        Notice::ExecutionEnded {
            execution_id,
            flow_step,
        } => {
            json!({"kind": "execution_ended", "execution_id": execution_id, "flow_step": flow_step})
        }
    };
    value.to_string()
}

fn decode_notice(payload: &str) -> Option<Notice> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Some(match value.get("kind")?.as_str()? {
        "work" => Notice::Work {
            runtime_id: field("runtime_id")?,
        },
        "cancel" => Notice::Cancel {
            runtime_id: field("runtime_id")?,
            execution_id: field("execution_id")?,
            lease: field("lease")?,
        },
        "revoke" => Notice::Revoke {
            runtime_id: field("runtime_id")?,
            execution_id: field("execution_id")?,
            lease: field("lease")?,
            reason: field("reason")?,
        },
        "execution_ended" => Notice::ExecutionEnded {
            execution_id: field("execution_id")?,
            // A server of an earlier version does not say: maybe.
            flow_step: value
                .get("flow_step")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
        },
        "user_deleted" => Notice::UserDeleted {
            user_id: field("user_id")?,
        },
        "api_key_revoked" => Notice::ApiKeyRevoked {
            key_id: field("key_id")?,
        },
        "runtime_key_changed" => Notice::RuntimeKeyChanged {
            runtime_id: field("runtime_id")?,
        },
        "resync" => Notice::Resync,
        "schedules_changed" => Notice::SchedulesChanged,
        _ => return None,
    })
}

#[async_trait]
impl ClusterStore for PostgresStore {
    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        Some(self.notices.subscribe())
    }

    async fn publish(&self, notice: &Notice) -> Result<()> {
        self.notices_out.run(encode_notice(notice)).await
    }

    async fn shared_secret(&self, candidate: &[u8]) -> Result<Option<Vec<u8>>> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('jwt_secret', $1) ON CONFLICT DO NOTHING",
        )
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        let secret: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'jwt_secret'")
                .fetch_one(&self.pool)
                .await
                .map_err(other)?;
        Ok(Some(secret))
    }

    /// The leader holds a session-level advisory lock on a connection of its own;
    /// if that session dies, PostgreSQL releases the lock and another server
    /// takes over at its next check.
    async fn lead(&self) -> Result<bool> {
        let mut leader = self.leader.lock().await;
        if let Some(session) = leader.as_mut() {
            if session.ping().await.is_ok() {
                return Ok(true);
            }
            *leader = None;
        }
        let mut session = self.pool.acquire().await.map_err(other)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *session)
            .await
            .map_err(other)?;
        if locked {
            // Out of the pool: the lock lives as long as this session.
            *leader = Some(session.detach());
        }
        Ok(locked)
    }
}

/// Notices to the other servers, encoded, sent in groups: one statement and one
/// commit for all the notices waiting (a notice alone the same way). PostgreSQL
/// delivers a transaction's notifications in their order, identical ones once.
pub(super) struct OutgoingNotices(pub(super) PgPool);

impl OutgoingNotices {
    async fn notify(&self, notices: &[String]) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_notify($1, notice) FROM UNNEST($2::TEXT[]) AS notice")
            .bind(NOTICE_CHANNEL)
            .bind(notices)
            .execute(&self.0)
            .await
            .map(drop)
    }
}

#[async_trait]
impl Grouping for OutgoingNotices {
    type Item = String;
    type Answer = ();

    async fn together(&self, notices: &[String]) -> std::result::Result<Vec<()>, GroupFailed> {
        self.notify(notices).await?;
        Ok(vec![(); notices.len()])
    }

    async fn alone(&self, notice: &String) -> Result<()> {
        self.notify(std::slice::from_ref(notice))
            .await
            .map_err(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notice_reads_back_from_its_payload() {
        let notices = [
            Notice::Work {
                runtime_id: "r".into(),
            },
            Notice::Cancel {
                runtime_id: "r".into(),
                execution_id: "e".into(),
                lease: "l".into(),
            },
            Notice::Revoke {
                runtime_id: "r".into(),
                execution_id: "e".into(),
                lease: "l".into(),
                reason: "why \"quoted\"".into(),
            },
            Notice::UserDeleted {
                user_id: "u".into(),
            },
            Notice::ApiKeyRevoked { key_id: "k".into() },
            Notice::RuntimeKeyChanged {
                runtime_id: "r".into(),
            },
            Notice::SchedulesChanged,
            Notice::ExecutionEnded {
                execution_id: "e".into(),
                flow_step: false,
            },
            Notice::ExecutionEnded {
                execution_id: "e".into(),
                flow_step: true,
            },
            Notice::Resync,
        ];
        for notice in notices {
            assert_eq!(decode_notice(&encode_notice(&notice)), Some(notice));
        }
        assert_eq!(
            decode_notice(r#"{"kind": "execution_ended", "execution_id": "e"}"#),
            Some(Notice::ExecutionEnded {
                execution_id: "e".into(),
                flow_step: true,
            }),
            "a server of an earlier version may have ended a flow step"
        );
        assert_eq!(decode_notice(r#"{"kind": "unknown"}"#), None);
    }
}
