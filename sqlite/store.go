package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

var _ history.Store = (*Store)(nil)

// readers is how many connections serve queries at once. Readers never
// block each other or the writer in WAL mode; more connections than cores
// buy little.
const readers = 4

// writerCacheKiB is the writer's page cache; readers keep SQLite's default
// (2 MiB each).
const writerCacheKiB = 32 << 10

// busyTimeout is how long a connection waits for another process's lock
// (the write lock, or a checkpoint) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a history store in one SQLite file. Its methods are safe for
// concurrent use; writes are serialised.
type Store struct {
	path string
	// w has exactly one connection: SQLite allows one writer per file, so
	// a pool would only queue on the file lock instead of on the pool.
	w *sql.DB
	r *sql.DB

	stmts writeStmts

	// wmu serialises Write (and so the use of stmts and the entity
	// updates it prepares) within the process.
	wmu sync.Mutex

	mu       sync.RWMutex
	entities map[entityKey]entityRow
}

type entityKey struct{ home, entity string }

type entityRow struct {
	id     int64
	device string
	kind   homemesh.EntityKind
}

// Open opens the history database at path, creating it (and its directory,
// readable by the owner only) when it does not exist, and migrates it to
// the schema this program knows. A database whose schema is newer than the
// program's is refused.
//
// Only one Store per process should open a file; several processes may open
// the same file, and their writes are serialised by SQLite's write lock.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, homemesh.Invalid("path", "is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open history db: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open history db: %w", err)
	}
	// Create the file before SQLite does, so that it (and the -wal and -shm
	// files, which SQLite creates with the main file's permissions) is
	// private to the owner whatever the umask.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open history db: %w", err)
	}
	f.Close()

	s := &Store{path: abs, entities: map[entityKey]entityRow{}}
	if s.w, err = openDB(abs, true); err != nil {
		return nil, fmt.Errorf("open history db: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	ctx := context.Background()
	migrations, err := loadMigrations(migrationFiles)
	if err == nil {
		err = migrate(ctx, s.w, migrations, time.Now())
	}
	if err == nil {
		err = s.stmts.prepare(ctx, s.w)
	}
	if err == nil {
		s.r, err = openDB(abs, false)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open history db: %w", err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	return s, nil
}

// openDB opens a pool on the file at path. Every connection runs in WAL
// mode with synchronous=NORMAL: a commit appends to the WAL and returns
// without an fsync; the WAL is synced at each checkpoint. That loses
// nothing when the process dies (kill -9, a panic, an OOM kill): the
// committed frames are already in the operating system's page cache and
// the next open recovers them from the WAL. Only a power loss or a kernel
// crash can lose the last transactions, and even then the database stays
// consistent. FULL would add an fsync to every batch, which on a hub's SD
// card costs far more than batching saves.
//
// The writer begins its transactions IMMEDIATE: the write lock is taken
// before the ledger is read, so two processes writing overlapping batches
// are serialised and cannot both store a message.
func openDB(path string, writer bool) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if writer {
		q.Set("_txlock", "immediate")
		// A batch of points of many entities dirties a page per entity in
		// each table; a larger cache keeps those pages between batches,
		// and checkpointing every 10,000 pages (≈ 40 MiB of WAL) instead
		// of 1,000 copies a page rewritten by many batches back into the
		// file once. The WAL is truncated back to 64 MiB after a
		// checkpoint. Both cut the writer's CPU per point by 10–20 %.
		q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writerCacheKiB))
		q.Add("_pragma", "wal_autocheckpoint(10000)")
		q.Add("_pragma", "journal_size_limit(67108864)")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the database. Writes that returned are durable whether or
// not Close is called.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var errs []error
	errs = append(errs, s.stmts.close())
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

// entity returns the cached row of an entity.
func (s *Store) entity(home, entity string) (entityRow, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.entities[entityKey{home, entity}]
	return e, ok
}

// lookupEntity returns the row of an entity, reading it when it is not
// cached; ok is false when the entity has never been stored.
func (s *Store) lookupEntity(ctx context.Context, home, entity string) (e entityRow, ok bool, err error) {
	if e, ok := s.entity(home, entity); ok {
		return e, true, nil
	}
	err = s.r.QueryRowContext(ctx, `SELECT id, device, kind FROM entities WHERE home = ? AND entity = ?`, home, entity).
		Scan(&e.id, &e.device, &e.kind)
	if errors.Is(err, sql.ErrNoRows) {
		return entityRow{}, false, nil
	}
	if err != nil {
		return entityRow{}, false, err
	}
	s.mu.Lock()
	s.entities[entityKey{home, entity}] = e
	s.mu.Unlock()
	return e, true, nil
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
