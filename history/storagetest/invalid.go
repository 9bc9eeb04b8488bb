package storagetest

import (
	"math"
	"testing"
	"time"

	"github.com/homemesh/homemesh/history"
)

// validBatch is a batch whose first message is valid, so that a store
// that stored part of an invalid batch would show it.
func validBatch() history.Batch {
	return batch(homeA, "states",
		history.Message{Seq: 1, Points: []history.Point{num("temp", at(time.Minute), 20)},
			Events: []history.Event{{ID: "01EV", Time: at(time.Minute), Kind: "button_pressed"}}},
		history.Message{Seq: 2, Points: []history.Point{num("temp", at(2*time.Minute), 22), num("hum", at(2*time.Minute), 40)},
			Events: []history.Event{{ID: "01EW", Time: at(2 * time.Minute), Kind: "button_pressed"}}})
}

func testInvalidBatch(t testing.TB, s history.Store) {
	for _, c := range []struct {
		name  string
		field string
		spoil func(b *history.Batch)
	}{
		{"empty home", "home", func(b *history.Batch) { b.Home = "" }},
		{"empty stream", "stream", func(b *history.Batch) { b.Stream = "" }},
		{"seq 0", "seq", func(b *history.Batch) { b.Messages[1].Seq = 0 }},
		{"point without entity", "entity", func(b *history.Batch) { b.Messages[1].Points[1].Entity = "" }},
		{"point without time", "time", func(b *history.Batch) { b.Messages[1].Points[1].Time = time.Time{} }},
		{"NaN value", "value", func(b *history.Batch) { b.Messages[1].Points[1].Value = math.NaN() }},
		{"infinite value", "value", func(b *history.Batch) { b.Messages[1].Points[1].Value = math.Inf(-1) }},
		{"event without ID", "id", func(b *history.Batch) { b.Messages[1].Events[0].ID = "" }},
		{"event without time", "time", func(b *history.Batch) { b.Messages[1].Events[0].Time = time.Time{} }},
		{"event without kind", "kind", func(b *history.Batch) { b.Messages[1].Events[0].Kind = "" }},
	} {
		b := validBatch()
		c.spoil(&b)
		res, err := s.Write(t.Context(), b)
		checkInvalid(t, c.name, err, c.field)
		if res != (history.WriteResult{}) {
			t.Errorf("%s: Write reported %+v stored", c.name, res)
		}
		checkPoints(t, c.name+": temp", raw(t, s, homeA, "temp", at(0), at(time.Hour)), nil)
		checkStats(t, c.name+": temp 1h", stats(t, s, homeA, "temp", history.Hourly, at(0), at(time.Hour)), nil)
		checkEvents(t, c.name+": events", events(t, s, history.EventQuery{Home: homeA, From: at(0), To: at(time.Hour)}), nil)
	}
	// None of the rejected batches was recorded as stored.
	mustWrite(t, s, validBatch(), history.WriteResult{Points: 3, Events: 2})
}

func testInvalidQuery(t testing.TB, s history.Store) {
	mustWrite(t, s, validBatch(), history.WriteResult{Points: 3, Events: 2})
	ctx := t.Context()
	for _, r := range []history.Resolution{history.Raw, history.FiveMinutes, history.Hourly} {
		_, err := s.History(ctx, history.HistoryQuery{Home: homeA, Entity: "temp", From: at(time.Hour), To: at(0), Resolution: r, Limit: 10})
		checkInvalid(t, "history "+string(r)+" to before from", err, "from", "to")
	}
	for _, r := range []history.Resolution{"2m", "RAW", "1d"} {
		_, err := s.History(ctx, history.HistoryQuery{Home: homeA, Entity: "temp", From: at(0), To: at(time.Hour), Resolution: r, Limit: 10})
		checkInvalid(t, "history resolution "+string(r), err, "resolution")
	}
	_, err := s.Events(ctx, history.EventQuery{Home: homeA, From: at(time.Hour), To: at(0), Limit: 10})
	checkInvalid(t, "events to before from", err, "from", "to")
}

func testCloseTwice(t testing.TB, s history.Store) {
	mustWrite(t, s, validBatch(), history.WriteResult{Points: 3, Events: 2})
	raw(t, s, homeA, "temp", at(0), at(time.Hour))
	if _, err := s.Purge(t.Context(), t0, history.DefaultRetention(), 100); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A second Close (the backend's cleanup makes one too) must not fail
	// or panic.
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
