package storagetest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// storeTest is one subtest on one fresh store. It takes a testing.TB so
// that the suite's own tests can run it against deliberately broken stores
// and see it fail.
type storeTest struct {
	name string
	run  func(t testing.TB, s history.Store)
}

// sharedTest is one subtest on two handles of one fresh database.
type sharedTest struct {
	name string
	run  func(t testing.TB, a, b history.Store)
}

var storeTests = []storeTest{
	{"RawNumericAndTextual", testRawNumericAndTextual},
	{"RawMicrosecondRoundTrip", testRawMicrosecondRoundTrip},
	{"RawRangeBounds", testRawRangeBounds},
	{"RawPaging", testRawPaging},
	{"LargeBatch", testLargeBatch},
	{"HomesAndEntitiesIsolated", testHomesAndEntitiesIsolated},
	{"DuplicateMessageSkipped", testDuplicateMessageSkipped},
	{"SameSeqOtherStreamStored", testSameSeqOtherStreamStored},
	{"MixedBatchStoresOnlyNew", testMixedBatchStoresOnlyNew},
	{"SameMicrosecondFirstWins", testSameMicrosecondFirstWins},
	{"LedgerGaps", testLedgerGaps},
	{"ConcurrentOverlappingWrites", func(t testing.TB, s history.Store) { testConcurrentOverlappingWrites(t, s, s) }},
	{"StatsNumeric", testStatsNumeric},
	{"StatsBinaryInOrder", testStatsBinaryInOrder},
	{"StatsBinaryOutOfOrder", testStatsBinaryOutOfOrder},
	{"StatsBinaryAcrossBuckets", testStatsBinaryAcrossBuckets},
	{"StatsTextualCountsChanges", testStatsTextualCountsChanges},
	{"StatsPaging", testStatsPaging},
	{"HourlyClosedDaysKept", testHourlyClosedDaysKept},
	{"HourlyClosedDaysLateWrites", testHourlyClosedDaysLateWrites},
	{"EventsRoundTrip", testEventsRoundTrip},
	{"EventsFilters", testEventsFilters},
	{"EventsPaging", testEventsPaging},
	{"EventsDuplicatesSkipped", testEventsDuplicatesSkipped},
	{"PurgeRetention", testPurgeRetention},
	{"PurgeBounded", testPurgeBounded},
	{"PurgeLedger", testPurgeLedger},
	{"PurgeHourlyWithinDay", testPurgeHourlyWithinDay},
	{"InvalidBatch", testInvalidBatch},
	{"InvalidQuery", testInvalidQuery},
	{"CloseTwice", testCloseTwice},
}

var sharedTests = []sharedTest{
	{"SharedVisible", testSharedVisible},
	{"SharedDuplicateAcrossHandles", testSharedDuplicateAcrossHandles},
	{"SharedConcurrentOverlappingWrites", testConcurrentOverlappingWrites},
	{"SharedLateWritesWhilePurging", testSharedLateWritesWhilePurging},
}

// Run runs the conformance suite against the stores open returns. Each
// subtest calls open once and expects a fresh, empty store; the backend
// cleans it up (t.Cleanup) and may find it already closed.
func Run(t *testing.T, open func(t *testing.T) history.Store) {
	for _, c := range storeTests {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, open(t))
		})
	}
}

// RunShared runs the subtests that need two handles on one database, as
// two history processes sharing the work have. Each subtest calls open
// once and expects two handles on the same fresh, empty database; the
// backend cleans both up.
func RunShared(t *testing.T, open func(t *testing.T) (a, b history.Store)) {
	for _, c := range sharedTests {
		t.Run(c.name, func(t *testing.T) {
			a, b := open(t)
			c.run(t, a, b)
		})
	}
}

// t0 is the time every subtest's data is placed around.
var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// at returns t0 + d.
func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	homeA = "home-a"
	homeB = "home-b"
)

func num(entity string, tm time.Time, v float64) history.Point {
	return history.Point{Entity: entity, Device: "dev-" + entity, Kind: homemesh.KindSensor, Time: tm, Numeric: true, Value: v}
}

func text(entity string, kind homemesh.EntityKind, tm time.Time, state string) history.Point {
	return history.Point{Entity: entity, Device: "dev-" + entity, Kind: kind, Time: tm, State: state}
}

func msg(seq uint64, points ...history.Point) history.Message {
	return history.Message{Seq: seq, Points: points}
}

func batch(home, stream string, msgs ...history.Message) history.Batch {
	return history.Batch{Home: home, Stream: stream, Messages: msgs}
}

func seqs(b history.Batch) []uint64 {
	out := make([]uint64, len(b.Messages))
	for i, m := range b.Messages {
		out[i] = m.Seq
	}
	return out
}

// write stores b and fails the test on error.
func write(t testing.TB, s history.Writer, b history.Batch) history.WriteResult {
	t.Helper()
	res, err := s.Write(t.Context(), b)
	if err != nil {
		t.Fatalf("Write(home %s, stream %s, seqs %v): %v", b.Home, b.Stream, seqs(b), err)
	}
	return res
}

// mustWrite stores b and checks what Write says it stored.
func mustWrite(t testing.TB, s history.Writer, b history.Batch, want history.WriteResult) {
	t.Helper()
	if got := write(t, s, b); got != want {
		t.Fatalf("Write(home %s, stream %s, seqs %v) = %+v, want %+v", b.Home, b.Stream, seqs(b), got, want)
	}
}

// pointView is what the suite compares of a returned point.
type pointView struct {
	Entity  string
	Time    string
	Numeric bool
	Value   float64
	State   string
	Attrs   any
}

func viewPoint(p history.Point) pointView {
	v := pointView{Entity: p.Entity, Time: fmtTime(p.Time), Numeric: p.Numeric, Attrs: jsonValue(p.Attrs)}
	if p.Numeric {
		v.Value = p.Value
	} else {
		v.State = p.State
	}
	return v
}

func viewPoints(ps []history.Point) []pointView {
	out := make([]pointView, len(ps))
	for i, p := range ps {
		out[i] = viewPoint(p)
	}
	return out
}

// statView is what the suite compares of a returned statistics row.
type statView struct {
	Entity        string
	Start         string
	Count         int64
	NumCount      int64
	Sum, Min, Max float64
	Last          float64
	LastTime      string
	OnMicros      int64
	OnMinutes     float64 // OnMicros in minutes, to read diffs easily
}

func viewStat(s history.Stat) statView {
	v := statView{Entity: s.Entity, Start: fmtTime(s.Start), Count: s.Count, NumCount: s.NumCount, OnMicros: s.OnMicros,
		OnMinutes: float64(s.OnMicros) / float64(time.Minute/time.Microsecond)}
	if s.NumCount > 0 {
		v.Sum, v.Min, v.Max, v.Last, v.LastTime = s.Sum, s.Min, s.Max, s.Last, fmtTime(s.LastTime)
	}
	return v
}

func viewStats(ss []history.Stat) []statView {
	out := make([]statView, 0, len(ss))
	for _, s := range ss {
		if s.Count == 0 && s.NumCount == 0 && s.OnMicros == 0 {
			continue
		}
		out = append(out, viewStat(s))
	}
	return out
}

// eventView is what the suite compares of a returned event.
type eventView struct {
	ID, Time, Kind, Device, Entity string
	Data                           any
}

func viewEvents(es []history.Event) []eventView {
	out := make([]eventView, len(es))
	for i, e := range es {
		out[i] = eventView{ID: e.ID, Time: fmtTime(e.Time), Kind: e.Kind, Device: e.Device, Entity: e.Entity, Data: jsonValue(e.Data)}
	}
	return out
}

func fmtTime(tm time.Time) string {
	if tm.IsZero() {
		return ""
	}
	return tm.UTC().Format(time.RFC3339Nano)
}

// jsonValue decodes raw for a comparison that ignores key order and
// spacing; none, empty and null are all nil.
func jsonValue(raw json.RawMessage) any {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil
	}
	var v any
	if err := json.Unmarshal(trimmed, &v); err != nil {
		return "invalid JSON: " + string(raw)
	}
	return v
}

// raw returns every raw point of entity in [from, to), failing the test if
// they do not fit in one page of history.MaxLimit rows.
func raw(t testing.TB, s history.Reader, home, entity string, from, to time.Time) []history.Point {
	t.Helper()
	page, err := s.History(t.Context(), history.HistoryQuery{Home: home, Entity: entity, From: from, To: to, Resolution: history.Raw, Limit: history.MaxLimit})
	if err != nil {
		t.Fatalf("History(%s %s raw): %v", home, entity, err)
	}
	if page.More || len(page.Stats) != 0 {
		t.Fatalf("History(%s %s raw) = %d points, %d stats, More %v; want only points, all in one page", home, entity, len(page.Points), len(page.Stats), page.More)
	}
	return page.Points
}

// stats returns every statistics row of entity in tier r with Start in
// [from, to), all-zero rows left out.
func stats(t testing.TB, s history.Reader, home, entity string, r history.Resolution, from, to time.Time) []statView {
	t.Helper()
	page, err := s.History(t.Context(), history.HistoryQuery{Home: home, Entity: entity, From: from, To: to, Resolution: r, Limit: history.MaxLimit})
	if err != nil {
		t.Fatalf("History(%s %s %s): %v", home, entity, r, err)
	}
	if page.More || len(page.Points) != 0 {
		t.Fatalf("History(%s %s %s) = %d points, %d stats, More %v; want only stats, all in one page", home, entity, r, len(page.Points), len(page.Stats), page.More)
	}
	return viewStats(page.Stats)
}

// events returns every event of q's range, in one page.
func events(t testing.TB, s history.Reader, q history.EventQuery) []history.Event {
	t.Helper()
	q.Limit = history.MaxLimit
	page, err := s.Events(t.Context(), q)
	if err != nil {
		t.Fatalf("Events(%+v): %v", q, err)
	}
	if page.More {
		t.Fatalf("Events(%+v): More set on a page of %d events", q, len(page.Events))
	}
	return page.Events
}

func checkPoints(t testing.TB, what string, got []history.Point, want []history.Point) {
	t.Helper()
	if diff := cmp.Diff(viewPoints(want), viewPoints(got)); diff != "" {
		t.Errorf("%s: points differ (-want +got):\n%s", what, diff)
	}
}

func checkStats(t testing.TB, what string, got []statView, want []history.Stat) {
	t.Helper()
	if diff := cmp.Diff(viewStats(want), got); diff != "" {
		t.Errorf("%s: statistics differ (-want +got):\n%s", what, diff)
	}
}

func checkEvents(t testing.TB, what string, got, want []history.Event) {
	t.Helper()
	if diff := cmp.Diff(viewEvents(want), viewEvents(got)); diff != "" {
		t.Errorf("%s: events differ (-want +got):\n%s", what, diff)
	}
}

// checkInvalid checks that err is a KindInvalid error naming field: the
// last dotted segment of its field, without an index, is one of fields.
func checkInvalid(t testing.TB, what string, err error, fields ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want an invalid %s", what, strings.Join(fields, " or "))
		return
	}
	if k := homemesh.ErrorKind(err); k != homemesh.KindInvalid {
		t.Errorf("%s: error %q has kind %q, want %q", what, err, k, homemesh.KindInvalid)
	}
	field := homemesh.ErrorField(err)
	last := field[strings.LastIndex(field, ".")+1:]
	if i := strings.Index(last, "["); i >= 0 {
		last = last[:i]
	}
	if !slices.Contains(fields, last) {
		t.Errorf("%s: error %q names field %q, want a field ending in %s", what, err, field, strings.Join(fields, " or "))
	}
}

// numStat is the statistics of a bucket of numeric points, by hand.
func numStat(entity string, start time.Time, count int64, sum, lo, hi, last float64, lastTime time.Time) history.Stat {
	return history.Stat{Entity: entity, Start: start, Count: count, NumCount: count, Sum: sum, Min: lo, Max: hi, Last: last, LastTime: lastTime}
}

// onStat is the statistics of a bucket of a binary entity, by hand.
func onStat(entity string, start time.Time, count int64, on time.Duration) history.Stat {
	return history.Stat{Entity: entity, Start: start, Count: count, OnMicros: on.Microseconds()}
}
