-- The console and integrations list executions by status (what is PENDENT or
-- RUNNING now); without this, such a list walks every execution of the
-- organisation when few match.
CREATE INDEX executions_by_status ON executions (organization_id, status, seq);
