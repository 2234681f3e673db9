-- Regente's schema on PostgreSQL: the same tables and columns as on SQLite.
-- Times are epoch milliseconds (BIGINT); ids are 16 lowercase hex digits (TEXT).
-- JSON (variables, return values) is stored as its text, exactly as serialised,
-- so that it reads back byte for byte as on SQLite.
-- Every row that belongs to an organisation carries organization_id, and every query filters on it.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    is_root     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    username         TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'integration')),
    created_at       BIGINT NOT NULL
);
CREATE INDEX users_by_organization ON users (organization_id, created_at);

CREATE TABLE runtimes (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    key_hash         TEXT NOT NULL UNIQUE,
    slots            BIGINT NOT NULL,
    last_seen        BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX runtimes_by_organization ON runtimes (organization_id, created_at);

CREATE TABLE robots (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE robot_versions (
    robot_id         TEXT NOT NULL REFERENCES robots(id),
    version          BIGINT NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    sha256           TEXT NOT NULL,
    manifest         TEXT NOT NULL,
    size             BIGINT NOT NULL,
    package          BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (robot_id, version)
);
CREATE INDEX robot_versions_by_organization ON robot_versions (organization_id, robot_id, version);

-- seq orders the queue (FIFO per runtime) and pages the admin listing.
CREATE TABLE executions (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    runtime_id       TEXT NOT NULL REFERENCES runtimes(id),
    robot_id         TEXT NOT NULL REFERENCES robots(id),
    robot_version    BIGINT NOT NULL,
    variables        TEXT NOT NULL,
    status           TEXT NOT NULL,
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
    init             BIGINT NOT NULL,
    started          BIGINT,
    "end"            BIGINT,
    return_value     TEXT,
    end_reason       TEXT,
    exit_code        INTEGER,
    submitted_by     TEXT,
    canceled_by      TEXT,
    -- The current hand-out to a runtime: reports under any other lease are refused.
    lease            TEXT,
    attempt          BIGINT NOT NULL DEFAULT 0,
    -- 1 + the robot's `retries`: how many times a lost run may start.
    max_attempts     BIGINT NOT NULL DEFAULT 1,
    -- The last agent event stored; events are applied once, in order.
    last_event_seq   BIGINT NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
-- The claim: only the runs waiting for a hand-out, so the index stays small however
-- long the history grows, and rows leave it as soon as they are claimed.
CREATE INDEX executions_claimable ON executions (runtime_id, seq)
    WHERE status = 'PENDENT' AND lease IS NULL;
-- Queue positions count every PENDENT run ahead, handed out or not.
CREATE INDEX executions_pendent ON executions (runtime_id, seq)
    WHERE status = 'PENDENT';
-- Live leases, for reconnects and the lost-runtime check.
CREATE INDEX executions_leased ON executions (runtime_id)
    WHERE status IN ('PENDENT', 'RUNNING') AND lease IS NOT NULL;
CREATE INDEX executions_by_organization ON executions (organization_id, seq);

CREATE TABLE execution_logs (
    execution_id     TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    organization_id  TEXT NOT NULL,
    time             BIGINT NOT NULL,
    level            TEXT NOT NULL,
    message          TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

-- The same Idempotency-Key from the same user answers the same execution for 24 hours.
CREATE TABLE idempotency_keys (
    user_id          TEXT NOT NULL,
    key              TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    execution_id     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);
