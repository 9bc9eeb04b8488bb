-- Hourly statistics are rolled up from the 5-minute rows once an hour is
-- past, instead of being merged by every batch: an hour's statistics are
-- exactly the merge of its twelve 5-minute buckets, and a batch then writes
-- one statistics row per entity instead of two.
--
-- hourly_until is the rollup's watermark, in microseconds: stats_1h holds
-- every hour before it (a late point for such an hour is merged into both
-- tiers); the hours from it on are read as the merge of their 5-minute rows.
-- A database that had merged every hour so far starts after its last hour.
CREATE TABLE rollup (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	hourly_until INTEGER NOT NULL
);
INSERT INTO rollup (id, hourly_until)
	SELECT 1, coalesce(max(start) + 3600000000, -9223372036854775808) FROM stats_1h;

-- The rollup reads the 5-minute rows of all entities in time order. The
-- index grows only when a bucket is created, at its end.
CREATE INDEX stats_5m_start ON stats_5m (start);
