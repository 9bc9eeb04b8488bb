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
// DSNs can carry passwords: nothing here logs one or puts one in an error.
package postgres
