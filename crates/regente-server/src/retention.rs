//! Deletes the event stream's events older than the retention, and audit
//! records older than theirs when one is set, now and then, on one server of
//! those sharing the store (the supervisor runs it on the leader).

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::service::Context;

/// How often old events are looked for.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub async fn prune(ctx: Arc<Context>) -> anyhow::Result<()> {
    let retention = ctx.config.event_retention.as_millis() as i64;
    let pruned = ctx.store.prune_events(ctx.clock.now() - retention).await?;
    if pruned > 0 {
        info!(pruned, "old events pruned");
    }
    if let Some(retention) = ctx.config.audit_retention {
        let older_than = ctx.clock.now() - retention.as_millis() as i64;
        let pruned = ctx.store.prune_audit(older_than).await?;
        if pruned > 0 {
            info!(pruned, "old audit records pruned");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use regente_store::{AuditEntry, AuditFilter};

    use super::*;
    use crate::clock::ManualClock;

    const DAY: i64 = 24 * 3600 * 1000;

    async fn audit_left(audit_retention: Option<Duration>) -> Vec<i64> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::new(100 * DAY));
        let ctx = Context::for_tests(dir.path(), clock, |config| {
            config.audit_retention = audit_retention;
        })
        .await;
        let ctx = Arc::new(ctx);
        for time in [10 * DAY, 99 * DAY] {
            let entry = AuditEntry {
                organization_id: "0000000000000001".into(),
                time,
                actor_id: "0000000000000002".into(),
                actor_name: "admin".into(),
                action: "user.create".into(),
                object_type: "user".into(),
                object_id: "0000000000000003".into(),
                address: None,
                summary: serde_json::json!({}),
            };
            ctx.store.record_audit(&entry).await.unwrap();
        }
        prune(ctx.clone()).await.unwrap();
        let every = AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        };
        let left = ctx
            .store
            .audit_records("0000000000000001", &every)
            .await
            .unwrap();
        left.into_iter().map(|record| record.entry.time).collect()
    }

    #[tokio::test]
    async fn audit_records_are_kept_forever_unless_a_retention_is_set() {
        assert_eq!(audit_left(None).await, [99 * DAY, 10 * DAY]);
        let thirty_days = Duration::from_secs(30 * 24 * 3600);
        assert_eq!(audit_left(Some(thirty_days)).await, [99 * DAY]);
    }
}
