-- Regente's schema on SQLite. Times are epoch milliseconds; ids are 16 lowercase hex digits.
-- Every row that belongs to an organisation carries organization_id, and every query filters on it.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    is_root     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    username         TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'integration')),
    created_at       INTEGER NOT NULL
);
CREATE INDEX users_by_organization ON users (organization_id, created_at);

CREATE TABLE runtimes (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    key_hash         TEXT NOT NULL UNIQUE,
    slots            INTEGER NOT NULL,
    last_seen        INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX runtimes_by_organization ON runtimes (organization_id, created_at);

CREATE TABLE robots (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE robot_versions (
    robot_id         TEXT NOT NULL REFERENCES robots(id),
    version          INTEGER NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    sha256           TEXT NOT NULL,
    manifest         TEXT NOT NULL,
    size             INTEGER NOT NULL,
    package          BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (robot_id, version)
);

-- seq orders the queue (FIFO per runtime) and pages the admin listing.
CREATE TABLE executions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    runtime_id       TEXT NOT NULL REFERENCES runtimes(id),
    robot_id         TEXT NOT NULL REFERENCES robots(id),
    robot_version    INTEGER NOT NULL,
    variables        TEXT NOT NULL,
    status           TEXT NOT NULL,
    progress         REAL NOT NULL DEFAULT 0,
    init             INTEGER NOT NULL,
    started          INTEGER,
    "end"            INTEGER,
    return_value     TEXT,
    end_reason       TEXT,
    exit_code        INTEGER,
    submitted_by     TEXT,
    canceled_by      TEXT,
    -- The current hand-out to a runtime: reports under any other lease are refused.
    lease            TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    -- 1 + the robot's `retries`: how many times a lost run may start.
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    -- The last agent event stored; events are applied once, in order.
    last_event_seq   INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_queue ON executions (runtime_id, status, seq);
CREATE INDEX executions_leased ON executions (runtime_id, status) WHERE lease IS NOT NULL;
CREATE INDEX executions_by_organization ON executions (organization_id, seq);

CREATE TABLE execution_logs (
    execution_id     TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    organization_id  TEXT NOT NULL,
    time             INTEGER NOT NULL,
    level            TEXT NOT NULL,
    message          TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;

-- The same Idempotency-Key from the same user answers the same execution for 24 hours.
CREATE TABLE idempotency_keys (
    user_id          TEXT NOT NULL,
    key              TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    execution_id     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
