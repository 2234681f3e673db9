//! Relays the notices of other servers sharing the store to the sessions here,
//! so that a run accepted by one server reaches a runtime connected to another at
//! once. Notices can be missed (a listener reconnecting), and a wake-up can be
//! too on one server (a run request dropped between its commit and its notice),
//! so every session is also resynchronised now and then: it claims whatever
//! waits and sends again the cancels pending for robots it runs.

use std::sync::Arc;

use regente_store::Notice;
use tokio::sync::broadcast::error::RecvError;

use crate::service::Context;
use crate::supervisor::StopSignal;

pub async fn run(ctx: Arc<Context>, mut stop: StopSignal) {
    // How often sessions look at the queue without being told.
    let safety_net = ctx.config.resync_every;
    let mut tick = tokio::time::interval(safety_net);
    let Some(mut notices) = ctx.store.notices() else {
        // An unshared store: every change comes through this server.
        while stop.wait(safety_net).await {
            ctx.hub.resync_all();
        }
        return;
    };
    loop {
        tokio::select! {
            _ = stop.requested() => return,
            notice = notices.recv() => match notice {
                Ok(notice) => crate::service::apply(&ctx, &notice),
                Err(RecvError::Lagged(_)) => crate::service::apply(&ctx, &Notice::Resync),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => ctx.hub.resync_all(),
        }
    }
}
