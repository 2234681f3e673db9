-- The audit log: who changed what, when, from where. A record is written in the
-- transaction of the change it records (or alone, for what changes nothing: a
-- failed login, a credential handed out). Append-only: nothing updates a record;
-- only retention deletes the oldest. No foreign keys: a record outlives what it
-- names.
CREATE TABLE audit_records (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  TEXT NOT NULL,
    time             INTEGER NOT NULL,
    -- A user's id and name, or KIND:ID for the server acting on its own.
    actor_id         TEXT NOT NULL,
    actor_name       TEXT NOT NULL,
    -- e.g. user.create, schedule.pause, auth.login_failed
    action           TEXT NOT NULL,
    object_type      TEXT NOT NULL,
    object_id        TEXT NOT NULL,
    -- The client address the server saw; NULL for the server itself.
    address          TEXT,
    -- JSON: a small summary of the change, never a secret.
    summary          TEXT NOT NULL
);
CREATE INDEX audit_records_by_organization ON audit_records (organization_id, seq);
CREATE INDEX audit_records_by_actor_id ON audit_records (organization_id, actor_id, seq);
CREATE INDEX audit_records_by_actor_name ON audit_records (organization_id, actor_name, seq);
CREATE INDEX audit_records_by_action ON audit_records (organization_id, action, seq);
CREATE INDEX audit_records_by_object ON audit_records (organization_id, object_type, object_id, seq);
-- Retention deletes the oldest by time.
CREATE INDEX audit_records_by_time ON audit_records (time);

CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit records are never changed');
END;
