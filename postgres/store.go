package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/homemesh/homemesh/history"
)

var _ history.Store = (*Store)(nil)

// Store is a history store in one PostgreSQL database. It is safe for
// concurrent use, also by several processes sharing the database.
type Store struct {
	pool  *pgxpool.Pool
	parts *partitions

	// entities caches the ids of entities known to be stored with their
	// current device and kind.
	mu       sync.Mutex
	entities map[entityKey]entityRow

	// Raw points are first copied straight into their partitions
	// (copyPoints), the fastest way in; when that meets a point already
	// stored, the batch is redone with insert, which skips such points.
	direct bool
	insert pointInserter
}

type entityKey struct{ home, entity string }

type entityRow struct {
	id           int32
	device, kind string
}

// querier is what both a pool connection and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Open connects to the database at dsn and migrates its schema. The DSN is
// a PostgreSQL URL or key=value string; it may hold a password, so errors
// name only the host and database.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN: never pass them on.
		return nil, fmt.Errorf("open history database: the DSN does not parse")
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, stagingTable)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open history database %s: %w", where, redact(err))
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate history database %s: %w", where, redact(err))
	}
	return &Store{
		pool:     pool,
		parts:    newPartitions(pool),
		entities: map[entityKey]entityRow{},
		direct:   true,
		insert:   insertPointsCopy,
	}, nil
}

// redact keeps connection errors (they name the user, database and
// address, never the password) but replaces any that carries the DSN.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("the DSN does not parse")
	}
	return err
}

// Close closes the store's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
