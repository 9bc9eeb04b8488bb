package sim

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var testLinks = LinkParams{LatencyMin: 10 * time.Millisecond, LatencyMax: 20 * time.Millisecond, Loss: 0.01}

func connectedOnce(t *testing.T, topo *Topology) {
	t.Helper()
	if _, n := topo.Components(); n != 1 {
		t.Fatalf("%s topology of %d nodes has %d components", topo.Kind, len(topo.Nodes), n)
	}
}

func checkLinks(t *testing.T, topo *Topology) {
	t.Helper()
	seen := map[[2]int]bool{}
	for _, l := range topo.Links {
		if l.A == l.B || l.A < 0 || l.B >= len(topo.Nodes) {
			t.Fatalf("bad link %+v", l)
		}
		key := [2]int{min(l.A, l.B), max(l.A, l.B)}
		if seen[key] {
			t.Fatalf("link %v twice", key)
		}
		seen[key] = true
		if l.Latency < testLinks.LatencyMin || l.Latency > testLinks.LatencyMax {
			t.Fatalf("link %v latency %v outside %v-%v", key, l.Latency, testLinks.LatencyMin, testLinks.LatencyMax)
		}
		if l.Loss < testLinks.Loss || l.Loss >= 1 {
			t.Fatalf("link %v loss %g", key, l.Loss)
		}
	}
	ports := 0
	for n := range topo.Nodes {
		for _, p := range topo.Ports(n) {
			l := topo.Links[p.Link]
			if !(l.A == n && l.B == p.Peer || l.B == n && l.A == p.Peer) {
				t.Fatalf("node %d port %+v does not match link %+v", n, p, l)
			}
			ports++
		}
	}
	if ports != 2*len(topo.Links) {
		t.Fatalf("%d ports for %d links", ports, len(topo.Links))
	}
}

func TestLineAndGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	line := Line(10, testLinks, rng)
	checkLinks(t, line)
	connectedOnce(t, line)
	if len(line.Links) != 9 {
		t.Fatalf("line of 10: %d links", len(line.Links))
	}
	if hops := line.Hops(0); hops[9] != 9 {
		t.Fatalf("line: node 9 is %d hops from node 0", hops[9])
	}
	for _, n := range []int{1, 2, 9, 10, 30, 50} {
		grid := Grid(n, testLinks, rng)
		checkLinks(t, grid)
		connectedOnce(t, grid)
		for v := range grid.Nodes {
			if d := len(grid.Ports(v)); d < min(1, n-1) || d > 4 {
				t.Fatalf("grid of %d: node %d has degree %d", n, v, d)
			}
		}
	}
	// A full 5×5 grid has 2·5·4 links.
	if g := Grid(25, testLinks, rng); len(g.Links) != 40 {
		t.Fatalf("5×5 grid: %d links", len(g.Links))
	}
}

func TestRandomDegreeAndConnectivity(t *testing.T) {
	for _, tc := range []struct {
		nodes  int
		degree float64
	}{{30, 4}, {50, 6}, {500, 6}, {2000, 6}, {1000, 10}} {
		for seed := range uint64(3) {
			topo, err := Random(tc.nodes, tc.degree, testLinks, rand.New(rand.NewPCG(seed, 1)))
			if err != nil {
				t.Fatal(err)
			}
			checkLinks(t, topo)
			connectedOnce(t, topo)
			if len(topo.Nodes) != tc.nodes {
				t.Fatalf("%d nodes, want %d", len(topo.Nodes), tc.nodes)
			}
			// The radius gives the degree before the stragglers are
			// placed again, which adds a few links.
			if d := topo.MeanDegree(); math.Abs(d-tc.degree) > 0.1*tc.degree {
				t.Errorf("%d nodes seed %d: mean degree %.2f, want ≈ %g", tc.nodes, seed, d, tc.degree)
			}
			for _, l := range topo.Links {
				a, b := topo.Nodes[l.A], topo.Nodes[l.B]
				if math.Hypot(a.X-b.X, a.Y-b.Y) > topo.Radius+1e-9 {
					t.Fatalf("link %d-%d longer than the radius", l.A, l.B)
				}
			}
		}
	}
	if _, err := Random(10, 0, testLinks, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Fatal("degree 0 accepted")
	}
}

func TestRandomIsDeterministic(t *testing.T) {
	a, _ := Random(300, 6, testLinks, rand.New(rand.NewPCG(7, 1)))
	b, _ := Random(300, 6, testLinks, rand.New(rand.NewPCG(7, 1)))
	if len(a.Links) != len(b.Links) {
		t.Fatalf("%d links, then %d", len(a.Links), len(b.Links))
	}
	for i := range a.Links {
		if a.Links[i] != b.Links[i] {
			t.Fatalf("link %d: %+v, then %+v", i, a.Links[i], b.Links[i])
		}
	}
}

func TestHouse(t *testing.T) {
	for _, n := range []int{2, 12, 60, 61, 200, 1000} {
		topo, err := House(n, testLinks, rand.New(rand.NewPCG(uint64(n), 1)))
		if err != nil {
			t.Fatal(err)
		}
		checkLinks(t, topo)
		connectedOnce(t, topo)
		floors := map[int]bool{}
		for _, p := range topo.Nodes {
			floors[p.Floor] = true
		}
		if want := (n + 59) / 60; len(floors) != want {
			t.Fatalf("%d nodes on %d floors, want %d", n, len(floors), want)
		}
		for _, l := range topo.Links {
			a, b := topo.Nodes[l.A], topo.Nodes[l.B]
			if a.Floor != b.Floor && (abs(a.Floor-b.Floor) != 1 || houseRoom(a) != 0 || houseRoom(b) != 0) {
				t.Fatalf("link %d-%d joins floors %d and %d outside the stairwell", l.A, l.B, a.Floor, b.Floor)
			}
			if want := min(testLinks.Loss+houseWallLoss*float64(l.Walls), 0.5); l.Loss != want {
				t.Fatalf("link through %d walls has loss %g, want %g", l.Walls, l.Loss, want)
			}
		}
	}
}

func TestHubsSpreadOut(t *testing.T) {
	topo := Line(11, testLinks, rand.New(rand.NewPCG(1, 1)))
	topo.pickHubs(3)
	if topo.Hubs[0] != 0 || topo.Hubs[1] != 10 || topo.Hubs[2] != 5 {
		t.Fatalf("hubs on a line of 11: %v, want [0 10 5]", topo.Hubs)
	}
}
