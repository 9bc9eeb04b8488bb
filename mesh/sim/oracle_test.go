package sim

import (
	"math/rand/v2"
	"testing"
)

// Dijkstra agrees with Bellman-Ford, the slow and obvious oracle, on
// random graphs with random costs and some links down.
func TestDijkstraMatchesBellmanFord(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 9))
		topo, err := Random(80, 4, testLinks, rng)
		if err != nil {
			t.Fatal(err)
		}
		costs := make([]int64, len(topo.Links))
		down := make([]bool, len(topo.Links))
		for i := range costs {
			costs[i] = 1 + rng.Int64N(1000)
			down[i] = rng.IntN(10) == 0
		}
		src := rng.IntN(len(topo.Nodes))
		got := topo.Dijkstra(src, func(l int) int64 { return costs[l] }, func(l int) bool { return !down[l] })
		want := make([]int64, len(topo.Nodes))
		for i := range want {
			want[i] = Unreachable
		}
		want[src] = 0
		for range topo.Nodes {
			for i, l := range topo.Links {
				if down[i] {
					continue
				}
				for _, e := range [2][2]int{{l.A, l.B}, {l.B, l.A}} {
					if want[e[0]] != Unreachable && want[e[0]]+costs[i] < want[e[1]] {
						want[e[1]] = want[e[0]] + costs[i]
					}
				}
			}
		}
		for v := range want {
			if got[v] != want[v] {
				t.Fatalf("seed %d: distance %d→%d is %d, want %d", seed, src, v, got[v], want[v])
			}
		}
	}
}

func TestDijkstraOnALine(t *testing.T) {
	topo := Line(5, testLinks, rand.New(rand.NewPCG(1, 1)))
	dist := topo.Dijkstra(0, func(int) int64 { return 3 }, func(l int) bool { return l != 3 })
	want := []int64{0, 3, 6, 9, Unreachable}
	for v := range want {
		if dist[v] != want[v] {
			t.Fatalf("distances %v, want %v", dist, want)
		}
	}
}
