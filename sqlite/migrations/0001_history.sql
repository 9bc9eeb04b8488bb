-- The history schema. Entities are mapped to small integer ids so that
-- every raw point and statistics row carries 8 bytes of identity instead
-- of a string; raw points and statistics are WITHOUT ROWID tables
-- clustered by (entity, time), so a history query reads one contiguous
-- run of pages and a point costs no separate rowid index.

CREATE TABLE entities (
	id     INTEGER PRIMARY KEY,
	home   TEXT NOT NULL,
	entity TEXT NOT NULL,
	device TEXT NOT NULL,
	kind   TEXT NOT NULL,
	UNIQUE (home, entity)
);

-- ts is microseconds since the Unix epoch. Numeric points carry value,
-- the others state; attrs is the attributes' JSON, NULL when none.
CREATE TABLE points (
	entity_id INTEGER NOT NULL,
	ts        INTEGER NOT NULL,
	value     REAL,
	state     TEXT,
	attrs     BLOB,
	PRIMARY KEY (entity_id, ts)
) WITHOUT ROWID;

-- Statistics buckets; start is the bucket's start in microseconds. min,
-- max, last and last_ts are NULL while num_count is 0.
CREATE TABLE stats_5m (
	entity_id INTEGER NOT NULL,
	start     INTEGER NOT NULL,
	count     INTEGER NOT NULL,
	num_count INTEGER NOT NULL,
	sum       REAL NOT NULL,
	min       REAL,
	max       REAL,
	last      REAL,
	last_ts   INTEGER,
	on_us     INTEGER NOT NULL,
	PRIMARY KEY (entity_id, start)
) WITHOUT ROWID;

CREATE TABLE stats_1h (
	entity_id INTEGER NOT NULL,
	start     INTEGER NOT NULL,
	count     INTEGER NOT NULL,
	num_count INTEGER NOT NULL,
	sum       REAL NOT NULL,
	min       REAL,
	max       REAL,
	last      REAL,
	last_ts   INTEGER,
	on_us     INTEGER NOT NULL,
	PRIMARY KEY (entity_id, start)
) WITHOUT ROWID;

-- Events are ordered by (ts, id) within a home; the kind and device
-- indexes serve filtered queries, the ts index the retention purge.
CREATE TABLE events (
	home   TEXT NOT NULL,
	ts     INTEGER NOT NULL,
	id     TEXT NOT NULL,
	kind   TEXT NOT NULL,
	device TEXT NOT NULL,
	entity TEXT NOT NULL,
	data   BLOB,
	PRIMARY KEY (home, ts, id)
) WITHOUT ROWID;
CREATE INDEX events_kind ON events (home, kind, ts, id);
CREATE INDEX events_device ON events (home, device, ts, id);
CREATE INDEX events_ts ON events (ts);

-- The ledger: which messages of each stream are stored, as disjoint
-- ranges of sequence numbers [first_seq, last_seq]; committed_at
-- (microseconds) is the last time a range grew.
CREATE TABLE ledger (
	home         TEXT NOT NULL,
	stream       TEXT NOT NULL,
	first_seq    INTEGER NOT NULL,
	last_seq     INTEGER NOT NULL,
	committed_at INTEGER NOT NULL,
	PRIMARY KEY (home, stream, first_seq)
) WITHOUT ROWID;
CREATE INDEX ledger_committed ON ledger (committed_at);
