-- The console and the admin API list an organisation's executions of one robot or
-- one runtime, newest first: without these, a robot with few runs among many
-- walks every execution of the organisation to fill a page.
CREATE INDEX executions_by_robot ON executions (organization_id, robot_id, seq);
CREATE INDEX executions_by_runtime ON executions (organization_id, runtime_id, seq);
