package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/homemesh/homemesh/history"
)

// The hourly tier of closed days is kept packed, one stats_1h_days row per
// entity and UTC day holding history.PackHours of the day's buckets. Only
// Purge changes that table, and always under the transaction-scoped
// advisory lock lockPacked, so that packing and the purging of packed
// hours, from any number of processes, never work on the same day at once.
//
// Writers never touch it: a point for a packed hour is merged into a
// stats_1h row like any other, to be folded into its day by a later
// Purge. The packer and a writer meet only on stats_1h rows, and the
// packer takes just the rows it can lock at once: one a writer holds is
// left for a later call, so the packer never waits for a writer and the
// two cannot deadlock. The packer deletes and packs a row as it finds it
// once locked, with any update committed before. A writer merging into a
// row the packer has taken waits for the packer's commit; PostgreSQL then
// retries its INSERT … ON CONFLICT, which finds no row and inserts a new
// one. Either way each point is counted once.

// packCutoff is the start of the first day that Purge at now does not
// pack: a day is packed once it has been over for an hour, so that the
// points of its last minutes, which often arrive a little late, mostly
// find it not yet packed.
func packCutoff(now time.Time) time.Time { return history.Day(now.Add(-time.Hour)) }

// hourRow is a stats_1h row.
type hourRow struct {
	id int32
	st history.Stat
}

// packedDay is a stats_1h_days row.
type packedDay struct {
	id   int32
	day  time.Time
	data []byte
}

// pack moves up to limit stats_1h rows of closed days into stats_1h_days,
// merged into the days already packed, in one transaction, and reports
// whether it moved as many as limit. It does nothing while another
// process is packing: one packer at a time does the work, and two would
// contend for the same days.
func (s *Store) pack(ctx context.Context, now time.Time, limit int) (more bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var locked bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", lockPacked).Scan(&locked); err != nil {
		return false, err
	}
	if !locked {
		return false, nil
	}
	// In key order, so that a call leaves at most its last day half
	// packed.
	rows, err := tx.Query(ctx, `
		WITH moved AS MATERIALIZED (
			SELECT entity_id, start FROM stats_1h WHERE start < $1
			ORDER BY entity_id, start LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM stats_1h s USING moved m
		WHERE s.entity_id = m.entity_id AND s.start = m.start
		RETURNING s.entity_id, s.start, s.count, s.num_count, s.sum, coalesce(s.min, 0), coalesce(s.max, 0),
			coalesce(s.last, 0), s.last_time, s.on_micros`,
		packCutoff(now), limit)
	if err != nil {
		return false, fmt.Errorf("take hourly rows: %w", err)
	}
	moved, err := scanHourRows(rows, limit)
	if err != nil {
		return false, fmt.Errorf("take hourly rows: %w", err)
	}
	if len(moved) == 0 {
		return false, nil
	}
	slices.SortFunc(moved, func(a, b hourRow) int {
		if c := cmp.Compare(a.id, b.id); c != 0 {
			return c
		}
		return a.st.Start.Compare(b.st.Start)
	})

	// One group of rows per (entity, day), and the days already packed.
	type group struct {
		packedDay
		stats []history.Stat
	}
	var groups []group
	stats := make([]history.Stat, len(moved))
	for i, r := range moved {
		stats[i] = r.st
	}
	for i := 0; i < len(moved); {
		id, day := moved[i].id, history.Day(moved[i].st.Start)
		j := i + 1
		for j < len(moved) && moved[j].id == id && history.Day(moved[j].st.Start).Equal(day) {
			j++
		}
		groups = append(groups, group{packedDay: packedDay{id: id, day: day}, stats: stats[i:j]})
		i = j
	}
	ids, days := make([]int32, len(groups)), make([]time.Time, len(groups))
	for i, g := range groups {
		ids[i], days[i] = g.id, g.day
	}
	// FOR UPDATE adds nothing while every change holds lockPacked, but
	// keeps this read-modify-write safe without it.
	rows, err = tx.Query(ctx, `
		SELECT d.entity_id, d.day, d.data FROM stats_1h_days d
		WHERE (d.entity_id, d.day) IN (SELECT * FROM unnest($1::integer[], $2::timestamptz[]))
		ORDER BY d.entity_id, d.day FOR UPDATE`, ids, days)
	if err != nil {
		return false, fmt.Errorf("read packed days: %w", err)
	}
	existing, err := scanPackedDays(rows)
	if err != nil {
		return false, fmt.Errorf("read packed days: %w", err)
	}

	// Both lists are in (entity, day) order: walk them together.
	var update, insert packedDays
	j := 0
	for _, g := range groups {
		var old []history.Stat
		for j < len(existing) && (existing[j].id < g.id || existing[j].id == g.id && existing[j].day.Before(g.day)) {
			j++
		}
		exists := j < len(existing) && existing[j].id == g.id && existing[j].day.Equal(g.day)
		if exists {
			if old, err = history.UnpackHours(nil, "", g.day, existing[j].data); err != nil {
				return false, fmt.Errorf("%s: %w", entityName(ctx, tx, g.id), err)
			}
		}
		data, err := history.PackHours(history.MergeSorted(old, g.stats))
		if err != nil {
			return false, fmt.Errorf("%s: %w", entityName(ctx, tx, g.id), err)
		}
		if exists {
			update.add(g.id, g.day, data)
		} else {
			insert.add(g.id, g.day, data)
		}
	}
	// Only a packer holding the lock inserts days, and it found these
	// missing: a conflict would be a bug, and fails rather than overwrite.
	var b pgx.Batch
	b.Queue(`
		UPDATE stats_1h_days d SET data = u.data
		FROM unnest($1::integer[], $2::timestamptz[], $3::bytea[]) AS u(entity_id, day, data)
		WHERE d.entity_id = u.entity_id AND d.day = u.day`, update.ids, update.days, update.data)
	b.Queue(`
		INSERT INTO stats_1h_days (entity_id, day, data)
		SELECT * FROM unnest($1::integer[], $2::timestamptz[], $3::bytea[])`, insert.ids, insert.days, insert.data)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return false, fmt.Errorf("store packed days: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, err
	}
	return len(moved) == limit, nil
}

// purgePacked removes the packed hours of the entities of kind that start
// before cutoff, touching at most limit rows: days that ended by cutoff are
// deleted, and the day cutoff falls in is rewritten without its expired
// hours, or deleted when none is left. It returns the hours removed,
// counted as if they were stats_1h rows, and the rows touched.
func (s *Store) purgePacked(ctx context.Context, kind string, cutoff time.Time, limit int64) (removed, touched int64, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockPacked); err != nil {
		return 0, 0, err
	}
	boundary := history.Day(cutoff)
	rows, err := tx.Query(ctx, `
		DELETE FROM stats_1h_days WHERE (entity_id, day) IN (
			SELECT d.entity_id, d.day FROM stats_1h_days d
			WHERE d.entity_id IN (SELECT id FROM entities WHERE kind = $1) AND d.day < $2
			LIMIT $3)
		RETURNING entity_id, day, data`, kind, boundary, limit)
	if err != nil {
		return 0, 0, err
	}
	whole, err := scanPackedDays(rows)
	if err != nil {
		return 0, 0, err
	}
	var hours []history.Stat
	for _, d := range whole {
		if hours, err = history.UnpackHours(hours[:0], "", d.day, d.data); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", entityName(ctx, tx, d.id), err)
		}
		removed += int64(len(hours))
	}
	touched = int64(len(whole))

	if touched < limit && cutoff.After(boundary) {
		// Only the days whose first hour has expired are read. That hour
		// is the byte after the version in history.PackHours' format,
		// version 1; a value of any other version or too short is read
		// too, so that decoding it reports it instead of this filter
		// passing over it.
		firstKept := int((cutoff.Sub(boundary) + time.Hour - 1) / time.Hour)
		rows, err := tx.Query(ctx, `
			SELECT entity_id, day, data FROM stats_1h_days
			WHERE entity_id IN (SELECT id FROM entities WHERE kind = $1) AND day = $2
			  AND (octet_length(data) < 2 OR get_byte(data, 0) <> 1 OR get_byte(data, 1) < $3)
			ORDER BY entity_id LIMIT $4`, kind, boundary, firstKept, limit-touched)
		if err != nil {
			return 0, 0, err
		}
		edge, err := scanPackedDays(rows)
		if err != nil {
			return 0, 0, err
		}
		var rewrite packedDays
		var drop []int32
		for _, d := range edge {
			if hours, err = history.UnpackHours(hours[:0], "", d.day, d.data); err != nil {
				return 0, 0, fmt.Errorf("%s: %w", entityName(ctx, tx, d.id), err)
			}
			kept := slices.IndexFunc(hours, func(st history.Stat) bool { return !st.Start.Before(cutoff) })
			if kept < 0 {
				removed += int64(len(hours))
				drop = append(drop, d.id)
				continue
			}
			removed += int64(kept)
			data, err := history.PackHours(hours[kept:])
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", entityName(ctx, tx, d.id), err)
			}
			rewrite.add(d.id, d.day, data)
		}
		touched += int64(len(edge))
		var b pgx.Batch
		b.Queue("DELETE FROM stats_1h_days WHERE entity_id = ANY($1) AND day = $2", drop, boundary)
		b.Queue(`
			UPDATE stats_1h_days d SET data = u.data
			FROM unnest($1::integer[], $2::timestamptz[], $3::bytea[]) AS u(entity_id, day, data)
			WHERE d.entity_id = u.entity_id AND d.day = u.day`, rewrite.ids, rewrite.days, rewrite.data)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return 0, 0, err
		}
	}
	return removed, touched, tx.Commit(ctx)
}

// packedDays holds stats_1h_days rows as the columns of an unnest.
type packedDays struct {
	ids  []int32
	days []time.Time
	data [][]byte
}

func (p *packedDays) add(id int32, day time.Time, data []byte) {
	p.ids, p.days, p.data = append(p.ids, id), append(p.days, day), append(p.data, data)
}

func scanHourRows(rows pgx.Rows, capacity int) ([]hourRow, error) {
	defer rows.Close()
	out := make([]hourRow, 0, capacity)
	for rows.Next() {
		var r hourRow
		var lastTime pgtype.Timestamptz
		st := &r.st
		if err := rows.Scan(&r.id, &st.Start, &st.Count, &st.NumCount, &st.Sum, &st.Min, &st.Max, &st.Last, &lastTime, &st.OnMicros); err != nil {
			return nil, err
		}
		st.Start = st.Start.UTC()
		if lastTime.Valid {
			st.LastTime = lastTime.Time.UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func scanPackedDays(rows pgx.Rows) ([]packedDay, error) {
	defer rows.Close()
	var out []packedDay
	for rows.Next() {
		var d packedDay
		if err := rows.Scan(&d.id, &d.day, &d.data); err != nil {
			return nil, err
		}
		d.day = d.day.UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// entityName names the entity with id for an error message, or says
// which id it is if even that cannot be read.
func entityName(ctx context.Context, q querier, id int32) string {
	var home, entity string
	if err := q.QueryRow(ctx, "SELECT home, entity FROM entities WHERE id = $1", id).Scan(&home, &entity); err != nil {
		return fmt.Sprintf("entity id %d", id)
	}
	return fmt.Sprintf("entity %q of home %q", entity, home)
}
