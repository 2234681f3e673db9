-- The console and integrations list executions by status (what is PENDENT or
-- RUNNING now); without this, such a list walks every execution of the
-- organisation when few match. Not built CONCURRENTLY: a concurrent build waits
-- for every open transaction, among them another replica's wait for the
-- migration lock this one holds, which deadlocks replicas started together.
CREATE INDEX executions_by_status ON executions (organization_id, status, seq);
