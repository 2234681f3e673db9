//! When an event stream consumer saves a cursor that only moved.
//!
//! A consumer that acts on an event saves its cursor in the same transaction
//! as what it did. One that only read past events (they asked nothing of it)
//! used to save the moved cursor after every look: for each run, a write or two
//! on the store's single writer, queued before the run's claim. Such a cursor is
//! now saved once it is [`SAVE_EVERY_MS`] older than the last save, and when the
//! consumer stops. Unsaved, a crash has the consumer read those events again,
//! and they again ask nothing of it. (Unless something changed meanwhile: a
//! webhook enabled again, or given another event type, gets deliveries for
//! such events read again after a restart or a change of leader, which the
//! look that first passed them over did not make. It cannot get one twice.)

use regente_store::{EventCursor, Millis, Store};

/// The longest a cursor that only moved stays unsaved while its consumer looks.
pub const SAVE_EVERY_MS: Millis = 1_000;

/// A consumer's cursor as last saved (or loaded), and when.
#[derive(Debug, Default)]
pub struct SavedCursor {
    cursor: Option<EventCursor>,
    at: Option<Millis>,
}

impl SavedCursor {
    /// `cursor` was saved (alone or with the consumer's own change), or loaded, at `now`.
    pub fn saved(&mut self, cursor: EventCursor, now: Millis) {
        self.cursor = Some(cursor);
        self.at = Some(now);
    }

    /// Whether `cursor` differs from the one saved.
    pub fn is_behind(&self, cursor: EventCursor) -> bool {
        self.cursor != Some(cursor)
    }

    /// Saves `consumer`'s `cursor`, which only moved, when it is due at `now`
    /// or `anyway` (the consumer stops, or passed many events over).
    pub async fn save_when_due(
        &mut self,
        store: &dyn Store,
        consumer: &str,
        cursor: EventCursor,
        now: Millis,
        anyway: bool,
    ) -> regente_store::Result<()> {
        if self.is_behind(cursor) && (anyway || self.due(cursor, now)) {
            store.save_cursor(consumer, cursor, now).await?;
            self.saved(cursor, now);
        }
        Ok(())
    }

    /// Whether `cursor`, having only moved, is to be saved at `now` (also
    /// when the clock went back past the last save).
    pub fn due(&self, cursor: EventCursor, now: Millis) -> bool {
        self.is_behind(cursor)
            && self
                .at
                .is_none_or(|at| now < at || now - at >= SAVE_EVERY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: i64) -> EventCursor {
        EventCursor { txid: 0, seq }
    }

    #[test]
    fn a_moved_cursor_is_due_once_the_last_save_is_old_enough() {
        let mut saved = SavedCursor::default();
        assert!(saved.due(at(1), 0), "never saved");
        saved.saved(at(1), 10_000);
        assert!(!saved.due(at(1), 20_000), "not moved");
        assert!(!saved.due(at(5), 10_000 + SAVE_EVERY_MS - 1));
        assert!(saved.due(at(5), 10_000 + SAVE_EVERY_MS));
        assert!(saved.is_behind(at(5)));
        saved.saved(at(5), 12_000);
        assert!(!saved.is_behind(at(5)));
        assert!(saved.due(at(6), 11_999), "the clock went back");
    }
}
