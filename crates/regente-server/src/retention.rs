//! Deletes the event stream's events older than the retention, now and then, on
//! one server of those sharing the store.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};

use crate::service::{now_millis, Context};

/// How often old events are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub async fn run(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = prune(&ctx).await {
            error!(error = format!("{e:#}"), "cannot prune old events");
        }
    }
}

async fn prune(ctx: &Context) -> anyhow::Result<()> {
    // With several servers on one store, one of them prunes for everybody.
    if !ctx.store.lead().await? {
        return Ok(());
    }
    let retention = ctx.config.event_retention.as_millis() as i64;
    let pruned = ctx.store.prune_events(now_millis() - retention).await?;
    if pruned > 0 {
        info!(pruned, "old events pruned");
    }
    Ok(())
}
