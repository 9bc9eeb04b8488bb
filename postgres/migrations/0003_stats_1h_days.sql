-- The hourly tier of closed days, packed: one row per entity and UTC day
-- whose data is history.PackHours of that day's hourly buckets, so that a
-- year of an entity's hours is 365 rows instead of 8,760. Purge moves the
-- stats_1h rows of days that ended at least an hour ago into it; a late
-- point for a packed hour goes to stats_1h as any other, is merged with
-- the packed day on read, and is folded into it by a later Purge.
--
-- A version 1 value is at most 1,753 bytes, below the size at which
-- PostgreSQL compresses or moves a row out of line, so today no packed
-- day is ever TOASTed. STORAGE EXTERNAL keeps it so uncompressed should a
-- later format outgrow that: the data is mostly floating point, which
-- compresses poorly, and every chart of a year would pay for the
-- decompression.
CREATE TABLE stats_1h_days (
	entity_id integer NOT NULL,
	day       timestamptz NOT NULL,
	data      bytea NOT NULL,
	PRIMARY KEY (entity_id, day)
);
ALTER TABLE stats_1h_days ALTER COLUMN data SET STORAGE EXTERNAL;
