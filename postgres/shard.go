package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

var _ history.Store = (*Sharded)(nil)

// Shard is one database of a sharded deployment.
type Shard struct {
	Name string // stable: the directory records homes by shard name
	DSN  string
}

var shardName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ParseShards parses shard map entries of the form name=DSN, such as
// "eu1=postgres://history@db1/history". Names are unique, short, lower
// case; no two entries may name the same database. Errors name the entry
// by position, never quote its DSN.
func ParseShards(specs []string) ([]Shard, error) {
	if len(specs) == 0 {
		return nil, homemesh.Invalid("shards", "no shard configured")
	}
	type where struct {
		host     string
		port     uint16
		database string
	}
	names := map[string]int{}
	places := map[where]int{}
	out := make([]Shard, 0, len(specs))
	for i, spec := range specs {
		field := fmt.Sprintf("shards[%d]", i)
		name, dsn, ok := strings.Cut(spec, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, homemesh.Invalid(field, "is not name=DSN")
		}
		if !shardName.MatchString(name) {
			return nil, homemesh.Invalid(field+".name", "must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
		}
		if j, dup := names[name]; dup {
			return nil, homemesh.Invalid(field+".name", "%q is also the name of shards[%d]", name, j)
		}
		dsn = strings.TrimSpace(dsn)
		if dsn == "" {
			return nil, homemesh.Invalid(field+".dsn", "is empty")
		}
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			return nil, homemesh.Invalid(field+".dsn", "does not parse as a PostgreSQL URL or key=value string")
		}
		w := where{cfg.Host, cfg.Port, cfg.Database}
		if j, dup := places[w]; dup {
			return nil, homemesh.Invalid(field+".dsn", "names the same database as shards[%d]", j)
		}
		names[name], places[w] = i, i
		out = append(out, Shard{Name: name, DSN: dsn})
	}
	return out, nil
}

// Sharded is a history store spread over several databases by home: all
// of a home's data lives in one shard. Which shard holds a home is recorded
// in a directory in the first shard the first time the home writes; a new
// home goes to the shard holding the fewest homes, and a home never moves,
// so adding a shard only takes new homes.
type Sharded struct {
	shards []*Store
	names  []string

	mu     sync.Mutex
	homeOf map[string]int // cached directory entries: they never change
}

// OpenSharded opens every shard, migrating each. It refuses a
// configuration that would misplace homes: a database that was
// configured under another name, or a first shard that is not the one
// holding the directory (removing or reordering the first shard).
func OpenSharded(ctx context.Context, shards []Shard) (*Sharded, error) {
	if len(shards) == 0 {
		return nil, homemesh.Invalid("shards", "no shard configured")
	}
	s := &Sharded{homeOf: map[string]int{}}
	for i, sh := range shards {
		if !shardName.MatchString(sh.Name) || slices.Index(s.names, sh.Name) >= 0 {
			s.Close()
			return nil, homemesh.Invalid(fmt.Sprintf("shards[%d].name", i), "%q is not a valid, unique shard name", sh.Name)
		}
		st, err := Open(ctx, sh.DSN)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("shard %s: %w", sh.Name, err)
		}
		s.shards, s.names = append(s.shards, st), append(s.names, sh.Name)
		if err := checkShardIdentity(ctx, st, sh.Name, shards[0].Name); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// checkShardIdentity records, on first use, which shard a database is and
// which shard holds the directory, and checks both on every later open.
func checkShardIdentity(ctx context.Context, st *Store, name, directory string) error {
	if _, err := st.pool.Exec(ctx, "INSERT INTO shard_meta (name, directory) VALUES ($1, $2) ON CONFLICT DO NOTHING", name, directory); err != nil {
		return fmt.Errorf("shard %s: record identity: %w", name, err)
	}
	var was, dir string
	if err := st.pool.QueryRow(ctx, "SELECT name, directory FROM shard_meta").Scan(&was, &dir); err != nil {
		return fmt.Errorf("shard %s: read identity: %w", name, err)
	}
	if was != name {
		return homemesh.Errorf(homemesh.KindConflict, "the database configured as shard %q is shard %q: shards must keep their names", name, was)
	}
	if dir != directory {
		return homemesh.Errorf(homemesh.KindConflict, "shard %q holds the home directory and must stay the first shard (the first configured is %q)", dir, directory)
	}
	return nil
}

// shardOf returns the shard of home, placing a new home when place is
// set; without place, an unknown home yields nil.
func (s *Sharded) shardOf(ctx context.Context, home string, place bool) (*Store, error) {
	s.mu.Lock()
	i, ok := s.homeOf[home]
	s.mu.Unlock()
	if ok {
		return s.shards[i], nil
	}
	dir := s.shards[0]
	var shard string
	err := dir.pool.QueryRow(ctx, "SELECT shard FROM shard_homes WHERE home = $1", home).Scan(&shard)
	switch {
	case err == pgx.ErrNoRows && !place:
		return nil, nil
	case err == pgx.ErrNoRows:
		shard, err = s.place(ctx, home)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("read home directory: %w", err)
	}
	i = slices.Index(s.names, shard)
	if i < 0 {
		return nil, homemesh.Errorf(homemesh.KindUnavailable, "home %q lives on shard %q, which is not configured", home, shard)
	}
	s.mu.Lock()
	s.homeOf[home] = i
	s.mu.Unlock()
	return s.shards[i], nil
}

// place records a new home on the configured shard holding the fewest
// homes (the first among equals). The directory lock makes concurrent
// placements by several processes see each other's counts.
func (s *Sharded) place(ctx context.Context, home string) (string, error) {
	var shard string
	err := pgx.BeginFunc(ctx, s.shards[0].pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockDirectory); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, "SELECT shard FROM shard_homes WHERE home = $1", home).Scan(&shard)
		if err != pgx.ErrNoRows {
			return err // placed meanwhile, or failed
		}
		counts := make(map[string]int64, len(s.names))
		rows, err := tx.Query(ctx, "SELECT shard, count(*) FROM shard_homes WHERE shard = ANY($1) GROUP BY shard", s.names)
		if err != nil {
			return err
		}
		for rows.Next() {
			var name string
			var n int64
			if err := rows.Scan(&name, &n); err != nil {
				return err
			}
			counts[name] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		shard = s.names[0]
		for _, name := range s.names[1:] {
			if counts[name] < counts[shard] {
				shard = name
			}
		}
		_, err = tx.Exec(ctx, "INSERT INTO shard_homes (home, shard, assigned_at) VALUES ($1, $2, $3)", home, shard, time.Now())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("place home on a shard: %w", err)
	}
	return shard, nil
}

// Write stores the batch in its home's shard, placing a new home first.
func (s *Sharded) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	if err := validateBatch(b); err != nil {
		return history.WriteResult{}, err
	}
	st, err := s.shardOf(ctx, b.Home, true)
	if err != nil {
		return history.WriteResult{}, err
	}
	return st.Write(ctx, b)
}

// History reads from the home's shard. A home never written has no
// history: the directory shard answers, with an empty page.
func (s *Sharded) History(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	st, err := s.readShard(ctx, q.Home)
	if err != nil {
		return history.HistoryPage{}, err
	}
	return st.History(ctx, q)
}

// Events reads from the home's shard, like History.
func (s *Sharded) Events(ctx context.Context, q history.EventQuery) (history.EventPage, error) {
	st, err := s.readShard(ctx, q.Home)
	if err != nil {
		return history.EventPage{}, err
	}
	return st.Events(ctx, q)
}

func (s *Sharded) readShard(ctx context.Context, home string) (*Store, error) {
	if err := checkText("home", home, true); err != nil {
		return nil, err
	}
	st, err := s.shardOf(ctx, home, false)
	if err != nil || st != nil {
		return st, err
	}
	return s.shards[0], nil
}

// Purge purges every shard with the same policy and bound.
func (s *Sharded) Purge(ctx context.Context, now time.Time, p history.RetentionPolicy, limit int) (history.PurgeResult, error) {
	var total history.PurgeResult
	for i, st := range s.shards {
		r, err := st.Purge(ctx, now, p, limit)
		if err != nil {
			return total, fmt.Errorf("shard %s: %w", s.names[i], err)
		}
		total.Points += r.Points
		total.Stats += r.Stats
		total.Events += r.Events
		total.Ledger += r.Ledger
		total.More = total.More || r.More
	}
	return total, nil
}

// Close closes every shard.
func (s *Sharded) Close() error {
	for _, st := range s.shards {
		st.Close()
	}
	return nil
}
