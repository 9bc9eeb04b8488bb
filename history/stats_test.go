package history

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func TestSummarizeSplitsIntoBuckets(t *testing.T) {
	points := []Point{
		{Entity: "temp", Time: t0.Add(1 * time.Minute), Numeric: true, Value: 20},
		{Entity: "temp", Time: t0.Add(4 * time.Minute), Numeric: true, Value: 22},
		{Entity: "temp", Time: t0.Add(6 * time.Minute), Numeric: true, Value: 18},
		{Entity: "door", Time: t0.Add(2 * time.Minute), State: "on"},
	}
	got := Summarize(points)
	five := got[FiveMinutes]
	if len(five) != 3 {
		t.Fatalf("5m buckets = %+v, want door@0, temp@0, temp@5", five)
	}
	if five[0].Entity != "door" || five[0].Count != 1 || five[0].NumCount != 0 {
		t.Errorf("door bucket = %+v", five[0])
	}
	if s := five[1]; s.Count != 2 || s.Min != 20 || s.Max != 22 || s.Last != 22 || s.Mean() != 21 {
		t.Errorf("first temp bucket = %+v mean %v", s, s.Mean())
	}
	hour := got[Hourly]
	if len(hour) != 2 || hour[1].Count != 3 || hour[1].Min != 18 || hour[1].Last != 18 || hour[1].Sum != 60 {
		t.Errorf("hourly = %+v", hour)
	}
}

func TestMergeKeepsLatestLast(t *testing.T) {
	a := Stat{Count: 1, NumCount: 1, Sum: 5, Min: 5, Max: 5, Last: 5, LastTime: t0.Add(time.Minute)}
	b := Stat{Count: 1, NumCount: 1, Sum: 3, Min: 3, Max: 3, Last: 3, LastTime: t0}
	a.Merge(b)
	if a.Last != 5 || a.Min != 3 || a.Max != 5 || a.Count != 2 {
		t.Errorf("merged = %+v", a)
	}
	var empty Stat
	if !math.IsNaN(empty.Mean()) {
		t.Error("mean of no points is not NaN")
	}
	empty.Merge(b)
	if empty.Min != 3 || empty.Max != 3 {
		t.Errorf("merge into empty = %+v", empty)
	}
}

func sumOn(m map[Resolution][]Stat, r Resolution) (total int64) {
	for _, s := range m[r] {
		total += s.OnMicros
	}
	return total
}

func TestOnTimeInOrderAndOutOfOrder(t *testing.T) {
	on := Point{Entity: "l", Time: t0.Add(2 * time.Minute), State: "on"}
	off := Point{Entity: "l", Time: t0.Add(62 * time.Minute), State: "off"}
	// In order: off arrives after on; [on, off) is credited.
	got := OnTime(&on, off, nil)
	if sumOn(got, FiveMinutes) != int64(time.Hour/time.Microsecond) || sumOn(got, Hourly) != int64(time.Hour/time.Microsecond) {
		t.Fatalf("in-order credit = %+v", got)
	}
	if len(got[Hourly]) != 2 || got[Hourly][0].OnMicros != int64(58*time.Minute/time.Microsecond) {
		t.Errorf("hourly split = %+v", got[Hourly])
	}
	// Out of order: an "off" at +32m arrives between them; [32m, 62m) is
	// no longer on.
	mid := Point{Entity: "l", Time: t0.Add(32 * time.Minute), State: "off"}
	got = OnTime(&on, mid, &off)
	if sumOn(got, Hourly) != -int64(30*time.Minute/time.Microsecond) {
		t.Errorf("out-of-order credit = %+v", got)
	}
	// A first point before an existing one credits its own interval.
	got = OnTime(nil, on, &off)
	if sumOn(got, FiveMinutes) != int64(time.Hour/time.Microsecond) {
		t.Errorf("first-point credit = %+v", got)
	}
	// Nothing is known after the last point: nothing credited.
	if got := OnTime(nil, on, nil); len(got) != 0 {
		t.Errorf("lone point credit = %+v", got)
	}
}
