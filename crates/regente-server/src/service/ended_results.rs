//! Result answers of ended executions, kept as rendered. An ended execution
//! never changes again: the store refuses every event after the end (see the
//! store's `apply_events`), cancelling it is a conflict, and executions are
//! never deleted. So an answer rendered once it had ended stays true, on every
//! server, and a read of it again costs a lookup instead of two store reads
//! and a rendering. Answers of executions not ended are never kept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// The most the kept answers hold, in bytes of body.
const MAX_BYTES: usize = 4 << 20;
/// A longer answer (an execution with a long log) is not kept: its log would
/// crowd out many small answers.
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// What an answer kept costs beside its body and ids: the map's and the
/// queue's entries, the allocations' headers. Counted so that many tiny
/// answers cannot hold much more than `MAX_BYTES`.
const ENTRY_OVERHEAD: usize = 256;

/// One kept answer, with what a read must match to be given it.
struct Kept {
    organization_id: String,
    runtime_id: String,
    body: Bytes,
    /// Its share of `Answers::bytes`.
    cost: usize,
}

#[derive(Default)]
struct Answers {
    /// By execution id (ids are unique across organisations; the organisation
    /// is checked on each read all the same).
    by_execution: HashMap<Arc<str>, Kept>,
    /// Execution ids in the order kept: the oldest goes first when full.
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

/// Rendered result answers of ended executions, bounded in bytes.
#[derive(Default)]
pub struct EndedResults {
    answers: Mutex<Answers>,
}

impl EndedResults {
    /// The kept answer for this execution, read by this organisation through
    /// this runtime; `None` when none is kept or it belongs elsewhere (the
    /// caller then reads the store, which answers 404 as before).
    pub fn get(
        &self,
        organization_id: &str,
        runtime_id: &str,
        execution_id: &str,
    ) -> Option<Bytes> {
        let answers = self.lock();
        let kept = answers.by_execution.get(execution_id)?;
        (kept.organization_id == organization_id && kept.runtime_id == runtime_id)
            .then(|| kept.body.clone())
    }

    /// Keeps the answer rendered for an ended execution.
    pub fn keep(&self, organization_id: &str, runtime_id: &str, execution_id: &str, body: Bytes) {
        if body.len() > MAX_ANSWER_BYTES {
            return;
        }
        // An exact copy, made before the lock: a body rendered into a growing
        // buffer may hold up to twice its length, which the count would not see.
        let body = Bytes::copy_from_slice(&body);
        let cost = body.len()
            + execution_id.len()
            + organization_id.len()
            + runtime_id.len()
            + ENTRY_OVERHEAD;
        let mut answers = self.lock();
        if answers.by_execution.contains_key(execution_id) {
            return;
        }
        while answers.bytes + cost > MAX_BYTES {
            let Some(oldest) = answers.order.pop_front() else {
                break;
            };
            if let Some(gone) = answers.by_execution.remove(&oldest) {
                answers.bytes -= gone.cost;
            }
        }
        let id: Arc<str> = execution_id.into();
        answers.bytes += cost;
        answers.order.push_back(id.clone());
        answers.by_execution.insert(
            id,
            Kept {
                organization_id: organization_id.to_owned(),
                runtime_id: runtime_id.to_owned(),
                body,
                cost,
            },
        );
    }

    fn lock(&self) -> MutexGuard<'_, Answers> {
        // The map is consistent between statements: a panic elsewhere while
        // holding it leaves nothing half done.
        self.answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(size: usize) -> Bytes {
        Bytes::from(vec![b'x'; size])
    }

    #[test]
    fn an_answer_is_given_only_to_its_organization_and_runtime() {
        let results = EndedResults::default();
        results.keep(
            "org-a",
            "runtime-a",
            "execution-1",
            Bytes::from_static(b"{}"),
        );
        assert_eq!(
            results.get("org-a", "runtime-a", "execution-1").as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(results.get("org-b", "runtime-a", "execution-1"), None);
        assert_eq!(results.get("org-a", "runtime-b", "execution-1"), None);
        assert_eq!(results.get("org-a", "runtime-a", "execution-2"), None);
    }

    #[test]
    fn the_oldest_answers_go_when_the_bytes_are_spent() {
        let results = EndedResults::default();
        let size = MAX_ANSWER_BYTES;
        // Each answer also costs its ids and the entry's overhead.
        let fit = MAX_BYTES / (size + ENTRY_OVERHEAD + 64);
        for n in 0..=fit {
            results.keep("org", "runtime", &format!("execution-{n}"), body(size));
        }
        assert_eq!(results.get("org", "runtime", "execution-0"), None);
        for n in 1..=fit {
            assert!(
                results
                    .get("org", "runtime", &format!("execution-{n}"))
                    .is_some(),
                "execution-{n}"
            );
        }
        assert!(results.lock().bytes <= MAX_BYTES);
    }

    #[test]
    fn tiny_answers_are_counted_with_what_keeping_them_costs() {
        let results = EndedResults::default();
        for n in 0..MAX_BYTES / ENTRY_OVERHEAD {
            results.keep("org", "runtime", &format!("execution-{n}"), body(1));
        }
        let answers = results.lock();
        assert!(answers.bytes <= MAX_BYTES);
        assert!(
            answers.by_execution.len() < MAX_BYTES / ENTRY_OVERHEAD,
            "{} answers of one byte kept",
            answers.by_execution.len()
        );
        assert_eq!(answers.by_execution.len(), answers.order.len());
    }

    #[test]
    fn a_long_answer_is_not_kept() {
        let results = EndedResults::default();
        results.keep("org", "runtime", "long", body(MAX_ANSWER_BYTES + 1));
        assert_eq!(results.get("org", "runtime", "long"), None);
        assert_eq!(results.lock().bytes, 0);
    }

    #[test]
    fn an_answer_kept_is_not_replaced() {
        let results = EndedResults::default();
        results.keep("org", "runtime", "execution", Bytes::from_static(b"first"));
        results.keep("org", "runtime", "execution", Bytes::from_static(b"second"));
        assert_eq!(
            results.get("org", "runtime", "execution").as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(results.lock().by_execution.len(), 1);
        assert_eq!(results.lock().order.len(), 1);
    }
}
