package sqlite

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// limit returns the page size a query asks for.
func limit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, homemesh.Invalid("limit", "%d is negative", n)
	case n == 0:
		return history.DefaultLimit, nil
	}
	return min(n, history.MaxLimit), nil
}

// History returns one page of an entity's raw points or statistics in
// [q.From, q.To), oldest first; statistics buckets are selected by their
// start. An entity never stored has an empty history.
func (s *Store) History(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	var page history.HistoryPage
	switch {
	case q.Home == "":
		return page, homemesh.Invalid("home", "is empty")
	case q.Entity == "":
		return page, homemesh.Invalid("entity", "is empty")
	case q.To.Before(q.From):
		return page, homemesh.Invalid("to", "%v is before from %v", q.To, q.From)
	case q.Resolution != history.Raw && statTables[q.Resolution] == "":
		return page, homemesh.Invalid("resolution", "%q is not one of raw, 5m, 1h", q.Resolution)
	}
	n, err := limit(q.Limit)
	if err != nil || !q.To.After(q.From) {
		return page, err
	}
	e, ok, err := s.lookupEntity(ctx, q.Home, q.Entity)
	if err != nil || !ok {
		return page, wrapRead(err)
	}
	from := micros(q.From)
	if !q.After.IsZero() {
		// Rows strictly after the cursor; nothing lies between two
		// microseconds.
		from = max(from, micros(q.After)+1)
	}
	to := micros(q.To)
	if q.Resolution == history.Raw {
		page.Points, page.More, err = s.rawHistory(ctx, q.Entity, e, from, to, n)
	} else if q.Resolution == history.Hourly {
		page.Stats, page.More, err = s.hourlyHistory(ctx, q.Entity, e, from, to, n)
	} else {
		page.Stats, page.More, err = s.statHistory(ctx, q.Entity, e, statTables[q.Resolution], from, to, n)
	}
	return page, wrapRead(err)
}

// bucketsIn is how many buckets of table fit in [from, to) µs, at most
// history.MaxLimit: the capacity a page needs.
func bucketsIn(table string, from, to int64) int {
	for r, t := range statTables {
		if t == table {
			return int(min((to-from)/r.Bucket().Microseconds()+1, history.MaxLimit))
		}
	}
	return 0
}

func wrapRead(err error) error {
	if err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	return nil
}

func (s *Store) rawHistory(ctx context.Context, entity string, e entityRow, from, to int64, n int) ([]history.Point, bool, error) {
	points := make([]history.Point, 0, min(n, 1024))
	more := false
	err := s.query(ctx, `SELECT ts, value, state, attrs FROM points
		WHERE entity_id = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?`, []any{e.id, from, to, int64(n + 1)},
		func(v []driver.Value) bool {
			if len(points) == n {
				more = true
				return false
			}
			p := history.Point{Entity: entity, Device: e.device, Kind: e.kind, Time: fromMicros(asInt(v[0]))}
			if v[1] != nil {
				p.Numeric, p.Value = true, asFloat(v[1])
			} else {
				p.State = asString(v[2])
			}
			if a := asBytes(v[3]); len(a) > 0 {
				p.Attrs = json.RawMessage(a)
			}
			points = append(points, p)
			return true
		})
	return points, more, err
}

func (s *Store) statHistory(ctx context.Context, entity string, e entityRow, table string, from, to int64, n int) (stats []history.Stat, more bool, err error) {
	err = s.read(ctx, false, func(q querier) error {
		stats, more, err = statRows(q, entity, e, table, from, to, n, make([]history.Stat, 0, min(n, bucketsIn(table, from, to))))
		return err
	})
	return stats, more, err
}

// hourlyHistory reads the hourly tier: the rolled-up hours from the packed
// days and stats_1h, the later ones merged from their 5-minute rows, all
// in one read transaction so that a rollup or packing between the reads
// cannot show an hour twice or not at all.
func (s *Store) hourlyHistory(ctx context.Context, entity string, e entityRow, from, to int64, n int) (stats []history.Stat, more bool, err error) {
	err = s.read(ctx, true, func(q querier) error {
		var until int64
		if err := q(`SELECT hourly_until FROM rollup`, nil, func(v []driver.Value) bool {
			until = asInt(v[0])
			return false
		}); err != nil {
			return err
		}
		stats, more = nil, false
		if from < until {
			var err error
			if stats, err = rolledUpHours(q, entity, e, from, min(to, until), n); err != nil {
				return err
			}
			if len(stats) > n {
				stats, more = stats[:n], true
				return nil
			}
		}
		// Hours from the watermark on, whose start is in [from, to).
		lo, hi := ceilHour(max(from, until)), ceilHour(to)
		if lo >= hi {
			return nil
		}
		return q(`SELECT start, count, num_count, sum, min, max, last, last_ts, on_us FROM stats_5m
			WHERE entity_id = ? AND start >= ? AND start < ? ORDER BY start`, []any{e.id, lo, hi},
			func(v []driver.Value) bool {
				st := scanStat(entity, v)
				hour := history.Truncate(st.Start, history.Hourly)
				if len(stats) == 0 || !stats[len(stats)-1].Start.Equal(hour) {
					if len(stats) == n {
						more = true
						return false
					}
					stats = append(stats, history.Stat{Entity: entity, Start: hour})
				}
				stats[len(stats)-1].Merge(st)
				return true
			})
	})
	return stats, more, err
}

// rolledUpHours reads the rolled-up buckets of the hourly tier whose
// start is in [from, to), the packed days merged with the stats_1h rows:
// at least the first n+1 of them, or all when there are fewer.
func rolledUpHours(q querier, entity string, e entityRow, from, to int64, n int) ([]history.Stat, error) {
	// Room for every bucket wanted, and for the rest of the day decoded
	// last.
	packed := make([]history.Stat, 0, min(n+1, bucketsIn("stats_1h", from, to))+24)
	rowsTo := to
	var bad error
	err := q(`SELECT day, data FROM stats_1h_days WHERE entity_id = ? AND day >= ? AND day < ? ORDER BY day`,
		[]any{e.id, micros(history.Day(fromMicros(from))), to},
		func(v []driver.Value) bool {
			dayStart := asInt(v[0])
			data, _ := v[1].([]byte)
			first := len(packed)
			if packed, bad = history.UnpackHours(packed, entity, fromMicros(dayStart), data); bad != nil {
				bad = fmt.Errorf("entity %s: %w", entity, bad)
				return false
			}
			// Only the first and the last day can hold buckets out of range.
			dayEnd := dayStart + (24 * time.Hour).Microseconds()
			if dayStart < from || dayEnd > to {
				kept := packed[:first]
				for _, st := range packed[first:] {
					if us := micros(st.Start); us >= from && us < to {
						kept = append(kept, st)
					}
				}
				packed = kept
			}
			if len(packed) > n {
				// The first n+1 buckets are among these and the rows
				// before the day's end.
				rowsTo = dayEnd
				return false
			}
			return true
		})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, err
	}
	// Few hours are not packed: today's (and yesterday's until 01:00),
	// and late points.
	rows, _, err := statRows(q, entity, e, "stats_1h", from, min(to, rowsTo), n+1, nil)
	if err != nil {
		return nil, err
	}
	if len(packed) > 0 && len(rows) > 0 && rows[0].Start.After(packed[len(packed)-1].Start) {
		// No late points, as nearly always: the rows follow the packed
		// days, in the room left for them.
		return append(packed, rows...), nil
	}
	return history.MergeSorted(packed, rows), nil
}

// ceilHour returns the first hour boundary at or after us.
func ceilHour(us int64) int64 {
	t := fromMicros(us)
	h := t.Truncate(time.Hour)
	if h.Before(t) {
		h = h.Add(time.Hour)
	}
	return micros(h)
}

// statRows reads up to n statistics rows of table in [from, to) into
// stats, an empty slice with the capacity the caller expects to need.
func statRows(q querier, entity string, e entityRow, table string, from, to int64, n int, stats []history.Stat) ([]history.Stat, bool, error) {
	more := false
	err := q(`SELECT start, count, num_count, sum, min, max, last, last_ts, on_us FROM `+table+`
		WHERE entity_id = ? AND start >= ? AND start < ? ORDER BY start LIMIT ?`, []any{e.id, from, to, int64(n + 1)},
		func(v []driver.Value) bool {
			if len(stats) == n {
				more = true
				return false
			}
			stats = append(stats, scanStat(entity, v))
			return true
		})
	return stats, more, err
}

// scanStat reads a statistics row: start, count, num_count, sum, min,
// max, last, last_ts, on_us.
func scanStat(entity string, v []driver.Value) history.Stat {
	st := history.Stat{Entity: entity, Start: fromMicros(asInt(v[0])), Count: asInt(v[1]), NumCount: asInt(v[2]),
		Sum: asFloat(v[3]), Min: asFloat(v[4]), Max: asFloat(v[5]), Last: asFloat(v[6]), OnMicros: asInt(v[8])}
	if v[7] != nil {
		st.LastTime = fromMicros(asInt(v[7]))
	}
	return st
}

// querier runs a query and calls row for each row until it returns false;
// the values passed to row are valid only during the call.
type querier func(query string, args []any, row func([]driver.Value) bool) error

// query runs one query on a reader connection.
func (s *Store) query(ctx context.Context, query string, args []any, row func([]driver.Value) bool) error {
	return s.read(ctx, false, func(q querier) error { return q(query, args, row) })
}

// read runs fn with a querier on one reader connection; with snapshot
// set, inside one read transaction, so that all of fn's queries see the
// same state of the database. It talks to the driver directly: the history
// queries return thousands of rows, and database/sql's per-row locking and
// conversions cost more than SQLite's own work on them.
func (s *Store) read(ctx context.Context, snapshot bool, fn func(q querier) error) error {
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		ec, ok2 := dc.(driver.ExecerContext)
		if !ok || !ok2 {
			return fmt.Errorf("driver connection %T cannot query", dc)
		}
		q := func(query string, args []any, row func([]driver.Value) bool) error {
			named := make([]driver.NamedValue, len(args))
			for i, a := range args {
				named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
			}
			rows, err := qc.QueryContext(ctx, query, named)
			if err != nil {
				return err
			}
			defer rows.Close()
			vals := make([]driver.Value, len(rows.Columns()))
			for {
				err := rows.Next(vals)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if !row(vals) {
					return nil
				}
			}
		}
		if !snapshot {
			return fn(q)
		}
		if _, err := ec.ExecContext(ctx, "BEGIN", nil); err != nil {
			return err
		}
		err := fn(q)
		// The transaction only read: ending it is all that is left. A
		// connection that cannot end it must not go back to the pool.
		if _, rerr := ec.ExecContext(context.Background(), "ROLLBACK", nil); rerr != nil {
			return errors.Join(err, rerr, driver.ErrBadConn)
		}
		return err
	})
}

// The as functions read a column value as the driver returns it: int64,
// float64, string, []byte or nil.

func asInt(v driver.Value) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return 0
}

func asFloat(v driver.Value) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	}
	return 0
}

func asString(v driver.Value) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func asBytes(v driver.Value) []byte {
	switch x := v.(type) {
	case []byte:
		return slices.Clone(x)
	case string:
		return []byte(x)
	}
	return nil
}

// Events returns one page of a home's events in [q.From, q.To), ordered by
// time and id.
func (s *Store) Events(ctx context.Context, q history.EventQuery) (history.EventPage, error) {
	var page history.EventPage
	switch {
	case q.Home == "":
		return page, homemesh.Invalid("home", "is empty")
	case q.To.Before(q.From):
		return page, homemesh.Invalid("to", "%v is before from %v", q.To, q.From)
	}
	n, err := limit(q.Limit)
	if err != nil || !q.To.After(q.From) {
		return page, err
	}
	var where strings.Builder
	args := []any{q.Home, micros(q.From), micros(q.To)}
	where.WriteString(`home = ? AND ts >= ? AND ts < ?`)
	if q.Kind != "" {
		where.WriteString(` AND kind = ?`)
		args = append(args, q.Kind)
	}
	if q.Device != "" {
		where.WriteString(` AND device = ?`)
		args = append(args, q.Device)
	}
	if !q.AfterTime.IsZero() {
		where.WriteString(` AND (ts, id) > (?, ?)`)
		args = append(args, micros(q.AfterTime), q.AfterID)
	}
	args = append(args, n+1)
	rows, err := s.r.QueryContext(ctx, `SELECT ts, id, kind, device, entity, data FROM events WHERE `+
		where.String()+` ORDER BY ts, id LIMIT ?`, args...)
	if err != nil {
		return page, wrapEvents(err)
	}
	defer rows.Close()
	for rows.Next() {
		if len(page.Events) == n {
			page.More = true
			break
		}
		var ts int64
		var data []byte
		var e history.Event
		if err := rows.Scan(&ts, &e.ID, &e.Kind, &e.Device, &e.Entity, &data); err != nil {
			return page, wrapEvents(err)
		}
		e.Time = fromMicros(ts)
		if len(data) > 0 {
			e.Data = json.RawMessage(data)
		}
		page.Events = append(page.Events, e)
	}
	return page, wrapEvents(rows.Err())
}

func wrapEvents(err error) error {
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
}
