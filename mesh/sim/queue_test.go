package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestEventQueueOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var q eventQueue
	var want []event
	for i := range 1000 {
		e := event{at: rng.Int64N(50), arg: uint32(i)}
		q.push(e)
		e.seq = q.seq
		want = append(want, e)
	}
	slices.SortStableFunc(want, func(a, b event) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
	for i := range want {
		if got := q.pop(); got != want[i] {
			t.Fatalf("pop %d: %+v, want %+v", i, got, want[i])
		}
	}
}

func TestTimerHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	const n = 200
	h := newTimerHeap(n)
	want := map[int32]int64{}
	for range 5000 {
		node := int32(rng.IntN(n))
		if rng.IntN(4) == 0 {
			h.remove(node)
			delete(want, node)
			continue
		}
		at := rng.Int64N(1000)
		h.set(node, at)
		want[node] = at
	}
	last := int64(-1)
	for len(want) > 0 {
		node, at, ok := h.next()
		if !ok || want[node] != at || at < last {
			t.Fatalf("next: node %d at %d (ok %v), want %d, after %d", node, at, ok, want[node], last)
		}
		last = at
		h.remove(node)
		delete(want, node)
	}
	if _, _, ok := h.next(); ok {
		t.Fatal("not empty")
	}
}
