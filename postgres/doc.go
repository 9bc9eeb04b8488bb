// Package postgres is the PostgreSQL backend of the history service,
// through pgx: it implements history.Store in one database (Open) or
// spread over several by home (OpenSharded).
//
// Raw points and events are range-partitioned by UTC day, so retention
// drops whole partitions; entities are mapped to small integer ids so a
// numeric raw point carries 24 bytes of data. Statistics (5-minute and hourly
// buckets) are merged in the same transaction as the points that change
// them, together with the ledger of stored stream sequences that makes
// writes exactly-once: two processes writing overlapping batches
// serialise on an advisory lock per (home, stream) taken just before
// commit. The schema is migrated on Open from migrations embedded in the
// binary, once even when several processes start together.
//
// The hourly tier of closed days is packed: Purge moves the stats_1h rows
// of every day that ended at least an hour ago into stats_1h_days, one row
// per entity and UTC day holding history.PackHours of the day's buckets,
// so that a chart of a year reads 365 rows instead of 8,760. One process
// packs at a time, in bounded transactions. Writers are unaware of it: a
// late point for a packed hour is merged into a stats_1h row as any other,
// read together with its packed day, and folded into the day by a later
// Purge. A read takes both forms from one snapshot, so that every hour is
// seen once, in one form or the other, even while its day is being packed.
//
// DSNs can carry passwords: nothing here logs one or puts one in an error.
package postgres
