package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// limit returns the page size of a query: DefaultLimit when unset, never
// more than MaxLimit.
func limit(n int) int {
	if n <= 0 {
		return history.DefaultLimit
	}
	return min(n, history.MaxLimit)
}

func validateSpan(from, to time.Time) error {
	if from.IsZero() {
		return homemesh.Invalid("from", "is missing")
	}
	if to.IsZero() {
		return homemesh.Invalid("to", "is missing")
	}
	if to.Before(from) {
		return homemesh.Invalid("to", "%v is before from (%v)", to, from)
	}
	return nil
}

// History returns one page of an entity's raw points or statistics. See
// history.Reader.
func (s *Store) History(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	var page history.HistoryPage
	if err := checkText("home", q.Home, true); err != nil {
		return page, err
	}
	if err := checkText("entity", q.Entity, true); err != nil {
		return page, err
	}
	if err := validateSpan(q.From, q.To); err != nil {
		return page, err
	}
	switch q.Resolution {
	case history.Raw:
		return s.raw(ctx, q)
	case history.FiveMinutes:
		return s.stats(ctx, q)
	case history.Hourly:
		return s.hourly(ctx, q)
	}
	return page, homemesh.Invalid("resolution", "%q is not raw, 5m or 1h", q.Resolution)
}

// after is the lower bound a page continues from: the cursor if set and
// later than From.
func after(q history.HistoryQuery) (from time.Time, exclusive bool) {
	if !q.After.IsZero() && !q.After.Before(q.From) {
		return q.After, true
	}
	return q.From, false
}

func (s *Store) raw(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	var page history.HistoryPage
	n := limit(q.Limit)
	from, exclusive := after(q)
	op := ">="
	if exclusive {
		op = ">"
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`
		SELECT e.device, e.kind, p.ts, p.value, p.state, p.attrs
		FROM entities e JOIN points p ON p.entity_id = e.id
		WHERE e.home = $1 AND e.entity = $2 AND p.ts %s $3 AND p.ts < $4
		  AND p.entity_id = (SELECT id FROM entities WHERE home = $1 AND entity = $2)
		ORDER BY p.ts LIMIT $5`, op), q.Home, q.Entity, from, q.To, n+1)
	if err != nil {
		return page, fmt.Errorf("read history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p history.Point
		var value *float64
		var state *string
		var attrs []byte
		var kind string
		if err := rows.Scan(&p.Device, &kind, &p.Time, &value, &state, &attrs); err != nil {
			return page, fmt.Errorf("read history: %w", err)
		}
		p.Entity, p.Kind, p.Time = q.Entity, homemesh.EntityKind(kind), p.Time.UTC()
		if value != nil {
			p.Numeric, p.Value = true, *value
		}
		if state != nil {
			p.State = *state
		}
		if len(attrs) > 0 {
			p.Attrs = attrs
		}
		page.Points = append(page.Points, p)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("read history: %w", err)
	}
	if len(page.Points) > n {
		page.Points, page.More = page.Points[:n], true
	}
	return page, nil
}

func (s *Store) stats(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	var page history.HistoryPage
	n := limit(q.Limit)
	from, exclusive := after(q)
	op := ">="
	if exclusive {
		op = ">"
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`
		SELECT s.start, s.count, s.num_count, s.sum, coalesce(s.min, 0), coalesce(s.max, 0), coalesce(s.last, 0), s.last_time, s.on_micros
		FROM %s s
		WHERE s.entity_id = (SELECT id FROM entities WHERE home = $1 AND entity = $2) AND s.start %s $3 AND s.start < $4
		ORDER BY s.start LIMIT $5`, statsTable(q.Resolution), op), q.Home, q.Entity, from, q.To, n+1)
	if err != nil {
		return page, fmt.Errorf("read statistics: %w", err)
	}
	defer rows.Close()
	// A month of 5-minute buckets is 8640 rows: size the page from the
	// range instead of growing it row by row.
	page.Stats = make([]history.Stat, 0, max(0, min(n+1, int(q.To.Sub(from)/q.Resolution.Bucket())+1)))
	binary := true
	for _, f := range rows.FieldDescriptions() {
		binary = binary && f.Format == pgtype.BinaryFormatCode
	}
	for rows.Next() {
		st := history.Stat{Entity: q.Entity}
		if binary {
			// Decoding the fixed-size binary columns by hand is several
			// times cheaper than Scan, which matters at thousands of rows.
			if !decodeStat(rows.RawValues(), &st) {
				return page, fmt.Errorf("read statistics: unexpected column sizes")
			}
		} else {
			var lastTime pgtype.Timestamptz
			if err := rows.Scan(&st.Start, &st.Count, &st.NumCount, &st.Sum, &st.Min, &st.Max, &st.Last, &lastTime, &st.OnMicros); err != nil {
				return page, fmt.Errorf("read statistics: %w", err)
			}
			st.Start = st.Start.UTC()
			if lastTime.Valid {
				st.LastTime = lastTime.Time.UTC()
			}
		}
		page.Stats = append(page.Stats, st)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("read statistics: %w", err)
	}
	if len(page.Stats) > n {
		page.Stats, page.More = page.Stats[:n], true
	}
	return page, nil
}

// hourly returns one page of the hourly tier: the packed days of
// stats_1h_days, decoded, merged with the stats_1h rows, which hold the
// recent hours and the late points of packed ones.
//
// Both are read by one statement, and so in one snapshot. Purge moves
// rows from stats_1h into stats_1h_days in one transaction, which a
// snapshot sees whole or not at all: every hour is read in the form it
// had before the move or in the one it has after, never in both (counted
// twice) or in neither (missing). Two statements would each take their
// own snapshot under READ COMMITTED, and a move committed between them
// would do either.
func (s *Store) hourly(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	var page history.HistoryPage
	n := limit(q.Limit)
	from, exclusive := after(q)
	op := ">="
	if exclusive {
		op = ">"
	}
	// At most n+1 buckets are needed. The first n+1 rows of stats_1h hold
	// every row among them; so do the first n+2 days, of which only the
	// first can have no bucket in range (all before from), and only a
	// last one starting before to but with none before it.
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`
		(SELECT s.start, s.count, s.num_count, s.sum, coalesce(s.min, 0), coalesce(s.max, 0), coalesce(s.last, 0),
			s.last_time, s.on_micros, NULL::bytea
		FROM stats_1h s
		WHERE s.entity_id = (SELECT id FROM entities WHERE home = $1 AND entity = $2) AND s.start %s $3 AND s.start < $4
		ORDER BY s.start LIMIT $5)
		UNION ALL
		(SELECT d.day, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, d.data
		FROM stats_1h_days d
		WHERE d.entity_id = (SELECT id FROM entities WHERE home = $1 AND entity = $2) AND d.day >= $6 AND d.day < $4
		ORDER BY d.day LIMIT $7)
		ORDER BY 1`, op), q.Home, q.Entity, from, q.To, n+1, history.Day(from), n+2)
	if err != nil {
		return page, fmt.Errorf("read statistics: %w", err)
	}
	defer rows.Close()
	inRange := func(st history.Stat) bool {
		if exclusive && !st.Start.After(from) || st.Start.Before(from) {
			return false
		}
		return st.Start.Before(q.To)
	}
	// A year of hours is 8760 buckets: size the packed ones from the
	// range, with room for a last day decoded whole before it is cut.
	packed := make([]history.Stat, 0, max(0, min(n+1, int(q.To.Sub(from)/time.Hour)+1))+24)
	var loose []history.Stat
	binary := true
	for _, f := range rows.FieldDescriptions() {
		binary = binary && f.Format == pgtype.BinaryFormatCode
	}
	for rows.Next() {
		var st history.Stat
		var data []byte
		if binary {
			raw := rows.RawValues()
			if len(raw) != 10 {
				return page, fmt.Errorf("read statistics: unexpected columns")
			}
			data = raw[9]
			if data == nil && !decodeStat(raw[:9], &st) || data != nil && !decodeTime(raw[0], &st.Start) {
				return page, fmt.Errorf("read statistics: unexpected column sizes")
			}
		} else if st, data, err = scanHourly(rows); err != nil {
			return page, fmt.Errorf("read statistics: %w", err)
		}
		if data == nil {
			st.Entity = q.Entity
			loose = append(loose, st)
			continue
		}
		if len(packed) > n {
			continue // the page is full: later days cannot be on it
		}
		i := len(packed)
		packed, err = history.UnpackHours(packed, q.Entity, st.Start, data)
		if err != nil {
			return page, fmt.Errorf("read statistics of entity %q of home %q: %w", q.Entity, q.Home, err)
		}
		// Only the first and the last day can reach out of the range.
		if !st.Start.After(from) || st.Start.Add(24*time.Hour).After(q.To) {
			packed = packed[:i+len(slices.DeleteFunc(packed[i:], func(st history.Stat) bool { return !inRange(st) }))]
		}
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("read statistics: %w", err)
	}
	// The rows of stats_1h are mostly the recent hours, after every packed
	// one: only the packed hours from the first row on need merging, and
	// the year before it is not copied.
	at := len(packed)
	if len(loose) > 0 {
		at, _ = slices.BinarySearchFunc(packed, loose[0].Start, func(st history.Stat, t time.Time) int { return st.Start.Compare(t) })
	}
	page.Stats = append(packed[:at], history.MergeSorted(packed[at:], loose)...)
	if len(page.Stats) > n {
		page.Stats, page.More = page.Stats[:n], true
	}
	return page, nil
}

// scanHourly scans a row of hourly's query sent as text: a stats_1h row,
// or a packed day with its start and data.
func scanHourly(rows pgx.Rows) (st history.Stat, data []byte, err error) {
	var count, numCount, onMicros pgtype.Int8
	var sum, minV, maxV, last pgtype.Float8
	var lastTime pgtype.Timestamptz
	if err := rows.Scan(&st.Start, &count, &numCount, &sum, &minV, &maxV, &last, &lastTime, &onMicros, &data); err != nil {
		return st, nil, err
	}
	st.Start = st.Start.UTC()
	st.Count, st.NumCount, st.OnMicros = count.Int64, numCount.Int64, onMicros.Int64
	st.Sum, st.Min, st.Max, st.Last = sum.Float64, minV.Float64, maxV.Float64, last.Float64
	if lastTime.Valid {
		st.LastTime = lastTime.Time.UTC()
	}
	return st, data, nil
}

// Events returns one page of a home's events, ordered by time and id. See
// history.Reader.
func (s *Store) Events(ctx context.Context, q history.EventQuery) (history.EventPage, error) {
	var page history.EventPage
	if err := checkText("home", q.Home, true); err != nil {
		return page, err
	}
	if err := checkText("kind", q.Kind, false); err != nil {
		return page, err
	}
	if err := checkText("device", q.Device, false); err != nil {
		return page, err
	}
	if err := checkText("after_id", q.AfterID, false); err != nil {
		return page, err
	}
	if err := validateSpan(q.From, q.To); err != nil {
		return page, err
	}
	n := limit(q.Limit)
	args := []any{q.Home, q.From, q.To, n + 1}
	where := ""
	if q.Kind != "" {
		args = append(args, q.Kind)
		where += fmt.Sprintf(" AND kind = $%d", len(args))
	}
	if q.Device != "" {
		args = append(args, q.Device)
		where += fmt.Sprintf(" AND device = $%d", len(args))
	}
	if !q.AfterTime.IsZero() {
		args = append(args, q.AfterTime, q.AfterID)
		where += fmt.Sprintf(" AND (ts, id) > ($%d, $%d)", len(args)-1, len(args))
	}
	rows, err := s.pool.Query(ctx, `
		SELECT ts, id, kind, device, entity, data FROM events
		WHERE home = $1 AND ts >= $2 AND ts < $3`+where+`
		ORDER BY ts, id LIMIT $4`, args...)
	if err != nil {
		return page, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e history.Event
		var data []byte
		if err := rows.Scan(&e.Time, &e.ID, &e.Kind, &e.Device, &e.Entity, &data); err != nil {
			return page, fmt.Errorf("read events: %w", err)
		}
		e.Time = e.Time.UTC()
		if len(data) > 0 {
			e.Data = data
		}
		page.Events = append(page.Events, e)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("read events: %w", err)
	}
	if len(page.Events) > n {
		page.Events, page.More = page.Events[:n], true
	}
	return page, nil
}

// postgresEpoch is where PostgreSQL's binary timestamps count from.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// decodeStat decodes a statistics row in PostgreSQL's binary format:
// start, count, num_count, sum, min, max, last, last_time (NULL without
// numeric points), on_micros. It reports false on any other shape.
func decodeStat(raw [][]byte, st *history.Stat) bool {
	if len(raw) != 9 {
		return false
	}
	for i, v := range raw {
		if len(v) != 8 && !(i == 7 && v == nil) {
			return false
		}
	}
	word := func(i int) uint64 { return binary.BigEndian.Uint64(raw[i]) }
	decodeTime(raw[0], &st.Start)
	st.Count, st.NumCount = int64(word(1)), int64(word(2))
	st.Sum, st.Min, st.Max, st.Last = math.Float64frombits(word(3)), math.Float64frombits(word(4)), math.Float64frombits(word(5)), math.Float64frombits(word(6))
	if raw[7] != nil {
		decodeTime(raw[7], &st.LastTime)
	}
	st.OnMicros = int64(word(8))
	return true
}

// decodeTime decodes a timestamptz in PostgreSQL's binary format. It
// reports false on any other size.
func decodeTime(raw []byte, t *time.Time) bool {
	if len(raw) != 8 {
		return false
	}
	*t = time.UnixMicro(int64(binary.BigEndian.Uint64(raw)) + postgresEpoch).UTC()
	return true
}
