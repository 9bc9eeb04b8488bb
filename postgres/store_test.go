package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/internal/hmtest"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func numeric(entity string, at time.Time, v float64) history.Point {
	return history.Point{Entity: entity, Device: "dev-" + entity, Kind: homemesh.KindSensor, Time: at, Numeric: true, Value: v}
}

func state(entity string, at time.Time, s string) history.Point {
	return history.Point{Entity: entity, Device: "dev-" + entity, Kind: homemesh.KindBinarySensor, Time: at, State: s}
}

// oneEach returns a batch with one message per point, seqs from first.
func oneEach(home string, first uint64, pts ...history.Point) history.Batch {
	b := history.Batch{Home: home, Stream: "states"}
	for i, p := range pts {
		b.Messages = append(b.Messages, history.Message{Seq: first + uint64(i), Points: []history.Point{p}})
	}
	return b
}

func mustWrite(t *testing.T, s history.Writer, b history.Batch) history.WriteResult {
	t.Helper()
	res, err := s.Write(context.Background(), b)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return res
}

func history1(t *testing.T, s history.Reader, home, entity string, r history.Resolution) history.HistoryPage {
	t.Helper()
	p, err := s.History(context.Background(), history.HistoryQuery{
		Home: home, Entity: entity, From: t0.Add(-30 * 24 * time.Hour), To: t0.Add(48 * time.Hour), Resolution: r, Limit: history.MaxLimit,
	})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	return p
}

func TestWriteThenReadRawPoints(t *testing.T) {
	s, _ := openFresh(t)
	in := []history.Point{
		numeric("temp", t0.Add(1500*time.Nanosecond), 21.5), // stored at microseconds
		{Entity: "temp", Device: "dev-temp", Kind: homemesh.KindSensor, Time: t0.Add(time.Minute), Numeric: true, Value: -3,
			Attrs: json.RawMessage(`{"unit":"°C", "b":[1,2]}`)},
		{Entity: "temp", Device: "dev-temp", Kind: homemesh.KindSensor, Time: t0.Add(2 * time.Minute), State: "unavailable"},
	}
	res := mustWrite(t, s, oneEach("home1", 1, in...))
	if res != (history.WriteResult{Points: 3}) {
		t.Errorf("result = %+v", res)
	}
	got := history1(t, s, "home1", "temp", history.Raw)
	want := append([]history.Point(nil), in...)
	want[0].Time = t0.Add(time.Microsecond)
	if diff := cmp.Diff(want, got.Points); diff != "" {
		t.Errorf("points (-want +got):\n%s", diff)
	}
	if got := history1(t, s, "other-home", "temp", history.Raw); len(got.Points) != 0 {
		t.Errorf("another home sees %d points", len(got.Points))
	}
}

func TestRedeliveredMessagesAreSkipped(t *testing.T) {
	s, _ := openFresh(t)
	a := oneEach("h", 1, numeric("x", t0, 1), numeric("x", t0.Add(time.Minute), 2), numeric("x", t0.Add(2*time.Minute), 3))
	mustWrite(t, s, a)
	// 2 and 3 come again with 4 and 5; 4 also twice within the batch.
	b := oneEach("h", 2, numeric("x", t0.Add(time.Minute), 2), numeric("x", t0.Add(2*time.Minute), 3),
		numeric("x", t0.Add(3*time.Minute), 4), numeric("x", t0.Add(4*time.Minute), 5))
	b.Messages = append(b.Messages, b.Messages[2])
	res := mustWrite(t, s, b)
	if res != (history.WriteResult{Points: 2, Duplicates: 3}) {
		t.Errorf("result = %+v, want 2 points and 3 duplicates", res)
	}
	st := history1(t, s, "h", "x", history.Hourly).Stats
	if len(st) != 1 || st[0].Count != 5 || st[0].Sum != 15 || st[0].Last != 5 {
		t.Errorf("hourly = %+v, want one bucket of 5 points summing 15", st)
	}
	// Sequential batches leave a single ledger range.
	var n int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM ledger").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("ledger has %d rows after contiguous batches, want 1", n)
	}
	// A gap makes a second range; filling it merges all three.
	mustWrite(t, s, oneEach("h", 7, numeric("x", t0.Add(7*time.Minute), 7)))
	mustWrite(t, s, oneEach("h", 6, numeric("x", t0.Add(6*time.Minute), 6)))
	var first, last int64
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*), min(first_seq), max(last_seq) FROM ledger").Scan(&n, &first, &last); err != nil {
		t.Fatal(err)
	}
	if n != 1 || first != 1 || last != 7 {
		t.Errorf("ledger = %d rows [%d, %d], want 1 row [1, 7]", n, first, last)
	}
}

func TestSecondPointAtTheSameMicrosecondIsIgnored(t *testing.T) {
	s, _ := openFresh(t)
	res := mustWrite(t, s, oneEach("h", 1, numeric("x", t0, 1), numeric("x", t0.Add(100*time.Nanosecond), 2)))
	if res.Points != 1 {
		t.Errorf("stored %d points, want 1", res.Points)
	}
	mustWrite(t, s, oneEach("h", 3, numeric("x", t0, 3)))
	got := history1(t, s, "h", "x", history.Raw).Points
	if len(got) != 1 || got[0].Value != 1 {
		t.Errorf("points = %+v, want the first one only", got)
	}
	if st := history1(t, s, "h", "x", history.FiveMinutes).Stats; len(st) != 1 || st[0].Count != 1 || st[0].Sum != 1 {
		t.Errorf("statistics = %+v count ignored points", st)
	}
}

// Statistics merged batch by batch equal those of all points at once.
func TestStatisticsMergeAcrossBatches(t *testing.T) {
	s, _ := openFresh(t)
	var all []history.Point
	for i := range 300 {
		all = append(all, numeric("t", t0.Add(time.Duration(i*37)*time.Second), math.Sin(float64(i))*10))
	}
	// Written out of order, in uneven batches.
	seq := uint64(1)
	for _, r := range [][2]int{{200, 300}, {0, 50}, {120, 200}, {50, 120}} {
		mustWrite(t, s, oneEach("h", seq, all[r[0]:r[1]]...))
		seq += uint64(r[1] - r[0])
	}
	want := history.Summarize(all)
	for _, r := range history.StatTiers {
		got := history1(t, s, "h", "t", r).Stats
		if diff := cmp.Diff(want[r], got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
			t.Errorf("%s statistics (-want +got):\n%s", r, diff)
		}
	}
}

func onSeconds(stats []history.Stat) float64 {
	var us int64
	for _, s := range stats {
		us += s.OnMicros
	}
	return float64(us) / 1e6
}

func TestOnTimeFollowsNeighboursAcrossBatches(t *testing.T) {
	s, _ := openFresh(t)
	mustWrite(t, s, oneEach("h", 1, state("door", t0, "open")))
	mustWrite(t, s, oneEach("h", 2, state("door", t0.Add(60*time.Minute), "closed")))
	if got := onSeconds(history1(t, s, "h", "door", history.Hourly).Stats); got != 3600 {
		t.Fatalf("on-time = %vs, want 3600", got)
	}
	// A late "closed" at +20m shortens it; within one batch, an "open"
	// at +30m and a "closed" at +40m add ten minutes back.
	mustWrite(t, s, oneEach("h", 3, state("door", t0.Add(20*time.Minute), "closed"),
		state("door", t0.Add(40*time.Minute), "closed"), state("door", t0.Add(30*time.Minute), "open")))
	five := history1(t, s, "h", "door", history.FiveMinutes).Stats
	if got := onSeconds(five); got != 1800 {
		t.Errorf("5m on-time = %vs, want 1800", got)
	}
	if got := onSeconds(history1(t, s, "h", "door", history.Hourly).Stats); got != 1800 {
		t.Errorf("hourly on-time = %vs, want 1800", got)
	}
	for _, st := range five {
		if st.OnMicros < 0 || st.OnMicros > int64(5*time.Minute/time.Microsecond) {
			t.Errorf("bucket %v on for %dµs", st.Start, st.OnMicros)
		}
	}
}

func TestInvalidBatchesStoreNothing(t *testing.T) {
	s, _ := openFresh(t)
	good := func() history.Batch {
		b := oneEach("h", 1, numeric("x", t0, 1), state("y", t0, "on"))
		b.Messages[1].Events = []history.Event{{ID: "e", Time: t0, Kind: "button", Data: json.RawMessage(`{}`)}}
		return b
	}
	tests := []struct {
		name  string
		edit  func(*history.Batch)
		field string
	}{
		{"no home", func(b *history.Batch) { b.Home = "" }, "home"},
		{"no stream", func(b *history.Batch) { b.Stream = "" }, "stream"},
		{"zero seq", func(b *history.Batch) { b.Messages[1].Seq = 0 }, "messages[1].seq"},
		{"no entity", func(b *history.Batch) { b.Messages[1].Points[0].Entity = "" }, "messages[1].points[0].entity"},
		{"NaN", func(b *history.Batch) { b.Messages[0].Points[0].Value = math.NaN() }, "messages[0].points[0].value"},
		{"infinity", func(b *history.Batch) { b.Messages[0].Points[0].Value = math.Inf(-1) }, "messages[0].points[0].value"},
		{"zero time", func(b *history.Batch) { b.Messages[0].Points[0].Time = time.Time{} }, "messages[0].points[0].time"},
		{"attrs not an object", func(b *history.Batch) { b.Messages[0].Points[0].Attrs = json.RawMessage(`[1]`) }, "messages[0].points[0].attrs"},
		{"NUL in state", func(b *history.Batch) { b.Messages[1].Points[0].State = "o\x00n" }, "messages[1].points[0].state"},
		{"bad UTF-8", func(b *history.Batch) { b.Messages[1].Points[0].Device = "\xff" }, "messages[1].points[0].device"},
		{"huge entity", func(b *history.Batch) { b.Messages[1].Points[0].Entity = strings.Repeat("e", 2000) }, "messages[1].points[0].entity"},
		{"event without id", func(b *history.Batch) { b.Messages[1].Events[0].ID = "" }, "messages[1].events[0].id"},
		{"event without kind", func(b *history.Batch) { b.Messages[1].Events[0].Kind = "" }, "messages[1].events[0].kind"},
		{"event data not JSON", func(b *history.Batch) { b.Messages[1].Events[0].Data = json.RawMessage(`{`) }, "messages[1].events[0].data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good()
			tt.edit(&b)
			_, err := s.Write(context.Background(), b)
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Fatalf("error = %v, want invalid %s", err, tt.field)
			}
		})
	}
	var n int
	if err := s.pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM points) + (SELECT count(*) FROM events) + (SELECT count(*) FROM ledger) + (SELECT count(*) FROM stats_5m)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows stored by invalid batches", n)
	}
	if res := mustWrite(t, s, good()); res != (history.WriteResult{Points: 2, Events: 1}) {
		t.Errorf("valid batch after the invalid ones = %+v", res)
	}
}

// Two stores on one database stand for two history processes that were
// handed overlapping batches after a redelivery.
func TestConcurrentOverlappingWritesStoreEachMessageOnce(t *testing.T) {
	a, dsn := openFresh(t)
	b, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const msgs, batch = 600, 40
	message := func(seq uint64) history.Message {
		at := t0.Add(time.Duration(seq) * time.Second)
		return history.Message{Seq: seq, Points: []history.Point{
			numeric(fmt.Sprintf("n%d", seq%7), at, float64(seq)),
			state(fmt.Sprintf("s%d", seq%3), at, []string{"on", "off"}[seq/3%2]),
		}, Events: []history.Event{{ID: fmt.Sprintf("ev%d", seq), Time: at, Kind: "tick"}}}
	}
	var mu sync.Mutex
	var total history.WriteResult
	var wg sync.WaitGroup
	for w, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer covers every message, in batches offset from
			// the others', so batches overlap partially.
			off := uint64(w * batch / 4)
			for start := uint64(1); start <= msgs; start += batch {
				bt := history.Batch{Home: "h", Stream: "states"}
				for seq := start + off; seq < start+off+batch && seq <= msgs; seq++ {
					bt.Messages = append(bt.Messages, message(seq))
				}
				if start == 1 && off > 0 {
					for seq := uint64(1); seq < 1+off; seq++ {
						bt.Messages = append(bt.Messages, message(seq))
					}
				}
				res, err := s.Write(context.Background(), bt)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total.Points += res.Points
				total.Events += res.Events
				total.Duplicates += res.Duplicates
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total.Points != 2*msgs || total.Events != msgs || total.Duplicates != 3*msgs {
		t.Errorf("writers stored %+v, want %d points, %d events, %d duplicates", total, 2*msgs, msgs, 3*msgs)
	}
	var all []history.Point
	for seq := uint64(1); seq <= msgs; seq++ {
		all = append(all, message(seq).Points...)
	}
	want := history.Summarize(all)
	// Two days later the hour is packed: the count covers both forms.
	if _, err := b.Purge(context.Background(), t0.Add(48*time.Hour), history.RetentionPolicy{}, 1000); err != nil {
		t.Fatal(err)
	}
	var points int64
	if err := a.pool.QueryRow(context.Background(), "SELECT count(*) FROM points").Scan(&points); err != nil {
		t.Fatal(err)
	}
	if count := hourlyCount(t, a); count != 2*msgs || points != 2*msgs {
		t.Errorf("stored %d points counted %d times in hourly statistics, want %d", points, count, 2*msgs)
	}
	got := history1(t, a, "h", "n3", history.FiveMinutes).Stats
	var wantN3 []history.Stat
	for _, st := range want[history.FiveMinutes] {
		if st.Entity == "n3" {
			wantN3 = append(wantN3, st)
		}
	}
	if diff := cmp.Diff(wantN3, got); diff != "" {
		t.Errorf("n3 statistics (-want +got):\n%s", diff)
	}
	// The state entity flips every 3 s: half the time on, each on-span
	// credited once however the batches interleaved. Only the time
	// before the last point is known.
	var on int64
	for e := range 3 {
		for _, st := range history1(t, a, "h", fmt.Sprintf("s%d", e), history.Hourly).Stats {
			on += st.OnMicros
		}
	}
	var wantOn int64
	for e := range 3 {
		var pts []history.Point
		for _, p := range all {
			if p.Entity == fmt.Sprintf("s%d", e) {
				pts = append(pts, p)
			}
		}
		for i := 1; i < len(pts); i++ {
			if a, _ := history.Binary(pts[i-1].State); a {
				wantOn += pts[i].Time.Sub(pts[i-1].Time).Microseconds()
			}
		}
	}
	if on != wantOn {
		t.Errorf("on-time = %dµs, want %dµs", on, wantOn)
	}
}

func TestHistoryPages(t *testing.T) {
	s, _ := openFresh(t)
	var pts []history.Point
	for i := range 25 {
		pts = append(pts, numeric("x", t0.Add(time.Duration(i)*time.Minute), float64(i)))
	}
	mustWrite(t, s, oneEach("h", 1, pts...))
	ctx := context.Background()
	q := history.HistoryQuery{Home: "h", Entity: "x", From: t0.Add(2 * time.Minute), To: t0.Add(22 * time.Minute), Resolution: history.Raw, Limit: 8}
	var got []float64
	for pages := 0; ; pages++ {
		p, err := s.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, pt := range p.Points {
			got = append(got, pt.Value)
		}
		if !p.More {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		q.After = p.Points[len(p.Points)-1].Time
	}
	if len(got) != 20 || got[0] != 2 || got[19] != 21 {
		t.Errorf("paged values = %v, want 2…21", got)
	}
	q = history.HistoryQuery{Home: "h", Entity: "x", From: t0, To: t0.Add(time.Hour), Resolution: history.FiveMinutes, Limit: 2}
	p, err := s.History(ctx, q)
	if err != nil || len(p.Stats) != 2 || !p.More || p.Stats[1].Start != t0.Add(5*time.Minute) {
		t.Errorf("5m page = %+v, %v", p, err)
	}
	for _, bad := range []struct {
		q     history.HistoryQuery
		field string
	}{
		{history.HistoryQuery{Entity: "x", From: t0, To: t0, Resolution: history.Raw}, "home"},
		{history.HistoryQuery{Home: "h", From: t0, To: t0, Resolution: history.Raw}, "entity"},
		{history.HistoryQuery{Home: "h", Entity: "x", From: t0, To: t0.Add(-1), Resolution: history.Raw}, "to"},
		{history.HistoryQuery{Home: "h", Entity: "x", From: t0, To: t0, Resolution: "2m"}, "resolution"},
	} {
		if _, err := s.History(ctx, bad.q); homemesh.ErrorField(err) != bad.field {
			t.Errorf("History(%+v) = %v, want invalid %s", bad.q, err, bad.field)
		}
	}
}

func TestEventsByKindDeviceAndPage(t *testing.T) {
	s, _ := openFresh(t)
	b := history.Batch{Home: "h", Stream: "events"}
	for i := range 12 {
		b.Messages = append(b.Messages, history.Message{Seq: uint64(i + 1), Events: []history.Event{{
			ID: fmt.Sprintf("%02d", i), Time: t0.Add(time.Duration(i/2) * time.Hour * 10), // two per time, across days
			Kind: []string{"press", "alarm"}[i%2], Device: []string{"d1", "d2", "d3"}[i%3], Data: json.RawMessage(`{"n":1}`),
		}}})
	}
	if res := mustWrite(t, s, b); res.Events != 12 {
		t.Fatalf("stored %d events", res.Events)
	}
	ctx := context.Background()
	q := history.EventQuery{Home: "h", Kind: "press", From: t0, To: t0.Add(1000 * time.Hour), Limit: 2}
	var ids []string
	for {
		p, err := s.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			ids = append(ids, e.ID)
		}
		if !p.More {
			break
		}
		last := p.Events[len(p.Events)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	if diff := cmp.Diff([]string{"00", "02", "04", "06", "08", "10"}, ids); diff != "" {
		t.Errorf("press events (-want +got):\n%s", diff)
	}
	p, err := s.Events(ctx, history.EventQuery{Home: "h", Device: "d2", Kind: "alarm", From: t0, To: t0.Add(1000 * time.Hour)})
	if err != nil || len(p.Events) != 2 || p.Events[0].ID != "01" || string(p.Events[0].Data) != `{"n":1}` {
		t.Errorf("d2 alarms = %+v, %v", p, err)
	}
}

func partitionsOf(t *testing.T, s *Store, table string) []string {
	t.Helper()
	parts, err := listPartitions(context.Background(), s.pool, table)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for d, st := range parts {
		if st.attached {
			out = append(out, partitionName(table, d))
		}
	}
	return out
}

func TestPurgeDropsPartitionsAndBoundsDeletes(t *testing.T) {
	s, _ := openFresh(t)
	ctx := context.Background()
	now := t0
	var pts []history.Point
	for d := range 5 { // five days back, one sensor point and one light point per day
		at := now.Add(-time.Duration(d)*24*time.Hour - time.Hour)
		pts = append(pts, numeric("temp", at, float64(d)),
			history.Point{Entity: "lamp", Kind: homemesh.KindLight, Time: at, State: "on"})
	}
	b := oneEach("h", 1, pts...)
	b.Messages[0].Events = []history.Event{{ID: "new", Time: now.Add(-time.Hour), Kind: "k"}}
	b.Messages[9].Events = []history.Event{{ID: "old", Time: now.Add(-4*24*time.Hour - time.Hour), Kind: "k"}}
	mustWrite(t, s, b)
	policy := history.RetentionPolicy{
		Default: history.Retention{Raw: 3 * 24 * time.Hour, FiveMinutes: 2 * 24 * time.Hour},
		Kinds:   map[homemesh.EntityKind]history.Retention{homemesh.KindLight: {Raw: 24 * time.Hour}},
		Events:  2 * 24 * time.Hour,
	}
	// The lamp, on throughout, has a hundred hours of on-time: pack them
	// first, so that the calls below, one row each, are about purging.
	if more, err := s.pack(ctx, now, 1000); err != nil || more {
		t.Fatalf("pack = %v, %v", more, err)
	}
	before := len(partitionsOf(t, s, pointsTable))
	var total history.PurgeResult
	for calls := 0; ; calls++ {
		res, err := s.Purge(ctx, now, policy, 1)
		if err != nil {
			t.Fatal(err)
		}
		total.Points += res.Points
		total.Stats += res.Stats
		total.Events += res.Events
		if res.Points > 3 || res.Stats > 2 || res.Events > 2 {
			t.Errorf("one call purged %+v", res)
		}
		if !res.More {
			break
		}
		if calls > 20 {
			t.Fatal("Purge keeps reporting More")
		}
	}
	// Kept: temp from days 0–2 (3 days), lamp from day 0 only.
	if got := len(history1(t, s, "h", "temp", history.Raw).Points); got != 3 {
		t.Errorf("temp keeps %d raw points, want 3", got)
	}
	if got := history1(t, s, "h", "lamp", history.Raw).Points; len(got) != 1 || !got[0].Time.Equal(now.Add(-time.Hour)) {
		t.Errorf("lamp keeps %+v, want the last day's point", got)
	}
	if total.Points != 6 {
		t.Errorf("purged %d points, want 6", total.Points)
	}
	// Partitions: days -4 and -3 ended before the 3-day cutoff.
	after := partitionsOf(t, s, pointsTable)
	if len(after) != before-2+1 { // today's and tomorrow's were created, t0's day already existed
		t.Errorf("partitions %d → %v", before, after)
	}
	// 5-minute buckets older than 2 days are gone, hourly ones all kept.
	if got := len(history1(t, s, "h", "temp", history.FiveMinutes).Stats); got != 2 {
		t.Errorf("temp keeps %d 5m buckets, want 2", got)
	}
	if got := len(history1(t, s, "h", "temp", history.Hourly).Stats); got != 5 {
		t.Errorf("temp keeps %d hourly buckets, want 5", got)
	}
	p, err := s.Events(ctx, history.EventQuery{Home: "h", From: now.Add(-30 * 24 * time.Hour), To: now})
	if err != nil || len(p.Events) != 1 || p.Events[0].ID != "new" || total.Events != 1 {
		t.Errorf("events after purge = %+v (%v), purged %d", p.Events, err, total.Events)
	}
	// The ledger outlives the raw data until LedgerRetention.
	res, err := s.Purge(ctx, time.Now().Add(history.LedgerRetention+time.Hour), history.RetentionPolicy{}, 100)
	if err != nil || res.Ledger != 1 || res.Points != 0 {
		t.Errorf("ledger purge = %+v, %v", res, err)
	}
	if res := mustWrite(t, s, oneEach("h", 1, numeric("temp", now.Add(-time.Hour), 0))); res.Duplicates != 0 {
		t.Errorf("after the ledger expired: %+v", res)
	}
	if _, err := s.Purge(ctx, now, policy, 0); homemesh.ErrorField(err) != "limit" {
		t.Errorf("Purge with limit 0 = %v", err)
	}
}

func TestOpenMigratesOnceUnderConcurrency(t *testing.T) {
	dsn := freshDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, _ := migrations()
	var n, v int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || v != len(ms) {
		t.Errorf("schema_migrations has %d rows up to %d, want %d", n, v, len(ms))
	}
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO schema_migrations (version) VALUES ($1)", len(ms)+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), dsn)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Errorf("Open of a newer schema = %v", err)
	}
}

func TestErrorsNeverCarryThePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://history:s3cret-pw@127.0.0.1:1/history?connect_timeout=2",
		"host=127.0.0.1 port=1 user=history password=s3cret-pw connect_timeout=2",
		"postgres://history:s3cret-pw@127.0.0.1:1/history?sslmode=bogus",
	} {
		_, err := Open(context.Background(), dsn)
		if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("Open error = %v", err)
		}
	}
}

// Processes writing into days that have no partition yet create each one
// once, without failing each other's batches.
func TestConcurrentWritersCreatePartitionsOnce(t *testing.T) {
	first, dsn := openFresh(t)
	stores := []*Store{first}
	for range 3 {
		s, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	for w, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range 8 {
				at := t0.Add(time.Duration(d*3) * 24 * time.Hour)
				b := oneEach(fmt.Sprintf("home%d", w), uint64(d+1), numeric("x", at, 1))
				b.Messages[0].Events = []history.Event{{ID: "e", Time: at, Kind: "k"}}
				if _, err := s.Write(context.Background(), b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, table := range []string{pointsTable, eventsTable} {
		got := partitionsOf(t, first, table)
		if len(got) != 16 { // each day written and the day after it
			t.Errorf("%s has %d partitions: %v", table, len(got), got)
		}
	}
	var n int
	if err := first.pool.QueryRow(context.Background(), "SELECT count(*) FROM points").Scan(&n); err != nil || n != 32 {
		t.Errorf("stored %d points (%v), want 32", n, err)
	}
}

// hourlyCount returns the number of points the hourly tier counts, in its
// stats_1h rows and packed days together.
func hourlyCount(t *testing.T, s *Store) int64 {
	t.Helper()
	var count int64
	for _, st := range packedHours(t, s) {
		count += st.Count
	}
	var loose int64
	if err := s.pool.QueryRow(context.Background(), "SELECT coalesce(sum(count), 0) FROM stats_1h").Scan(&loose); err != nil {
		t.Fatal(err)
	}
	return count + loose
}

// packedHours returns every packed hour of the store, by entity id and
// time.
func packedHours(t *testing.T, s *Store) []history.Stat {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), "SELECT entity_id, day, data FROM stats_1h_days ORDER BY entity_id, day")
	if err != nil {
		t.Fatal(err)
	}
	days, err := scanPackedDays(rows)
	if err != nil {
		t.Fatal(err)
	}
	var out []history.Stat
	for _, d := range days {
		if out, err = history.UnpackHours(out, fmt.Sprint(d.id), d.day, d.data); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// hourlyForms returns how many stats_1h rows start before and after
// split, and the days packed, in order.
func hourlyForms(t *testing.T, s *Store, split time.Time) (before, after int, days []time.Time) {
	t.Helper()
	ctx := context.Background()
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE start < $1), count(*) FILTER (WHERE start >= $1) FROM stats_1h", split).Scan(&before, &after); err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT day FROM stats_1h_days ORDER BY day")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var d time.Time
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		days = append(days, d.UTC())
	}
	return before, after, days
}

// keepAll runs Purge at now with a policy that expires nothing until it
// has no more to do, and fails the test if a call removes anything.
func keepAll(t *testing.T, s history.Purger, now time.Time, limit int) (calls int) {
	t.Helper()
	for calls = 1; ; calls++ {
		res, err := s.Purge(context.Background(), now, history.RetentionPolicy{}, limit)
		if err != nil {
			t.Fatalf("Purge: %v", err)
		}
		if res.Points != 0 || res.Stats != 0 || res.Events != 0 {
			t.Fatalf("Purge keeping everything = %+v", res)
		}
		if !res.More {
			return calls
		}
		if calls == 1000 {
			t.Fatal("Purge keeps reporting More")
		}
	}
}

// closedDays writes three days and ten hours, up to t0, of a sensor every
// 20 minutes and a door switched every 50, and returns their hourly
// statistics.
func closedDays(t *testing.T, s *Store) (temp, door []history.Stat) {
	t.Helper()
	start := history.Day(t0).Add(-3 * day)
	var pts []history.Point
	for tm := start; tm.Before(t0); tm = tm.Add(20 * time.Minute) {
		pts = append(pts, numeric("temp", tm, float64(tm.Sub(start)/time.Minute)))
	}
	for i, tm := 0, start; tm.Before(t0); i, tm = i+1, tm.Add(50*time.Minute) {
		pts = append(pts, state("door", tm, []string{"open", "closed"}[i%2]))
	}
	mustWrite(t, s, oneEach("h", 1, pts...))
	return history1(t, s, "h", "temp", history.Hourly).Stats, history1(t, s, "h", "door", history.Hourly).Stats
}

func TestPurgePacksClosedDays(t *testing.T) {
	s, _ := openFresh(t)
	ctx := context.Background()
	today := history.Day(t0)
	temp, door := closedDays(t, s)
	if n := len(temp); n != 3*24+10 {
		t.Fatalf("temp has %d hourly buckets, want %d", n, 3*24+10)
	}

	// In calls of 25 rows, days are cut in two and finished later.
	if calls := keepAll(t, s, t0, 25); calls < 6 {
		t.Errorf("packing %d rows took %d calls of 25", 2*3*24, calls)
	}
	before, after, days := hourlyForms(t, s, today)
	if before != 0 || after != 2*10 {
		t.Errorf("stats_1h holds %d rows of closed days and %d of today, want 0 and 20", before, after)
	}
	if want := []time.Time{today.Add(-3 * day), today.Add(-2 * day), today.Add(-day)}; !cmp.Equal(days, want) {
		t.Errorf("packed days = %v, want %v", days, want)
	}
	if got := len(packedHours(t, s)); got != 2*3*24 {
		t.Errorf("packed days hold %d hours, want %d", got, 2*3*24)
	}
	if diff := cmp.Diff(temp, history1(t, s, "h", "temp", history.Hourly).Stats); diff != "" {
		t.Errorf("temp after packing (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(door, history1(t, s, "h", "door", history.Hourly).Stats); diff != "" {
		t.Errorf("door after packing (-before +after):\n%s", diff)
	}

	// A late point into a packed hour is a stats_1h row until the next
	// Purge folds it into its day.
	late := today.Add(-2*day + 5*time.Hour + 10*time.Minute)
	mustWrite(t, s, oneEach("h", 1000, numeric("temp", late, 1000)))
	i := slices.IndexFunc(temp, func(st history.Stat) bool { return st.Start.Equal(late.Truncate(time.Hour)) })
	temp[i].Merge(history.Stat{Count: 1, NumCount: 1, Sum: 1000, Min: 1000, Max: 1000, Last: 1000, LastTime: late})
	for _, when := range []string{"before", "after"} {
		if when == "after" {
			keepAll(t, s, t0, 1000)
		}
		before, _, days := hourlyForms(t, s, today)
		if want := map[string]int{"before": 1, "after": 0}[when]; before != want || len(days) != 3 {
			t.Errorf("%s Purge: stats_1h holds %d rows of closed days, want %d; %d days packed", when, before, want, len(days))
		}
		if diff := cmp.Diff(temp, history1(t, s, "h", "temp", history.Hourly).Stats); diff != "" {
			t.Errorf("temp with a late point, %s Purge (-want +got):\n%s", when, diff)
		}
	}

	// Retention: the sensor keeps two days of hours. Of its packed days
	// the first goes, the second loses its first ten hours.
	policy := history.RetentionPolicy{Kinds: map[homemesh.EntityKind]history.Retention{homemesh.KindSensor: {Hourly: 2 * day}}}
	var removed int64
	for range 10 {
		res, err := s.Purge(ctx, t0, policy, 1)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stats > 24 {
			t.Errorf("one call of limit 1 removed %d hours", res.Stats)
		}
		removed += res.Stats
		if !res.More {
			break
		}
	}
	if removed != 24+10 {
		t.Errorf("retention removed %d hours, want 34", removed)
	}
	if diff := cmp.Diff(temp[24+10:], history1(t, s, "h", "temp", history.Hourly).Stats); diff != "" {
		t.Errorf("temp after retention (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(door, history1(t, s, "h", "door", history.Hourly).Stats); diff != "" {
		t.Errorf("door, kept forever, after retention (-want +got):\n%s", diff)
	}
}

func TestCorruptPackedDayFailsTheHourlyQuery(t *testing.T) {
	ctx := context.Background()
	bad := history.Day(t0).Add(-2 * day)
	for _, tt := range []struct {
		name, set string
	}{
		{"unknown version", `'\x09'::bytea || substring(data from 2)`},
		{"truncated", `substring(data for 20)`},
		{"empty", `''::bytea`},
		{"hour out of range", `set_byte(data, 1, 30)`},
		{"too long", `data || data`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openFresh(t)
			closedDays(t, s)
			keepAll(t, s, t0, 1000)
			if _, err := s.pool.Exec(ctx, "UPDATE stats_1h_days SET data = "+tt.set+" WHERE day = $1", bad); err != nil {
				t.Fatal(err)
			}
			q := history.HistoryQuery{Home: "h", Entity: "temp", From: bad.Add(-day), To: t0, Resolution: history.Hourly}
			_, err := s.History(ctx, q)
			if err == nil || !strings.Contains(err.Error(), `"temp"`) || !strings.Contains(err.Error(), "2026-11-27") {
				t.Errorf("History over a corrupt day = %v, want an error naming temp and 2026-11-27", err)
			}
			// The other days still answer.
			q.From = bad.Add(day)
			if p, err := s.History(ctx, q); err != nil || len(p.Stats) != 24+10 {
				t.Errorf("History after the corrupt day = %d stats, %v", len(p.Stats), err)
			}
			// A late point cannot be folded into the day: Purge says so
			// and keeps the point where it is.
			mustWrite(t, s, oneEach("h", 1000, numeric("temp", bad.Add(time.Hour+time.Minute), 1)))
			_, err = s.Purge(ctx, t0, history.RetentionPolicy{}, 1000)
			if err == nil || !strings.Contains(err.Error(), `"temp"`) || !strings.Contains(err.Error(), "2026-11-27") {
				t.Errorf("Purge folding into a corrupt day = %v, want an error naming temp and 2026-11-27", err)
			}
			if before, _, _ := hourlyForms(t, s, history.Day(t0)); before != 1 {
				t.Errorf("after the failed Purge, stats_1h holds %d rows of closed days, want the late one", before)
			}
			// Nor can its hours be counted when they expire.
			policy := history.RetentionPolicy{Default: history.Retention{Hourly: day}}
			if _, err := s.Purge(ctx, t0, policy, 1000); err == nil || !strings.Contains(err.Error(), "2026-11-27") {
				t.Errorf("Purge expiring a corrupt day = %v, want an error naming 2026-11-27", err)
			}
		})
	}
}

// waitBlocked waits until a backend waits for a lock held by one that
// waits for pid, or, without via, for pid itself.
func waitBlocked(t *testing.T, s *Store, pid uint32, via bool, what string) {
	t.Helper()
	query := "SELECT count(*) FROM pg_stat_activity WHERE $1::integer = ANY(pg_blocking_pids(pid))"
	if via {
		query = `
			SELECT count(*) FROM pg_stat_activity a, pg_stat_activity b
			WHERE $1::integer = ANY(pg_blocking_pids(b.pid)) AND b.pid = ANY(pg_blocking_pids(a.pid))`
	}
	hmtest.WaitFor(t, 10*time.Second, what, func() bool {
		var n int
		if err := s.pool.QueryRow(context.Background(), query, int32(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
}

// A writer merging a late point into a stats_1h row and the packer moving
// that row meet in both orders; the point is counted once either way.
func TestLateWriteAndPackingMeet(t *testing.T) {
	ctx := context.Background()
	hour := history.Day(t0).Add(-2*day + 5*time.Hour)
	for _, writerFirst := range []bool{true, false} {
		name := map[bool]string{true: "writer holds the row", false: "packer holds the row"}[writerFirst]
		t.Run(name, func(t *testing.T) {
			s, _ := openFresh(t)
			temp, _ := closedDays(t, s)
			keepAll(t, s, t0, 1000)
			// A first late point makes the stats_1h row the two meet on.
			mustWrite(t, s, oneEach("h", 1000, numeric("temp", hour.Add(time.Minute), 500)))
			i := slices.IndexFunc(temp, func(st history.Stat) bool { return st.Start.Equal(hour) })
			for _, p := range []struct {
				at time.Duration
				v  float64
			}{{time.Minute, 500}, {2 * time.Minute, 700}} {
				temp[i].Merge(history.Stat{Count: 1, NumCount: 1, Sum: p.v, Min: p.v, Max: p.v, Last: p.v, LastTime: hour.Add(p.at)})
			}

			// The test's own transaction holds what stops the first one
			// just before its commit: the writer waits for the ledger
			// lock it takes last, the packer for a packed day it reads
			// after taking its rows.
			conn, err := s.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if writerFirst {
				_, err = tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ledgerLock("h", "states"))
			} else {
				_, err = tx.Exec(ctx, "SELECT 1 FROM stats_1h_days WHERE day = $1 FOR UPDATE", history.Day(hour))
			}
			if err != nil {
				t.Fatal(err)
			}
			pid := conn.Conn().PgConn().PID()

			var wg sync.WaitGroup
			write := func() {
				if _, err := s.Write(ctx, oneEach("h", 1001, numeric("temp", hour.Add(2*time.Minute), 700))); err != nil {
					t.Error(err)
				}
			}
			if writerFirst {
				wg.Go(write)
				waitBlocked(t, s, pid, false, "the writer to stop before its commit")
				// The packer leaves the row the writer holds, without
				// waiting for it.
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := s.Purge(pctx, t0, history.RetentionPolicy{}, 1000)
				cancel()
				if err != nil {
					t.Fatalf("Purge while a writer holds a row: %v", err)
				}
				if before, _, _ := hourlyForms(t, s, history.Day(t0)); before != 1 {
					t.Errorf("the packer took the row a writer holds: %d rows of closed days left", before)
				}
			} else {
				wg.Go(func() {
					if _, err := s.Purge(ctx, t0, history.RetentionPolicy{}, 1000); err != nil {
						t.Error(err)
					}
				})
				waitBlocked(t, s, pid, false, "the packer to stop before its commit")
				wg.Go(write)
				waitBlocked(t, s, pid, true, "the writer to wait for the packer")
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			wg.Wait()

			if diff := cmp.Diff(temp, history1(t, s, "h", "temp", history.Hourly).Stats); diff != "" {
				t.Errorf("temp after the two met (-want +got):\n%s", diff)
			}
			keepAll(t, s, t0, 1000)
			if before, _, _ := hourlyForms(t, s, history.Day(t0)); before != 0 {
				t.Errorf("stats_1h holds %d rows of closed days after packing", before)
			}
			if diff := cmp.Diff(temp, history1(t, s, "h", "temp", history.Hourly).Stats); diff != "" {
				t.Errorf("temp once all packed (-want +got):\n%s", diff)
			}
		})
	}
}
