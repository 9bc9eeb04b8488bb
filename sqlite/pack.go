package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/homemesh/homemesh/history"
)

// packLag is how long after a UTC day ends its hourly rows are packed:
// by then the rollup has stored its last hour (rollupLag), and a packed
// day is rewritten only for the rare late point.
const packLag = time.Hour

// packDays moves up to limit stats_1h rows of the days that ended at
// least packLag before now into stats_1h_days, merging each entity's day
// into its packed value, in one transaction; a later call packs the rest
// of a day the limit cut, as merging packed hours is associative. It
// reports whether such rows remain.
func (s *Store) packDays(ctx context.Context, now time.Time, limit int) (more bool, err error) {
	before := micros(history.Day(now.Add(-packLag)))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	// Most calls find nothing to pack: ask the start index first.
	var closed bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM stats_1h WHERE start < ?)`, before).Scan(&closed); err != nil || !closed {
		return false, err
	}
	// In key order, so that the rows of an entity's day are one run; the
	// unary + keeps SQLite from reading the start index and sorting all
	// closed rows for the sake of the first few.
	rows, err := queryEntityStats(ctx, tx, `SELECT entity_id, start, count, num_count, sum, min, max, last, last_ts, on_us
		FROM stats_1h WHERE +start < ? ORDER BY entity_id, start LIMIT ?`, before, limit+1)
	if err != nil {
		return false, err
	}
	if len(rows) > limit {
		rows, more = rows[:limit], true
	}
	p, err := preparePacker(ctx, tx)
	if err != nil {
		return false, err
	}
	defer p.close()
	for i := 0; i < len(rows); {
		id, day := rows[i].entityID, history.Day(rows[i].st.Start)
		j := i + 1
		for j < len(rows) && rows[j].entityID == id && history.Day(rows[j].st.Start).Equal(day) {
			j++
		}
		if err := p.packDay(ctx, id, day, rows[i:j]); err != nil {
			return false, err
		}
		i = j
	}
	return more, tx.Commit()
}

// packer holds the statements that fold hourly rows into a packed day.
type packer struct {
	tx               *sql.Tx
	get, put, delete *sql.Stmt
}

func preparePacker(ctx context.Context, tx *sql.Tx) (*packer, error) {
	p := &packer{tx: tx}
	var err error
	for _, s := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&p.get, `SELECT data FROM stats_1h_days WHERE entity_id = ? AND day = ?`},
		{&p.put, `INSERT INTO stats_1h_days (entity_id, day, data) VALUES (?, ?, ?)
			ON CONFLICT (entity_id, day) DO UPDATE SET data = excluded.data`},
		{&p.delete, `DELETE FROM stats_1h WHERE entity_id = ? AND start >= ? AND start <= ?`},
	} {
		if *s.stmt, err = tx.PrepareContext(ctx, s.query); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *packer) close() {
	for _, s := range []*sql.Stmt{p.get, p.put, p.delete} {
		if s != nil {
			s.Close()
		}
	}
}

// packDay merges rows, the stats_1h rows of one entity's day in order of
// start and the whole run of them between the first and the last, into
// the day's packed value and deletes them.
func (p *packer) packDay(ctx context.Context, id int64, day time.Time, rows []entityStat) error {
	hours := make([]history.Stat, len(rows))
	for i, r := range rows {
		hours[i] = r.st
	}
	var packed []history.Stat
	var data []byte
	switch err := p.get.QueryRowContext(ctx, id, micros(day)).Scan(&data); {
	case err == nil:
		if packed, err = history.UnpackHours(make([]history.Stat, 0, 24+len(hours)), "", day, data); err != nil {
			return entityError(ctx, p.tx, id, err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	data, err := history.PackHours(history.MergeSorted(packed, hours))
	if err != nil {
		return entityError(ctx, p.tx, id, err)
	}
	if _, err := p.put.ExecContext(ctx, id, micros(day), data); err != nil {
		return err
	}
	res, err := p.delete.ExecContext(ctx, id, micros(rows[0].st.Start), micros(rows[len(rows)-1].st.Start))
	if err != nil {
		return err
	}
	// The transaction holds the write lock since it read the rows, so
	// nothing can have come between them; anything else would pack a row
	// twice or lose one.
	if n, err := res.RowsAffected(); err != nil || n != int64(len(rows)) {
		return errors.Join(err, fmt.Errorf("packing %d hourly rows of entity %d on %s deleted %d", len(rows), id, day.Format(time.DateOnly), n))
	}
	return nil
}

// purgePackedDays deletes the packed hours of each entity that start
// before its cutoff: whole days are deleted, the day the cutoff falls in
// is rewritten without its expired hours. It touches at most limit packed
// days, in one transaction, and returns how many hours it removed and
// whether expired ones remain.
func (s *Store) purgePackedDays(ctx context.Context, cutoffs []entityCutoff, limit int) (removed int64, more bool, err error) {
	if len(cutoffs) == 0 {
		return 0, false, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback()
	expired, err := tx.PrepareContext(ctx, `SELECT day, data FROM stats_1h_days WHERE entity_id = ? AND day < ? ORDER BY day LIMIT ?`)
	if err != nil {
		return 0, false, err
	}
	defer expired.Close()
	touched := 0
	for _, c := range cutoffs {
		// Every day read but the one the cutoff falls in, which comes
		// last, is expired whole: one more than the budget tells whether
		// expired hours remain.
		days, err := packedDays(ctx, expired, c.id, c.before, limit-touched+1)
		if err != nil {
			return removed, false, err
		}
		for _, d := range days {
			hours, err := history.UnpackHours(nil, "", fromMicros(d.day), d.data)
			if err != nil {
				return removed, false, entityError(ctx, tx, c.id, err)
			}
			gone := 0
			for gone < len(hours) && micros(hours[gone].Start) < c.before {
				gone++
			}
			if gone == 0 {
				continue
			}
			if touched == limit {
				return removed, true, tx.Commit()
			}
			touched++
			removed += int64(gone)
			if gone == len(hours) {
				_, err = tx.ExecContext(ctx, `DELETE FROM stats_1h_days WHERE entity_id = ? AND day = ?`, c.id, d.day)
			} else {
				var data []byte
				if data, err = history.PackHours(hours[gone:]); err == nil {
					_, err = tx.ExecContext(ctx, `UPDATE stats_1h_days SET data = ? WHERE entity_id = ? AND day = ?`, data, c.id, d.day)
				}
			}
			if err != nil {
				return removed, false, err
			}
		}
	}
	return removed, false, tx.Commit()
}

type packedDay struct {
	day  int64
	data []byte
}

// packedDays returns up to n packed days of an entity whose day starts
// before before, oldest first.
func packedDays(ctx context.Context, stmt *sql.Stmt, id, before int64, n int) ([]packedDay, error) {
	rows, err := stmt.QueryContext(ctx, id, before, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []packedDay
	for rows.Next() {
		var d packedDay
		if err := rows.Scan(&d.day, &d.data); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// entityError names the entity of id in err, which is about its stored
// statistics.
func entityError(ctx context.Context, tx *sql.Tx, id int64, err error) error {
	var home, entity string
	if tx.QueryRowContext(ctx, `SELECT home, entity FROM entities WHERE id = ?`, id).Scan(&home, &entity) != nil {
		return fmt.Errorf("entity id %d: %w", id, err)
	}
	return fmt.Errorf("entity %s of home %s: %w", entity, home, err)
}
