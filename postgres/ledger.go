package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// seqRange is an inclusive range of stream sequences in the ledger.
type seqRange struct{ first, last uint64 }

// ledgerRanges returns the stored ranges of (home, stream) that overlap
// [lo, hi]. Ranges are disjoint, so these are the ones starting in
// [lo, hi] and the last one starting before lo; the key (home, stream,
// first_seq) finds both without scanning older ranges.
func ledgerRanges(ctx context.Context, q querier, home, stream string, lo, hi uint64) ([]seqRange, error) {
	rows, err := q.Query(ctx, `
		SELECT first_seq, last_seq FROM ledger
		WHERE home = $1 AND stream = $2 AND first_seq <= $4 AND last_seq >= $3
		  AND first_seq >= coalesce((SELECT max(first_seq) FROM ledger WHERE home = $1 AND stream = $2 AND first_seq <= $3), $3)
		ORDER BY first_seq`, home, stream, int64(lo), int64(hi))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []seqRange
	for rows.Next() {
		var first, last int64
		if err := rows.Scan(&first, &last); err != nil {
			return nil, err
		}
		out = append(out, seqRange{uint64(first), uint64(last)})
	}
	return out, rows.Err()
}

// ledgerStored returns which of the sorted seqs the ledger holds, and the
// stored ranges that overlap or touch [first seq, last seq], which
// ledgerAdd merges with.
func ledgerStored(ctx context.Context, q querier, home, stream string, seqs []uint64) (stored []uint64, near []seqRange, err error) {
	lo, hi := seqs[0], seqs[len(seqs)-1]
	if lo > 1 {
		lo--
	}
	near, err = ledgerRanges(ctx, q, home, stream, lo, hi+1)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range seqs {
		for _, r := range near {
			if r.first <= s && s <= r.last {
				stored = append(stored, s)
				break
			}
		}
	}
	return stored, near, nil
}

// ledgerAdd records the sorted, new seqs, given the stored ranges near
// them (from ledgerStored, under the ledger lock). Runs of consecutive
// sequences become one range each, and a range touching a stored one is
// merged with it, so a stream consumed in order keeps a single growing row
// instead of one per batch.
func ledgerAdd(ctx context.Context, tx pgx.Tx, home, stream string, seqs []uint64, existing []seqRange) error {
	var runs []seqRange
	for _, s := range seqs {
		if n := len(runs); n > 0 && runs[n-1].last+1 == s {
			runs[n-1].last = s
			continue
		}
		runs = append(runs, seqRange{s, s})
	}
	type part struct {
		seqRange
		stored bool
	}
	all := make([]part, 0, len(runs)+len(existing))
	for _, r := range runs {
		all = append(all, part{r, false})
	}
	for _, r := range existing {
		all = append(all, part{r, true})
	}
	slices.SortFunc(all, func(a, b part) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	var drop, firsts, lasts []int64
	for i := 0; i < len(all); {
		j, merged, touched := i+1, all[i].seqRange, []part{all[i]}
		for j < len(all) && all[j].first <= merged.last+1 {
			merged.last = max(merged.last, all[j].last)
			touched = append(touched, all[j])
			j++
		}
		i = j
		if len(touched) == 1 && touched[0].stored {
			continue // a stored range nothing new touches
		}
		for _, t := range touched {
			if t.stored {
				drop = append(drop, int64(t.first))
			}
		}
		firsts, lasts = append(firsts, int64(merged.first)), append(lasts, int64(merged.last))
	}
	if len(drop) > 0 {
		if _, err := tx.Exec(ctx, "DELETE FROM ledger WHERE home = $1 AND stream = $2 AND first_seq = ANY($3)", home, stream, drop); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO ledger (home, stream, first_seq, last_seq, committed_at)
		SELECT $1, $2, f, l, $5 FROM unnest($3::bigint[], $4::bigint[]) AS t(f, l)`,
		home, stream, firsts, lasts, time.Now())
	return err
}
