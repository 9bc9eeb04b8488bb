package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/homemesh/homemesh/history"
)

// stagingTable is created on every connection: raw points are copied into
// it and moved to the points table by one INSERT … SELECT, which can skip
// duplicates and report which rows it stored (COPY alone can do neither).
// ON COMMIT DELETE ROWS empties it at the end of each transaction.
const stagingTable = `CREATE TEMP TABLE IF NOT EXISTS stage_points (
	ord       integer NOT NULL,
	entity_id integer NOT NULL,
	ts        timestamptz NOT NULL,
	value     float8,
	state     text,
	attrs     bytea
) ON COMMIT DELETE ROWS`

// rawPoint is a point of the batch about to be stored.
type rawPoint struct {
	ord int32 // position in the batch: among points at the same microsecond, the first wins
	id  int32 // entity id
	p   history.Point
}

// pointKey identifies a stored raw point.
type pointKey struct {
	id int32
	us int64 // microseconds since 1970
}

// pointInserter stores raw points and returns the keys of those it stored
// (not those already there).
type pointInserter func(ctx context.Context, tx pgx.Tx, pts []rawPoint) ([]pointKey, error)

// alreadyStored is returned by one write attempt when the ledger shows that
// some of the batch's messages were committed meanwhile.
type alreadyStored struct{ seqs []uint64 }

func (e *alreadyStored) Error() string { return fmt.Sprintf("%d messages already stored", len(e.seqs)) }

// Write stores a batch in one transaction. See history.Writer.
//
// The ledger check that decides which messages are new is made twice:
// first without a lock, so that a redelivered batch costs one query; then,
// after the rows are written, under an advisory lock on (home, stream)
// held until commit, which is what makes two processes writing overlapping
// batches safe. If that second check finds messages another process
// committed meanwhile, the transaction is rolled back and the batch redone
// without them.
func (s *Store) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	if err := validateBatch(b); err != nil {
		return history.WriteResult{}, err
	}
	msgs, dups := firstOfEachSeq(b.Messages)
	if err := s.prepare(ctx, b.Home, msgs); err != nil {
		return history.WriteResult{}, fmt.Errorf("write history batch: %w", err)
	}
	refreshed, direct, conflicts := false, s.direct, 0
	for {
		res, err := s.write(ctx, b.Home, b.Stream, msgs, direct)
		var stored *alreadyStored
		switch {
		case err == nil:
			res.Duplicates += dups
			return res, nil
		case errors.As(err, &stored):
			msgs = slices.DeleteFunc(msgs, func(m history.Message) bool { return slices.Contains(stored.seqs, m.Seq) })
			dups += len(stored.seqs)
			continue
		case errors.Is(err, errPointExists) && direct:
			direct = false
			continue
		case isTransient(err) && conflicts < 3:
			// Writers lock rows in key order, but PostgreSQL may still
			// pick one of two waiting transactions to abort.
			conflicts++
			continue
		case isNoPartition(err) && !refreshed:
			// Another process dropped a partition this one had cached.
			refreshed = true
			s.parts.forget()
			if err := s.prepare(ctx, b.Home, msgs); err != nil {
				return history.WriteResult{}, fmt.Errorf("write history batch: %w", err)
			}
			continue
		}
		return history.WriteResult{}, fmt.Errorf("write history batch: %w", err)
	}
}

// errPointExists is returned by copyPoints when a point of the batch is
// already stored.
var errPointExists = errors.New("a point of the batch is already stored")

// isTransient reports a deadlock or serialisation failure: the
// transaction was rolled back and can be redone.
func isTransient(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func isNoPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && strings.Contains(pe.Message, "no partition")
}

// firstOfEachSeq drops later copies of a sequence within the batch (a
// message redelivered before its first delivery was stored) and counts
// them.
func firstOfEachSeq(in []history.Message) ([]history.Message, int) {
	seen := make(map[uint64]bool, len(in))
	out := make([]history.Message, 0, len(in))
	for _, m := range in {
		if seen[m.Seq] {
			continue
		}
		seen[m.Seq] = true
		out = append(out, m)
	}
	return out, len(in) - len(out)
}

// prepare makes sure every entity of the batch has an id and every day it
// touches has its partitions. Both are done outside the batch's
// transaction: they are harmless if the batch fails, and creating
// partitions inside it could deadlock with other writers.
func (s *Store) prepare(ctx context.Context, home string, msgs []history.Message) error {
	var pointDays, eventDays []int64
	for _, m := range msgs {
		for _, p := range m.Points {
			pointDays = appendDay(pointDays, dayOf(p.Time))
		}
		for _, e := range m.Events {
			eventDays = appendDay(eventDays, dayOf(e.Time))
		}
	}
	if err := s.ensureEntities(ctx, home, msgs); err != nil {
		return err
	}
	if err := s.parts.ensure(ctx, pointsTable, pointDays); err != nil {
		return err
	}
	return s.parts.ensure(ctx, eventsTable, eventDays)
}

func appendDay(days []int64, d int64) []int64 {
	if len(days) > 0 && days[len(days)-1] == d || slices.Contains(days, d) {
		return days
	}
	return append(days, d)
}

// ensureEntities gives every entity of the batch an id, recording a new
// device or kind for a known one (an empty one never overwrites).
func (s *Store) ensureEntities(ctx context.Context, home string, msgs []history.Message) error {
	type change struct{ device, kind string }
	changes := map[string]change{}
	s.mu.Lock()
	for _, m := range msgs {
		for _, p := range m.Points {
			row, ok := s.entities[entityKey{home, p.Entity}]
			if ok && (p.Device == "" || p.Device == row.device) && (p.Kind == "" || string(p.Kind) == row.kind) {
				continue
			}
			c := changes[p.Entity]
			if p.Device != "" {
				c.device = p.Device
			}
			if p.Kind != "" {
				c.kind = string(p.Kind)
			}
			changes[p.Entity] = c
		}
	}
	s.mu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	names := make([]string, 0, len(changes))
	for e := range changes {
		names = append(names, e)
	}
	slices.Sort(names)
	devices, kinds := make([]string, len(names)), make([]string, len(names))
	for i, e := range names {
		devices[i], kinds[i] = changes[e].device, changes[e].kind
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO entities (home, entity, device, kind)
		SELECT $1, t.entity, t.device, t.kind FROM unnest($2::text[], $3::text[], $4::text[]) AS t(entity, device, kind)
		ORDER BY t.entity
		ON CONFLICT (home, entity) DO UPDATE SET
			device = CASE WHEN EXCLUDED.device <> '' THEN EXCLUDED.device ELSE entities.device END,
			kind = CASE WHEN EXCLUDED.kind <> '' THEN EXCLUDED.kind ELSE entities.kind END
		WHERE (EXCLUDED.device <> '' AND EXCLUDED.device <> entities.device)
		   OR (EXCLUDED.kind <> '' AND EXCLUDED.kind <> entities.kind)`,
		home, names, devices, kinds)
	if err != nil {
		return fmt.Errorf("store entities: %w", err)
	}
	rows, err := s.pool.Query(ctx, "SELECT id, entity, device, kind FROM entities WHERE home = $1 AND entity = ANY($2)", home, names)
	if err != nil {
		return fmt.Errorf("read entities: %w", err)
	}
	defer rows.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for rows.Next() {
		var e string
		var row entityRow
		if err := rows.Scan(&row.id, &e, &row.device, &row.kind); err != nil {
			return fmt.Errorf("read entities: %w", err)
		}
		s.entities[entityKey{home, e}] = row
	}
	return rows.Err()
}

// write makes one attempt at storing msgs.
func (s *Store) write(ctx context.Context, home, stream string, msgs []history.Message, direct bool) (history.WriteResult, error) {
	var res history.WriteResult
	if len(msgs) == 0 {
		return res, nil
	}
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	slices.Sort(seqs)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if stored, _, err := ledgerStored(ctx, tx, home, stream, seqs); err != nil {
		return res, err
	} else if len(stored) > 0 {
		return res, &alreadyStored{stored}
	}

	var pts []rawPoint
	var events []history.Event
	s.mu.Lock()
	for _, m := range msgs {
		for _, p := range m.Points {
			p.Time = p.Time.Truncate(time.Microsecond).UTC()
			pts = append(pts, rawPoint{ord: int32(len(pts)), id: s.entities[entityKey{home, p.Entity}].id, p: p})
		}
		events = append(events, m.Events...)
	}
	s.mu.Unlock()

	// The statistics merges and the events insert do not depend on each
	// other's results: they go to the server in one round trip.
	var queued pgx.Batch
	if len(pts) > 0 {
		n, err := s.writePoints(ctx, tx, pts, direct, &queued)
		if err != nil {
			return res, err
		}
		res.Points = n
	}
	eventsAt := -1
	if len(events) > 0 {
		eventsAt = queued.Len()
		queueEvents(&queued, home, events)
	}
	if queued.Len() > 0 {
		br := tx.SendBatch(ctx, &queued)
		for i := range queued.Len() {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return res, fmt.Errorf("store statistics and events: %w", err)
			}
			if i == eventsAt {
				res.Events = int(tag.RowsAffected())
			}
		}
		if err := br.Close(); err != nil {
			return res, err
		}
	}

	// As late as possible: the lock is held until commit.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ledgerLock(home, stream)); err != nil {
		return res, err
	}
	stored, near, err := ledgerStored(ctx, tx, home, stream, seqs)
	if err != nil {
		return res, err
	}
	if len(stored) > 0 {
		return res, &alreadyStored{stored}
	}
	if err := ledgerAdd(ctx, tx, home, stream, seqs, near); err != nil {
		return res, err
	}
	return res, tx.Commit(ctx)
}

// writePoints stores the raw points and queues the merge of the statistics
// of those stored into both tiers.
func (s *Store) writePoints(ctx context.Context, tx pgx.Tx, pts []rawPoint, direct bool, queued *pgx.Batch) (int, error) {
	// Binary entities: lock them (in id order, so that writers cannot
	// deadlock) and read the stored neighbours of the batch's points,
	// which decide the on-time.
	spans := map[int32][2]time.Time{}
	for _, rp := range pts {
		if _, ok := history.Binary(rp.p.State); ok {
			spans[rp.id] = [2]time.Time{rp.p.Time, rp.p.Time}
		}
	}
	// Every point of a binary entity is a neighbour of its binary ones,
	// whatever its state.
	for _, rp := range pts {
		if sp, ok := spans[rp.id]; ok {
			if rp.p.Time.Before(sp[0]) {
				sp[0] = rp.p.Time
			}
			if rp.p.Time.After(sp[1]) {
				sp[1] = rp.p.Time
			}
			spans[rp.id] = sp
		}
	}
	neighbours, err := lockAndReadNeighbours(ctx, tx, spans)
	if err != nil {
		return 0, err
	}

	// Among points of an entity at the same microsecond the first in the
	// batch wins; the rest never reach the database. Sorting by key makes
	// concurrent writers wait for each other's keys in the same order.
	pts = firstOfEachKey(pts)
	insert := s.insert
	if direct {
		insert = copyPoints
	}
	keys, err := insert(ctx, tx, pts)
	if err != nil {
		return 0, err
	}
	storedKeys := make(map[pointKey]bool, len(keys))
	for _, k := range keys {
		storedKeys[k] = true
	}
	stored := make([]history.Point, 0, len(keys))
	ids := map[string]int32{}
	byEntity := map[int32][]history.Point{}
	for _, rp := range pts {
		k := pointKey{rp.id, rp.p.Time.UnixMicro()}
		if !storedKeys[k] {
			continue
		}
		delete(storedKeys, k) // a later point at the same microsecond was not stored
		stored = append(stored, rp.p)
		ids[rp.p.Entity] = rp.id
		if _, ok := spans[rp.id]; ok {
			byEntity[rp.id] = append(byEntity[rp.id], rp.p)
		}
	}

	tiers := statsOf(stored, neighbours, byEntity)
	for _, r := range history.StatTiers {
		queueStats(queued, r, tiers[r], ids)
	}
	return len(stored), nil
}

// neighbour is a stored point of a binary entity.
type neighbour struct {
	us    int64
	state string
}

func lockAndReadNeighbours(ctx context.Context, tx pgx.Tx, spans map[int32][2]time.Time) (map[int32][]neighbour, error) {
	if len(spans) == 0 {
		return nil, nil
	}
	ids := make([]int32, 0, len(spans))
	for id := range spans {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	los, his := make([]time.Time, len(ids)), make([]time.Time, len(ids))
	for i, id := range ids {
		los[i], his[i] = spans[id][0], spans[id][1]
	}
	_, err := tx.Exec(ctx, `SELECT count(pg_advisory_xact_lock($1, id)) FROM (SELECT unnest($2::integer[]) AS id ORDER BY 1) AS l`, lockEntities, ids)
	if err != nil {
		return nil, fmt.Errorf("lock binary entities: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT e.id, p.ts, coalesce(p.state, '')
		FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[]) AS e(id, lo, hi)
		CROSS JOIN LATERAL (
			(SELECT ts, state FROM points WHERE entity_id = e.id AND ts < e.lo ORDER BY ts DESC LIMIT 1)
			UNION ALL
			(SELECT ts, state FROM points WHERE entity_id = e.id AND ts >= e.lo AND ts <= e.hi)
			UNION ALL
			(SELECT ts, state FROM points WHERE entity_id = e.id AND ts > e.hi ORDER BY ts LIMIT 1)
		) AS p`, ids, los, his)
	if err != nil {
		return nil, fmt.Errorf("read neighbours: %w", err)
	}
	defer rows.Close()
	out := map[int32][]neighbour{}
	for rows.Next() {
		var id int32
		var ts time.Time
		var n neighbour
		if err := rows.Scan(&id, &ts, &n.state); err != nil {
			return nil, err
		}
		n.us = ts.UnixMicro()
		out[id] = append(out[id], n)
	}
	for _, ns := range out {
		slices.SortFunc(ns, func(a, b neighbour) int { return cmp.Compare(a.us, b.us) })
	}
	return out, rows.Err()
}

// statsOf returns the partial statistics of the stored points per tier:
// counts and numbers from history.Summarize, and the on-time of binary
// entities from history.OnTime, each point placed between its neighbours
// in time order. A tier may hold several partials of one bucket;
// queueStats merges them.
func statsOf(stored []history.Point, neighbours map[int32][]neighbour, binary map[int32][]history.Point) map[history.Resolution][]history.Stat {
	out := history.Summarize(stored)
	for id, pts := range binary {
		ns := neighbours[id]
		slices.SortStableFunc(pts, func(a, b history.Point) int { return a.Time.Compare(b.Time) })
		for _, x := range pts {
			us := x.Time.UnixMicro()
			i, _ := slices.BinarySearchFunc(ns, us, func(n neighbour, us int64) int { return cmp.Compare(n.us, us) })
			if _, ok := history.Binary(x.State); ok {
				var prev, next *history.Point
				if i > 0 {
					prev = &history.Point{Entity: x.Entity, Time: time.UnixMicro(ns[i-1].us).UTC(), State: ns[i-1].state}
				}
				if i < len(ns) {
					next = &history.Point{Entity: x.Entity, Time: time.UnixMicro(ns[i].us).UTC(), State: ns[i].state}
				}
				for r, deltas := range history.OnTime(prev, x, next) {
					out[r] = append(out[r], deltas...)
				}
			}
			ns = slices.Insert(ns, i, neighbour{us: us, state: x.State})
		}
	}
	return out
}

// queueStats queues the merge of partial statistics into a tier's table
// with exactly history.Stat.Merge's rules, in key order so that concurrent
// writers lock rows in the same order. Partials of one bucket are merged
// first: a statement may change a row only once.
func queueStats(queued *pgx.Batch, r history.Resolution, stats []history.Stat, ids map[string]int32) {
	if len(stats) == 0 {
		return
	}
	type row struct {
		id int32
		st history.Stat
	}
	all := make([]row, 0, len(stats))
	for _, st := range stats {
		all = append(all, row{ids[st.Entity], st})
	}
	slices.SortStableFunc(all, func(a, b row) int {
		if c := cmp.Compare(a.id, b.id); c != 0 {
			return c
		}
		return a.st.Start.Compare(b.st.Start)
	})
	rows := all[:0]
	for _, rw := range all {
		if n := len(rows); n > 0 && rows[n-1].id == rw.id && rows[n-1].st.Start.Equal(rw.st.Start) {
			rows[n-1].st.Merge(rw.st)
			continue
		}
		rows = append(rows, rw)
	}
	n := len(rows)
	var (
		entity          = make([]int32, n)
		start           = make([]time.Time, n)
		count, numCount = make([]int64, n), make([]int64, n)
		sum             = make([]float64, n)
		// Typed nullable arrays: pgx encodes them without reflection.
		minV, maxV, last = make(pgtype.FlatArray[pgtype.Float8], n), make(pgtype.FlatArray[pgtype.Float8], n), make(pgtype.FlatArray[pgtype.Float8], n)
		lastTime         = make(pgtype.FlatArray[pgtype.Timestamptz], n)
		onMicros         = make([]int64, n)
	)
	for i, rw := range rows {
		st := rw.st
		entity[i], start[i], count[i], numCount[i], sum[i], onMicros[i] = rw.id, st.Start, st.Count, st.NumCount, st.Sum, st.OnMicros
		if st.NumCount > 0 {
			minV[i], maxV[i], last[i] = pgtype.Float8{Float64: st.Min, Valid: true}, pgtype.Float8{Float64: st.Max, Valid: true}, pgtype.Float8{Float64: st.Last, Valid: true}
			lastTime[i] = pgtype.Timestamptz{Time: st.LastTime, Valid: true}
		}
	}
	queued.Queue(fmt.Sprintf(`
		INSERT INTO %s AS s (entity_id, start, count, num_count, sum, min, max, last, last_time, on_micros)
		SELECT * FROM unnest($1::integer[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::float8[],
			$6::float8[], $7::float8[], $8::float8[], $9::timestamptz[], $10::bigint[])
		ON CONFLICT (entity_id, start) DO UPDATE SET
			count = s.count + EXCLUDED.count,
			on_micros = s.on_micros + EXCLUDED.on_micros,
			num_count = s.num_count + EXCLUDED.num_count,
			sum = s.sum + EXCLUDED.sum,
			min = CASE WHEN EXCLUDED.num_count = 0 THEN s.min WHEN s.num_count = 0 THEN EXCLUDED.min ELSE least(s.min, EXCLUDED.min) END,
			max = CASE WHEN EXCLUDED.num_count = 0 THEN s.max WHEN s.num_count = 0 THEN EXCLUDED.max ELSE greatest(s.max, EXCLUDED.max) END,
			last = CASE WHEN EXCLUDED.num_count > 0 AND (s.num_count = 0 OR EXCLUDED.last_time >= s.last_time) THEN EXCLUDED.last ELSE s.last END,
			last_time = CASE WHEN EXCLUDED.num_count > 0 AND (s.num_count = 0 OR EXCLUDED.last_time >= s.last_time) THEN EXCLUDED.last_time ELSE s.last_time END`,
		statsTable(r)), entity, start, count, numCount, sum, minV, maxV, last, lastTime, onMicros)
}

func statsTable(r history.Resolution) string {
	if r == history.FiveMinutes {
		return "stats_5m"
	}
	return "stats_1h"
}

func firstOfEachKey(pts []rawPoint) []rawPoint {
	out := slices.Clone(pts)
	slices.SortStableFunc(out, func(a, b rawPoint) int {
		if c := cmp.Compare(a.id, b.id); c != 0 {
			return c
		}
		return a.p.Time.Compare(b.p.Time)
	})
	return slices.CompactFunc(out, func(a, b rawPoint) bool { return a.id == b.id && a.p.Time.Equal(b.p.Time) })
}

// copyPoints copies the points straight into the points table, which
// routes each to its partition. It fails with errPointExists if one is
// already stored.
func copyPoints(ctx context.Context, tx pgx.Tx, pts []rawPoint) ([]pointKey, error) {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{pointsTable}, []string{"entity_id", "ts", "value", "state", "attrs"},
		pgx.CopyFromSlice(len(pts), func(i int) ([]any, error) {
			p := pts[i].p
			return []any{pts[i].id, p.Time, pointValue(p), pointState(p), pointAttrs(p)}, nil
		}))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return nil, errPointExists
	}
	if err != nil {
		return nil, fmt.Errorf("copy points: %w", err)
	}
	keys := make([]pointKey, len(pts))
	for i, rp := range pts {
		keys[i] = pointKey{rp.id, rp.p.Time.UnixMicro()}
	}
	return keys, nil
}

// insertPointsCopy copies the points into the staging table and moves the
// new ones into their partitions.
func insertPointsCopy(ctx context.Context, tx pgx.Tx, pts []rawPoint) ([]pointKey, error) {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_points"}, []string{"ord", "entity_id", "ts", "value", "state", "attrs"},
		pgx.CopyFromSlice(len(pts), func(i int) ([]any, error) {
			p := pts[i].p
			return []any{pts[i].ord, pts[i].id, p.Time, pointValue(p), pointState(p), pointAttrs(p)}, nil
		}))
	if err != nil {
		return nil, fmt.Errorf("copy points: %w", err)
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO points (entity_id, ts, value, state, attrs)
		SELECT entity_id, ts, value, state, attrs FROM stage_points ORDER BY entity_id, ts, ord
		ON CONFLICT DO NOTHING
		RETURNING entity_id, ts`)
	if err != nil {
		return nil, fmt.Errorf("insert points: %w", err)
	}
	return scanKeys(rows, len(pts))
}

func scanKeys(rows pgx.Rows, capacity int) ([]pointKey, error) {
	defer rows.Close()
	keys := make([]pointKey, 0, capacity)
	for rows.Next() {
		var k pointKey
		var ts time.Time
		if err := rows.Scan(&k.id, &ts); err != nil {
			return nil, err
		}
		k.us = ts.UnixMicro()
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func pointValue(p history.Point) any {
	if p.Numeric {
		return p.Value
	}
	return nil
}

func pointState(p history.Point) any {
	if p.State != "" {
		return p.State
	}
	return nil
}

func pointAttrs(p history.Point) any {
	if len(p.Attrs) > 0 {
		return []byte(p.Attrs)
	}
	return nil
}

// queueEvents queues the insert of events; an event whose (time, ID) the
// home already has is skipped.
func queueEvents(queued *pgx.Batch, home string, events []history.Event) {
	n := len(events)
	ts := make([]time.Time, n)
	ids, kinds, devices, entities := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	data := make([][]byte, n)
	for i, e := range events {
		ts[i], ids[i], kinds[i], devices[i], entities[i] = e.Time.Truncate(time.Microsecond).UTC(), e.ID, e.Kind, e.Device, e.Entity
		if len(e.Data) > 0 {
			data[i] = e.Data
		}
	}
	queued.Queue(`
		INSERT INTO events (home, ts, id, kind, device, entity, data)
		SELECT $1, ts, id, kind, device, entity, data
		FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
			AS t(ts, id, kind, device, entity, data)
		ORDER BY ts, id
		ON CONFLICT DO NOTHING`, home, ts, ids, kinds, devices, entities, data)
}
