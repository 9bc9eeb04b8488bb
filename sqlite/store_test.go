package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history", "history.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func temp(entity string, at time.Duration, v float64) history.Point {
	return history.Point{Entity: entity, Device: "dev1", Kind: homemesh.KindSensor, Time: t0.Add(at), Numeric: true, Value: v}
}

func write(t *testing.T, s *Store, b history.Batch) history.WriteResult {
	t.Helper()
	res, err := s.Write(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func rawHistory(t *testing.T, s *Store, entity string) []history.Point {
	t.Helper()
	page, err := s.History(context.Background(), history.HistoryQuery{Home: "h1", Entity: entity,
		From: t0.Add(-24 * time.Hour), To: t0.Add(24 * time.Hour), Resolution: history.Raw})
	if err != nil {
		t.Fatal(err)
	}
	return page.Points
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	_, path := openTemp(t)
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", p, got, want)
		}
	}
}

func TestWriteSkipsStoredMessages(t *testing.T) {
	s, _ := openTemp(t)
	b := history.Batch{Home: "h1", Stream: "STATES", Messages: []history.Message{
		{Seq: 1, Points: []history.Point{temp("t", 0, 20)}},
		{Seq: 2, Points: []history.Point{temp("t", time.Minute, 21)}},
	}}
	if got := write(t, s, b); got != (history.WriteResult{Points: 2}) {
		t.Fatalf("first write = %+v", got)
	}
	// A redelivery overlapping the first batch, plus one new message and
	// a message repeated within the batch.
	b.Messages = append(b.Messages,
		history.Message{Seq: 3, Points: []history.Point{temp("t", 2*time.Minute, 22)}},
		history.Message{Seq: 3, Points: []history.Point{temp("t", 3*time.Minute, 23)}})
	if got := write(t, s, b); got != (history.WriteResult{Points: 1, Duplicates: 3}) {
		t.Fatalf("second write = %+v", got)
	}
	if got := rawHistory(t, s, "t"); len(got) != 3 || got[2].Value != 22 {
		t.Errorf("history = %+v", got)
	}
	// The same sequence numbers on another stream or home are new.
	b.Stream = "TELEMETRY"
	b.Messages = b.Messages[:1]
	b.Messages[0].Points = []history.Point{temp("t", 10*time.Minute, 30)}
	if got := write(t, s, b); got != (history.WriteResult{Points: 1}) {
		t.Errorf("other stream = %+v", got)
	}
}

func ledger(t *testing.T, s *Store) [][2]int64 {
	t.Helper()
	rows, err := s.r.Query(`SELECT first_seq, last_seq FROM ledger ORDER BY home, stream, first_seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]int64
	for rows.Next() {
		var r [2]int64
		if err := rows.Scan(&r[0], &r[1]); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestLedgerMergesContiguousRanges(t *testing.T) {
	s, _ := openTemp(t)
	batch := func(seqs ...uint64) history.Batch {
		b := history.Batch{Home: "h1", Stream: "STATES"}
		for _, q := range seqs {
			b.Messages = append(b.Messages, history.Message{Seq: q})
		}
		return b
	}
	steps := []struct {
		seqs []uint64
		want [][2]int64
	}{
		{[]uint64{1, 2, 3}, [][2]int64{{1, 3}}},
		{[]uint64{7, 9}, [][2]int64{{1, 3}, {7, 7}, {9, 9}}},
		{[]uint64{4}, [][2]int64{{1, 4}, {7, 7}, {9, 9}}},
		{[]uint64{8, 6}, [][2]int64{{1, 4}, {6, 9}}},
		{[]uint64{5, 10, 12}, [][2]int64{{1, 10}, {12, 12}}},
		{[]uint64{11, 3, 12}, [][2]int64{{1, 12}}},
	}
	for _, step := range steps {
		write(t, s, batch(step.seqs...))
		if diff := cmp.Diff(step.want, ledger(t, s)); diff != "" {
			t.Fatalf("after %v (-want +got):\n%s", step.seqs, diff)
		}
	}
	if got := write(t, s, batch(1, 5, 12, 13)); got.Duplicates != 3 {
		t.Errorf("duplicates = %d, want 3", got.Duplicates)
	}
}

func TestWriteRejectsBadBatches(t *testing.T) {
	s, _ := openTemp(t)
	good := func() history.Batch {
		return history.Batch{Home: "h1", Stream: "STATES", Messages: []history.Message{
			{Seq: 1, Points: []history.Point{temp("t", 0, 1)}},
			{Seq: 2,
				Points: []history.Point{temp("t", time.Minute, 2)},
				Events: []history.Event{{ID: "e1", Time: t0, Kind: "pressed"}}},
		}}
	}
	tests := []struct {
		name  string
		edit  func(b *history.Batch)
		field string
	}{
		{"no home", func(b *history.Batch) { b.Home = "" }, "home"},
		{"no stream", func(b *history.Batch) { b.Stream = "" }, "stream"},
		{"zero seq", func(b *history.Batch) { b.Messages[1].Seq = 0 }, "messages[1].seq"},
		{"huge seq", func(b *history.Batch) { b.Messages[1].Seq = 1 << 63 }, "messages[1].seq"},
		{"no entity", func(b *history.Batch) { b.Messages[1].Points[0].Entity = "" }, "messages[1].points[0].entity"},
		{"zero time", func(b *history.Batch) { b.Messages[1].Points[0].Time = time.Time{} }, "messages[1].points[0].time"},
		{"NaN", func(b *history.Batch) { b.Messages[1].Points[0].Value = nan() }, "messages[1].points[0].value"},
		{"event id", func(b *history.Batch) { b.Messages[1].Events[0].ID = "" }, "messages[1].events[0].id"},
		{"event time", func(b *history.Batch) { b.Messages[1].Events[0].Time = time.Time{} }, "messages[1].events[0].time"},
		{"event kind", func(b *history.Batch) { b.Messages[1].Events[0].Kind = "" }, "messages[1].events[0].kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good()
			tt.edit(&b)
			_, err := s.Write(context.Background(), b)
			var he *homemesh.Error
			if !errors.As(err, &he) || he.Kind != homemesh.KindInvalid || he.Field != tt.field {
				t.Fatalf("err = %v, want invalid %s", err, tt.field)
			}
			if got := rawHistory(t, s, "t"); len(got) != 0 {
				t.Errorf("a rejected batch stored %+v", got)
			}
		})
	}
	if got := write(t, s, good()); got != (history.WriteResult{Points: 2, Events: 1}) {
		t.Errorf("good batch = %+v", got)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestHistoryRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	attrs := json.RawMessage(`{"unit":"°C"}`)
	in := []history.Point{
		{Entity: "t", Device: "dev1", Kind: homemesh.KindSensor, Time: t0.Add(1500 * time.Nanosecond), Numeric: true, Value: -1.5, Attrs: attrs},
		{Entity: "t", Device: "dev1", Kind: homemesh.KindSensor, Time: t0.Add(time.Minute), State: "unavailable"},
		{Entity: "t", Device: "dev1", Kind: homemesh.KindSensor, Time: t0.Add(2 * time.Minute), State: ""},
	}
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 1, Points: in}}})
	want := append([]history.Point(nil), in...)
	want[0].Time = t0.Add(time.Microsecond)
	if diff := cmp.Diff(want, rawHistory(t, s, "t")); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	// Another home's entity of the same id is another entity.
	page, err := s.History(context.Background(), history.HistoryQuery{Home: "h2", Entity: "t",
		From: t0, To: t0.Add(time.Hour), Resolution: history.Raw})
	if err != nil || len(page.Points) != 0 {
		t.Errorf("other home = %+v, %v", page, err)
	}
}

func TestHistoryPages(t *testing.T) {
	s, _ := openTemp(t)
	var msgs []history.Message
	for i := range 25 {
		msgs = append(msgs, history.Message{Seq: uint64(i + 1), Points: []history.Point{temp("t", time.Duration(i)*time.Minute, float64(i))}})
	}
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: msgs})
	q := history.HistoryQuery{Home: "h1", Entity: "t", From: t0, To: t0.Add(time.Hour), Resolution: history.Raw, Limit: 10}
	var got []float64
	for pages := 0; ; pages++ {
		page, err := s.History(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Points {
			got = append(got, p.Value)
		}
		if !page.More {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		q.After = page.Points[len(page.Points)-1].Time
	}
	if len(got) != 25 || got[0] != 0 || got[24] != 24 {
		t.Errorf("values = %v", got)
	}
}

func stats(t *testing.T, s *Store, entity string, r history.Resolution) []history.Stat {
	t.Helper()
	page, err := s.History(context.Background(), history.HistoryQuery{Home: "h1", Entity: entity,
		From: t0.Add(-24 * time.Hour), To: t0.Add(24 * time.Hour), Resolution: r})
	if err != nil {
		t.Fatal(err)
	}
	return page.Stats
}

// TestStatisticsMergeAcrossBatches checks the stored statistics against
// history.Summarize of all points, however the points were split into
// batches and whatever their order, and that a point ignored as a
// duplicate time does not count.
func TestStatisticsMergeAcrossBatches(t *testing.T) {
	s, _ := openTemp(t)
	var all []history.Point
	seq := uint64(0)
	for _, batch := range [][]history.Point{
		{temp("t", 7*time.Minute, 5), temp("t", 1*time.Minute, 3), temp("u", 2*time.Minute, 100)},
		{temp("t", 3*time.Minute, -2), temp("t", 62*time.Minute, 8)},
		{temp("t", 6*time.Minute, 9), temp("t", 0, 4)},
	} {
		seq++
		write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: seq, Points: batch}}})
		all = append(all, batch...)
	}
	// Same microsecond as a stored point: ignored, and not counted.
	seq++
	res := write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: seq, Points: []history.Point{temp("t", 3*time.Minute, 1000)}}}})
	if res.Points != 0 {
		t.Errorf("duplicate time stored: %+v", res)
	}
	want := history.Summarize(all)
	for _, r := range history.StatTiers {
		var wantT []history.Stat
		for _, st := range want[r] {
			if st.Entity == "t" {
				wantT = append(wantT, st)
			}
		}
		if diff := cmp.Diff(wantT, stats(t, s, "t", r)); diff != "" {
			t.Errorf("%s stats (-want +got):\n%s", r, diff)
		}
	}
}

func TestOnTimeOfBinaryEntity(t *testing.T) {
	s, _ := openTemp(t)
	light := func(at time.Duration, state string) history.Point {
		return history.Point{Entity: "l", Kind: homemesh.KindLight, Time: t0.Add(at), State: state}
	}
	// on at 0, off at 20m; later an out-of-order off at 10m and on at 15m.
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{
		{Seq: 1, Points: []history.Point{light(0, "on")}},
		{Seq: 2, Points: []history.Point{light(20*time.Minute, "off")}},
	}})
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{
		{Seq: 3, Points: []history.Point{light(15*time.Minute, "on"), light(10*time.Minute, "off")}},
	}})
	hourly := stats(t, s, "l", history.Hourly)
	if len(hourly) != 1 || hourly[0].OnMicros != (15*time.Minute).Microseconds() || hourly[0].Count != 4 {
		t.Errorf("hourly = %+v, want 15 minutes on and 4 changes", hourly)
	}
	var onByBucket []int64
	for _, st := range stats(t, s, "l", history.FiveMinutes) {
		onByBucket = append(onByBucket, st.OnMicros/time.Minute.Microseconds())
	}
	if diff := cmp.Diff([]int64{5, 5, 0, 5, 0}, onByBucket); diff != "" {
		t.Errorf("5m on-minutes (-want +got):\n%s", diff)
	}
}

func TestEvents(t *testing.T) {
	s, _ := openTemp(t)
	ev := func(id string, at time.Duration, kind, device string) history.Event {
		return history.Event{ID: id, Time: t0.Add(at), Kind: kind, Device: device, Data: json.RawMessage(`{"n":1}`)}
	}
	in := []history.Event{
		ev("a", 0, "pressed", "d1"), ev("b", time.Minute, "pressed", "d2"), ev("c", time.Minute, "alarm", "d1"),
		ev("d", 2*time.Minute, "pressed", "d1"),
	}
	res := write(t, s, history.Batch{Home: "h1", Stream: "EVENTS", Messages: []history.Message{{Seq: 1, Events: in}}})
	if res.Events != 4 {
		t.Fatalf("write = %+v", res)
	}
	query := func(q history.EventQuery) []string {
		t.Helper()
		q.Home, q.From, q.To = "h1", t0, t0.Add(time.Hour)
		page, err := s.Events(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range page.Events {
			ids = append(ids, e.ID)
		}
		return ids
	}
	for _, tt := range []struct {
		name string
		q    history.EventQuery
		want []string
	}{
		{"all", history.EventQuery{}, []string{"a", "b", "c", "d"}},
		{"kind", history.EventQuery{Kind: "pressed"}, []string{"a", "b", "d"}},
		{"device", history.EventQuery{Device: "d1"}, []string{"a", "c", "d"}},
		{"both", history.EventQuery{Kind: "pressed", Device: "d1"}, []string{"a", "d"}},
		{"after", history.EventQuery{AfterTime: t0.Add(time.Minute), AfterID: "b"}, []string{"c", "d"}},
		{"limit", history.EventQuery{Limit: 2}, []string{"a", "b"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, query(tt.q)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	page, _ := s.Events(context.Background(), history.EventQuery{Home: "h1", From: t0, To: t0.Add(time.Hour), Limit: 1})
	if !page.More || len(page.Events) != 1 || string(page.Events[0].Data) != `{"n":1}` || !page.Events[0].Time.Equal(t0) {
		t.Errorf("page = %+v", page)
	}
}

func TestPurgeIsBoundedAndFollowsKinds(t *testing.T) {
	s, _ := openTemp(t)
	// The ledger records the real time of each write, so the points are
	// placed relative to it: 30 days old, one per hour.
	now := time.Now()
	base := now.Add(-30 * 24 * time.Hour).Truncate(time.Hour)
	var msgs []history.Message
	for i := range 10 {
		at := base.Add(time.Duration(i) * time.Hour)
		msgs = append(msgs, history.Message{Seq: uint64(i + 1),
			Points: []history.Point{temp("t", at.Sub(t0), float64(i)),
				{Entity: "l", Kind: homemesh.KindLight, Time: at, State: "off"}},
			Events: []history.Event{{ID: string(rune('a' + i)), Time: at, Kind: "pressed"}},
		})
	}
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: msgs})
	// Sensors keep raw points 10 days and hourly statistics forever;
	// lights keep everything forever.
	policy := history.RetentionPolicy{
		Default: history.Retention{Raw: 10 * 24 * time.Hour, FiveMinutes: 20 * 24 * time.Hour},
		Kinds:   map[homemesh.EntityKind]history.Retention{homemesh.KindLight: {}},
		Events:  24 * time.Hour,
	}
	var total history.PurgeResult
	calls := 0
	for {
		res, err := s.Purge(context.Background(), now, policy, 4)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if res.Points > 4 || res.Events > 4 || res.Ledger > 4 || res.Stats > 8 {
			t.Fatalf("purge call removed more than the bound: %+v", res)
		}
		total.Points += res.Points
		total.Stats += res.Stats
		total.Events += res.Events
		total.Ledger += res.Ledger
		if !res.More {
			break
		}
		if calls > 10 {
			t.Fatal("purge never ends")
		}
	}
	// The hourly rollup reads at most 4 five-minute rows per call: 20
	// rows, two per hour, make 5 calls.
	if calls != 5 {
		t.Errorf("purge took %d calls, want 5 (20 five-minute rows to roll up, 4 per call)", calls)
	}
	// The ledger was written now: it stays.
	if want := (history.PurgeResult{Points: 10, Stats: 10, Events: 10}); total != want {
		t.Errorf("purged %+v, want %+v", total, want)
	}
	count := func(entity string, r history.Resolution) int {
		page, err := s.History(context.Background(), history.HistoryQuery{Home: "h1", Entity: entity,
			From: base, To: now, Resolution: r})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Points) + len(page.Stats)
	}
	for _, tt := range []struct {
		entity string
		r      history.Resolution
		want   int
	}{
		{"t", history.Raw, 0}, {"t", history.FiveMinutes, 0}, {"t", history.Hourly, 10},
		{"l", history.Raw, 10}, {"l", history.FiveMinutes, 10}, {"l", history.Hourly, 10},
	} {
		if got := count(tt.entity, tt.r); got != tt.want {
			t.Errorf("%s %s rows left: %d, want %d", tt.entity, tt.r, got, tt.want)
		}
	}
	// Eight days later the ledger goes too.
	res, err := s.Purge(context.Background(), now.Add(history.LedgerRetention+24*time.Hour), policy, 100)
	if err != nil || res.Ledger != 1 {
		t.Errorf("ledger purge = %+v, %v", res, err)
	}
}

func TestQueriesRejectBadInput(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	ok := history.HistoryQuery{Home: "h1", Entity: "t", From: t0, To: t0.Add(time.Hour), Resolution: history.Raw}
	for _, tt := range []struct {
		field string
		edit  func(q *history.HistoryQuery)
	}{
		{"home", func(q *history.HistoryQuery) { q.Home = "" }},
		{"entity", func(q *history.HistoryQuery) { q.Entity = "" }},
		{"to", func(q *history.HistoryQuery) { q.To = q.From.Add(-time.Microsecond) }},
		{"resolution", func(q *history.HistoryQuery) { q.Resolution = history.Auto }},
		{"limit", func(q *history.HistoryQuery) { q.Limit = -1 }},
	} {
		q := ok
		tt.edit(&q)
		_, err := s.History(ctx, q)
		var he *homemesh.Error
		if !errors.As(err, &he) || he.Field != tt.field {
			t.Errorf("%s: err = %v", tt.field, err)
		}
	}
	if _, err := s.Events(ctx, history.EventQuery{From: t0, To: t0.Add(time.Hour)}); homemesh.ErrorKind(err) != homemesh.KindInvalid {
		t.Errorf("events without home: %v", err)
	}
	if _, err := s.Purge(ctx, t0, history.DefaultRetention(), 0); homemesh.ErrorKind(err) != homemesh.KindInvalid {
		t.Errorf("purge without limit: %v", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	s, path := openTemp(t)
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 1, Points: []history.Point{temp("t", 0, 1)}}}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := rawHistory(t, s2, "t"); len(got) != 1 {
		t.Errorf("after reopen: %+v", got)
	}
	// The ledger survived as well.
	res := write(t, s2, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 1, Points: []history.Point{temp("t", time.Minute, 1)}}}})
	if res.Duplicates != 1 {
		t.Errorf("redelivery after reopen = %+v", res)
	}
}

// TestCommittedWritesSurviveWithoutClose copies the database files while
// the store is still open, as a process killed with -9 leaves them, and
// opens the copy: everything Write returned for is there, recovered from
// the WAL.
func TestCommittedWritesSurviveWithoutClose(t *testing.T) {
	s, path := openTemp(t)
	var msgs []history.Message
	for i := range 100 {
		msgs = append(msgs, history.Message{Seq: uint64(i + 1), Points: []history.Point{temp("t", time.Duration(i)*time.Second, float64(i))}})
	}
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: msgs})

	// A second handle on the live file sees the committed batch.
	other, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := rawHistory(t, other, "t"); len(got) != 100 {
		t.Errorf("second handle sees %d points, want 100", len(got))
	}

	crashed := filepath.Join(t.TempDir(), "history.db")
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, path+suffix, crashed+suffix)
	}
	if fi, err := os.Stat(crashed + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL to recover from: %v", err)
	}
	s2, err := Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := rawHistory(t, s2, "t"); len(got) != 100 {
		t.Errorf("recovered %d points, want 100", len(got))
	}
	if got := stats(t, s2, "t", history.Hourly); len(got) != 1 || got[0].Count != 100 {
		t.Errorf("recovered stats = %+v", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	s, path := openTemp(t)
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Errorf("err = %v, want a newer-schema refusal", err)
	}
}

func TestMigrationsApplyInOrderOnce(t *testing.T) {
	fsys := fstest.MapFS{
		"migrations/0002_more.sql":  {Data: []byte(`ALTER TABLE a ADD COLUMN y INTEGER; INSERT INTO a (x, y) VALUES (2, 2);`)},
		"migrations/0001_first.sql": {Data: []byte(`CREATE TABLE a (x INTEGER); INSERT INTO a (x) VALUES (1);`)},
	}
	ms, err := loadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 2 {
		if err := migrate(context.Background(), db, ms, t0); err != nil {
			t.Fatal(err)
		}
	}
	var rows, version int
	if err := db.QueryRow(`SELECT count(*), (SELECT max(version) FROM schema_migrations) FROM a`).Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || version != 2 {
		t.Errorf("rows %d version %d, want 2 and 2", rows, version)
	}
	// A failing migration leaves the database as it was.
	fsys["migrations/0003_bad.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE b (z); SELECT * FROM missing;`)}
	if ms, err = loadMigrations(fsys); err != nil {
		t.Fatal(err)
	}
	if err := migrate(context.Background(), db, ms, t0); err == nil || !strings.Contains(err.Error(), "0003_bad") {
		t.Errorf("bad migration: %v", err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'b'`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("failed migration left table b: %d, %v", rows, err)
	}
	// A gap in the versions is a broken binary.
	delete(fsys, "migrations/0002_more.sql")
	if _, err := loadMigrations(fsys); err == nil {
		t.Error("a gap in the versions was accepted")
	}
}

func TestParseMigrationName(t *testing.T) {
	for _, tt := range []struct {
		file    string
		version int
		name    string
		ok      bool
	}{
		{"0001_history.sql", 1, "history", true},
		{"12_a_b.sql", 12, "a_b", true},
		{"0000_zero.sql", 0, "", false},
		{"x001_a.sql", 0, "", false},
		{"0001.sql", 0, "", false},
		{"0001_.sql", 0, "", false},
		{"0001_a.txt", 0, "", false},
		{"-1_a.sql", 0, "", false},
		{"99999999999999999999_a.sql", 0, "", false},
	} {
		v, n, err := parseMigrationName(tt.file)
		if (err == nil) != tt.ok || v != tt.version || n != tt.name {
			t.Errorf("%q = %d %q %v", tt.file, v, n, err)
		}
	}
}

func FuzzParseMigrationName(f *testing.F) {
	for _, s := range []string{"0001_history.sql", "1_a.sql", "_.sql", "0001_", "+1_a.sql", "00_a.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		v, name, err := parseMigrationName(file)
		if err != nil {
			return
		}
		if v <= 0 || name == "" || !strings.HasSuffix(file, "_"+name+".sql") {
			t.Errorf("%q parsed as %d %q", file, v, name)
		}
	})
}

// TestFailedWriteStoresNothing cancels a Write's context: the transaction
// rolls back, the ledger does not record the message, and a retry stores
// it once.
func TestFailedWriteStoresNothing(t *testing.T) {
	s, _ := openTemp(t)
	b := history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{
		{Seq: 1, Points: []history.Point{temp("t", 0, 1), temp("u", 0, 2)},
			Events: []history.Event{{ID: "e1", Time: t0, Kind: "pressed"}}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Write(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a cancelled context: %v", err)
	}
	if got := rawHistory(t, s, "t"); len(got) != 0 {
		t.Errorf("points stored by a failed write: %+v", got)
	}
	if got := ledger(t, s); len(got) != 0 {
		t.Errorf("ledger after a failed write: %v", got)
	}
	if got := write(t, s, b); got != (history.WriteResult{Points: 2, Events: 1}) {
		t.Errorf("retry = %+v", got)
	}
}

// TestWriteFailingMidwayStoresNothing makes the events insert fail after
// the batch's points, statistics and entities were written in the
// transaction: all of it rolls back, and the entity ids the failed write
// created are not remembered.
func TestWriteFailingMidwayStoresNothing(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.w.Exec(`CREATE TRIGGER fail_boom BEFORE INSERT ON events WHEN NEW.kind = 'boom'
		BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	b := history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{
		{Seq: 1, Points: []history.Point{temp("t", 0, 1), temp("new", 0, 2)},
			Events: []history.Event{{ID: "e1", Time: t0, Kind: "boom"}}},
	}}
	if _, err := s.Write(context.Background(), b); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("write = %v, want the trigger's error", err)
	}
	for _, e := range []string{"t", "new"} {
		if got := rawHistory(t, s, e); len(got) != 0 {
			t.Errorf("%s: points stored by a failed write: %+v", e, got)
		}
		if got := stats(t, s, e, history.Hourly); len(got) != 0 {
			t.Errorf("%s: statistics stored by a failed write: %+v", e, got)
		}
	}
	if got := ledger(t, s); len(got) != 0 {
		t.Errorf("ledger after a failed write: %v", got)
	}
	var entities int
	if err := s.r.QueryRow(`SELECT count(*) FROM entities`).Scan(&entities); err != nil || entities != 0 {
		t.Errorf("entities after a failed write: %d, %v", entities, err)
	}
	b.Messages[0].Events[0].Kind = "pressed"
	if got := write(t, s, b); got != (history.WriteResult{Points: 2, Events: 1}) {
		t.Fatalf("retry = %+v", got)
	}
	if got := stats(t, s, "new", history.Hourly); len(got) != 1 || got[0].Count != 1 || got[0].Sum != 2 {
		t.Errorf("statistics after the retry: %+v", got)
	}
	// Every stored point names a stored entity.
	var orphans int
	if err := s.r.QueryRow(`SELECT count(*) FROM points WHERE entity_id NOT IN (SELECT id FROM entities)`).Scan(&orphans); err != nil || orphans != 0 {
		t.Errorf("points without an entity row: %d, %v", orphans, err)
	}
}

// TestHourlyRollup checks that the hourly tier reads the same before the
// rollup (merged from 5-minute rows), after it (from stats_1h) and with a
// late point merged into a rolled-up hour, as history.Summarize computes.
func TestHourlyRollup(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	var all []history.Point
	seq := uint64(0)
	writeAll := func(points ...history.Point) {
		t.Helper()
		seq++
		write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: seq, Points: points}}})
		all = append(all, points...)
	}
	for i := range 30 {
		at := time.Duration(i) * 7 * time.Minute
		writeAll(temp("t", at, float64(i%7)-2.5), temp("u", at+time.Second, float64(i)))
	}
	check := func(when string) {
		t.Helper()
		want := history.Summarize(all)[history.Hourly]
		var wantT []history.Stat
		for _, st := range want {
			if st.Entity == "t" {
				wantT = append(wantT, st)
			}
		}
		if diff := cmp.Diff(wantT, stats(t, s, "t", history.Hourly)); diff != "" {
			t.Errorf("%s: hourly (-want +got):\n%s", when, diff)
		}
		// Paging one hour at a time crosses the watermark.
		q := history.HistoryQuery{Home: "h1", Entity: "t", From: t0.Add(-time.Hour), To: t0.Add(24 * time.Hour), Resolution: history.Hourly, Limit: 1}
		var paged []history.Stat
		for {
			page, err := s.History(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, page.Stats...)
			if !page.More {
				break
			}
			q.After = page.Stats[len(page.Stats)-1].Start
		}
		if diff := cmp.Diff(wantT, paged); diff != "" {
			t.Errorf("%s: hourly paged (-want +got):\n%s", when, diff)
		}
	}
	check("before the rollup")
	var storedHours int
	countHours := func() int {
		t.Helper()
		if err := s.r.QueryRow(`SELECT count(*) FROM stats_1h`).Scan(&storedHours); err != nil {
			t.Fatal(err)
		}
		return storedHours
	}
	if n := countHours(); n != 0 {
		t.Fatalf("%d hourly rows stored before any rollup", n)
	}
	// Roll up everything but the last two hours (the data spans 3.5 h).
	now := t0.Add(3*time.Hour + 30*time.Minute)
	for {
		res, err := s.Purge(ctx, now, history.RetentionPolicy{}, 5)
		if err != nil {
			t.Fatal(err)
		}
		if !res.More {
			break
		}
	}
	if n := countHours(); n != 4 {
		t.Errorf("%d hourly rows after the rollup, want 4 (2 hours × 2 entities)", n)
	}
	check("after the rollup")
	// Late points into a rolled-up hour and into one that is not.
	writeAll(temp("t", 30*time.Minute+time.Microsecond, 100), temp("t", 150*time.Minute, -100))
	check("after late points")
}

// TestRollupMigrationKeepsMergedHours opens a database made by the first
// schema, whose hourly rows were merged by every batch: the rollup starts
// after its last hour.
func TestRollupMigrationKeepsMergedHours(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	all, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(context.Background(), db, all[:1], t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO entities (id, home, entity, device, kind) VALUES (1, 'h1', 't', 'dev1', 'sensor');
		INSERT INTO stats_1h (entity_id, start, count, num_count, sum, min, max, last, last_ts, on_us)
		VALUES (1, ?, 1, 1, 5, 5, 5, 5, ?, 0)`, micros(t0), micros(t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var until int64
	if err := s.r.QueryRow(`SELECT hourly_until FROM rollup`).Scan(&until); err != nil || until != micros(t0.Add(time.Hour)) {
		t.Errorf("watermark = %v (%v), want %v", fromMicros(until), err, t0.Add(time.Hour))
	}
	// The merged hour is read from stats_1h, the next from its 5-minute rows.
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 1, Points: []history.Point{
		temp("t", 2*time.Minute, 7), temp("t", 62*time.Minute, 9)}}}})
	got := stats(t, s, "t", history.Hourly)
	if len(got) != 2 || got[0].Count != 2 || got[0].Sum != 12 || got[1].Count != 1 || got[1].Sum != 9 {
		t.Errorf("hourly = %+v", got)
	}
}

// closedDays writes three closed days and today's first ten hours of two
// sensors, one point every 20 minutes, and returns the points.
func closedDays(t *testing.T, s *Store) []history.Point {
	t.Helper()
	var all []history.Point
	var msgs []history.Message
	for tm := history.Day(t0).Add(-3 * 24 * time.Hour); tm.Before(t0); tm = tm.Add(20 * time.Minute) {
		v := float64(tm.Sub(t0) / time.Minute)
		pts := []history.Point{temp("sensor.kitchen", tm.Sub(t0), v), temp("sensor.hall", tm.Sub(t0)+time.Second, -v)}
		all = append(all, pts...)
		msgs = append(msgs, history.Message{Seq: uint64(len(msgs) + 1), Points: pts})
	}
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: msgs})
	return all
}

// hourly returns every hourly bucket of entity from three days before
// t0's day to t0, in one page.
func hourly(t *testing.T, s *Store, entity string) []history.Stat {
	t.Helper()
	page, err := s.History(context.Background(), history.HistoryQuery{Home: "h1", Entity: entity,
		From: history.Day(t0).Add(-3 * 24 * time.Hour), To: t0, Resolution: history.Hourly, Limit: history.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if page.More {
		t.Fatalf("%s: hourly history does not fit a page", entity)
	}
	return page.Stats
}

// hourlyPages reads entity's hourly tier from three days before t0's day
// to to, in pages of limit, following the cursor.
func hourlyPages(t *testing.T, s *Store, entity string, to time.Time, limit int) []history.Stat {
	t.Helper()
	q := history.HistoryQuery{Home: "h1", Entity: entity, From: history.Day(t0).Add(-3 * 24 * time.Hour), To: to,
		Resolution: history.Hourly, Limit: limit}
	var out []history.Stat
	for {
		page, err := s.History(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Stats) > limit || page.More && len(page.Stats) == 0 {
			t.Fatalf("%s: a page of %d holds %d stats, More %v", entity, limit, len(page.Stats), page.More)
		}
		out = append(out, page.Stats...)
		if !page.More {
			return out
		}
		q.After = page.Stats[len(page.Stats)-1].Start
	}
}

func summarizeHourly(points []history.Point, entity string) []history.Stat {
	var out []history.Stat
	for _, st := range history.Summarize(points)[history.Hourly] {
		if st.Entity == entity {
			out = append(out, st)
		}
	}
	return out
}

// count returns the single integer a query selects.
func count(t *testing.T, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// maintain runs Purge at now, keeping everything, until it has no more
// work, and returns how many calls that took.
func maintain(t *testing.T, s *Store, now time.Time, limit int) int {
	t.Helper()
	for calls := 1; ; calls++ {
		res, err := s.Purge(context.Background(), now, history.RetentionPolicy{}, limit)
		if err != nil {
			t.Fatal(err)
		}
		if res.Points != 0 || res.Stats != 0 || res.Events != 0 {
			t.Fatalf("Purge keeping everything removed %+v", res)
		}
		if !res.More {
			return calls
		}
		if calls == 1000 {
			t.Fatal("Purge never ends")
		}
	}
}

// TestPurgePacksClosedDays checks that Purge moves the hourly rows of
// closed days into one packed row per entity and day, however its limit
// cuts them, that a late point into a packed hour is a stats_1h row until
// the next Purge folds it in, and that the hourly tier reads the same
// throughout.
func TestPurgePacksClosedDays(t *testing.T) {
	s, _ := openTemp(t)
	all := closedDays(t, s)
	today := micros(history.Day(t0))
	check := func(when string) {
		t.Helper()
		for _, e := range []string{"sensor.kitchen", "sensor.hall"} {
			want := summarizeHourly(all, e)
			if diff := cmp.Diff(want, hourly(t, s, e)); diff != "" {
				t.Errorf("%s: %s hourly (-want +got):\n%s", when, e, diff)
			}
			// Pages end within packed days, on their ends and in the
			// hours not packed; the range ends at t0, and before the
			// hours read from 5-minute rows.
			for _, to := range []time.Time{t0, history.Day(t0).Add(5 * time.Hour)} {
				want := slices.DeleteFunc(slices.Clone(want), func(st history.Stat) bool { return !st.Start.Before(to) })
				for _, limit := range []int{1, 5, 24, 25} {
					if diff := cmp.Diff(want, hourlyPages(t, s, e, to, limit)); diff != "" {
						t.Errorf("%s: %s hourly to %v in pages of %d (-want +got):\n%s", when, e, to, limit, diff)
					}
				}
			}
		}
	}
	check("before Purge")
	// Roll the hours up (to t0 − 1h) first, so that the packing is what
	// takes the calls: 144 rows of three closed days of two entities, 10
	// at a time, cutting days.
	if more, err := s.rollup(context.Background(), t0, 10_000); err != nil || more {
		t.Fatalf("rollup: more %v, %v", more, err)
	}
	if calls := maintain(t, s, t0, 10); calls != 15 {
		t.Errorf("Purge packed 144 rows in %d calls of 10, want 15", calls)
	}
	if n := count(t, s, `SELECT count(*) FROM stats_1h WHERE start < ?`, today); n != 0 {
		t.Errorf("%d hourly rows of closed days left unpacked", n)
	}
	if n := count(t, s, `SELECT count(*) FROM stats_1h`); n != 2*9 {
		t.Errorf("%d hourly rows of today, want 18 (two entities, 00:00 to 08:00)", n)
	}
	if n := count(t, s, `SELECT count(*) FROM stats_1h_days`); n != 2*3 {
		t.Errorf("%d packed days, want 6", n)
	}
	check("after Purge")

	// A late point of a packed hour.
	late := temp("sensor.kitchen", -2*24*time.Hour-5*time.Hour+10*time.Second, 1000)
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 10_000, Points: []history.Point{late}}}})
	all = append(all, late)
	if n := count(t, s, `SELECT count(*) FROM stats_1h WHERE start < ?`, today); n != 1 {
		t.Errorf("%d hourly rows of closed days after a late point, want 1", n)
	}
	check("after a late point")
	maintain(t, s, t0, 10)
	if n := count(t, s, `SELECT count(*) FROM stats_1h WHERE start < ?`, today); n != 0 {
		t.Errorf("%d hourly rows of closed days left after packing the late point", n)
	}
	var data []byte
	day := history.Day(late.Time)
	if err := s.r.QueryRow(`SELECT data FROM stats_1h_days WHERE day = ? AND entity_id = (SELECT id FROM entities WHERE entity = 'sensor.kitchen')`,
		micros(day)).Scan(&data); err != nil {
		t.Fatal(err)
	}
	packed, err := history.UnpackHours(nil, "sensor.kitchen", day, data)
	if err != nil {
		t.Fatal(err)
	}
	hour := history.Truncate(late.Time, history.Hourly)
	if i := slices.IndexFunc(packed, func(st history.Stat) bool { return st.Start.Equal(hour) }); i < 0 || packed[i].Count != 4 || packed[i].Max != 1000 {
		t.Errorf("packed day %s lacks the late point: %+v", day.Format(time.DateOnly), packed)
	}
	check("after packing the late point")
}

// TestPurgeRemovesPackedHours checks the retention of packed hours: whole
// days go, the day the cutoff falls in loses its expired hours, each call
// touches at most limit packed days, and Stats counts hours.
func TestPurgeRemovesPackedHours(t *testing.T) {
	s, _ := openTemp(t)
	closedDays(t, s)
	// The hall sensor is a switch, kept forever.
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 10_000, Points: []history.Point{
		{Entity: "sensor.hall", Kind: homemesh.KindSwitch, Time: t0.Add(-time.Minute), State: "on"}}}}})
	maintain(t, s, t0, 1000)
	// Sensors keep hourly statistics 28 hours: until yesterday 06:00.
	policy := history.RetentionPolicy{Kinds: map[homemesh.EntityKind]history.Retention{homemesh.KindSensor: {Hourly: 28 * time.Hour}}}
	var removed []int64
	for {
		res, err := s.Purge(context.Background(), t0, policy, 1)
		if err != nil {
			t.Fatal(err)
		}
		removed = append(removed, res.Stats)
		if !res.More {
			break
		}
		if len(removed) == 10 {
			t.Fatal("Purge never ends")
		}
	}
	if diff := cmp.Diff([]int64{24, 24, 6}, removed); diff != "" {
		t.Errorf("hours removed per call of limit 1 (-want +got):\n%s", diff)
	}
	got := hourly(t, s, "sensor.kitchen")
	if cutoff := t0.Add(-28 * time.Hour); len(got) != 28 || !got[0].Start.Equal(cutoff) {
		t.Errorf("kitchen keeps %d hours from %v, want 28 from %v", len(got), got[0].Start, cutoff)
	}
	if got := hourly(t, s, "sensor.hall"); len(got) != 3*24+10 {
		t.Errorf("hall keeps %d hours, want all %d", len(got), 3*24+10)
	}
}

// TestCorruptPackedDay checks that a packed day that does not unpack
// fails the queries and the packing that need it, naming the entity and
// the day, and nothing else.
func TestCorruptPackedDay(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	closedDays(t, s)
	maintain(t, s, t0, 1000)
	day := history.Day(t0).Add(-2 * 24 * time.Hour)
	if _, err := s.w.Exec(`UPDATE stats_1h_days SET data = x'07' WHERE day = ?
		AND entity_id = (SELECT id FROM entities WHERE entity = 'sensor.kitchen')`, micros(day)); err != nil {
		t.Fatal(err)
	}
	named := func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "sensor.kitchen") && strings.Contains(err.Error(), day.Format(time.DateOnly))
	}
	q := history.HistoryQuery{Home: "h1", Entity: "sensor.kitchen", From: day.Add(-time.Hour), To: t0, Resolution: history.Hourly}
	if _, err := s.History(ctx, q); !named(err) {
		t.Errorf("reading the corrupt day: err = %v, want one naming sensor.kitchen and %s", err, day.Format(time.DateOnly))
	}
	// The other days and the other entity read.
	q.From = day.Add(24 * time.Hour)
	if page, err := s.History(ctx, q); err != nil || len(page.Stats) != 34 {
		t.Errorf("reading after the corrupt day: %d stats, %v", len(page.Stats), err)
	}
	if got := hourly(t, s, "sensor.hall"); len(got) != 3*24+10 {
		t.Errorf("the other entity reads %d hours, want %d", len(got), 3*24+10)
	}
	// A late point of the corrupt day cannot be packed into it: Purge
	// fails and keeps the point's hourly row.
	write(t, s, history.Batch{Home: "h1", Stream: "S", Messages: []history.Message{{Seq: 10_000, Points: []history.Point{
		temp("sensor.kitchen", day.Add(time.Hour+time.Second).Sub(t0), 5)}}}})
	if _, err := s.Purge(ctx, t0, history.RetentionPolicy{}, 1000); !named(err) {
		t.Errorf("packing into the corrupt day: err = %v, want one naming sensor.kitchen and %s", err, day.Format(time.DateOnly))
	}
	if n := count(t, s, `SELECT count(*) FROM stats_1h WHERE start = ?`, micros(day.Add(time.Hour))); n != 1 {
		t.Errorf("the late point's hourly row is gone after a failed Purge")
	}
}
