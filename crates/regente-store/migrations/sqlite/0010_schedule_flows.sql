-- A schedule runs a robot on a runtime, or a flow (exactly one of the two). SQLite
-- cannot drop NOT NULL or add a CHECK to a table, so schedules is rebuilt; no table
-- references it.
CREATE TABLE schedules_with_flows (
    id                     TEXT PRIMARY KEY,
    organization_id        TEXT NOT NULL REFERENCES organizations(id),
    name                   TEXT NOT NULL,
    -- The target: a robot on a runtime, or a flow.
    robot_id               TEXT,
    runtime_id             TEXT,
    flow_id                TEXT,
    -- JSON: the run body's variables, as given.
    variables              TEXT NOT NULL,
    -- JSON: {"cron": "..."} or {"every": {...}}, as given.
    rule                   TEXT NOT NULL,
    timezone               TEXT NOT NULL,
    start_at               INTEGER,
    end_at                 INTEGER,
    overlap                TEXT NOT NULL,
    catchup_window_seconds INTEGER NOT NULL,
    misfire                TEXT NOT NULL,
    jitter_seconds         INTEGER NOT NULL,
    paused                 INTEGER NOT NULL DEFAULT 0,
    pause_note             TEXT,
    pause_after_failures   INTEGER,
    consecutive_failures   INTEGER NOT NULL DEFAULT 0,
    fired                  INTEGER NOT NULL DEFAULT 0,
    skipped                INTEGER NOT NULL DEFAULT 0,
    missed                 INTEGER NOT NULL DEFAULT 0,
    -- The first fire not handled yet (NULL: the rule fires no more), and when it is
    -- due (its time plus its jitter).
    next_fire_at           INTEGER,
    next_due_at            INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    UNIQUE (organization_id, name),
    CHECK ((flow_id IS NULL AND robot_id IS NOT NULL AND runtime_id IS NOT NULL)
        OR (flow_id IS NOT NULL AND robot_id IS NULL AND runtime_id IS NULL))
);
INSERT INTO schedules_with_flows (id, organization_id, name, robot_id, runtime_id, flow_id,
    variables, rule, timezone, start_at, end_at, overlap, catchup_window_seconds, misfire,
    jitter_seconds, paused, pause_note, pause_after_failures, consecutive_failures, fired,
    skipped, missed, next_fire_at, next_due_at, created_at, updated_at)
SELECT id, organization_id, name, robot_id, runtime_id, NULL,
    variables, rule, timezone, start_at, end_at, overlap, catchup_window_seconds, misfire,
    jitter_seconds, paused, pause_note, pause_after_failures, consecutive_failures, fired,
    skipped, missed, next_fire_at, next_due_at, created_at, updated_at
FROM schedules;
DROP TABLE schedules;
ALTER TABLE schedules_with_flows RENAME TO schedules;
-- What the scheduler waits for: the next schedule due.
CREATE INDEX schedules_due ON schedules (next_due_at) WHERE paused = 0 AND next_due_at IS NOT NULL;

-- What a started fire queued: an execution of the robot (execution_id), or a run of
-- the flow.
ALTER TABLE schedule_fires ADD COLUMN flow_run_id TEXT;

-- A flow run a schedule started says which schedule and for when.
ALTER TABLE flow_runs ADD COLUMN schedule_id TEXT;
ALTER TABLE flow_runs ADD COLUMN scheduled_for INTEGER;
-- The overlap rule looks at a schedule's live flow runs at every fire.
CREATE INDEX flow_runs_live_by_schedule ON flow_runs (schedule_id, status)
    WHERE status IN ('PENDENT', 'RUNNING') AND schedule_id IS NOT NULL;
