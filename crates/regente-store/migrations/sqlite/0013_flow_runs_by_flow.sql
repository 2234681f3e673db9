-- A flow's page lists its recent runs, newest first: without this, a rarely run
-- flow in a busy organisation walks the organisation's runs to fill the list.
CREATE INDEX flow_runs_by_flow ON flow_runs (organization_id, flow_id, seq);
