package storagetest

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/homemesh/homemesh/history"
)

// sampleEvents are events of homeA in (Time, ID) order: three of them at
// the same time, one a microsecond later with a greater ID than the next
// one, and the last outside [t0, t0+1h).
func sampleEvents() []history.Event {
	return []history.Event{
		{ID: "01JA", Time: at(time.Minute), Kind: "button_pressed", Device: "d1", Entity: "button", Data: json.RawMessage(`{"press": "single"}`)},
		{ID: "0009", Time: at(2 * time.Minute), Kind: "device_offline", Device: "d2"},
		{ID: "01JB", Time: at(2 * time.Minute), Kind: "button_pressed", Device: "d2", Entity: "button-2", Data: json.RawMessage(`{"press":"double","n":[1,2]}`)},
		{ID: "01JC", Time: at(2 * time.Minute), Kind: "automation_fired"},
		{ID: "01JZ", Time: at(2*time.Minute + time.Microsecond), Kind: "button_pressed", Device: "d1"},
		{ID: "01JD", Time: at(3 * time.Minute), Kind: "device_offline", Device: "d1"},
		{ID: "01JE", Time: at(time.Hour), Kind: "button_pressed", Device: "d1"},
	}
}

// writeSampleEvents stores sampleEvents in two batches, newest first, in
// messages that also carry points.
func writeSampleEvents(t testing.TB, s history.Store) []history.Event {
	t.Helper()
	evs := sampleEvents()
	rev := slices.Clone(evs)
	slices.Reverse(rev)
	mustWrite(t, s, batch(homeA, "events",
		history.Message{Seq: 1, Events: rev[:3], Points: []history.Point{num("temp", at(time.Minute), 20)}},
		history.Message{Seq: 2, Events: rev[3:5]}), history.WriteResult{Points: 1, Events: 5})
	mustWrite(t, s, batch(homeA, "events", history.Message{Seq: 3, Events: rev[5:]}), history.WriteResult{Events: 2})
	// Another home with an event of the same ID and time.
	mustWrite(t, s, batch(homeB, "events", history.Message{Seq: 1, Events: []history.Event{
		{ID: "01JA", Time: at(time.Minute), Kind: "device_offline", Device: "d9"}}}), history.WriteResult{Events: 1})
	return evs
}

func testEventsRoundTrip(t testing.TB, s history.Store) {
	evs := writeSampleEvents(t, s)
	checkEvents(t, "home a", events(t, s, history.EventQuery{Home: homeA, From: at(-time.Hour), To: at(2 * time.Hour)}), evs)
	checkEvents(t, "home b", events(t, s, history.EventQuery{Home: homeB, From: at(-time.Hour), To: at(2 * time.Hour)}),
		[]history.Event{{ID: "01JA", Time: at(time.Minute), Kind: "device_offline", Device: "d9"}})
	checkEvents(t, "unknown home", events(t, s, history.EventQuery{Home: "home-c", From: at(-time.Hour), To: at(2 * time.Hour)}), nil)
}

func testEventsFilters(t testing.TB, s history.Store) {
	evs := writeSampleEvents(t, s)
	pick := func(idx ...int) []history.Event {
		var out []history.Event
		for _, i := range idx {
			out = append(out, evs[i])
		}
		return out
	}
	for _, c := range []struct {
		name string
		q    history.EventQuery
		want []history.Event
	}{
		{"range", history.EventQuery{From: at(0), To: at(time.Hour)}, pick(0, 1, 2, 3, 4, 5)},
		{"from inclusive, to exclusive", history.EventQuery{From: at(2 * time.Minute), To: at(3 * time.Minute)}, pick(1, 2, 3, 4)},
		{"to a microsecond later", history.EventQuery{From: at(2*time.Minute + time.Microsecond), To: at(3*time.Minute + time.Microsecond)}, pick(4, 5)},
		{"kind", history.EventQuery{Kind: "button_pressed", From: at(0), To: at(2 * time.Hour)}, pick(0, 2, 4, 6)},
		{"device", history.EventQuery{Device: "d1", From: at(0), To: at(2 * time.Hour)}, pick(0, 4, 5, 6)},
		{"kind and device in range", history.EventQuery{Kind: "button_pressed", Device: "d1", From: at(0), To: at(time.Hour)}, pick(0, 4)},
		{"unknown kind", history.EventQuery{Kind: "nothing", From: at(0), To: at(2 * time.Hour)}, nil},
		{"empty range", history.EventQuery{From: at(time.Minute), To: at(time.Minute)}, nil},
	} {
		c.q.Home = homeA
		checkEvents(t, c.name, events(t, s, c.q), c.want)
	}
}

func testEventsPaging(t testing.TB, s history.Store) {
	evs := writeSampleEvents(t, s)[:6] // those in [t0, t0+1h)
	for _, c := range []struct {
		limit int
		pages []int
	}{
		{2, []int{2, 2, 2}}, // page boundaries fall between events of one time
		{4, []int{4, 2}},
		{6, []int{6}},
		{5, []int{5, 1}},
		{1, []int{1, 1, 1, 1, 1, 1}},
	} {
		var got []history.Event
		q := history.EventQuery{Home: homeA, From: at(0), To: at(time.Hour), Limit: c.limit}
		for i, n := range c.pages {
			page, err := s.Events(t.Context(), q)
			if err != nil {
				t.Fatalf("limit %d page %d: %v", c.limit, i, err)
			}
			wantMore := i < len(c.pages)-1
			if len(page.Events) != n || page.More != wantMore {
				t.Fatalf("limit %d page %d: %d events, More %v; want %d, More %v", c.limit, i, len(page.Events), page.More, n, wantMore)
			}
			got = append(got, page.Events...)
			last := page.Events[len(page.Events)-1]
			q.AfterTime, q.AfterID = last.Time, last.ID
		}
		checkEvents(t, "pages of "+strconv.Itoa(c.limit), got, evs)
	}
	// Paging with a filter.
	q := history.EventQuery{Home: homeA, Kind: "button_pressed", From: at(0), To: at(2 * time.Hour), Limit: 2,
		AfterTime: evs[0].Time, AfterID: evs[0].ID}
	page, err := s.Events(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "kind after the first", page.Events, []history.Event{evs[2], evs[4]})
	if !page.More {
		t.Errorf("kind after the first: More unset, one event remains")
	}
}

func testEventsDuplicatesSkipped(t testing.TB, s history.Store) {
	evs := writeSampleEvents(t, s)
	rev := slices.Clone(evs)
	slices.Reverse(rev)
	// The same messages again: duplicates, nothing stored.
	mustWrite(t, s, batch(homeA, "events",
		history.Message{Seq: 2, Events: rev[3:5]},
		history.Message{Seq: 3, Events: rev[5:]}), history.WriteResult{Duplicates: 2})
	// The same events in a new message (published twice): skipped, while
	// a new event of the same message is stored.
	extra := history.Event{ID: "01JF", Time: at(4 * time.Minute), Kind: "device_online", Device: "d2"}
	changed := evs[0]
	changed.Kind = "changed"
	mustWrite(t, s, batch(homeA, "events",
		history.Message{Seq: 4, Events: []history.Event{changed, evs[3], extra}}), history.WriteResult{Events: 1})

	want := slices.Insert(slices.Clone(evs), 6, extra)
	checkEvents(t, "home a", events(t, s, history.EventQuery{Home: homeA, From: at(-time.Hour), To: at(2 * time.Hour)}), want)
}
