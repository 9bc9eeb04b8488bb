package storagetest

import (
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

const day = 24 * time.Hour

func kinded(p history.Point, k homemesh.EntityKind) history.Point {
	p.Kind = k
	return p
}

// purge calls Purge once and checks its result.
func purge(t testing.TB, s history.Purger, now time.Time, p history.RetentionPolicy, limit int, want history.PurgeResult) {
	t.Helper()
	got, err := s.Purge(t.Context(), now, p, limit)
	if err != nil {
		t.Fatalf("Purge(now %s, limit %d): %v", fmtTime(now), limit, err)
	}
	if got != want {
		t.Fatalf("Purge(now %s, limit %d) = %+v, want %+v", fmtTime(now), limit, got, want)
	}
}

func testPurgeRetention(t testing.TB, s history.Store) {
	now := t0
	// ago(n) is n days before now, 7 minutes into an hour: its 5-minute
	// bucket starts 2 minutes earlier, its hour 7 minutes earlier.
	ago := func(n float64) time.Time { return now.Add(-time.Duration(n*float64(day)) + 7*time.Minute) }
	five := func(tm time.Time) time.Time { return tm.Add(-2 * time.Minute) }
	hour := func(tm time.Time) time.Time { return tm.Add(-7 * time.Minute) }
	policy := history.RetentionPolicy{
		Default: history.Retention{Raw: 10 * day, FiveMinutes: 30 * day, Hourly: 400 * day},
		Kinds: map[homemesh.EntityKind]history.Retention{
			homemesh.KindSensor: {Raw: day, FiveMinutes: 3 * day}, // hourly forever
			homemesh.KindLock:   {},                               // everything forever
		},
		Events: 30 * day,
	}
	temp := func(n float64, v float64) history.Point { return num("temp", ago(n), v) }
	plug := func(n float64, v float64) history.Point { return kinded(num("plug", ago(n), v), homemesh.KindSwitch) }
	lock := kinded(num("lock", ago(1000), 1), homemesh.KindLock)
	unkinded := kinded(num("note", ago(11), 5), "") // the default retention
	oldEvent := history.Event{ID: "01OLD", Time: ago(31), Kind: "device_offline", Device: "d1"}
	keptEvent := history.Event{ID: "01KEPT", Time: ago(29), Kind: "device_offline", Device: "d1"}
	mustWrite(t, s, batch(homeA, "states",
		msg(1, temp(2, 1), temp(0.5, 2), temp(5, 3)),
		msg(2, plug(2, 10), plug(11, 11), plug(40, 12), plug(500, 13)),
		msg(3, lock, unkinded),
		history.Message{Seq: 4, Events: []history.Event{oldEvent, keptEvent}}), history.WriteResult{Points: 9, Events: 2})
	mustWrite(t, s, batch(homeB, "states", msg(1, temp(2, 4))), history.WriteResult{Points: 1})

	// Raw: temp 2 and 5 days old (kind sensor: 1 day), plug 11, 40 and
	// 500 days old and the note 11 days old (default: 10 days), home b's
	// temp. 5m: temp 5 days (sensor: 3 days), plug 40 and 500 days (30
	// days). 1h: plug 500 days (400 days). Events: 31 days old (30 days).
	purge(t, s, now, policy, 1000, history.PurgeResult{Points: 7, Stats: 4, Events: 1})
	purge(t, s, now, policy, 1000, history.PurgeResult{})

	from, to := now.Add(-2000*day), now.Add(day)
	checkPoints(t, "temp raw", raw(t, s, homeA, "temp", from, to), []history.Point{temp(0.5, 2)})
	checkPoints(t, "plug raw", raw(t, s, homeA, "plug", from, to), []history.Point{plug(2, 10)})
	checkPoints(t, "lock raw", raw(t, s, homeA, "lock", from, to), []history.Point{lock})
	checkPoints(t, "note raw", raw(t, s, homeA, "note", from, to), nil)
	checkPoints(t, "home b temp raw", raw(t, s, homeB, "temp", from, to), nil)

	tempStat := func(n, v float64, bucket func(time.Time) time.Time) history.Stat {
		return numStat("temp", bucket(ago(n)), 1, v, v, v, v, ago(n))
	}
	plugStat := func(n, v float64, bucket func(time.Time) time.Time) history.Stat {
		return numStat("plug", bucket(ago(n)), 1, v, v, v, v, ago(n))
	}
	checkStats(t, "temp 5m", stats(t, s, homeA, "temp", history.FiveMinutes, from, to), []history.Stat{
		tempStat(2, 1, five), tempStat(0.5, 2, five)})
	checkStats(t, "temp 1h", stats(t, s, homeA, "temp", history.Hourly, from, to), []history.Stat{
		tempStat(5, 3, hour), tempStat(2, 1, hour), tempStat(0.5, 2, hour)})
	checkStats(t, "plug 5m", stats(t, s, homeA, "plug", history.FiveMinutes, from, to), []history.Stat{
		plugStat(11, 11, five), plugStat(2, 10, five)})
	checkStats(t, "plug 1h", stats(t, s, homeA, "plug", history.Hourly, from, to), []history.Stat{
		plugStat(40, 12, hour), plugStat(11, 11, hour), plugStat(2, 10, hour)})
	checkStats(t, "lock 5m", stats(t, s, homeA, "lock", history.FiveMinutes, from, to), []history.Stat{
		numStat("lock", five(ago(1000)), 1, 1, 1, 1, 1, ago(1000))})
	checkStats(t, "lock 1h", stats(t, s, homeA, "lock", history.Hourly, from, to), []history.Stat{
		numStat("lock", hour(ago(1000)), 1, 1, 1, 1, 1, ago(1000))})
	checkStats(t, "note 5m", stats(t, s, homeA, "note", history.FiveMinutes, from, to), []history.Stat{
		numStat("note", five(ago(11)), 1, 5, 5, 5, 5, ago(11))})
	checkStats(t, "home b temp 5m", stats(t, s, homeB, "temp", history.FiveMinutes, from, to), []history.Stat{
		numStat("temp", five(ago(2)), 1, 4, 4, 4, 4, ago(2))})
	checkEvents(t, "events", events(t, s, history.EventQuery{Home: homeA, From: from, To: to}), []history.Event{keptEvent})
}

func testPurgeBounded(t testing.TB, s history.Store) {
	now := t0
	policy := history.RetentionPolicy{
		Default: history.Retention{Raw: 10 * day},
		Kinds:   map[homemesh.EntityKind]history.Retention{homemesh.KindSensor: {Raw: day}},
		Events:  day,
	}
	// 25 expired sensor points next to 25 switch points of the same times
	// that stay; 15 expired events an hour before the cutoff next to one
	// an hour after it. Each day thus keeps rows, so that a backend that
	// drops whole expired partitions still has to delete these in bounds.
	start := now.Add(-2 * day)
	var msgs []history.Message
	var plugs []history.Point
	for i := range 25 {
		tm := start.Add(time.Duration(i) * time.Minute)
		p := kinded(num("plug", tm, float64(i)), homemesh.KindSwitch)
		plugs = append(plugs, p)
		m := msg(uint64(i+1), num("temp", tm, float64(i)), p)
		if i < 15 {
			m.Events = []history.Event{{ID: "01EV" + string(rune('A'+i)), Time: now.Add(-day - time.Hour + time.Duration(i)*time.Minute), Kind: "button_pressed"}}
		}
		msgs = append(msgs, m)
	}
	kept := history.Event{ID: "01KEPT", Time: now.Add(-day + time.Hour), Kind: "button_pressed"}
	msgs = append(msgs, history.Message{Seq: 26, Events: []history.Event{kept}})
	mustWrite(t, s, batch(homeA, "states", msgs...), history.WriteResult{Points: 50, Events: 16})

	purge(t, s, now, policy, 10, history.PurgeResult{Points: 10, Events: 10, More: true})
	purge(t, s, now, policy, 10, history.PurgeResult{Points: 10, Events: 5, More: true})
	purge(t, s, now, policy, 10, history.PurgeResult{Points: 5})
	purge(t, s, now, policy, 10, history.PurgeResult{})

	from, to := now.Add(-10*day), now.Add(day)
	checkPoints(t, "temp raw", raw(t, s, homeA, "temp", from, to), nil)
	checkPoints(t, "plug raw", raw(t, s, homeA, "plug", from, to), plugs)
	checkStats(t, "temp 1h", stats(t, s, homeA, "temp", history.Hourly, from, to), []history.Stat{
		numStat("temp", start, 25, 300, 0, 24, 24, start.Add(24*time.Minute))})
	checkEvents(t, "events", events(t, s, history.EventQuery{Home: homeA, From: from, To: to}), []history.Event{kept})
}

func testPurgeLedger(t testing.TB, s history.Store) {
	ev := history.Event{ID: "01EV", Time: at(time.Minute), Kind: "button_pressed"}
	first := batch(homeA, "states",
		history.Message{Seq: 1, Points: []history.Point{num("temp", at(time.Minute), 20)}, Events: []history.Event{ev}},
		msg(2, num("temp", at(2*time.Minute), 22)))
	mustWrite(t, s, first, history.WriteResult{Points: 2, Events: 1})
	// RetentionPolicy{} keeps every tier and the events forever; only the
	// ledger ages, by the time the messages were written.
	forever := history.RetentionPolicy{}
	purge(t, s, time.Now().Add(day), forever, 1000, history.PurgeResult{})
	mustWrite(t, s, batch(homeA, "states", first.Messages[0]), history.WriteResult{Duplicates: 1})

	purge(t, s, time.Now().Add(history.LedgerRetention+time.Hour), forever, 1000, history.PurgeResult{Ledger: 1})
	purge(t, s, time.Now().Add(history.LedgerRetention+time.Hour), forever, 1000, history.PurgeResult{})
	// Forgotten messages are new again, but their rows are all stored:
	// nothing is stored twice, and they are remembered anew.
	mustWrite(t, s, first, history.WriteResult{})
	mustWrite(t, s, first, history.WriteResult{Duplicates: 2})

	checkPoints(t, "temp raw", raw(t, s, homeA, "temp", at(0), at(time.Hour)), []history.Point{
		num("temp", at(time.Minute), 20), num("temp", at(2*time.Minute), 22)})
	checkStats(t, "temp 1h", stats(t, s, homeA, "temp", history.Hourly, at(0), at(time.Hour)), []history.Stat{
		numStat("temp", at(0), 2, 42, 20, 22, 22, at(2*time.Minute))})
	checkEvents(t, "events", events(t, s, history.EventQuery{Home: homeA, From: at(0), To: at(time.Hour)}), []history.Event{ev})
}
