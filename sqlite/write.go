package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// writeStmts are the writer's statements, prepared once on its single
// connection and reused by every transaction.
type writeStmts struct {
	upsertEntity, insertPoint, prevPoint, nextPoint *sql.Stmt
	upsertStat                                      map[history.Resolution]*sql.Stmt
	insertEvent                                     *sql.Stmt
	ledgerBefore, ledgerWithin, ledgerAt            *sql.Stmt
	ledgerInsert, ledgerSetLast, ledgerDelete       *sql.Stmt
	hourlyUntil                                     *sql.Stmt
}

// statTables names the table of each statistics tier.
var statTables = map[history.Resolution]string{
	history.FiveMinutes: "stats_5m",
	history.Hourly:      "stats_1h",
}

// upsertStatSQL merges a partial Stat into a stored one exactly as
// history.Stat.Merge does: counts and on-time add up; min, max, sum and
// last change only when the partial has numeric points, and last follows
// the latest (or equally late) numeric point. SET expressions see the row
// as it was, so their order does not matter.
const upsertStatSQL = `INSERT INTO %[1]s (entity_id, start, count, num_count, sum, min, max, last, last_ts, on_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (entity_id, start) DO UPDATE SET
	count = count + excluded.count,
	on_us = on_us + excluded.on_us,
	num_count = num_count + excluded.num_count,
	sum = sum + excluded.sum,
	min = CASE WHEN excluded.num_count = 0 THEN min WHEN num_count = 0 THEN excluded.min ELSE min(min, excluded.min) END,
	max = CASE WHEN excluded.num_count = 0 THEN max WHEN num_count = 0 THEN excluded.max ELSE max(max, excluded.max) END,
	last = CASE WHEN excluded.num_count > 0 AND (num_count = 0 OR excluded.last_ts >= last_ts) THEN excluded.last ELSE last END,
	last_ts = CASE WHEN excluded.num_count > 0 AND (num_count = 0 OR excluded.last_ts >= last_ts) THEN excluded.last_ts ELSE last_ts END`

func upsertStatsSQL(r history.Resolution) string {
	return fmt.Sprintf(upsertStatSQL, statTables[r])
}

// statArgs returns the parameters of upsertStatSQL for st.
func statArgs(entityID, start int64, st *history.Stat) []any {
	var minV, maxV, last, lastTS any
	if st.NumCount > 0 {
		minV, maxV, last, lastTS = st.Min, st.Max, st.Last, micros(st.LastTime)
	}
	return []any{entityID, start, st.Count, st.NumCount, st.Sum, minV, maxV, last, lastTS, st.OnMicros}
}

func (st *writeStmts) prepare(ctx context.Context, db *sql.DB) error {
	var err error
	prep := func(query string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		s, err = db.PrepareContext(ctx, query)
		if err != nil {
			err = fmt.Errorf("prepare %q: %w", query, err)
		}
		return s
	}
	st.upsertEntity = prep(`INSERT INTO entities (home, entity, device, kind) VALUES (?, ?, ?, ?)
		ON CONFLICT (home, entity) DO UPDATE SET
			device = CASE WHEN excluded.device = '' THEN device ELSE excluded.device END,
			kind = CASE WHEN excluded.kind = '' THEN kind ELSE excluded.kind END
		RETURNING id, device, kind`)
	st.insertPoint = prep(`INSERT OR IGNORE INTO points (entity_id, ts, value, state, attrs) VALUES (?, ?, ?, ?, ?)`)
	st.prevPoint = prep(`SELECT ts, state FROM points WHERE entity_id = ? AND ts < ? ORDER BY ts DESC LIMIT 1`)
	st.nextPoint = prep(`SELECT ts, state FROM points WHERE entity_id = ? AND ts > ? ORDER BY ts LIMIT 1`)
	st.upsertStat = map[history.Resolution]*sql.Stmt{}
	for _, r := range history.StatTiers {
		st.upsertStat[r] = prep(upsertStatsSQL(r))
	}
	st.insertEvent = prep(`INSERT OR IGNORE INTO events (home, ts, id, kind, device, entity, data) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	st.ledgerBefore = prep(`SELECT first_seq, last_seq FROM ledger WHERE home = ? AND stream = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1`)
	st.ledgerWithin = prep(`SELECT first_seq, last_seq FROM ledger WHERE home = ? AND stream = ? AND first_seq > ? AND first_seq <= ?`)
	st.ledgerAt = prep(`SELECT last_seq FROM ledger WHERE home = ? AND stream = ? AND first_seq = ?`)
	st.ledgerInsert = prep(`INSERT INTO ledger (home, stream, first_seq, last_seq, committed_at) VALUES (?, ?, ?, ?, ?)`)
	st.ledgerSetLast = prep(`UPDATE ledger SET last_seq = ?, committed_at = ? WHERE home = ? AND stream = ? AND first_seq = ?`)
	st.ledgerDelete = prep(`DELETE FROM ledger WHERE home = ? AND stream = ? AND first_seq = ?`)
	st.hourlyUntil = prep(`SELECT hourly_until FROM rollup`)
	return err
}

func (st *writeStmts) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{st.upsertEntity, st.insertPoint, st.prevPoint, st.nextPoint, st.insertEvent,
		st.ledgerBefore, st.ledgerWithin, st.ledgerAt, st.ledgerInsert, st.ledgerSetLast, st.ledgerDelete, st.hourlyUntil} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	for _, s := range st.upsertStat {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// validate checks a batch before anything is stored, naming the first bad
// field.
func validate(b history.Batch) error {
	if b.Home == "" {
		return homemesh.Invalid("home", "is empty")
	}
	if b.Stream == "" {
		return homemesh.Invalid("stream", "is empty")
	}
	for i, m := range b.Messages {
		if m.Seq == 0 || m.Seq > math.MaxInt64 {
			return homemesh.Invalid(fmt.Sprintf("messages[%d].seq", i), "%d is out of range 1…%d", m.Seq, int64(math.MaxInt64))
		}
		for j, p := range m.Points {
			field := fmt.Sprintf("messages[%d].points[%d]", i, j)
			switch {
			case p.Entity == "":
				return homemesh.Invalid(field+".entity", "is empty")
			case p.Time.IsZero():
				return homemesh.Invalid(field+".time", "is zero")
			case p.Numeric && (math.IsNaN(p.Value) || math.IsInf(p.Value, 0)):
				return homemesh.Invalid(field+".value", "%v is not a finite number", p.Value)
			}
		}
		for j, e := range m.Events {
			field := fmt.Sprintf("messages[%d].events[%d]", i, j)
			switch {
			case e.ID == "":
				return homemesh.Invalid(field+".id", "is empty")
			case e.Time.IsZero():
				return homemesh.Invalid(field+".time", "is zero")
			case e.Kind == "":
				return homemesh.Invalid(field+".kind", "is empty")
			}
		}
	}
	return nil
}

// Write stores the messages of b that are not stored yet, in one
// transaction.
func (s *Store) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	if err := validate(b); err != nil {
		return history.WriteResult{}, err
	}
	if len(b.Messages) == 0 {
		return history.WriteResult{}, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	w := batchWriter{s: s, b: b, now: time.Now(), txStmts: map[*sql.Stmt]*sql.Stmt{}}
	res, err := w.write(ctx)
	if err != nil {
		return history.WriteResult{}, fmt.Errorf("write history batch: %w", err)
	}
	// The entity rows exist only once the transaction committed: an id
	// cached earlier could name a row that was rolled back.
	s.mu.Lock()
	for k, e := range w.newEntities {
		s.entities[k] = e
	}
	s.mu.Unlock()
	return res, nil
}

// batchWriter is the state of one Write.
type batchWriter struct {
	s   *Store
	b   history.Batch
	now time.Time
	tx  *sql.Tx

	newEntities map[entityKey]entityRow
	txStmts     map[*sql.Stmt]*sql.Stmt
	// hourlyUntil is the hourly rollup's watermark: hours before it are
	// stored, in stats_1h or packed, and the batch merges into their
	// stats_1h rows (a packed hour's late points get a row of their own,
	// which Purge folds into the packed day); later hours are derived
	// from the 5-minute rows.
	hourlyUntil int64
}

// seqRange is a range [first, last] of the ledger.
type seqRange struct{ first, last int64 }

func (w *batchWriter) stmt(ctx context.Context, s *sql.Stmt) *sql.Stmt {
	return w.tx.StmtContext(ctx, s)
}

func (w *batchWriter) write(ctx context.Context) (history.WriteResult, error) {
	var res history.WriteResult
	tx, err := w.s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer tx.Rollback()
	w.tx = tx

	// The ledger first: the transaction holds the write lock already
	// (IMMEDIATE), so what it says cannot change before the commit.
	stored, err := w.storedRanges(ctx)
	if err != nil {
		return res, err
	}
	if err := w.stmt(ctx, w.s.stmts.hourlyUntil).QueryRowContext(ctx).Scan(&w.hourlyUntil); err != nil {
		return res, err
	}
	seen := map[int64]bool{}
	var fresh []history.Message
	for _, m := range w.b.Messages {
		seq := int64(m.Seq)
		if seen[seq] || contains(stored, seq) {
			res.Duplicates++
			continue
		}
		seen[seq] = true
		fresh = append(fresh, m)
	}
	if len(fresh) == 0 {
		return res, nil
	}
	if res.Points, err = w.writePoints(ctx, fresh); err != nil {
		return res, err
	}
	if res.Events, err = w.writeEvents(ctx, fresh); err != nil {
		return res, err
	}
	if err := w.recordLedger(ctx, fresh); err != nil {
		return res, err
	}
	if err := tx.Commit(); err != nil {
		return res, err
	}
	return res, nil
}

// storedRanges returns the ledger ranges that overlap the batch's
// sequence numbers: the last range starting at or before the smallest,
// and every range starting within the batch's span.
func (w *batchWriter) storedRanges(ctx context.Context) ([]seqRange, error) {
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, m := range w.b.Messages {
		lo, hi = min(lo, int64(m.Seq)), max(hi, int64(m.Seq))
	}
	var out []seqRange
	var r seqRange
	err := w.stmt(ctx, w.s.stmts.ledgerBefore).QueryRowContext(ctx, w.b.Home, w.b.Stream, lo).Scan(&r.first, &r.last)
	switch {
	case err == nil:
		out = append(out, r)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, err
	}
	if hi == lo {
		return out, nil
	}
	rows, err := w.stmt(ctx, w.s.stmts.ledgerWithin).QueryContext(ctx, w.b.Home, w.b.Stream, lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&r.first, &r.last); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func contains(ranges []seqRange, seq int64) bool {
	for _, r := range ranges {
		if r.first <= seq && seq <= r.last {
			return true
		}
	}
	return false
}

// recordLedger adds the sequence numbers of msgs to the ledger, merging
// each contiguous run with the ranges it extends, so that a stream
// consumed in order stays one row.
func (w *batchWriter) recordLedger(ctx context.Context, msgs []history.Message) error {
	seqs := make([]int64, len(msgs))
	for i, m := range msgs {
		seqs[i] = int64(m.Seq)
	}
	slices.Sort(seqs)
	home, stream, now := w.b.Home, w.b.Stream, micros(w.now)
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		first, last := seqs[i], seqs[j]
		i = j + 1

		var below seqRange
		err := w.stmt(ctx, w.s.stmts.ledgerBefore).QueryRowContext(ctx, home, stream, first).Scan(&below.first, &below.last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		extendsBelow := err == nil && below.last == first-1
		var aboveLast int64
		aboveFound := false
		if last < math.MaxInt64 {
			err = w.stmt(ctx, w.s.stmts.ledgerAt).QueryRowContext(ctx, home, stream, last+1).Scan(&aboveLast)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			aboveFound = err == nil
		}
		if aboveFound {
			if _, err := w.stmt(ctx, w.s.stmts.ledgerDelete).ExecContext(ctx, home, stream, last+1); err != nil {
				return err
			}
			last = aboveLast
		}
		if extendsBelow {
			_, err = w.stmt(ctx, w.s.stmts.ledgerSetLast).ExecContext(ctx, last, now, home, stream, below.first)
		} else {
			_, err = w.stmt(ctx, w.s.stmts.ledgerInsert).ExecContext(ctx, home, stream, first, last, now)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// entityID returns the id of an entity, creating its row or updating its
// device and kind when they changed.
func (w *batchWriter) entityID(ctx context.Context, p *history.Point) (int64, error) {
	k := entityKey{w.b.Home, p.Entity}
	e, ok := w.newEntities[k]
	if !ok {
		e, ok = w.s.entity(k.home, k.entity)
	}
	if ok && (p.Device == "" || p.Device == e.device) && (p.Kind == "" || p.Kind == e.kind) {
		return e.id, nil
	}
	err := w.stmt(ctx, w.s.stmts.upsertEntity).QueryRowContext(ctx, k.home, k.entity, p.Device, string(p.Kind)).
		Scan(&e.id, &e.device, &e.kind)
	if err != nil {
		return 0, err
	}
	if w.newEntities == nil {
		w.newEntities = map[entityKey]entityRow{}
	}
	w.newEntities[k] = e
	return e.id, nil
}

// pending is a point of the batch with its entity id and time in
// microseconds.
type pending struct {
	id, ts int64
	p      *history.Point
}

// writePoints inserts the points of msgs and merges the statistics of
// those actually inserted (a point at an already stored microsecond is
// ignored, and must not count twice).
func (w *batchWriter) writePoints(ctx context.Context, msgs []history.Message) (int, error) {
	var all []pending
	for i := range msgs {
		for j := range msgs[i].Points {
			p := &msgs[i].Points[j]
			id, err := w.entityID(ctx, p)
			if err != nil {
				return 0, err
			}
			all = append(all, pending{id: id, ts: micros(p.Time), p: p})
		}
	}
	if len(all) == 0 {
		return 0, nil
	}
	// Entity and time order: B-tree inserts stay local, and the binary
	// points of an entity are inserted oldest first, as OnTime expects.
	// The sort is stable, so of two points at one microsecond the first
	// in the batch is the one stored.
	slices.SortStableFunc(all, func(a, b pending) int {
		return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.ts, b.ts))
	})

	insert := w.stmt(ctx, w.s.stmts.insertPoint)
	var stored []history.Point
	var onTime []map[history.Resolution][]history.Stat
	for _, x := range all {
		var value, state, attrs any
		if x.p.Numeric {
			value = x.p.Value
		} else {
			state = x.p.State
		}
		if len(x.p.Attrs) > 0 {
			attrs = []byte(x.p.Attrs)
		}
		r, err := insert.ExecContext(ctx, x.id, x.ts, value, state, attrs)
		if err != nil {
			return 0, err
		}
		if n, err := r.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return 0, err
			}
			continue
		}
		p := *x.p
		p.Time = fromMicros(x.ts)
		stored = append(stored, p)
		if _, ok := history.Binary(p.State); ok && !p.Numeric {
			delta, err := w.onTime(ctx, x.id, p)
			if err != nil {
				return 0, err
			}
			if len(delta) > 0 {
				onTime = append(onTime, delta)
			}
		}
	}
	if err := w.mergeStats(ctx, stored, onTime); err != nil {
		return 0, err
	}
	return len(stored), nil
}

// onTime returns the on-time changes of storing binary point x, from its
// stored neighbours.
func (w *batchWriter) onTime(ctx context.Context, id int64, x history.Point) (map[history.Resolution][]history.Stat, error) {
	ts := micros(x.Time)
	neighbour := func(s *sql.Stmt) (*history.Point, error) {
		var t int64
		var state sql.NullString
		err := w.stmt(ctx, s).QueryRowContext(ctx, id, ts).Scan(&t, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return &history.Point{Entity: x.Entity, Time: fromMicros(t), State: state.String}, nil
	}
	prev, err := neighbour(w.s.stmts.prevPoint)
	if err != nil {
		return nil, err
	}
	next, err := neighbour(w.s.stmts.nextPoint)
	if err != nil {
		return nil, err
	}
	return history.OnTime(prev, x, next), nil
}

// mergeStats merges the statistics of the stored points and the on-time
// changes into the statistics tables, one upsert per bucket.
func (w *batchWriter) mergeStats(ctx context.Context, stored []history.Point, onTime []map[history.Resolution][]history.Stat) error {
	parts := history.Summarize(stored)
	for _, r := range history.StatTiers {
		type key struct {
			entity string
			start  int64
		}
		buckets := map[key]*history.Stat{}
		var order []key
		add := func(st history.Stat) {
			k := key{st.Entity, micros(st.Start)}
			if b, ok := buckets[k]; ok {
				b.Merge(st)
				return
			}
			buckets[k] = &st
			order = append(order, k)
		}
		for _, st := range parts[r] {
			add(st)
		}
		for _, d := range onTime {
			for _, st := range d[r] {
				add(st)
			}
		}
		upsert := w.stmt(ctx, w.s.stmts.upsertStat[r])
		for _, k := range order {
			if r == history.Hourly && k.start >= w.hourlyUntil {
				continue // not rolled up yet: read from its 5-minute rows
			}
			st := buckets[k]
			e, ok := w.newEntities[entityKey{w.b.Home, k.entity}]
			if !ok {
				e, _ = w.s.entity(w.b.Home, k.entity)
			}
			if _, err := upsert.ExecContext(ctx, statArgs(e.id, k.start, st)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeEvents inserts the events of msgs; an event whose (time, id) is
// stored already is ignored.
func (w *batchWriter) writeEvents(ctx context.Context, msgs []history.Message) (int, error) {
	var insert *sql.Stmt
	n := 0
	for _, m := range msgs {
		for _, e := range m.Events {
			if insert == nil {
				insert = w.stmt(ctx, w.s.stmts.insertEvent)
			}
			var data any
			if len(e.Data) > 0 {
				data = []byte(e.Data)
			}
			r, err := insert.ExecContext(ctx, w.b.Home, micros(e.Time), e.ID, e.Kind, e.Device, e.Entity, data)
			if err != nil {
				return 0, err
			}
			c, err := r.RowsAffected()
			if err != nil {
				return 0, err
			}
			n += int(c)
		}
	}
	return n, nil
}
