package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the second, read-only look at the SQLite file

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/postgres"
	"github.com/homemesh/homemesh/sqlite"
)

// Store backends the history benchmark runs against.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

// benchStore is a fresh store for one run, with what the benchmark needs
// beyond history.Store: its on-disk footprint, and its removal.
type benchStore struct {
	history.Store
	// where describes the store in the result, without credentials.
	where string
	// disk measures the store's footprint per table.
	disk func(ctx context.Context) (total int64, tables map[string]int64, how string, err error)
	// rawTable is the table of raw points in the footprint's tables.
	rawTable string
	// remove drops what the store left behind; it runs after Close.
	remove func(ctx context.Context) error
}

// openBenchStore opens an empty store of the configured kind: a SQLite
// file in dir, or a PostgreSQL database created for the run on the
// server cfg.DSN names.
func openBenchStore(ctx context.Context, cfg HistoryConfig, dir string) (*benchStore, error) {
	switch cfg.Store {
	case StoreSQLite:
		return openSQLite(dir)
	case StorePostgres:
		return openPostgres(ctx, cfg.DSN)
	}
	return nil, homemesh.Invalid("store", "%q is not %s or %s", cfg.Store, StoreSQLite, StorePostgres)
}

func openSQLite(dir string) (*benchStore, error) {
	path := filepath.Join(dir, "history.db")
	st, err := sqlite.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	return &benchStore{
		Store:    st,
		where:    "SQLite file in a temporary directory, removed afterwards",
		rawTable: sqliteRawTable,
		disk:     func(ctx context.Context) (int64, map[string]int64, string, error) { return sqliteFootprint(ctx, path) },
		remove:   func(context.Context) error { return nil }, // the directory goes with the run's
	}, nil
}

// sqliteFootprint checkpoints the WAL into the database file (TRUNCATE
// leaves the WAL empty), then returns the file's size and, from the dbstat
// table, the pages of each table together with its indexes.
func sqliteFootprint(ctx context.Context, path string) (int64, map[string]int64, string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, nil, "", err
	}
	defer db.Close()
	var busy, logFrames, checkpointed int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return 0, nil, "", fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return 0, nil, "", errors.New("checkpoint: the database stayed busy")
	}
	rows, err := db.QueryContext(ctx, `SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat d
		JOIN sqlite_schema s ON s.name = d.name GROUP BY s.tbl_name`)
	if err != nil {
		return 0, nil, "", fmt.Errorf("dbstat: %w", err)
	}
	defer rows.Close()
	tables := map[string]int64{}
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			return 0, nil, "", err
		}
		tables[name] = size
	}
	if err := rows.Err(); err != nil {
		return 0, nil, "", err
	}
	var total int64
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		if err == nil {
			total += fi.Size()
		} else if !errors.Is(err, os.ErrNotExist) {
			return 0, nil, "", err
		}
	}
	return total, tables, "database file + WAL after a TRUNCATE checkpoint; tables from dbstat, indexes included", nil
}

// benchDatabasePrefix names the databases the benchmark creates, so that
// one left behind by a killed run is recognisable.
const benchDatabasePrefix = "homemesh_bench_"

func openPostgres(ctx context.Context, dsn string) (*benchStore, error) {
	if dsn == "" {
		return nil, homemesh.Invalid("dsn", "a PostgreSQL server is required for the postgres store")
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	host := admin.Config().Host
	name := benchDatabasePrefix + homemesh.RandomID(10)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func(ctx context.Context) error {
		defer admin.Close(context.WithoutCancel(ctx))
		_, err := admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		return err
	}
	benchDSN, err := withDatabase(dsn, name)
	if err != nil {
		return nil, errors.Join(err, drop(ctx))
	}
	st, err := postgres.Open(ctx, benchDSN)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open postgres store: %w", err), drop(ctx))
	}
	return &benchStore{
		Store:    st,
		where:    fmt.Sprintf("PostgreSQL database %s created on %s for the run, dropped afterwards", name, host),
		rawTable: postgresRawTable,
		disk: func(ctx context.Context) (int64, map[string]int64, string, error) {
			return postgresFootprint(ctx, admin, name)
		},
		remove: drop,
	}, nil
}

// withDatabase returns dsn naming database name instead of its own. Both
// forms pgx accepts are handled: a URL, and key=value pairs (where a later
// key overrides an earlier one).
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", homemesh.Invalid("dsn", "not a URL") // the DSN may hold a password: not echoed
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}

// postgresFootprint returns the size of each table of database name
// (partitions summed into their root; indexes and TOAST included) and
// their sum. The sum leaves out the system catalogs, which an empty
// database already fills with several megabytes.
func postgresFootprint(ctx context.Context, admin *pgx.Conn, name string) (int64, map[string]int64, string, error) {
	// Relation sizes can only be read from inside the database.
	cfg := admin.Config().Copy()
	cfg.Database = name
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, nil, "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT COALESCE(pg_partition_root(c.oid), c.oid)::regclass::text, SUM(pg_total_relation_size(c.oid))::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
		GROUP BY 1`)
	if err != nil {
		return 0, nil, "", err
	}
	tables := map[string]int64{}
	var total int64
	for rows.Next() {
		var table string
		var size int64
		if err := rows.Scan(&table, &size); err != nil {
			return 0, nil, "", err
		}
		tables[table] = size
		total += size
	}
	if err := rows.Err(); err != nil {
		return 0, nil, "", err
	}
	return total, tables, "pg_total_relation_size per table (heap, indexes, TOAST; partitions summed), total = all the store's tables", nil
}

// countingStore passes every call to the store it wraps and counts what
// the writes stored, so that the benchmark knows when the store holds
// every accepted point and when the last of them was committed.
type countingStore struct {
	history.Store
	points, duplicates, writes atomic.Int64
	lastCommit                 atomic.Int64 // unix nanoseconds
	// writeTime holds the duration of every successful write, and busy
	// their sum: whether the service's writer was ever idle.
	writeTime histogram
	busy      atomic.Int64
}

func (s *countingStore) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	start := time.Now()
	res, err := s.Store.Write(ctx, b)
	if err == nil {
		d := time.Since(start)
		s.writeTime.record(int64(d))
		s.busy.Add(int64(d))
		s.writes.Add(1)
		s.duplicates.Add(int64(res.Duplicates))
		if res.Points > 0 {
			// The time first: whoever sees the count complete sees the
			// commit that completed it.
			s.lastCommit.Store(time.Now().UnixNano())
			s.points.Add(int64(res.Points))
		}
	}
	return res, err
}

// The tables of raw points, as the stores' migrations name them.
const (
	sqliteRawTable   = "points"
	postgresRawTable = "points"
)
