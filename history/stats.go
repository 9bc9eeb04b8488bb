package history

import (
	"math"
	"slices"
	"time"
)

// Stat is the statistics of one entity over one bucket of a tier. Stores
// merge partial Stats into stored ones with Merge, so a bucket is correct
// however its points were split into batches.
type Stat struct {
	Entity string
	Start  time.Time // the bucket's start, aligned to its length in UTC
	// Count is the number of state changes (raw points) in the bucket.
	Count int64
	// Numeric points: NumCount of them, their Sum, Min and Max, and the
	// one with the latest time (Last at LastTime).
	NumCount      int64
	Sum, Min, Max float64
	Last          float64
	LastTime      time.Time
	// OnMicros is the time, in microseconds, the entity spent in an active
	// binary state ("on", "open", …) within the bucket, counted once the
	// following state is known.
	OnMicros int64
}

// Mean is the average of the bucket's numeric points; NaN without any.
func (s Stat) Mean() float64 {
	if s.NumCount == 0 {
		return math.NaN()
	}
	return s.Sum / float64(s.NumCount)
}

// Merge adds the partial statistics p of the same entity and bucket to s.
func (s *Stat) Merge(p Stat) {
	s.Count += p.Count
	s.OnMicros += p.OnMicros
	if p.NumCount == 0 {
		return
	}
	if s.NumCount == 0 {
		s.Min, s.Max = p.Min, p.Max
	} else {
		s.Min, s.Max = min(s.Min, p.Min), max(s.Max, p.Max)
	}
	s.NumCount += p.NumCount
	s.Sum += p.Sum
	if !p.LastTime.Before(s.LastTime) {
		s.Last, s.LastTime = p.Last, p.LastTime
	}
}

// Truncate returns t rounded down to its bucket of r, in UTC.
func Truncate(t time.Time, r Resolution) time.Time {
	return t.UTC().Truncate(r.Bucket())
}

// Summarize returns the partial statistics of points for every tier,
// without the on-time, which needs each point's neighbours (OnTime). The
// result is sorted by tier, entity and bucket.
func Summarize(points []Point) map[Resolution][]Stat {
	out := make(map[Resolution][]Stat, len(StatTiers))
	for _, r := range StatTiers {
		type key struct {
			entity string
			start  int64
		}
		idx := map[key]int{}
		var stats []Stat
		for _, p := range points {
			start := Truncate(p.Time, r)
			k := key{p.Entity, start.UnixMicro()}
			i, ok := idx[k]
			if !ok {
				i = len(stats)
				idx[k] = i
				stats = append(stats, Stat{Entity: p.Entity, Start: start})
			}
			part := Stat{Count: 1}
			if p.Numeric {
				part.NumCount, part.Sum, part.Min, part.Max = 1, p.Value, p.Value, p.Value
				part.Last, part.LastTime = p.Value, p.Time
			}
			stats[i].Merge(part)
		}
		slices.SortFunc(stats, compareStats)
		out[r] = stats
	}
	return out
}

func compareStats(a, b Stat) int {
	if a.Entity != b.Entity {
		if a.Entity < b.Entity {
			return -1
		}
		return 1
	}
	return a.Start.Compare(b.Start)
}

// Binary reports whether state is a binary state and whether it is the
// active one. Time spent active is what the statistics count as on-time:
// a light on, a door open, a lock unlocked, motion detected.
func Binary(state string) (active, ok bool) {
	switch state {
	case "on", "open", "true", "detected", "unlocked", "home":
		return true, true
	case "off", "closed", "false", "clear", "locked", "not_home":
		return false, true
	}
	return false, false
}

// OnTime returns the on-time changes for every tier caused by storing
// point x of a binary entity between its stored neighbours prev and next
// (either may be nil). Before x, the interval [prev, next) was credited
// with prev's state, and an interval without a following point was not
// credited at all; afterwards [prev, x) carries prev's state and [x, next)
// x's. The changes can be negative when x arrives out of order.
func OnTime(prev *Point, x Point, next *Point) map[Resolution][]Stat {
	on := func(p *Point) int64 {
		if p == nil {
			return 0
		}
		if a, _ := Binary(p.State); a {
			return 1
		}
		return 0
	}
	out := map[Resolution][]Stat{}
	for _, r := range StatTiers {
		var deltas []Stat
		if prev != nil && next == nil && on(prev) != 0 {
			deltas = credit(deltas, x.Entity, prev.Time, x.Time, r, 1)
		}
		if next != nil {
			if d := on(&x) - on(prev); d != 0 {
				deltas = credit(deltas, x.Entity, x.Time, next.Time, r, d)
			}
		}
		if len(deltas) > 0 {
			out[r] = deltas
		}
	}
	return out
}

// credit spreads sign × the duration [from, to) over the buckets of r.
func credit(out []Stat, entity string, from, to time.Time, r Resolution, sign int64) []Stat {
	from, to = from.Truncate(time.Microsecond), to.Truncate(time.Microsecond)
	for start := Truncate(from, r); start.Before(to); start = start.Add(r.Bucket()) {
		lo, hi := max(from.UnixMicro(), start.UnixMicro()), min(to.UnixMicro(), start.Add(r.Bucket()).UnixMicro())
		if hi > lo {
			out = append(out, Stat{Entity: entity, Start: start, OnMicros: sign * (hi - lo)})
		}
	}
	return out
}
