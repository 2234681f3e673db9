-- Schedules: runs the server queues itself at the times of a rule (cron or `every`, in an IANA zone).
CREATE TABLE schedules (
    id                     TEXT PRIMARY KEY,
    organization_id        TEXT NOT NULL REFERENCES organizations(id),
    name                   TEXT NOT NULL,
    robot_id               TEXT NOT NULL,
    runtime_id             TEXT NOT NULL,
    -- JSON text: the run body's variables, as given.
    variables              TEXT NOT NULL,
    -- JSON text: {"cron": "..."} or {"every": {...}}, as given.
    rule                   TEXT NOT NULL,
    timezone               TEXT NOT NULL,
    start_at               BIGINT,
    end_at                 BIGINT,
    overlap                TEXT NOT NULL,
    catchup_window_seconds BIGINT NOT NULL,
    misfire                TEXT NOT NULL,
    jitter_seconds         BIGINT NOT NULL,
    paused                 BOOLEAN NOT NULL DEFAULT FALSE,
    pause_note             TEXT,
    pause_after_failures   BIGINT,
    consecutive_failures   BIGINT NOT NULL DEFAULT 0,
    fired                  BIGINT NOT NULL DEFAULT 0,
    skipped                BIGINT NOT NULL DEFAULT 0,
    missed                 BIGINT NOT NULL DEFAULT 0,
    -- The first fire not handled yet (NULL: the rule fires no more), and when it is
    -- due (its time plus its jitter).
    next_fire_at           BIGINT,
    next_due_at            BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);
-- What the scheduler waits for: the next schedule due.
CREATE INDEX schedules_due ON schedules (next_due_at) WHERE NOT paused AND next_due_at IS NOT NULL;

-- Every fire, once: the key is what makes a fire happen at most once across restarts and
-- servers. A fire recorded as missed may still be run by a backfill.
CREATE TABLE schedule_fires (
    schedule_id      TEXT NOT NULL,
    scheduled_for    BIGINT NOT NULL,
    organization_id  TEXT NOT NULL,
    -- rule, trigger or backfill.
    origin           TEXT NOT NULL,
    -- started, skipped_overlap, skipped_error or missed.
    outcome          TEXT NOT NULL,
    execution_id     TEXT,
    reason           TEXT,
    recorded_at      BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, scheduled_for)
);

-- A scheduled run says which schedule queued it and for when.
ALTER TABLE executions ADD COLUMN schedule_id TEXT;
ALTER TABLE executions ADD COLUMN scheduled_for BIGINT;
-- The overlap rule looks at a schedule's live runs at every fire.
CREATE INDEX executions_live_by_schedule ON executions (schedule_id, status)
    WHERE status IN ('PENDENT', 'RUNNING') AND schedule_id IS NOT NULL;
