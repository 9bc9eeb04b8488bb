package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Advisory lock keys. The single-key (bigint) locks and the two-key
// (integer, integer) entity locks live in separate key spaces in
// PostgreSQL, so they never collide.
const (
	lockMigrate    int64 = 0x686d_6d69_6772 // schema migrations
	lockPartitions int64 = 0x686d_7061_7274 // creating, attaching and dropping partitions
	lockDirectory  int64 = 0x686d_6469_7220 // placing a new home on a shard
	lockPacked     int64 = 0x686d_7061_636b // changing stats_1h_days: packing closed days, purging packed hours
	lockEntities   int32 = 0x686d           // first key of an entity's lock; the second is its id
)

// ledgerLock is the key of the lock that serialises the ledger check and
// insert of one (home, stream).
func ledgerLock(home, stream string) int64 {
	h := fnv.New64a()
	h.Write([]byte("ledger\x00" + home + "\x00" + stream))
	return int64(h.Sum64())
}

// Tables partitioned by day.
const (
	pointsTable = "points"
	eventsTable = "events"
)

const day = 24 * time.Hour

// dayOf is the number of t's UTC day since 1970-01-01.
func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

func dayStart(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

func partitionName(table string, d int64) string {
	return table + "_" + dayStart(d).Format("20060102")
}

// partitionDay parses the day out of a partition's name.
func partitionDay(table, name string) (int64, bool) {
	if len(name) != len(table)+9 || name[:len(table)+1] != table+"_" {
		return 0, false
	}
	t, err := time.Parse("20060102", name[len(table)+1:])
	if err != nil {
		return 0, false
	}
	return dayOf(t), true
}

// partitionState is what the catalog says of one day table.
type partitionState struct {
	attached bool
	pending  bool // an interrupted DETACH … CONCURRENTLY is waiting to be finalised
}

// listPartitions returns the day tables of table found in its schema,
// attached or not (a crash can leave one created but not yet attached, or
// detached but not yet dropped).
func listPartitions(ctx context.Context, q querier, table string) (map[int64]partitionState, error) {
	rows, err := q.Query(ctx, `
		SELECT c.relname, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false)
		FROM pg_class c
		LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = to_regclass($1)
		WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass($1))
		  AND c.relkind = 'r' AND c.relname ~ ('^' || $1 || '_[0-9]{8}$')`, table)
	if err != nil {
		return nil, err
	}
	out := map[int64]partitionState{}
	for rows.Next() {
		var name string
		var st partitionState
		if err := rows.Scan(&name, &st.attached, &st.pending); err != nil {
			return nil, err
		}
		if d, ok := partitionDay(table, name); ok {
			out[d] = st
		}
	}
	return out, rows.Err()
}

// partitions remembers which day partitions exist, so that a Write touches
// the catalog only when a batch reaches a new day.
type partitions struct {
	pool *pgxpool.Pool
	mu   chan struct{} // held while the cache is read or changed
	days map[string]map[int64]bool
}

func newPartitions(pool *pgxpool.Pool) *partitions {
	p := &partitions{pool: pool, mu: make(chan struct{}, 1), days: map[string]map[int64]bool{}}
	return p
}

func (p *partitions) lock(ctx context.Context) error {
	select {
	case p.mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *partitions) unlock() { <-p.mu }

// forget drops the cache, after another process may have dropped a
// partition this one believed in.
func (p *partitions) forget() {
	p.mu <- struct{}{}
	p.days = map[string]map[int64]bool{}
	<-p.mu
}

// ensure makes sure table has a partition for every day in days and for the
// day after each, so that writers crossing midnight rarely wait for one.
// Partitions are created with CREATE TABLE … (LIKE …) and then attached:
// ATTACH PARTITION takes only a SHARE UPDATE EXCLUSIVE lock on the parent,
// so concurrent writers and readers go on (CREATE TABLE … PARTITION OF
// would take ACCESS EXCLUSIVE). Processes serialise on an advisory lock;
// every step is idempotent, so a crash between them is repaired next time.
func (p *partitions) ensure(ctx context.Context, table string, days []int64) error {
	if err := p.lock(ctx); err != nil {
		return err
	}
	defer p.unlock()
	known := p.days[table]
	var missing []int64
	for _, d := range days {
		for _, d := range []int64{d, d + 1} {
			if !known[d] && !slices.Contains(missing, d) {
				missing = append(missing, d)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return withSessionLock(ctx, conn, lockPartitions, func() error {
		existing, err := listPartitions(ctx, conn, table)
		if err != nil {
			return err
		}
		for _, d := range missing {
			st, ok := existing[d]
			if ok && st.attached && !st.pending {
				continue
			}
			if err := createPartition(ctx, conn, table, d, ok, st); err != nil {
				return err
			}
			existing[d] = partitionState{attached: true}
		}
		fresh := map[int64]bool{}
		for d, st := range existing {
			if st.attached && !st.pending {
				fresh[d] = true
			}
		}
		p.days[table] = fresh
		return nil
	})
}

func createPartition(ctx context.Context, conn *pgxpool.Conn, table string, d int64, exists bool, st partitionState) error {
	name := pgx.Identifier{partitionName(table, d)}.Sanitize()
	parent := pgx.Identifier{table}.Sanitize()
	if st.pending {
		// A partition whose concurrent detach was interrupted is finished
		// off and re-attached; its rows are still wanted.
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s FINALIZE", parent, name)); err != nil {
			return fmt.Errorf("finalise detach of %s: %w", name, err)
		}
		st.attached = false
	}
	if !exists {
		sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)", name, parent)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create partition %s: %w", name, err)
		}
	}
	if !st.attached {
		from, to := dayStart(d).Format(time.RFC3339), dayStart(d+1).Format(time.RFC3339)
		sql := fmt.Sprintf("ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')", parent, name, from, to)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("attach partition %s: %w", name, err)
		}
	}
	return nil
}

// withSessionLock runs f holding a session advisory lock on conn. The lock
// is released however f ends; if releasing fails, the connection is
// closed, which releases it too.
func withSessionLock(ctx context.Context, conn *pgxpool.Conn, key int64, f func() error) error {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return err
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		if _, err := conn.Exec(bg, "SELECT pg_advisory_unlock($1)", key); err != nil {
			conn.Conn().Close(bg)
		}
	}()
	return f()
}

// dropPartitions drops the partitions of table that end at or before
// cutoff and returns how many rows they held. Each is first detached
// CONCURRENTLY, which waits for the queries that use it instead of
// blocking new writers and readers of the parent, then dropped.
func (p *partitions) drop(ctx context.Context, table string, cutoff time.Time) (int64, error) {
	if err := p.lock(ctx); err != nil {
		return 0, err
	}
	defer p.unlock()
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var removed int64
	err = withSessionLock(ctx, conn, lockPartitions, func() error {
		existing, err := listPartitions(ctx, conn, table)
		if err != nil {
			return err
		}
		parent := pgx.Identifier{table}.Sanitize()
		for d, st := range existing {
			if dayStart(d + 1).After(cutoff) {
				continue
			}
			name := pgx.Identifier{partitionName(table, d)}.Sanitize()
			var n int64
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+name).Scan(&n); err != nil {
				return err
			}
			switch {
			case st.pending:
				_, err = conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s FINALIZE", parent, name))
			case st.attached:
				_, err = conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY", parent, name))
			}
			if err != nil {
				return fmt.Errorf("detach partition %s: %w", name, err)
			}
			delete(p.days[table], d)
			if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
				return fmt.Errorf("drop partition %s: %w", name, err)
			}
			removed += n
		}
		return nil
	})
	return removed, err
}
