-- no-transaction
-- The console and integrations list executions by status (what is PENDENT or
-- RUNNING now); without this, such a list walks every execution of the
-- organisation when few match. Built CONCURRENTLY (outside a transaction), so
-- that the replicas of a running cluster keep writing while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS executions_by_status ON executions (organization_id, status, seq);
