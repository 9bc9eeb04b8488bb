package storagetest

import (
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// clock returns t0 + h hours and m minutes: clock(0, 58) is 10:58.
func clock(h, m int) time.Time {
	return at(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func testStatsNumeric(t testing.TB, s history.Store) {
	// Out of order within and across batches, and one point exactly on an
	// hour boundary.
	mustWrite(t, s, batch(homeA, "states",
		msg(1, num("temp", clock(0, 1), 20), num("temp", clock(0, 4), 22))), history.WriteResult{Points: 2})
	mustWrite(t, s, batch(homeA, "states",
		msg(2, num("temp", clock(0, 6), 18), num("temp", clock(0, 3), 25))), history.WriteResult{Points: 2})
	mustWrite(t, s, batch(homeA, "states",
		msg(3, num("temp", clock(0, 2), 19.5), num("temp", clock(1, 0), 30)),
		msg(4, num("temp", at(30*time.Second), 100))), history.WriteResult{Points: 3})

	// 10:00 bucket: 100 @10:00:30, 20 @10:01, 19.5 @10:02, 25 @10:03, 22 @10:04.
	checkStats(t, "5m", stats(t, s, homeA, "temp", history.FiveMinutes, clock(0, 0), clock(2, 0)), []history.Stat{
		numStat("temp", clock(0, 0), 5, 186.5, 19.5, 100, 22, clock(0, 4)),
		numStat("temp", clock(0, 5), 1, 18, 18, 18, 18, clock(0, 6)),
		numStat("temp", clock(1, 0), 1, 30, 30, 30, 30, clock(1, 0)),
	})
	checkStats(t, "1h", stats(t, s, homeA, "temp", history.Hourly, clock(0, 0), clock(2, 0)), []history.Stat{
		numStat("temp", clock(0, 0), 6, 204.5, 18, 100, 18, clock(0, 6)),
		numStat("temp", clock(1, 0), 1, 30, 30, 30, 30, clock(1, 0)),
	})
	// Buckets are selected by their start in [From, To).
	checkStats(t, "5m [10:05, 11:00)", stats(t, s, homeA, "temp", history.FiveMinutes, clock(0, 5), clock(1, 0)), []history.Stat{
		numStat("temp", clock(0, 5), 1, 18, 18, 18, 18, clock(0, 6)),
	})
	checkStats(t, "1h [11:00, 12:00)", stats(t, s, homeA, "temp", history.Hourly, clock(1, 0), clock(2, 0)), []history.Stat{
		numStat("temp", clock(1, 0), 1, 30, 30, 30, 30, clock(1, 0)),
	})
	checkStats(t, "1h [09:00, 10:00)", stats(t, s, homeA, "temp", history.Hourly, clock(-1, 0), clock(0, 0)), nil)
}

func light(tm time.Time, state string) history.Point {
	return text("light", homemesh.KindLight, tm, state)
}

func testStatsBinaryInOrder(t testing.TB, s history.Store) {
	for i, p := range []history.Point{
		light(clock(0, 2), "on"),
		light(clock(0, 12), "off"),
		light(clock(0, 20), "on"),
		light(clock(0, 30), "on"), // on again: [10:20, 10:30) is on
	} {
		mustWrite(t, s, batch(homeA, "states", msg(uint64(i+1), p)), history.WriteResult{Points: 1})
	}
	// On [10:02, 10:12) and [10:20, 10:30); after 10:30 nothing is known.
	checkStats(t, "5m", stats(t, s, homeA, "light", history.FiveMinutes, clock(0, 0), clock(1, 0)), []history.Stat{
		onStat("light", clock(0, 0), 1, 3*time.Minute),
		onStat("light", clock(0, 5), 0, 5*time.Minute),
		onStat("light", clock(0, 10), 1, 2*time.Minute),
		onStat("light", clock(0, 20), 1, 5*time.Minute),
		onStat("light", clock(0, 25), 0, 5*time.Minute),
		onStat("light", clock(0, 30), 1, 0),
	})
	checkStats(t, "1h", stats(t, s, homeA, "light", history.Hourly, clock(0, 0), clock(1, 0)), []history.Stat{
		onStat("light", clock(0, 0), 4, 20*time.Minute),
	})
}

func testStatsBinaryOutOfOrder(t testing.TB, s history.Store) {
	mustWrite(t, s, batch(homeA, "states", msg(1, light(clock(0, 20), "on"))), history.WriteResult{Points: 1})
	mustWrite(t, s, batch(homeA, "states", msg(2, light(clock(1, 10), "off"))), history.WriteResult{Points: 1})
	// Two points between the stored ones, in one batch, newest first: the
	// store inserts them in time order, each between its neighbours.
	mustWrite(t, s, batch(homeA, "states",
		msg(3, light(clock(0, 50), "on")),
		msg(4, light(clock(0, 40), "off"))), history.WriteResult{Points: 2})
	// A door whose first stored point comes after the second one.
	door := func(tm time.Time, state string) history.Point {
		return text("door", homemesh.KindBinarySensor, tm, state)
	}
	mustWrite(t, s, batch(homeA, "states", msg(5, door(clock(0, 30), "closed"))), history.WriteResult{Points: 1})
	mustWrite(t, s, batch(homeA, "states", msg(6, door(clock(0, 10), "open"))), history.WriteResult{Points: 1})

	// The light is on [10:20, 10:40) and [10:50, 11:10).
	checkStats(t, "light 5m", stats(t, s, homeA, "light", history.FiveMinutes, clock(0, 0), clock(2, 0)), []history.Stat{
		onStat("light", clock(0, 20), 1, 5*time.Minute),
		onStat("light", clock(0, 25), 0, 5*time.Minute),
		onStat("light", clock(0, 30), 0, 5*time.Minute),
		onStat("light", clock(0, 35), 0, 5*time.Minute),
		onStat("light", clock(0, 40), 1, 0),
		onStat("light", clock(0, 50), 1, 5*time.Minute),
		onStat("light", clock(0, 55), 0, 5*time.Minute),
		onStat("light", clock(1, 0), 0, 5*time.Minute),
		onStat("light", clock(1, 5), 0, 5*time.Minute),
		onStat("light", clock(1, 10), 1, 0),
	})
	checkStats(t, "light 1h", stats(t, s, homeA, "light", history.Hourly, clock(0, 0), clock(2, 0)), []history.Stat{
		onStat("light", clock(0, 0), 3, 30*time.Minute),
		onStat("light", clock(1, 0), 1, 10*time.Minute),
	})
	// The door is open [10:10, 10:30).
	checkStats(t, "door 5m", stats(t, s, homeA, "door", history.FiveMinutes, clock(0, 0), clock(2, 0)), []history.Stat{
		onStat("door", clock(0, 10), 1, 5*time.Minute),
		onStat("door", clock(0, 15), 0, 5*time.Minute),
		onStat("door", clock(0, 20), 0, 5*time.Minute),
		onStat("door", clock(0, 25), 0, 5*time.Minute),
		onStat("door", clock(0, 30), 1, 0),
	})
	checkStats(t, "door 1h", stats(t, s, homeA, "door", history.Hourly, clock(0, 0), clock(2, 0)), []history.Stat{
		onStat("door", clock(0, 0), 2, 20*time.Minute),
	})
}

func testStatsBinaryAcrossBuckets(t testing.TB, s history.Store) {
	// On from 10:58:30 to 12:01:15, written in order.
	mustWrite(t, s, batch(homeA, "states", msg(1, light(clock(0, 58).Add(30*time.Second), "on"))), history.WriteResult{Points: 1})
	mustWrite(t, s, batch(homeA, "states", msg(2, light(clock(2, 1).Add(15*time.Second), "off"))), history.WriteResult{Points: 1})
	want5m := []history.Stat{onStat("light", clock(0, 55), 1, 90*time.Second)}
	for m := 0; m < 60; m += 5 {
		want5m = append(want5m, onStat("light", clock(1, m), 0, 5*time.Minute))
	}
	want5m = append(want5m, onStat("light", clock(2, 0), 1, 75*time.Second))
	checkStats(t, "light 5m", stats(t, s, homeA, "light", history.FiveMinutes, clock(0, 0), clock(3, 0)), want5m)
	checkStats(t, "light 1h", stats(t, s, homeA, "light", history.Hourly, clock(0, 0), clock(3, 0)), []history.Stat{
		onStat("light", clock(0, 0), 1, 90*time.Second),
		onStat("light", clock(1, 0), 0, time.Hour),
		onStat("light", clock(2, 0), 1, 75*time.Second),
	})

	// On for two microseconds, one on each side of 11:00.
	sw := func(tm time.Time, state string) history.Point { return text("switch", homemesh.KindSwitch, tm, state) }
	mustWrite(t, s, batch(homeA, "states",
		msg(3, sw(clock(1, 0).Add(-time.Microsecond), "on"), sw(clock(1, 0).Add(time.Microsecond), "off"))),
		history.WriteResult{Points: 2})
	checkStats(t, "switch 5m", stats(t, s, homeA, "switch", history.FiveMinutes, clock(0, 0), clock(3, 0)), []history.Stat{
		onStat("switch", clock(0, 55), 1, time.Microsecond),
		onStat("switch", clock(1, 0), 1, time.Microsecond),
	})
	checkStats(t, "switch 1h", stats(t, s, homeA, "switch", history.Hourly, clock(0, 0), clock(3, 0)), []history.Stat{
		onStat("switch", clock(0, 0), 1, time.Microsecond),
		onStat("switch", clock(1, 0), 1, time.Microsecond),
	})
}

func testStatsTextualCountsChanges(t testing.TB, s history.Store) {
	mode := func(tm time.Time, state string) history.Point { return text("mode", homemesh.KindClimate, tm, state) }
	mustWrite(t, s, batch(homeA, "states",
		msg(1, mode(clock(0, 1), "heat"), mode(clock(0, 3), "cool")),
		msg(2, mode(clock(0, 7), "heat")),
		msg(3, mode(clock(1, 2), "auto"))), history.WriteResult{Points: 4})
	checkStats(t, "5m", stats(t, s, homeA, "mode", history.FiveMinutes, clock(0, 0), clock(2, 0)), []history.Stat{
		{Entity: "mode", Start: clock(0, 0), Count: 2},
		{Entity: "mode", Start: clock(0, 5), Count: 1},
		{Entity: "mode", Start: clock(1, 0), Count: 1},
	})
	checkStats(t, "1h", stats(t, s, homeA, "mode", history.Hourly, clock(0, 0), clock(2, 0)), []history.Stat{
		{Entity: "mode", Start: clock(0, 0), Count: 3},
		{Entity: "mode", Start: clock(1, 0), Count: 1},
	})
}

func testStatsPaging(t testing.TB, s history.Store) {
	// One point every 5 minutes from 10:02 to 10:57: twelve 5-minute
	// buckets, one hourly bucket.
	var msgs []history.Message
	var want []history.Stat
	for i := range 12 {
		tm := clock(0, 5*i+2)
		msgs = append(msgs, msg(uint64(i+1), num("temp", tm, float64(i))))
		want = append(want, numStat("temp", clock(0, 5*i), 1, float64(i), float64(i), float64(i), float64(i), tm))
	}
	mustWrite(t, s, batch(homeA, "states", msgs...), history.WriteResult{Points: 12})
	var got []history.Stat
	var after time.Time
	for i, n := range []int{5, 5, 2} {
		page, err := s.History(t.Context(), history.HistoryQuery{
			Home: homeA, Entity: "temp", From: clock(0, 0), To: clock(1, 0),
			Resolution: history.FiveMinutes, After: after, Limit: 5,
		})
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		if wantMore := i < 2; len(page.Stats) != n || page.More != wantMore || len(page.Points) != 0 {
			t.Fatalf("page %d: %d stats, %d points, More %v; want %d stats, More %v", i, len(page.Stats), len(page.Points), page.More, n, wantMore)
		}
		got = append(got, page.Stats...)
		after = page.Stats[len(page.Stats)-1].Start
	}
	checkStats(t, "5m pages of 5", viewStats(got), want)
}
