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

func (s *Store) statHistory(ctx context.Context, entity string, e entityRow, table string, from, to int64, n int) ([]history.Stat, bool, error) {
	stats := make([]history.Stat, 0, min(n, bucketsIn(table, from, to)))
	more := false
	err := s.query(ctx, `SELECT start, count, num_count, sum, min, max, last, last_ts, on_us FROM `+table+`
		WHERE entity_id = ? AND start >= ? AND start < ? ORDER BY start LIMIT ?`, []any{e.id, from, to, int64(n + 1)},
		func(v []driver.Value) bool {
			if len(stats) == n {
				more = true
				return false
			}
			st := history.Stat{Entity: entity, Start: fromMicros(asInt(v[0])), Count: asInt(v[1]), NumCount: asInt(v[2]),
				Sum: asFloat(v[3]), Min: asFloat(v[4]), Max: asFloat(v[5]), Last: asFloat(v[6]), OnMicros: asInt(v[8])}
			if v[7] != nil {
				st.LastTime = fromMicros(asInt(v[7]))
			}
			stats = append(stats, st)
			return true
		})
	return stats, more, err
}

// query runs a query on a reader connection and calls row for each row
// until it returns false. It talks to the driver directly: the history
// queries return thousands of rows, and database/sql's per-row locking and
// conversions cost more than SQLite's own work on them. The values passed
// to row are valid only during the call.
func (s *Store) query(ctx context.Context, query string, args []any, row func([]driver.Value) bool) error {
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot query", dc)
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
