//! Background work: every task the server runs beside its requests (the
//! lost-runtime sweep, other servers' notices, pruning, and what comes to
//! consume the event stream) is started here, told to stop by a signal when the
//! server stops, and waited for with a bound. A task that panics is logged and
//! started again; one that outlives the bound is cut and named.
//!
//! Work that must happen once per cluster runs only on the server holding the
//! store's lead ([`Store::lead`](regente_store::Store::lead)): see
//! [`Supervisor::every_as_leader`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::service::Context;

/// How long a task that panicked waits before it starts again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Tells a background task that the server is stopping. Cheap to clone.
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Completes once a stop is requested (at once if it was already).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits `period`; `false` when a stop was requested meanwhile.
    pub async fn wait(&mut self, period: Duration) -> bool {
        tokio::select! {
            _ = self.requested() => false,
            _ = tokio::time::sleep(period) => !self.is_requested(),
        }
    }
}

pub struct Supervisor {
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Supervisor {
    pub fn new(ctx: Arc<Context>) -> Supervisor {
        Supervisor {
            ctx,
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// A signal that fires when this supervisor stops its tasks.
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.stop.subscribe())
    }

    /// Runs `task` until it returns (it should, soon after its [`StopSignal`]
    /// fires). A panic is logged and the task started again.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: Fn(Arc<Context>, StopSignal) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let ctx = self.ctx.clone();
        let mut stop = self.stop_signal();
        let handle = tokio::spawn(async move {
            loop {
                let run = tokio::spawn(task(ctx.clone(), stop.clone()));
                match run.await {
                    Ok(()) => return,
                    Err(e) if e.is_panic() => {
                        error!(task = name, "a background task panicked; it starts again")
                    }
                    Err(_) => return,
                }
                if !stop.wait(RESTART_AFTER).await {
                    return;
                }
            }
        });
        self.tasks.push((name, handle));
    }

    /// Runs `work` every `period` on the server holding the store's lead, and
    /// nowhere else. Failures are logged; the next period tries again.
    pub fn every_as_leader<F, Fut>(&mut self, name: &'static str, period: Duration, work: F)
    where
        F: Fn(Arc<Context>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let work = Arc::new(work);
        self.spawn(name, move |ctx, mut stop| {
            let work = work.clone();
            async move {
                while stop.wait(period).await {
                    let leading = match ctx.store.lead().await {
                        Ok(leading) => leading,
                        Err(e) => {
                            warn!(
                                task = name,
                                error = format!("{e:#}"),
                                "cannot tell who leads"
                            );
                            continue;
                        }
                    };
                    if leading {
                        if let Err(e) = work(ctx.clone()).await {
                            error!(
                                task = name,
                                error = format!("{e:#}"),
                                "background work failed"
                            );
                        }
                    }
                }
            }
        });
    }

    /// Tells every task to stop and waits for them, `within` in all; the ones
    /// still running then are cut.
    pub async fn stop(self, within: Duration) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + within;
        for (name, mut handle) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                warn!(
                    task = name,
                    "a background task did not stop in time; it was cut"
                );
                handle.abort();
            }
        }
        info!("background tasks stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::SystemClock;

    async fn context() -> (tempfile::TempDir, Arc<Context>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ctx = Context::for_tests(dir.path(), Arc::new(SystemClock), |_| {}).await;
        (dir, Arc::new(ctx))
    }

    #[tokio::test]
    async fn a_stop_signal_ends_a_wait_at_once() {
        let (sender, receiver) = watch::channel(false);
        let mut stop = StopSignal(receiver);
        let waiting = tokio::spawn(async move { stop.wait(Duration::from_secs(3600)).await });
        sender.send_replace(true);
        assert!(!waiting.await.expect("the wait ends"));
    }

    #[tokio::test]
    async fn stop_signals_every_task_and_cuts_one_that_does_not_listen() {
        let (_dir, ctx) = context().await;
        let mut supervisor = Supervisor::new(ctx);
        let ended = Arc::new(AtomicUsize::new(0));
        for name in ["first", "second"] {
            let ended = ended.clone();
            supervisor.spawn(name, move |_, mut stop| {
                let ended = ended.clone();
                async move {
                    stop.requested().await;
                    ended.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        supervisor.spawn("deaf", |_, _| std::future::pending::<()>());
        supervisor.stop(Duration::from_millis(200)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_task_that_panics_starts_again() {
        let (_dir, ctx) = context().await;
        let mut supervisor = Supervisor::new(ctx);
        let starts = Arc::new(AtomicUsize::new(0));
        let (second_start, started_again) = tokio::sync::oneshot::channel();
        let second_start = Arc::new(std::sync::Mutex::new(Some(second_start)));
        let counted = starts.clone();
        supervisor.spawn("fragile", move |_, mut stop| {
            let start = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let second_start = second_start.clone();
            async move {
                if start == 1 {
                    panic!("a bug in a background task");
                }
                if let Some(tell) = second_start.lock().unwrap().take() {
                    let _ = tell.send(());
                }
                stop.requested().await;
            }
        });
        started_again.await.expect("the task started again");
        supervisor.stop(Duration::from_secs(5)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn leader_work_runs_on_the_store_s_leader() {
        let (_dir, ctx) = context().await;
        let mut supervisor = Supervisor::new(ctx);
        let (ran, done) = tokio::sync::mpsc::unbounded_channel();
        supervisor.every_as_leader("leader work", Duration::from_millis(10), move |_| {
            let ran = ran.clone();
            async move {
                let _ = ran.send(());
                Ok(())
            }
        });
        let mut done = done;
        // An embedded store has no other server: this one leads.
        done.recv().await.expect("the work ran");
        supervisor.stop(Duration::from_secs(5)).await;
    }
}
