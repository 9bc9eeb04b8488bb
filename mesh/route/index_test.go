package route

import (
	"math/rand/v2"
	"testing"
)

// TestDestIndexMatchesMap adds and removes random ids, reusing freed slots
// as the router does, and checks every lookup against a Go map.
func TestDestIndexMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newDestIndex(rng.Uint64())
	var dests []dest
	var free []uint32
	want := map[NodeID]uint32{}
	randomID := func() NodeID {
		var id NodeID
		for i := range id {
			// Few distinct bytes: ids that share their first bytes, and
			// so collide often, are the hard case.
			id[i] = byte(rng.IntN(4))
		}
		return id
	}
	for step := range 20000 {
		id := randomID()
		if d, ok := want[id]; ok && rng.IntN(2) == 0 {
			x.remove(dests, id)
			delete(want, id)
			dests[d] = dest{}
			free = append(free, d)
		} else if !ok {
			var d uint32
			if n := len(free); n > 0 {
				d, free = free[n-1], free[:n-1]
				dests[d] = dest{id: id, live: true}
			} else {
				d = uint32(len(dests))
				dests = append(dests, dest{id: id, live: true})
			}
			x.put(dests, id, d)
			want[id] = d
		}
		if x.len() != len(want) {
			t.Fatalf("step %d: index holds %d ids, want %d", step, x.len(), len(want))
		}
		if step%500 == 0 {
			for id, d := range want {
				if got, ok := x.get(dests, id); !ok || got != d {
					t.Fatalf("step %d: get(%s) = %d, %v; want %d", step, id, got, ok, d)
				}
			}
			for range 50 {
				id := randomID()
				_, in := want[id]
				if _, ok := x.get(dests, id); ok != in {
					t.Fatalf("step %d: get(%s) found %v, want %v", step, id, ok, in)
				}
			}
		}
	}
	if 2*x.len() > len(x.table) {
		t.Errorf("%d ids in a table of %d: more than half full", x.len(), len(x.table))
	}
}
