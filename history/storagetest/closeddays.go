package storagetest

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// A store may keep the hourly tier of closed days in another form than
// the recent hours (packed, compressed, moved) and may change that form
// whenever Purge runs. These tests hold it to the same answers before and
// after, whatever it does and whenever.

// maintain runs Purge with a policy that expires nothing until it reports
// no more work, at now and again 30 days later, so that a store that
// reorganises closed days does so however long it waits; it fails the
// test if anything is removed.
func maintain(t testing.TB, s history.Purger, now time.Time) {
	t.Helper()
	for _, at := range []time.Time{now, now.Add(30 * day)} {
		for i := 0; ; i++ {
			res, err := s.Purge(t.Context(), at, history.RetentionPolicy{}, 1000)
			if err != nil {
				t.Fatalf("Purge(now %s, keep everything): %v", fmtTime(at), err)
			}
			if res.Points != 0 || res.Stats != 0 || res.Events != 0 {
				t.Fatalf("Purge(now %s, keep everything) = %+v: it removed rows", fmtTime(at), res)
			}
			if !res.More {
				break
			}
			if i == 1000 {
				t.Fatalf("Purge(now %s) still has more after %d calls", fmtTime(at), i)
			}
		}
	}
}

// closedDays is the data of the closed-days tests: from midnight four
// days before t0 to t0, a numeric entity every 20 minutes, a textual one
// every 7 hours and a light on across two midnights.
var closedDaysStart = history.Day(t0).Add(-4 * day)

func closedDaysData() []history.Message {
	var pts []history.Point
	for tm := closedDaysStart; tm.Before(t0); tm = tm.Add(20 * time.Minute) {
		pts = append(pts, num("temp", tm, float64(tm.Sub(closedDaysStart)/time.Minute)))
	}
	for tm := closedDaysStart.Add(3 * time.Hour); tm.Before(t0); tm = tm.Add(7 * time.Hour) {
		pts = append(pts, text("mode", homemesh.KindSelect, tm, tm.Weekday().String()))
	}
	d1 := closedDaysStart.Add(day)
	for _, p := range []struct {
		at    time.Duration
		state string
	}{
		{-90 * time.Minute, "on"}, // day 0 22:30
		{90 * time.Minute, "off"}, // day 1 01:30
		{day + 10*time.Hour, "on"},
		{day + 10*time.Hour + 45*time.Minute, "off"},
		{2*day - 5*time.Minute, "on"}, // on across the next midnight
		{2*day + 5*time.Minute, "off"},
	} {
		pts = append(pts, light(d1.Add(p.at), p.state))
	}
	var msgs []history.Message
	for i := 0; i < len(pts); i += 10 {
		msgs = append(msgs, msg(uint64(len(msgs)+1), pts[i:min(i+10, len(pts))]...))
	}
	return msgs
}

// pages reads entity's hourly tier in [from, to) in pages of limit,
// following the cursor.
func pages(t testing.TB, s history.Reader, entity string, from, to time.Time, limit int) []statView {
	t.Helper()
	var got []history.Stat
	var after time.Time
	for i := 0; ; i++ {
		page, err := s.History(t.Context(), history.HistoryQuery{Home: homeA, Entity: entity, From: from, To: to,
			Resolution: history.Hourly, After: after, Limit: limit})
		if err != nil {
			t.Fatalf("History(%s 1h, page %d of %d): %v", entity, i, limit, err)
		}
		if len(page.Stats) > limit || (page.More && len(page.Stats) == 0) {
			t.Fatalf("History(%s 1h, page %d of %d) = %d stats, More %v", entity, i, limit, len(page.Stats), page.More)
		}
		got = append(got, page.Stats...)
		if !page.More {
			return viewStats(got)
		}
		after = page.Stats[len(page.Stats)-1].Start
	}
}

func testHourlyClosedDaysKept(t testing.TB, s history.Store) {
	msgs := closedDaysData()
	for _, m := range msgs {
		write(t, s, batch(homeA, "states", m))
	}
	type query struct {
		entity   string
		from, to time.Time
	}
	queries := []query{
		{"temp", closedDaysStart, t0},
		{"temp", closedDaysStart.Add(day + 13*time.Hour), closedDaysStart.Add(3*day + 5*time.Hour)}, // mid-day to mid-day
		{"temp", closedDaysStart.Add(2*day + 7*time.Hour + time.Minute), closedDaysStart.Add(2*day + 9*time.Hour)},
		{"mode", closedDaysStart.Add(-day), t0.Add(day)},
		{"light", closedDaysStart, t0},
	}
	before := make([][]statView, len(queries))
	for i, q := range queries {
		before[i] = stats(t, s, homeA, q.entity, history.Hourly, q.from, q.to)
	}
	if n := len(before[0]); n != int(t0.Sub(closedDaysStart)/time.Hour) {
		t.Fatalf("temp has %d hourly buckets before any Purge, want one per hour", n)
	}
	maintain(t, s, t0)
	for i, q := range queries {
		what := "1h " + q.entity + " [" + fmtTime(q.from) + ", " + fmtTime(q.to) + ") after Purge"
		if d := cmp.Diff(before[i], stats(t, s, homeA, q.entity, history.Hourly, q.from, q.to)); d != "" {
			t.Errorf("%s: statistics differ (-before +after):\n%s", what, d)
		}
		for _, limit := range []int{1, 7, 24, 25} {
			if d := cmp.Diff(before[i], pages(t, s, q.entity, q.from, q.to, limit)); d != "" {
				t.Errorf("%s, in pages of %d: statistics differ (-before +after):\n%s", what, limit, d)
			}
		}
	}
	// The 5-minute tier is not the hourly one's to change.
	if got := stats(t, s, homeA, "temp", history.FiveMinutes, closedDaysStart, t0); len(got) != len(before[0])*3 {
		t.Errorf("temp 5m after Purge: %d buckets, want %d", len(got), len(before[0])*3)
	}
}

func testHourlyClosedDaysLateWrites(t testing.TB, s history.Store) {
	msgs := closedDaysData()
	for _, m := range msgs {
		write(t, s, batch(homeA, "states", m))
	}
	d1 := closedDaysStart.Add(day)
	hour := func(h int) time.Time { return d1.Add(time.Duration(h) * time.Hour) }
	tempBefore := stats(t, s, homeA, "temp", history.Hourly, hour(5), hour(6))
	maintain(t, s, t0)

	// Late points into closed days: a number between two stored ones, and
	// a light switched off inside an on-interval, which moves on-time.
	seq := uint64(len(msgs))
	mustWrite(t, s, batch(homeA, "states",
		msg(seq+1, num("temp", hour(5).Add(10*time.Minute), 5000)),
		msg(seq+2, light(hour(0).Add(15*time.Minute), "off"))), history.WriteResult{Points: 2})

	late := numStat("temp", hour(5), 1, 5000, 5000, 5000, 5000, hour(5).Add(10*time.Minute))
	want := tempBefore[0]
	want.Count, want.NumCount, want.Sum, want.Max = want.Count+1, want.NumCount+1, want.Sum+late.Sum, late.Max
	checkHour := func(when string) {
		t.Helper()
		if d := cmp.Diff([]statView{want}, stats(t, s, homeA, "temp", history.Hourly, hour(5), hour(6))); d != "" {
			t.Errorf("temp 1h with a late point, %s: statistics differ (-want +got):\n%s", when, d)
		}
		// On from day 0 22:30 to day 1 00:15 now; off at 01:30 changes
		// nothing.
		checkStats(t, "light 1h with a late point, "+when, stats(t, s, homeA, "light", history.Hourly, hour(-2), hour(2)), []history.Stat{
			onStat("light", hour(-2), 1, 30*time.Minute),
			onStat("light", hour(-1), 0, time.Hour),
			onStat("light", hour(0), 1, 15*time.Minute),
			onStat("light", hour(1), 1, 0),
		})
	}
	checkHour("before Purge")
	maintain(t, s, t0)
	checkHour("after Purge")
	// The same message again changes nothing, packed or not (the ledger
	// may have forgotten it after 30 days: the stored point still wins).
	write(t, s, batch(homeA, "states", msg(seq+1, num("temp", hour(5).Add(10*time.Minute), 5000))))
	checkHour("after a redelivery")
}

func testPurgeHourlyWithinDay(t testing.TB, s history.Store) {
	// Hourly points of a sensor (1h kept 2 days) and a switch (kept
	// forever) over four days; the sensor's cutoff falls at t0's hour of
	// day, inside a day.
	var msgs []history.Message
	var kept []history.Stat
	start := t0.Add(-4 * day)
	for tm := start; tm.Before(t0); tm = tm.Add(time.Hour) {
		v := float64(tm.Sub(start) / time.Hour)
		msgs = append(msgs, msg(uint64(len(msgs)+1), num("temp", tm, v), kinded(num("plug", tm, v), homemesh.KindSwitch)))
		if !tm.Before(t0.Add(-2 * day)) {
			kept = append(kept, numStat("temp", tm, 1, v, v, v, v, tm))
		}
	}
	mustWrite(t, s, batch(homeA, "states", msgs...), history.WriteResult{Points: 2 * len(msgs)})
	maintain(t, s, t0)
	policy := history.RetentionPolicy{Kinds: map[homemesh.EntityKind]history.Retention{homemesh.KindSensor: {Hourly: 2 * day}}}
	var total history.PurgeResult
	for i := 0; ; i++ {
		res, err := s.Purge(t.Context(), t0, policy, 10)
		if err != nil {
			t.Fatalf("Purge: %v", err)
		}
		total.Points, total.Stats, total.Events = total.Points+res.Points, total.Stats+res.Stats, total.Events+res.Events
		if !res.More {
			break
		}
		if i == 100 {
			t.Fatalf("Purge still has more after %d calls of 10", i)
		}
	}
	if want := (history.PurgeResult{Stats: 48}); total != want {
		t.Errorf("Purge removed %+v in all, want %+v: the sensor's 48 expired hours", total, want)
	}
	checkStats(t, "temp 1h", stats(t, s, homeA, "temp", history.Hourly, start.Add(-day), t0), kept)
	if got := stats(t, s, homeA, "plug", history.Hourly, start.Add(-day), t0); len(got) != 96 {
		t.Errorf("plug 1h: %d buckets, want all 96", len(got))
	}
}

// testSharedLateWritesWhilePurging writes late points into closed days on
// one handle while the other keeps running Purge: a store that reorganises
// closed days must not lose or double what is written meanwhile.
func testSharedLateWritesWhilePurging(t testing.TB, a, b history.Store) {
	start := history.Day(t0).Add(-10 * day)
	const rounds, perRound = 40, 25
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var purgeErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.Purge(t.Context(), t0.Add(30*day), history.RetentionPolicy{}, 50); err != nil {
				purgeErr = err
				return
			}
		}
	})
	var sum float64
	for r := range rounds {
		var pts []history.Point
		for i := range perRound {
			// Spread over ten days' hours, a minute apart within an hour
			// from round to round.
			tm := start.Add(time.Duration(i*9%240)*time.Hour + time.Duration(r)*time.Minute)
			v := float64(r*perRound + i)
			sum += v
			pts = append(pts, num("temp", tm, v))
		}
		mustWrite(t, a, batch(homeA, "states", msg(uint64(r+1), pts...)), history.WriteResult{Points: perRound})
	}
	close(stop)
	wg.Wait()
	if purgeErr != nil {
		t.Fatalf("Purge while writing: %v", purgeErr)
	}
	for _, s := range []history.Store{a, b} {
		var count int64
		var got float64
		for _, v := range stats(t, s, homeA, "temp", history.Hourly, start, t0) {
			count += v.Count
			got += v.Sum
		}
		if count != rounds*perRound || got != sum {
			t.Errorf("hourly tier after writes during Purge: %d points summing to %v, want %d summing to %v", count, got, rounds*perRound, sum)
		}
	}
}
