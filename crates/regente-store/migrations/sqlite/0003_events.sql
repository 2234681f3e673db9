-- The event stream: one row per state change, written in the transaction that makes
-- the change, so an event exists if and only if its change was committed. seq is
-- the stream's order: the single writer commits in seq order. txid is always 0 here
-- (PostgreSQL orders by its transaction ids first; see events on PostgreSQL).
CREATE TABLE events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    txid             INTEGER NOT NULL DEFAULT 0,
    organization_id  TEXT NOT NULL,
    kind             TEXT NOT NULL,
    -- The execution or runtime the event is about.
    subject_id       TEXT NOT NULL,
    time             INTEGER NOT NULL,
    -- JSON: what the kind says about the change.
    data             TEXT NOT NULL
);
CREATE INDEX events_by_organization ON events (organization_id, seq);
-- Retention deletes the oldest by time.
CREATE INDEX events_by_time ON events (time);

-- Where each consumer of the stream is: every event up to (txid, seq) is handled.
CREATE TABLE event_cursors (
    consumer    TEXT PRIMARY KEY,
    txid        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The connection a runtime is online through (NULL: offline), so that online and
-- offline are transitions, each recorded once.
ALTER TABLE runtimes ADD COLUMN session_id TEXT;
