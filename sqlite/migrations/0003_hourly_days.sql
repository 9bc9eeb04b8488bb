-- The hourly tier of closed days is packed: one row per entity and UTC
-- day whose data is history.PackHours of that day's hourly buckets, so a
-- year of an entity's hours is about 365 rows instead of 8,760 and a chart
-- of a year costs SQLite 24 times fewer rows. day is the day's UTC
-- midnight in microseconds.
--
-- Purge moves the stats_1h rows of days that ended at least an hour ago
-- into this table, merging them into the day's packed value. A late point
-- for a packed hour still goes to stats_1h, is merged with the packed day
-- when read, and is folded into it by a later Purge. stats_1h therefore
-- holds the rolled-up hours of today (and of yesterday until 01:00 UTC)
-- and the late points of older days.
--
-- Unlike the other tables it has a rowid: a busy sensor's day packs into
-- a little over 1,000 bytes, and a WITHOUT ROWID table stores a row of
-- more than about 1,000 bytes (on 4 KiB pages) with most of it on an
-- overflow page of its own: 4.6 KiB a day instead of 1.4 KiB. Reading a
-- year through the primary key's index is as fast as reading clustered
-- rows.
CREATE TABLE stats_1h_days (
	entity_id INTEGER NOT NULL,
	day       INTEGER NOT NULL,
	data      BLOB NOT NULL,
	PRIMARY KEY (entity_id, day)
);

-- Purge asks every minute whether stats_1h holds a row of a closed day;
-- without this index that is a scan of every entity's recent hours. The
-- index changes only when a row is created or packed, not when a late
-- point merges into an existing row.
CREATE INDEX stats_1h_start ON stats_1h (start);
