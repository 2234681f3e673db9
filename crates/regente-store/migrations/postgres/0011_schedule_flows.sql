-- A schedule runs a robot on a runtime, or a flow (exactly one of the two).
ALTER TABLE schedules ALTER COLUMN robot_id DROP NOT NULL;
ALTER TABLE schedules ALTER COLUMN runtime_id DROP NOT NULL;
ALTER TABLE schedules ADD COLUMN flow_id TEXT;
ALTER TABLE schedules ADD CONSTRAINT schedules_one_target
    CHECK ((flow_id IS NULL AND robot_id IS NOT NULL AND runtime_id IS NOT NULL)
        OR (flow_id IS NOT NULL AND robot_id IS NULL AND runtime_id IS NULL));

-- What a started fire queued: an execution of the robot (execution_id), or a run of
-- the flow.
ALTER TABLE schedule_fires ADD COLUMN flow_run_id TEXT;

-- A flow run a schedule started says which schedule and for when.
ALTER TABLE flow_runs ADD COLUMN schedule_id TEXT;
ALTER TABLE flow_runs ADD COLUMN scheduled_for BIGINT;
-- The overlap rule looks at a schedule's live flow runs at every fire.
CREATE INDEX flow_runs_live_by_schedule ON flow_runs (schedule_id, status)
    WHERE status IN ('PENDENT', 'RUNNING') AND schedule_id IS NOT NULL;
