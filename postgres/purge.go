package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// Purge removes what the policy no longer keeps. See history.Purger.
//
// Raw points and events are partitioned by day: a partition wholly older
// than the longest retention of its table is detached and dropped, which
// costs no row deletes and no vacuum. Rows that a shorter, per-kind
// retention expires inside kept partitions, statistics and the ledger are
// deleted in bounded statements, at most limit rows per table per call.
// Packed hours expire with the hourly tier's rows and count as if they
// were rows, one per hour. Purge also creates today's and tomorrow's
// partitions ahead of writers, and packs up to limit hourly rows of days
// that ended at least an hour ago (see pack), which removes nothing and
// counts in no total but sets More while rows remain to pack.
func (s *Store) Purge(ctx context.Context, now time.Time, p history.RetentionPolicy, limit int) (history.PurgeResult, error) {
	var res history.PurgeResult
	if limit <= 0 {
		return res, homemesh.Invalid("limit", "%d is not a positive number of rows", limit)
	}
	today := []int64{dayOf(now)}
	if err := s.parts.ensure(ctx, pointsTable, today); err != nil {
		return res, fmt.Errorf("purge history: %w", err)
	}
	if err := s.parts.ensure(ctx, eventsTable, today); err != nil {
		return res, fmt.Errorf("purge history: %w", err)
	}

	kinds, err := s.kinds(ctx)
	if err != nil {
		return res, fmt.Errorf("purge history: %w", err)
	}

	// Raw points: drop what every kind has expired, then delete per kind.
	longest, forever := time.Duration(0), false
	for _, r := range append([]history.Retention{p.Default}, retentionsOf(p)...) {
		if r.Raw == 0 {
			forever = true
		}
		longest = max(longest, r.Raw)
	}
	if !forever {
		n, err := s.parts.drop(ctx, pointsTable, now.Add(-longest))
		if err != nil {
			return res, fmt.Errorf("purge raw points: %w", err)
		}
		res.Points += n
	}
	steps := []struct {
		table  string
		column string
		keep   func(history.Retention) time.Duration
		count  *int64
	}{
		{pointsTable, "ts", func(r history.Retention) time.Duration { return r.Raw }, &res.Points},
		{"stats_5m", "start", func(r history.Retention) time.Duration { return r.FiveMinutes }, &res.Stats},
		{"stats_1h", "start", func(r history.Retention) time.Duration { return r.Hourly }, &res.Stats},
	}
	for _, st := range steps {
		left := int64(limit)
		for _, k := range kinds {
			keep := st.keep(p.For(homemesh.EntityKind(k)))
			if keep == 0 || left == 0 {
				continue
			}
			cutoff := now.Add(-keep)
			tag, err := s.pool.Exec(ctx, fmt.Sprintf(`
				DELETE FROM %[1]s WHERE %[2]s < $2 AND (entity_id, %[2]s) IN (
					SELECT t.entity_id, t.%[2]s FROM %[1]s t
					WHERE t.entity_id IN (SELECT id FROM entities WHERE kind = $1) AND t.%[2]s < $2
					LIMIT $3)`, st.table, st.column), k, cutoff, left)
			if err != nil {
				return res, fmt.Errorf("purge %s: %w", st.table, err)
			}
			*st.count += tag.RowsAffected()
			left -= tag.RowsAffected()
		}
		if left == 0 {
			res.More = true
		}
	}

	if p.Events > 0 {
		cutoff := now.Add(-p.Events)
		n, err := s.parts.drop(ctx, eventsTable, cutoff)
		if err != nil {
			return res, fmt.Errorf("purge events: %w", err)
		}
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM events WHERE ts < $1 AND (home, ts, id) IN (
				SELECT home, ts, id FROM events WHERE ts < $1 LIMIT $2)`, cutoff, limit)
		if err != nil {
			return res, fmt.Errorf("purge events: %w", err)
		}
		res.Events = n + tag.RowsAffected()
		res.More = res.More || tag.RowsAffected() == int64(limit)
	}

	tag, err := s.pool.Exec(ctx, `
		DELETE FROM ledger WHERE (home, stream, first_seq) IN (
			SELECT home, stream, first_seq FROM ledger WHERE committed_at < $1 LIMIT $2)`,
		now.Add(-history.LedgerRetention), limit)
	if err != nil {
		return res, fmt.Errorf("purge ledger: %w", err)
	}
	res.Ledger = tag.RowsAffected()
	res.More = res.More || res.Ledger == int64(limit)

	// The packed tier comes last, so that a packed day that does not
	// unpack, failing the steps below, holds up no other purge. Packed
	// hours expire at the hourly rows' cutoffs, with their own bound.
	left := int64(limit)
	for _, k := range kinds {
		keep := p.For(homemesh.EntityKind(k)).Hourly
		if keep == 0 || left == 0 {
			continue
		}
		removed, touched, err := s.purgePacked(ctx, k, now.Add(-keep), left)
		if err != nil {
			return res, fmt.Errorf("purge packed hours: %w", err)
		}
		res.Stats += removed
		left -= touched
	}
	if left == 0 {
		res.More = true
	}

	// Packing removes nothing; the rows it fails to pack stay in
	// stats_1h.
	more, err := s.pack(ctx, now, limit)
	if err != nil {
		return res, fmt.Errorf("pack closed days: %w", err)
	}
	res.More = res.More || more
	return res, nil
}

func retentionsOf(p history.RetentionPolicy) []history.Retention {
	out := make([]history.Retention, 0, len(p.Kinds))
	for _, r := range p.Kinds {
		out = append(out, r)
	}
	return out
}

// kinds returns the entity kinds stored.
func (s *Store) kinds(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT kind FROM entities ORDER BY kind")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
