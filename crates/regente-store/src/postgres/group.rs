//! Requests that many callers make at once, grouped into one statement.
//!
//! Each PostgreSQL statement costs a round trip (on loopback, most of it in the
//! kernel's TCP path and the wake-up of the database's backend), and each
//! transaction a synced commit. Under load, run requests (their look-up of the
//! robot and runtime, their insert, the notices that follow them) would each pay
//! all of that; a [`Grouped`] task takes every request waiting when it becomes
//! free and does them together, as SQLite's writer thread does. A write is
//! answered only once its group committed, so an answer still means "on disk".
//! When the database refuses a group for what a statement holds (a constraint,
//! say: see [`GroupFailed`]), nothing of it was committed: each of its requests
//! is then done alone, so that one bad request fails alone. Any other failure
//! (the connection lost, perhaps while committing) leaves the outcome unknown and
//! is answered to the whole group, as it would be to a request done alone. A
//! request whose caller went away before its group began is not done, as a
//! transaction of its own would have been rolled back.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// The most requests in one group.
const MOST_IN_A_GROUP: usize = 256;

/// How one kind of request is done, alone or in a group.
#[async_trait]
pub(super) trait Grouping: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Answer: Send + 'static;
    /// All of `items`, in their order, in one statement; an answer for each,
    /// in the same order.
    async fn together(
        &self,
        items: &[Self::Item],
    ) -> std::result::Result<Vec<Self::Answer>, GroupFailed>;
    /// One item on its own, with the errors a request alone would get.
    async fn alone(&self, item: &Self::Item) -> Result<Self::Answer>;
}

/// Why a group was not done.
#[derive(Debug)]
pub(super) enum GroupFailed {
    /// The database refused a statement of it: nothing of it was committed.
    Refused,
    /// The outcome is unknown: the connection failed, perhaps while committing;
    /// or its answer could not be read.
    Unknown(Error),
}

impl From<sqlx::Error> for GroupFailed {
    /// Refused only for what a statement's own content causes (SQLSTATE classes
    /// 22 data, 23 constraints, 42 syntax and access; a serialization failure or
    /// a deadlock), after which the transaction is rolled back; every other
    /// failure (the connection, the server shutting down, resources, 40003
    /// "statement completion unknown") may have hit a commit that went through.
    fn from(error: sqlx::Error) -> GroupFailed {
        if let sqlx::Error::Database(database) = &error {
            let code = database.code().unwrap_or_default();
            let refused = matches!(code.get(..2), Some("22" | "23" | "42"))
                || matches!(&*code, "40001" | "40P01");
            if refused {
                tracing::warn!(
                    %code,
                    error = %database.message(),
                    "a group of requests was refused; each is done alone"
                );
                return GroupFailed::Refused;
            }
        }
        GroupFailed::Unknown(Error::Other(error.into()))
    }
}

struct Waiting<G: Grouping> {
    item: G::Item,
    answer: oneshot::Sender<Result<G::Answer>>,
}

/// The sending end of a grouping task; the task ends when this is dropped.
pub(super) struct Grouped<G: Grouping> {
    waiting: mpsc::UnboundedSender<Waiting<G>>,
}

impl<G: Grouping> Grouped<G> {
    /// Starts the task on the current Tokio runtime. It does one group at a
    /// time: under load the groups grow instead, which costs the database less
    /// than more groups at once (measured: bench/README.md).
    pub(super) fn start(grouping: G) -> Grouped<G> {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(do_groups(grouping, queue));
        Grouped { waiting }
    }

    /// Does `item` with whatever else is waiting; answers once its group is
    /// done (committed, for a write).
    pub(super) async fn run(&self, item: G::Item) -> Result<G::Answer> {
        let (answer, answered) = oneshot::channel();
        self.waiting
            .send(Waiting { item, answer })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Other(anyhow::anyhow!("the store is shutting down"))
}

async fn do_groups<G: Grouping>(grouping: G, mut queue: mpsc::UnboundedReceiver<Waiting<G>>) {
    let grouping = Arc::new(grouping);
    let mut group = Vec::with_capacity(MOST_IN_A_GROUP);
    // While a group is done, the requests wait in the queue: the next group
    // takes them all.
    while queue.recv_many(&mut group, MOST_IN_A_GROUP).await > 0 {
        // A request whose caller went away before its group began is not done,
        // as a transaction of its own would have been rolled back.
        let (items, answers): (Vec<_>, Vec<_>) = group
            .drain(..)
            .filter(|waiting| !waiting.answer.is_closed())
            .map(|waiting| (waiting.item, waiting.answer))
            .unzip();
        if items.is_empty() {
            continue;
        }
        let count = items.len();
        // On a task of its own, so that a panic fails this group, not the store.
        let done = tokio::spawn({
            let grouping = grouping.clone();
            async move { do_group(&*grouping, &items).await }
        })
        .await
        .unwrap_or_else(|panic| all_failed(count, format!("a group of requests failed: {panic}")));
        for (answer, done) in answers.into_iter().zip(done) {
            let _ = answer.send(done);
        }
    }
}

/// Each item's answer.
async fn do_group<G: Grouping>(grouping: &G, items: &[G::Item]) -> Vec<Result<G::Answer>> {
    if let [item] = items {
        return vec![grouping.alone(item).await];
    }
    match grouping.together(items).await {
        Ok(answers) if answers.len() == items.len() => answers.into_iter().map(Ok).collect(),
        Ok(answers) => all_failed(
            items.len(),
            format!("{} answers for a group of {}", answers.len(), items.len()),
        ),
        // Refused as a whole, so nothing of it is stored: each alone.
        Err(GroupFailed::Refused) => {
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                answers.push(grouping.alone(item).await);
            }
            answers
        }
        Err(GroupFailed::Unknown(error)) => all_failed(
            items.len(),
            format!("the database failed in a group of requests: {error}"),
        ),
    }
}

/// The same error for each of a group's `count` requests.
fn all_failed<T>(count: usize, why: String) -> Vec<Result<T>> {
    (0..count)
        .map(|_| Err(Error::Other(anyhow::anyhow!("{why}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Records each write; the first one waits until the test opens its gate,
    /// so that what the test sends meanwhile waits in the queue.
    struct Recorder {
        writes: Arc<Mutex<Vec<String>>>,
        first: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
        /// A group holding this item is refused; alone, it is a conflict.
        refused: u32,
        /// A group holding this item fails with an unknown outcome.
        unknown: u32,
    }

    impl Recorder {
        async fn wait_for_the_gate(&self) {
            let first = self.first.lock().unwrap().take();
            if let Some((started, gate)) = first {
                started.send(()).unwrap();
                gate.await.unwrap();
            }
        }
    }

    #[async_trait]
    impl Grouping for Recorder {
        type Item = u32;
        type Answer = ();

        async fn together(&self, items: &[u32]) -> std::result::Result<Vec<()>, GroupFailed> {
            assert!(!items.contains(&66), "a panic in a group");
            self.wait_for_the_gate().await;
            self.writes.lock().unwrap().push(format!("all {items:?}"));
            if items.contains(&self.refused) {
                return Err(GroupFailed::Refused);
            }
            if items.contains(&self.unknown) {
                return Err(sqlx::Error::PoolTimedOut.into());
            }
            Ok(vec![(); items.len()])
        }

        async fn alone(&self, item: &u32) -> Result<()> {
            self.wait_for_the_gate().await;
            self.writes.lock().unwrap().push(format!("one {item}"));
            if *item == self.refused {
                return Err(Error::Conflict("the item"));
            }
            Ok(())
        }
    }

    /// Writes `first` alone and, while it is being written, queues `then`;
    /// answers each of `then`'s outcomes and every write made.
    async fn while_one_is_written(first: u32, then: &[u32]) -> (Vec<Result<()>>, Vec<String>) {
        while_one_is_written_and_some_leave(first, then, &[]).await
    }

    /// The same, the callers of `leaving` (some of `then`) going away before
    /// `first` is written; answers the others' outcomes.
    async fn while_one_is_written_and_some_leave(
        first: u32,
        then: &[u32],
        leaving: &[u32],
    ) -> (Vec<Result<()>>, Vec<String>) {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (started, has_started) = oneshot::channel();
        let (open, gate) = oneshot::channel();
        let grouped = Arc::new(Grouped::start(Recorder {
            writes: writes.clone(),
            first: Mutex::new(Some((started, gate))),
            refused: 13,
            unknown: 99,
        }));
        let alone = tokio::spawn({
            let grouped = grouped.clone();
            async move { grouped.run(first).await }
        });
        has_started.await.unwrap();
        // One poll of each write puts its item in the queue, in this order.
        let mut queued: Vec<_> = then
            .iter()
            .map(|&item| (item, Box::pin(grouped.run(item))))
            .collect();
        for (_, write) in &mut queued {
            let polled = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            assert!(matches!(polled, Poll::Pending));
        }
        queued.retain(|(item, _)| !leaving.contains(item));
        open.send(()).unwrap();
        alone.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for (_, write) in queued {
            answers.push(write.await);
        }
        let writes = writes.lock().unwrap().clone();
        (answers, writes)
    }

    #[tokio::test]
    async fn what_waits_while_a_group_is_written_is_written_next_together_in_order() {
        let (answers, writes) = while_one_is_written(0, &[1, 2, 3, 4, 5]).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(writes, ["one 0", "all [1, 2, 3, 4, 5]"]);
    }

    #[tokio::test]
    async fn a_refused_group_is_written_again_one_by_one_so_one_request_fails_alone() {
        let (answers, writes) = while_one_is_written(0, &[1, 13, 2]).await;
        assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
        assert!(matches!(answers[1], Err(Error::Conflict(_))), "{answers:?}");
        assert_eq!(
            writes,
            ["one 0", "all [1, 13, 2]", "one 1", "one 13", "one 2"]
        );
    }

    #[tokio::test]
    async fn a_group_whose_outcome_is_unknown_is_not_written_again() {
        let (answers, writes) = while_one_is_written(0, &[1, 99, 2]).await;
        for answer in &answers {
            let Err(Error::Other(error)) = answer else {
                panic!("{answers:?}")
            };
            assert!(error.to_string().contains("pool timed out"), "{error}");
        }
        assert_eq!(writes, ["one 0", "all [1, 99, 2]"]);
    }

    #[tokio::test]
    async fn a_request_whose_caller_went_away_before_its_group_began_is_not_done() {
        let (answers, writes) = while_one_is_written_and_some_leave(0, &[1, 2, 3], &[2]).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(writes, ["one 0", "all [1, 3]"]);
    }

    #[tokio::test]
    async fn a_panic_fails_its_own_group_and_the_next_group_is_done() {
        let (answers, writes) = while_one_is_written(0, &[1, 66]).await;
        for answer in &answers {
            let Err(Error::Other(error)) = answer else {
                panic!("{answers:?}")
            };
            assert!(error.to_string().contains("a panic in a group"), "{error}");
        }
        assert_eq!(writes, ["one 0"]);
    }

    /// What a PostgreSQL error says: its SQLSTATE.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "said by the database"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn only_what_a_statement_itself_causes_is_a_refusal() {
        let failed = |code| GroupFailed::from(sqlx::Error::Database(Box::new(Sqlstate(code))));
        // A unique or foreign key violation, bad data, a deadlock, a syntax error.
        for refused in ["23505", "23503", "22P02", "40001", "40P01", "42601"] {
            assert!(matches!(failed(refused), GroupFailed::Refused), "{refused}");
        }
        // The connection, an administrator's shutdown, resources, a cancel.
        for unknown in ["08006", "57P01", "53300", "57014", "XX000", "40003"] {
            assert!(
                matches!(failed(unknown), GroupFailed::Unknown(_)),
                "{unknown}"
            );
        }
        assert!(matches!(
            GroupFailed::from(sqlx::Error::PoolTimedOut),
            GroupFailed::Unknown(_)
        ));
    }
}
