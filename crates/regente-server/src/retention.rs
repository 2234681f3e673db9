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
