// Package sqlite is the embedded storage backend of the history service: a
// single SQLite file in WAL mode, through the pure-Go driver
// modernc.org/sqlite, so the hub needs no C toolchain and cross-compiles to
// ARM.
//
// Open creates or opens a database file and brings its schema up to date
// with the migrations embedded in the binary (migrations/NNNN_name.sql,
// applied in order in one transaction and recorded in schema_migrations);
// a file migrated by a newer binary is refused.
//
// A Store implements history.Store. Raw points live in a WITHOUT ROWID
// table clustered by (entity, time in microseconds), entities being mapped
// to small integer ids, so a point costs a few tens of bytes and a history
// query reads contiguous pages. Five-minute statistics are merged in by
// the same transaction that stores the points, together with the ledger of
// stored (stream, sequence) ranges that makes Write exactly once. Hourly
// statistics are the exact merge of their twelve 5-minute buckets: Purge
// rolls each hour up into the hourly table once it is an hour past, and
// until then a query merges the hour from its 5-minute rows, so a batch
// writes one statistics row per entity instead of two. A point arriving
// for an hour already rolled up is merged into both tiers.
//
// The hourly tier of closed days is packed: an hour after a UTC day ends,
// Purge moves its hourly rows into one row per entity and day holding
// history.PackHours of them, so a year of an entity's hours is 365 rows
// instead of 8,760, and a query decodes the packed days and merges them
// with the hourly rows not packed yet. A late point for a packed hour
// goes to an hourly row as before; queries merge it with the packed day
// until the next Purge folds it in. Retention removes packed hours as it
// removes rows, rewriting the day its cutoff falls in.
//
// Guarantees: a Write is one BEGIN IMMEDIATE transaction, so it is atomic
// and serialised against every other writer of the file, in this process
// or another one; once Write returns, the batch survives a crash of the
// process. Readers use their own connections and never wait for a writer
// (WAL). Purge rolls up, packs and deletes in bounded steps, each its own
// short transaction. A packed day that does not decode is never skipped:
// the queries and the Purge steps that need it fail with an error naming
// the entity and the day.
package sqlite
