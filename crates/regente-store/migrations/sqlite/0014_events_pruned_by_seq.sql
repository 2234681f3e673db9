-- Retention walks the oldest events by seq, which on SQLite is their commit
-- order and so their time order: the index on time cost a page write in every
-- commit that records an event, for a read done once an hour.
DROP INDEX events_by_time;
