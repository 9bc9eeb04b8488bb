package storagetest

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

func testRawNumericAndTextual(t testing.TB, s history.Store) {
	temp1 := num("temp", at(time.Minute), 21.5)
	temp1.Attrs = json.RawMessage(`{"unit": "°C", "battery": 87}`)
	temp2 := num("temp", at(2*time.Minute), -3.25)
	door1 := text("door", homemesh.KindBinarySensor, at(30*time.Second), "open")
	door1.Attrs = json.RawMessage(`{"device_class":"door","nested":{"a":[1,2]}}`)
	door2 := text("door", homemesh.KindBinarySensor, at(90*time.Second), "closed")
	mode := text("mode", homemesh.KindClimate, at(45*time.Second), "heat")
	// Newest first within the message and across messages: the store
	// orders by time, not by arrival.
	mustWrite(t, s, batch(homeA, "states",
		msg(1, temp2, door2, mode),
		msg(2, temp1, door1),
	), history.WriteResult{Points: 5})

	day := 24 * time.Hour
	checkPoints(t, "temp", raw(t, s, homeA, "temp", at(-day), at(day)), []history.Point{temp1, temp2})
	checkPoints(t, "door", raw(t, s, homeA, "door", at(-day), at(day)), []history.Point{door1, door2})
	checkPoints(t, "mode", raw(t, s, homeA, "mode", at(-day), at(day)), []history.Point{mode})
	checkPoints(t, "unknown entity", raw(t, s, homeA, "nothing", at(-day), at(day)), nil)
}

func testRawMicrosecondRoundTrip(t testing.TB, s history.Store) {
	// Points a microsecond apart, with every microsecond digit in use,
	// around a second boundary and far from t0.
	times := []time.Time{
		at(time.Second - time.Microsecond),
		at(time.Second),
		at(time.Second + time.Microsecond),
		at(123456789 * time.Microsecond),
		time.Date(2026, 6, 30, 23, 59, 59, 999999000, time.UTC),
		time.Date(2027, 1, 1, 0, 0, 0, 1000, time.UTC),
	}
	var want []history.Point
	var msgs []history.Message
	for i, tm := range times {
		p := num("clock", tm, float64(i))
		want = append(want, p)
		msgs = append(msgs, msg(uint64(i+1), p))
	}
	mustWrite(t, s, batch(homeA, "states", msgs...), history.WriteResult{Points: len(times)})
	got := raw(t, s, homeA, "clock", times[4], times[5].Add(time.Microsecond))
	checkPoints(t, "clock", got, []history.Point{want[4], want[0], want[1], want[2], want[3], want[5]})
	// A time given in another zone is the same instant.
	paris := time.FixedZone("CET", 3600)
	got = raw(t, s, homeA, "clock", times[1].In(paris), times[2].In(paris))
	checkPoints(t, "one microsecond wide range", got, []history.Point{want[1]})
}

func testRawRangeBounds(t testing.TB, s history.Store) {
	var points []history.Point
	for i := range 5 {
		points = append(points, num("power", at(time.Duration(i)*time.Minute), float64(100+i)))
	}
	mustWrite(t, s, batch(homeA, "telemetry", msg(7, points...)), history.WriteResult{Points: 5})
	cases := []struct {
		name     string
		from, to time.Time
		want     []history.Point
	}{
		{"from inclusive, to exclusive", at(time.Minute), at(3 * time.Minute), points[1:3]},
		{"from a microsecond after a point", at(time.Minute + time.Microsecond), at(3*time.Minute + time.Microsecond), points[2:4]},
		{"everything", at(-time.Hour), at(time.Hour), points},
		{"before everything", at(-time.Hour), at(0), nil},
		{"after everything", at(4*time.Minute + time.Microsecond), at(time.Hour), nil},
		{"empty range on a point", at(2 * time.Minute), at(2 * time.Minute), nil},
	}
	for _, c := range cases {
		checkPoints(t, c.name, raw(t, s, homeA, "power", c.from, c.to), c.want)
	}
}

func testRawPaging(t testing.TB, s history.Store) {
	// 25 points in range, written shuffled over three batches, plus one
	// before and one after the range.
	var inRange []history.Point
	for i := range 25 {
		inRange = append(inRange, num("meter", at(time.Duration(i)*time.Minute+time.Duration(i)*time.Microsecond), float64(i)))
	}
	order := []int{24, 3, 17, 0, 9, 12, 5, 21, 1, 14, 8, 19, 2, 23, 6, 11, 16, 4, 20, 7, 13, 22, 10, 18, 15}
	var msgs []history.Message
	for i, j := range order {
		msgs = append(msgs, msg(uint64(i+1), inRange[j]))
	}
	msgs = append(msgs,
		msg(26, num("meter", at(-time.Microsecond), -1)),
		msg(27, num("meter", at(time.Hour), 99)))
	mustWrite(t, s, batch(homeA, "telemetry", msgs[:10]...), history.WriteResult{Points: 10})
	mustWrite(t, s, batch(homeA, "telemetry", msgs[10:20]...), history.WriteResult{Points: 10})
	mustWrite(t, s, batch(homeA, "telemetry", msgs[20:]...), history.WriteResult{Points: 7})

	for _, c := range []struct {
		limit int
		pages []int // rows per page
	}{
		{10, []int{10, 10, 5}},
		{5, []int{5, 5, 5, 5, 5}},
		{25, []int{25}},
		{24, []int{24, 1}},
		{1, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
	} {
		var got []history.Point
		var after time.Time
		for i, n := range c.pages {
			page, err := s.History(t.Context(), history.HistoryQuery{
				Home: homeA, Entity: "meter", From: at(0), To: at(time.Hour),
				Resolution: history.Raw, After: after, Limit: c.limit,
			})
			if err != nil {
				t.Fatalf("limit %d page %d: %v", c.limit, i, err)
			}
			wantMore := i < len(c.pages)-1
			if len(page.Points) != n || page.More != wantMore {
				t.Fatalf("limit %d page %d: %d points, More %v; want %d, More %v", c.limit, i, len(page.Points), page.More, n, wantMore)
			}
			got = append(got, page.Points...)
			after = page.Points[len(page.Points)-1].Time
		}
		checkPoints(t, "pages of "+strconv.Itoa(c.limit), got, inRange)
	}
}

func testHomesAndEntitiesIsolated(t testing.TB, s history.Store) {
	// The same entity, stream and sequence in two homes, at the same
	// time: two messages, two points, two sets of statistics.
	a := num("temp", at(time.Minute), 20)
	b := num("temp", at(time.Minute), 30)
	other := num("temp-2", at(time.Minute), 40)
	mustWrite(t, s, batch(homeA, "states", msg(1, a, other)), history.WriteResult{Points: 2})
	mustWrite(t, s, batch(homeB, "states", msg(1, b)), history.WriteResult{Points: 1})

	checkPoints(t, "home a", raw(t, s, homeA, "temp", at(0), at(time.Hour)), []history.Point{a})
	checkPoints(t, "home b", raw(t, s, homeB, "temp", at(0), at(time.Hour)), []history.Point{b})
	checkPoints(t, "other entity", raw(t, s, homeA, "temp-2", at(0), at(time.Hour)), []history.Point{other})
	checkPoints(t, "unknown home", raw(t, s, "home-c", "temp", at(0), at(time.Hour)), nil)
	checkStats(t, "home a hourly", stats(t, s, homeA, "temp", history.Hourly, at(0), at(time.Hour)),
		[]history.Stat{numStat("temp", at(0), 1, 20, 20, 20, 20, at(time.Minute))})
	checkStats(t, "home b 5m", stats(t, s, homeB, "temp", history.FiveMinutes, at(0), at(time.Hour)),
		[]history.Stat{numStat("temp", at(0), 1, 30, 30, 30, 30, at(time.Minute))})
}

// testLargeBatch writes one batch of history.MaxLimit points, more than a
// single SQL statement may take as parameters, and reads them back as one
// full page.
func testLargeBatch(t testing.TB, s history.Store) {
	const n = history.MaxLimit
	var msgs []history.Message
	for i := 0; i < n; i += 10 {
		m := history.Message{Seq: uint64(i/10 + 1)}
		for j := i; j < i+10; j++ {
			m.Points = append(m.Points, num("meter", at(time.Duration(j)*time.Second), float64(j)))
		}
		if i%100 == 0 {
			m.Events = []history.Event{{ID: "01EV" + strconv.Itoa(100000+i), Time: at(time.Duration(i) * time.Second), Kind: "tick"}}
		}
		msgs = append(msgs, m)
	}
	mustWrite(t, s, batch(homeA, "telemetry", msgs...), history.WriteResult{Points: n, Events: n / 100})
	mustWrite(t, s, batch(homeA, "telemetry", msgs...), history.WriteResult{Duplicates: n / 10})

	got := raw(t, s, homeA, "meter", at(0), at(3*time.Hour))
	if len(got) != n {
		t.Fatalf("%d points read back, want %d", len(got), n)
	}
	for i, p := range got {
		if !p.Time.Equal(at(time.Duration(i)*time.Second)) || p.Value != float64(i) {
			t.Fatalf("point %d = %v at %s, want %d at %s", i, p.Value, fmtTime(p.Time), i, fmtTime(at(time.Duration(i)*time.Second)))
		}
	}
	if evs := events(t, s, history.EventQuery{Home: homeA, From: at(0), To: at(3 * time.Hour)}); len(evs) != n/100 {
		t.Errorf("%d events read back, want %d", len(evs), n/100)
	}
	// Point i is at t0 + i s with value i: bucket b of length l seconds
	// holds points b·l through min((b+1)·l, n) − 1.
	bucketStats := func(l int) []history.Stat {
		var out []history.Stat
		for lo := 0; lo < n; lo += l {
			hi := min(lo+l, n) - 1
			count := hi - lo + 1
			out = append(out, numStat("meter", at(time.Duration(lo)*time.Second), int64(count),
				float64((lo+hi)*count/2), float64(lo), float64(hi), float64(hi), at(time.Duration(hi)*time.Second)))
		}
		return out
	}
	checkStats(t, "5m", stats(t, s, homeA, "meter", history.FiveMinutes, at(0), at(3*time.Hour)), bucketStats(300))
	checkStats(t, "1h", stats(t, s, homeA, "meter", history.Hourly, at(0), at(3*time.Hour)), bucketStats(3600))
}
