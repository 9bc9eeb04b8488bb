package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// Purge deletes what p no longer keeps at now: raw points and statistics
// by the retention of their entity's kind, events, and ledger ranges older
// than history.LedgerRetention. It deletes at most limit rows per table
// (packed days count as rows, removed hours as statistics); each step is
// its own short transaction, so writers wait at most for one of them and
// readers not at all.
//
// Before deleting anything it does the hourly tier's upkeep, at most limit
// rows of each: it rolls past hours up from their 5-minute rows, then
// packs the hourly rows of closed days. Neither removes statistics, and
// neither counts in the result, but either sets More while work remains.
func (s *Store) Purge(ctx context.Context, now time.Time, p history.RetentionPolicy, limit int) (history.PurgeResult, error) {
	var res history.PurgeResult
	if limit <= 0 {
		return res, homemesh.Invalid("limit", "%d is not positive", limit)
	}
	if now.IsZero() {
		return res, homemesh.Invalid("now", "is zero")
	}
	// Roll completed hours up first: the 5-minute rows of an hour that is
	// not rolled up yet are its only statistics, and must not be purged.
	more, err := s.rollup(ctx, now, limit)
	if err != nil {
		return res, fmt.Errorf("purge history: roll up hourly statistics: %w", err)
	}
	res.More = more
	// Then pack the closed days' hours; the retention below removes
	// packed hours as it removes rows.
	if more, err = s.packDays(ctx, now, limit); err != nil {
		return res, fmt.Errorf("purge history: pack closed days' hourly statistics: %w", err)
	}
	res.More = res.More || more
	var rolledUntil int64
	if err := s.w.QueryRowContext(ctx, `SELECT hourly_until FROM rollup`).Scan(&rolledUntil); err != nil {
		return res, fmt.Errorf("purge history: %w", err)
	}
	ents, err := s.allEntities(ctx)
	if err != nil {
		return res, fmt.Errorf("purge history: %w", err)
	}
	tables := []struct {
		table, key string
		keep       func(history.Retention) time.Duration
		removed    *int64
	}{
		{"points", "ts", func(r history.Retention) time.Duration { return r.Raw }, &res.Points},
		{"stats_5m", "start", func(r history.Retention) time.Duration { return r.FiveMinutes }, &res.Stats},
		{"stats_1h", "start", func(r history.Retention) time.Duration { return r.Hourly }, &res.Stats},
	}
	var hourlyCutoffs []entityCutoff
	for _, t := range tables {
		var cutoffs []entityCutoff
		for _, e := range ents {
			if keep := t.keep(p.For(e.kind)); keep > 0 {
				before := micros(now.Add(-keep))
				if t.table == "stats_5m" {
					before = min(before, rolledUntil)
				}
				cutoffs = append(cutoffs, entityCutoff{e.id, before})
			}
		}
		if t.table == "stats_1h" {
			hourlyCutoffs = cutoffs
		}
		n, more, err := s.purgeEntities(ctx, t.table, t.key, cutoffs, limit)
		*t.removed += n
		res.More = res.More || more
		if err != nil {
			return res, fmt.Errorf("purge history: %s: %w", t.table, err)
		}
	}
	n, more, err := s.purgePackedDays(ctx, hourlyCutoffs, limit)
	res.Stats += n
	res.More = res.More || more
	if err != nil {
		return res, fmt.Errorf("purge history: stats_1h_days: %w", err)
	}
	if p.Events > 0 {
		n, more, err := s.purgeBefore(ctx, "events", "home, ts, id", "ts", micros(now.Add(-p.Events)), limit)
		res.Events, res.More = n, res.More || more
		if err != nil {
			return res, fmt.Errorf("purge history: events: %w", err)
		}
	}
	n, more, err = s.purgeBefore(ctx, "ledger", "home, stream, first_seq", "committed_at", micros(now.Add(-history.LedgerRetention)), limit)
	res.Ledger, res.More = n, res.More || more
	if err != nil {
		return res, fmt.Errorf("purge history: ledger: %w", err)
	}
	return res, nil
}

type entityCutoff struct{ id, before int64 }

func (s *Store) allEntities(ctx context.Context) ([]entityRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, kind FROM entities ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []entityRow
	for rows.Next() {
		var e entityRow
		if err := rows.Scan(&e.id, &e.kind); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// purgeEntities deletes, entity by entity, the rows of table whose key
// (time) is before the entity's cutoff, at most limit in all. more reports
// whether expired rows remain.
func (s *Store) purgeEntities(ctx context.Context, table, key string, cutoffs []entityCutoff, limit int) (removed int64, more bool, err error) {
	del := fmt.Sprintf(`DELETE FROM %[1]s WHERE entity_id = ? AND %[2]s IN
		(SELECT %[2]s FROM %[1]s WHERE entity_id = ? AND %[2]s < ? ORDER BY %[2]s LIMIT ?)`, table, key)
	exists := fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %[1]s WHERE entity_id = ? AND %[2]s < ?)`, table, key)
	for _, c := range cutoffs {
		if removed < int64(limit) {
			r, err := s.w.ExecContext(ctx, del, c.id, c.id, c.before, int64(limit)-removed)
			if err != nil {
				return removed, false, err
			}
			n, err := r.RowsAffected()
			if err != nil {
				return removed, false, err
			}
			removed += n
		}
		if removed == int64(limit) {
			// The budget is spent: find out whether this entity or a
			// later one still has expired rows.
			var left bool
			if err := s.r.QueryRowContext(ctx, exists, c.id, c.before).Scan(&left); err != nil {
				return removed, false, err
			}
			if left {
				return removed, true, nil
			}
		}
	}
	return removed, false, nil
}

// purgeBefore deletes at most limit rows of table whose column is below
// before; pk is the table's primary key.
func (s *Store) purgeBefore(ctx context.Context, table, pk, column string, before int64, limit int) (removed int64, more bool, err error) {
	r, err := s.w.ExecContext(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE (%[2]s) IN
		(SELECT %[2]s FROM %[1]s WHERE %[3]s < ? ORDER BY %[3]s LIMIT ?)`, table, pk, column), before, limit)
	if err != nil {
		return 0, false, err
	}
	if removed, err = r.RowsAffected(); err != nil {
		return 0, false, err
	}
	if removed < int64(limit) {
		return removed, false, nil
	}
	err = s.r.QueryRowContext(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s < ?)`, table, column), before).Scan(&more)
	return removed, more, err
}
