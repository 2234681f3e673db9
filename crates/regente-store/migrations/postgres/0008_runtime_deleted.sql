-- A deleted runtime keeps its row, which its executions still name: it leaves every
-- list and lookup, and its key stops working.
ALTER TABLE runtimes ADD COLUMN deleted_at BIGINT;
