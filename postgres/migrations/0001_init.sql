-- Entities get small integer ids so that a raw point carries 4 bytes of
-- identity instead of a home and an entity id as text.
CREATE TABLE entities (
	id     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	home   text NOT NULL,
	entity text NOT NULL,
	device text NOT NULL DEFAULT '',
	kind   text NOT NULL DEFAULT '',
	UNIQUE (home, entity)
);
CREATE INDEX entities_kind ON entities (kind);

-- Raw points, one partition per UTC day (points_YYYYMMDD), created ahead by
-- Write and Purge. The key is the only index: it deduplicates (first point
-- at a microsecond wins) and serves the per-entity time-range queries.
-- Column order keeps the row at 24 data bytes for a numeric point.
CREATE TABLE points (
	entity_id integer NOT NULL,
	ts        timestamptz NOT NULL,
	value     float8,
	state     text,
	attrs     bytea,
	PRIMARY KEY (entity_id, ts)
) PARTITION BY RANGE (ts);

-- Statistics, merged in as batches commit. last_time, min, max and last are
-- NULL while a bucket has no numeric point.
CREATE TABLE stats_5m (
	entity_id integer NOT NULL,
	start     timestamptz NOT NULL,
	count     bigint NOT NULL,
	num_count bigint NOT NULL,
	sum       float8 NOT NULL,
	min       float8,
	max       float8,
	last      float8,
	last_time timestamptz,
	on_micros bigint NOT NULL,
	PRIMARY KEY (entity_id, start)
);

CREATE TABLE stats_1h (LIKE stats_5m INCLUDING ALL);

-- Events, one partition per UTC day (events_YYYYMMDD).
CREATE TABLE events (
	home   text NOT NULL,
	ts     timestamptz NOT NULL,
	id     text NOT NULL,
	kind   text NOT NULL,
	device text NOT NULL DEFAULT '',
	entity text NOT NULL DEFAULT '',
	data   bytea,
	PRIMARY KEY (home, ts, id)
) PARTITION BY RANGE (ts);

-- The ledger: which stream sequences each home has stored, as disjoint
-- inclusive ranges; adjacent ranges are merged as batches commit.
CREATE TABLE ledger (
	home         text NOT NULL,
	stream       text NOT NULL,
	first_seq    bigint NOT NULL,
	last_seq     bigint NOT NULL,
	committed_at timestamptz NOT NULL,
	PRIMARY KEY (home, stream, first_seq),
	CHECK (first_seq <= last_seq)
);
CREATE INDEX ledger_committed_at ON ledger (committed_at);

-- Sharding by home: the first shard's shard_homes is the directory of which
-- shard holds each home; shard_meta records, on every shard, its own name
-- and the name of the directory shard, so that a reordered or shrunken
-- configuration is refused instead of silently re-placing homes.
CREATE TABLE shard_homes (
	home        text PRIMARY KEY,
	shard       text NOT NULL,
	assigned_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shard_homes_shard ON shard_homes (shard);

CREATE TABLE shard_meta (
	only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	name      text NOT NULL,
	directory text NOT NULL
);
