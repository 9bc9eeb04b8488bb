package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"time"

	"github.com/homemesh/homemesh/history"
)

// rollupLag is how far behind now the hourly rollup stays: an hour is
// rolled up once it ended at least this long ago, so that the points of
// the current hours, which nearly every batch touches, cost one
// statistics row and not two.
const rollupLag = time.Hour

// rollup moves the watermark of the hourly tier towards now: it merges the
// 5-minute rows of the hours between the watermark and now − rollupLag into
// stats_1h and advances the watermark past them, in one transaction. It
// reads about limit 5-minute rows per call (whole hours, at least one),
// and reports whether hours remain to roll up.
func (s *Store) rollup(ctx context.Context, now time.Time, limit int) (more bool, err error) {
	target := micros(history.Truncate(now.Add(-rollupLag), history.Hourly))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var until int64
	if err := tx.QueryRowContext(ctx, `SELECT hourly_until FROM rollup`).Scan(&until); err != nil {
		return false, err
	}
	if until >= target {
		return false, nil
	}
	const query = `SELECT entity_id, start, count, num_count, sum, min, max, last, last_ts, on_us FROM stats_5m
		WHERE start >= ? AND start < ? ORDER BY start`
	rows, err := queryEntityStats(ctx, tx, query+` LIMIT ?`, until, target, limit+1)
	if err != nil {
		return false, err
	}
	next := target
	if len(rows) > limit {
		// The last hour read may be incomplete: stop before it, or, when
		// one hour alone has more rows than the limit, read that hour
		// whole.
		first, last := hourOf(rows[0].st.Start), hourOf(rows[limit].st.Start)
		if last > first {
			next = last
			rows = slices.DeleteFunc(rows, func(r entityStat) bool { return micros(r.st.Start) >= last })
		} else {
			next = first + time.Hour.Microseconds()
			if rows, err = queryEntityStats(ctx, tx, query, first, next); err != nil {
				return false, err
			}
		}
	}
	if err := mergeHours(ctx, tx, rows); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rollup SET hourly_until = ?`, next); err != nil {
		return false, err
	}
	return next < target, tx.Commit()
}

func hourOf(t time.Time) int64 { return micros(history.Truncate(t, history.Hourly)) }

// entityStat is a statistics row of some entity.
type entityStat struct {
	entityID int64
	st       history.Stat
}

// queryEntityStats runs a query returning entity_id, start, count,
// num_count, sum, min, max, last, last_ts and on_us.
func queryEntityStats(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]entityStat, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []entityStat
	for rows.Next() {
		var r entityStat
		var start int64
		var minV, maxV, last sql.NullFloat64
		var lastTS sql.NullInt64
		if err := rows.Scan(&r.entityID, &start, &r.st.Count, &r.st.NumCount, &r.st.Sum, &minV, &maxV, &last, &lastTS, &r.st.OnMicros); err != nil {
			return nil, err
		}
		r.st.Start = fromMicros(start)
		r.st.Min, r.st.Max, r.st.Last = minV.Float64, maxV.Float64, last.Float64
		if lastTS.Valid {
			r.st.LastTime = fromMicros(lastTS.Int64)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// mergeHours merges 5-minute rows into the hourly rows of their entity
// and hour.
func mergeHours(ctx context.Context, tx *sql.Tx, rows []entityStat) error {
	type key struct{ entityID, hour int64 }
	hours := map[key]*history.Stat{}
	var order []key
	for _, r := range rows {
		k := key{r.entityID, hourOf(r.st.Start)}
		h, ok := hours[k]
		if !ok {
			h = &history.Stat{Start: fromMicros(k.hour)}
			hours[k] = h
			order = append(order, k)
		}
		h.Merge(r.st)
	}
	slices.SortFunc(order, func(a, b key) int { return cmp.Or(cmp.Compare(a.entityID, b.entityID), cmp.Compare(a.hour, b.hour)) })
	upsert, err := tx.PrepareContext(ctx, upsertStatsSQL(history.Hourly))
	if err != nil {
		return err
	}
	defer upsert.Close()
	for _, k := range order {
		if _, err := upsert.ExecContext(ctx, statArgs(k.entityID, k.hour, hours[k])...); err != nil {
			return err
		}
	}
	return nil
}
