package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
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
	rows, err := s.r.QueryContext(ctx, `SELECT ts, value, state, attrs FROM points
		WHERE entity_id = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?`, e.id, from, to, n+1)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	points := make([]history.Point, 0, min(n, 1024))
	more := false
	for rows.Next() {
		if len(points) == n {
			more = true
			break
		}
		var ts int64
		var value sql.NullFloat64
		var state sql.NullString
		var attrs []byte
		if err := rows.Scan(&ts, &value, &state, &attrs); err != nil {
			return nil, false, err
		}
		p := history.Point{Entity: entity, Device: e.device, Kind: e.kind, Time: fromMicros(ts),
			Numeric: value.Valid, Value: value.Float64, State: state.String}
		if len(attrs) > 0 {
			p.Attrs = json.RawMessage(attrs)
		}
		points = append(points, p)
	}
	return points, more, rows.Err()
}

func (s *Store) statHistory(ctx context.Context, entity string, e entityRow, table string, from, to int64, n int) ([]history.Stat, bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT start, count, num_count, sum, min, max, last, last_ts, on_us FROM `+table+`
		WHERE entity_id = ? AND start >= ? AND start < ? ORDER BY start LIMIT ?`, e.id, from, to, n+1)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	stats := make([]history.Stat, 0, min(n, bucketsIn(table, from, to)))
	more := false
	for rows.Next() {
		if len(stats) == n {
			more = true
			break
		}
		var start int64
		var minV, maxV, last sql.NullFloat64
		var lastTS sql.NullInt64
		st := history.Stat{Entity: entity}
		if err := rows.Scan(&start, &st.Count, &st.NumCount, &st.Sum, &minV, &maxV, &last, &lastTS, &st.OnMicros); err != nil {
			return nil, false, err
		}
		st.Start = fromMicros(start)
		st.Min, st.Max, st.Last = minV.Float64, maxV.Float64, last.Float64
		if lastTS.Valid {
			st.LastTime = fromMicros(lastTS.Int64)
		}
		stats = append(stats, st)
	}
	return stats, more, rows.Err()
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
