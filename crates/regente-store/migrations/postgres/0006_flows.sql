-- Flows: robot runs chained in steps. A flow is a name; each definition saved under
-- it is its next version, and a run keeps the version it started with.
CREATE TABLE flows (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    created          BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE flow_versions (
    flow_id          TEXT NOT NULL REFERENCES flows(id),
    version          BIGINT NOT NULL,
    organization_id  TEXT NOT NULL,
    -- JSON: the definition as it was saved.
    definition       TEXT NOT NULL,
    created          BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    PRIMARY KEY (flow_id, version)
);

CREATE TABLE flow_runs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    organization_id  TEXT NOT NULL REFERENCES organizations(id),
    flow_id          TEXT NOT NULL REFERENCES flows(id),
    version          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    input            TEXT NOT NULL,
    return_value     TEXT,
    init             BIGINT NOT NULL,
    "end"            BIGINT,
    end_reason       TEXT,
    submitted_by     TEXT NOT NULL,
    canceled_by      TEXT,
    -- Grows with every change: a change computed from an older state is refused.
    revision         BIGINT NOT NULL DEFAULT 0,
    -- When the engine must look at the run without being told (a retry's backoff,
    -- a step's timeout); NULL when it waits on an execution only.
    wake_at          BIGINT
);
CREATE INDEX flow_runs_by_organization ON flow_runs (organization_id, seq);
CREATE INDEX flow_runs_waking ON flow_runs (wake_at) WHERE wake_at IS NOT NULL;

CREATE TABLE flow_steps (
    run_id           TEXT NOT NULL,
    position         BIGINT NOT NULL,
    step_id          TEXT NOT NULL,
    organization_id  TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt          BIGINT NOT NULL DEFAULT 0,
    execution_id     TEXT,
    return_value     TEXT,
    reason           TEXT,
    not_before       BIGINT,
    deadline         BIGINT,
    PRIMARY KEY (run_id, position)
);

-- The flow step an execution runs, if any.
ALTER TABLE executions ADD COLUMN flow_run_id TEXT;
ALTER TABLE executions ADD COLUMN flow_step_id TEXT;
