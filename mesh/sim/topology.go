package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Topology kinds, as the --topology flag names them.
const (
	TopologyLine   = "line"
	TopologyGrid   = "grid"
	TopologyRandom = "random"
	TopologyHouse  = "house"
)

// Topology is a mesh's true layout: where the nodes are, which pairs of
// them can hear each other and how well, and which nodes are hubs. It is
// the ground truth the simulator measures the routing against.
type Topology struct {
	Kind  string
	Nodes []Point
	Links []Link
	Hubs  []int
	// Radius is the radio range in metres that gave a random geometric
	// topology its degree; zero for the other kinds.
	Radius float64

	adj [][]Port
}

// Point is a node's position: metres on its floor, and the floor.
type Point struct {
	X, Y  float64
	Floor int
}

// Link is a bidirectional radio link between nodes A and B with a fixed
// one-way latency and an independent per-packet loss probability.
type Link struct {
	A, B    int
	Latency time.Duration
	Loss    float64
	// Walls is how many walls or floors the link crosses (house only).
	Walls int
}

// Port is one end of a link as seen from a node: the neighbour and the
// link's index in Topology.Links. A node's ports are numbered from zero in
// the order Ports returns them.
type Port struct {
	Peer int
	Link int
}

// LinkParams are the per-link properties every generator applies.
type LinkParams struct {
	LatencyMin, LatencyMax time.Duration
	Loss                   float64
}

func (p LinkParams) latency(rng *rand.Rand) time.Duration {
	if p.LatencyMax <= p.LatencyMin {
		return p.LatencyMin
	}
	return p.LatencyMin + time.Duration(rng.Int64N(int64(p.LatencyMax-p.LatencyMin)+1))
}

// Ports returns node n's link ends, in a fixed order.
func (t *Topology) Ports(n int) []Port { return t.adj[n] }

// MeanDegree returns the mean number of links per node.
func (t *Topology) MeanDegree() float64 {
	if len(t.Nodes) == 0 {
		return 0
	}
	return 2 * float64(len(t.Links)) / float64(len(t.Nodes))
}

// index builds the adjacency lists from Links.
func (t *Topology) index() {
	t.adj = make([][]Port, len(t.Nodes))
	deg := make([]int, len(t.Nodes))
	for _, l := range t.Links {
		deg[l.A]++
		deg[l.B]++
	}
	for i := range t.adj {
		t.adj[i] = make([]Port, 0, deg[i])
	}
	for i, l := range t.Links {
		t.adj[l.A] = append(t.adj[l.A], Port{Peer: l.B, Link: i})
		t.adj[l.B] = append(t.adj[l.B], Port{Peer: l.A, Link: i})
	}
}

// Components labels every node with its connected component (numbered
// from zero) and returns the labels and the number of components.
func (t *Topology) Components() ([]int, int) {
	label := make([]int, len(t.Nodes))
	for i := range label {
		label[i] = -1
	}
	n := 0
	var stack []int
	for s := range t.Nodes {
		if label[s] >= 0 {
			continue
		}
		label[s] = n
		stack = append(stack[:0], s)
		for len(stack) > 0 {
			v := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, p := range t.adj[v] {
				if label[p.Peer] < 0 {
					label[p.Peer] = n
					stack = append(stack, p.Peer)
				}
			}
		}
		n++
	}
	return label, n
}

// Hops returns the hop count from the nearest of the sources to every
// node, or -1 for nodes no source reaches.
func (t *Topology) Hops(sources ...int) []int {
	dist := make([]int, len(t.Nodes))
	for i := range dist {
		dist[i] = -1
	}
	queue := make([]int, 0, len(t.Nodes))
	for _, s := range sources {
		if dist[s] < 0 {
			dist[s] = 0
			queue = append(queue, s)
		}
	}
	for i := 0; i < len(queue); i++ {
		v := queue[i]
		for _, p := range t.adj[v] {
			if dist[p.Peer] < 0 {
				dist[p.Peer] = dist[v] + 1
				queue = append(queue, p.Peer)
			}
		}
	}
	return dist
}

// pickHubs makes node 0 a hub and spreads the others out: each next hub is
// the node farthest in hops from the hubs chosen so far (ties to the lowest
// index), as an installer would place them.
func (t *Topology) pickHubs(n int) {
	t.Hubs = []int{0}
	for len(t.Hubs) < n && len(t.Hubs) < len(t.Nodes) {
		dist := t.Hops(t.Hubs...)
		best := -1
		for v, d := range dist {
			if slices.Contains(t.Hubs, v) {
				continue
			}
			if best < 0 || d > dist[best] {
				best = v
			}
		}
		t.Hubs = append(t.Hubs, best)
	}
}

// Line returns n nodes in a row, 10 m apart, each linked to the next.
func Line(n int, lp LinkParams, rng *rand.Rand) *Topology {
	t := &Topology{Kind: TopologyLine, Nodes: make([]Point, n)}
	for i := range t.Nodes {
		t.Nodes[i] = Point{X: 10 * float64(i)}
		if i > 0 {
			t.Links = append(t.Links, Link{A: i - 1, B: i, Latency: lp.latency(rng), Loss: lp.Loss})
		}
	}
	t.index()
	return t
}

// Grid returns n nodes on a square grid 10 m apart, filled row by row (the
// last row may be short), each linked to its four nearest neighbours.
func Grid(n int, lp LinkParams, rng *rand.Rand) *Topology {
	cols := int(math.Ceil(math.Sqrt(float64(n))))
	t := &Topology{Kind: TopologyGrid, Nodes: make([]Point, n)}
	for i := range t.Nodes {
		r, c := i/cols, i%cols
		t.Nodes[i] = Point{X: 10 * float64(c), Y: 10 * float64(r)}
		if c > 0 {
			t.Links = append(t.Links, Link{A: i - 1, B: i, Latency: lp.latency(rng), Loss: lp.Loss})
		}
		if r > 0 {
			t.Links = append(t.Links, Link{A: i - cols, B: i, Latency: lp.latency(rng), Loss: lp.Loss})
		}
	}
	t.index()
	return t
}

// randomDensity is the random geometric topology's node density: one node
// per 100 m², a mains-powered device every ten metres or so.
const randomDensity = 0.01

// Random returns a random geometric graph: n nodes placed uniformly in a
// square, linked when closer than a radius chosen so that the mean degree
// is degree. Near the degree of a home mesh (≈ 6) such a graph is rarely
// connected, so the nodes left outside the giant component are placed
// again, uniformly but for being within range of the giant component, the
// radius is chosen again for the degree, and so on until the graph is
// connected. The result has exactly n nodes, one component and the mean
// degree asked for, give or take the last round's stragglers.
func Random(n int, degree float64, lp LinkParams, rng *rand.Rand) (*Topology, error) {
	if n < 2 {
		return nil, fmt.Errorf("random topology: need at least 2 nodes, have %d", n)
	}
	if degree <= 0 || degree > float64(n-1) {
		return nil, fmt.Errorf("random topology: degree %g is not in (0, %d]", degree, n-1)
	}
	side := math.Sqrt(float64(n) / randomDensity)
	t := &Topology{Kind: TopologyRandom, Nodes: make([]Point, n)}
	for i := range t.Nodes {
		t.Nodes[i] = Point{X: rng.Float64() * side, Y: rng.Float64() * side}
	}
	for round := 0; ; round++ {
		if round < randomRounds {
			t.Radius = radiusForDegree(t.Nodes, side, degree)
		}
		cells := newCellIndex(t.Nodes, side, t.Radius)
		t.Links = cells.pairs(t.Nodes, t.Radius)
		t.index()
		label, count := t.Components()
		if count == 1 {
			break
		}
		giant := largestComponent(label)
		inGiant := make([]bool, n)
		for i, l := range label {
			inGiant[i] = l == giant
		}
		for v := range t.Nodes {
			if inGiant[v] {
				continue
			}
			// Rejection sampling: a fresh uniform position, kept once it
			// is in range of a node already in the giant component.
			for {
				p := Point{X: rng.Float64() * side, Y: rng.Float64() * side}
				if cells.near(t.Nodes, p, t.Radius, func(u int) bool { return inGiant[u] && u != v }) {
					cells.move(t.Nodes, v, p)
					inGiant[v] = true
					break
				}
			}
		}
	}
	for i := range t.Links {
		t.Links[i].Latency = lp.latency(rng)
		t.Links[i].Loss = lp.Loss
	}
	t.index()
	return t, nil
}

// randomRounds bounds the rounds in which Random chooses the radius again;
// after them it keeps the radius, and one more placement of the stragglers
// connects the graph.
const randomRounds = 30

// radiusForDegree returns the smallest radius at which the nodes have
// n·degree/2 pairs in range: the distance of that pair, border effects
// included.
func radiusForDegree(nodes []Point, side, degree float64) float64 {
	want := int(math.Round(float64(len(nodes)) * degree / 2))
	if want < 1 {
		want = 1
	}
	r := math.Sqrt(degree / (math.Pi * float64(len(nodes)) / (side * side)))
	for {
		r *= 2
		cells := newCellIndex(nodes, side, r)
		var dists []float64
		cells.each(nodes, r, func(a, b int, d float64) { dists = append(dists, d) })
		if len(dists) >= want || r > 2*side {
			slices.Sort(dists)
			if len(dists) < want {
				return dists[len(dists)-1]
			}
			return dists[want-1]
		}
	}
}

func largestComponent(label []int) int {
	size := map[int]int{}
	best := 0
	for _, l := range label {
		size[l]++
		if size[l] > size[best] || size[l] == size[best] && l < best {
			best = l
		}
	}
	return best
}

// cellIndex buckets points into square cells of the search radius, so that
// finding the pairs in range costs O(n·degree), not O(n²).
type cellIndex struct {
	cols  int
	size  float64
	cells [][]int
	of    []int
}

func newCellIndex(nodes []Point, side, r float64) *cellIndex {
	cols := max(1, min(int(side/r), 4096))
	c := &cellIndex{cols: cols, size: side / float64(cols), cells: make([][]int, cols*cols), of: make([]int, len(nodes))}
	for i, p := range nodes {
		k := c.cell(p)
		c.cells[k] = append(c.cells[k], i)
		c.of[i] = k
	}
	return c
}

func (c *cellIndex) coords(p Point) (int, int) {
	x := min(max(int(p.X/c.size), 0), c.cols-1)
	y := min(max(int(p.Y/c.size), 0), c.cols-1)
	return x, y
}

func (c *cellIndex) cell(p Point) int {
	x, y := c.coords(p)
	return y*c.cols + x
}

func (c *cellIndex) move(nodes []Point, v int, p Point) {
	old := c.cells[c.of[v]]
	i := slices.Index(old, v)
	c.cells[c.of[v]] = slices.Delete(old, i, i+1)
	nodes[v] = p
	k := c.cell(p)
	c.cells[k] = append(c.cells[k], v)
	c.of[v] = k
}

// each calls f for every pair a < b within r of each other.
func (c *cellIndex) each(nodes []Point, r float64, f func(a, b int, d float64)) {
	reach := int(math.Ceil(r / c.size))
	for a, p := range nodes {
		x, y := c.coords(p)
		for cy := max(0, y-reach); cy <= min(c.cols-1, y+reach); cy++ {
			for cx := max(0, x-reach); cx <= min(c.cols-1, x+reach); cx++ {
				for _, b := range c.cells[cy*c.cols+cx] {
					if b <= a {
						continue
					}
					if d := math.Hypot(p.X-nodes[b].X, p.Y-nodes[b].Y); d <= r {
						f(a, b, d)
					}
				}
			}
		}
	}
}

// pairs returns the links between nodes within r, sorted by (A, B).
func (c *cellIndex) pairs(nodes []Point, r float64) []Link {
	var links []Link
	c.each(nodes, r, func(a, b int, _ float64) { links = append(links, Link{A: a, B: b}) })
	slices.SortFunc(links, func(x, y Link) int {
		if x.A != y.A {
			return x.A - y.A
		}
		return x.B - y.B
	})
	return links
}

// near reports whether some node accepted by ok is within r of p.
func (c *cellIndex) near(nodes []Point, p Point, r float64, ok func(int) bool) bool {
	reach := int(math.Ceil(r / c.size))
	x, y := c.coords(p)
	for cy := max(0, y-reach); cy <= min(c.cols-1, y+reach); cy++ {
		for cx := max(0, x-reach); cx <= min(c.cols-1, x+reach); cx++ {
			for _, b := range c.cells[cy*c.cols+cx] {
				if ok(b) && math.Hypot(p.X-nodes[b].X, p.Y-nodes[b].Y) <= r {
					return true
				}
			}
		}
	}
	return false
}

// The house: floors of 4 × 3 rooms of 5 m × 5 m, about five devices a
// room. A wall costs as much signal as wallRange metres of open air and
// adds wallLoss to the link's loss; a stairwell in the corner room links
// each floor to the next.
const (
	houseRoomSize     = 5.0
	houseRoomsX       = 4
	houseRoomsY       = 3
	houseNodesPerRoom = 5
	houseRange        = 10.0
	houseWallRange    = 5.0
	houseWallLoss     = 0.02
	houseStairRange   = 6.0
)

// House returns n nodes on as many floors as it takes at about five
// devices a room. Nodes link when their distance plus the walls between
// them (each worth houseWallRange metres) is within radio range; stairwell
// nodes link to the stairwell of the floor above. Every stairwell holds at
// least two nodes, and nodes left outside the giant component are placed
// again until they join it.
func House(n int, lp LinkParams, rng *rand.Rand) (*Topology, error) {
	if n < 2 {
		return nil, fmt.Errorf("house topology: need at least 2 nodes, have %d", n)
	}
	perFloor := houseRoomsX * houseRoomsY * houseNodesPerRoom
	floors := (n + perFloor - 1) / perFloor
	t := &Topology{Kind: TopologyHouse, Nodes: make([]Point, n)}
	place := func(i, floor int, stair bool) {
		if stair {
			t.Nodes[i] = Point{X: rng.Float64() * houseRoomSize, Y: rng.Float64() * houseRoomSize, Floor: floor}
			return
		}
		t.Nodes[i] = Point{X: rng.Float64() * houseRoomSize * houseRoomsX, Y: rng.Float64() * houseRoomSize * houseRoomsY, Floor: floor}
	}
	floorOf := func(i int) int { return i * floors / n }
	for i := range t.Nodes {
		f := floorOf(i)
		// The first two nodes of each floor stand in its stairwell.
		place(i, f, i == 0 || floorOf(i-1) != f || i == 1 || floorOf(i-2) != f)
	}
	for range 100 {
		t.Links = houseLinks(t.Nodes)
		t.index()
		label, count := t.Components()
		if count == 1 {
			break
		}
		giant := largestComponent(label)
		for i := range t.Nodes {
			if label[i] != giant {
				place(i, t.Nodes[i].Floor, houseRoom(t.Nodes[i]) == 0)
			}
		}
	}
	if _, count := t.Components(); count != 1 {
		return nil, fmt.Errorf("house topology: %d nodes did not connect", n)
	}
	for i := range t.Links {
		t.Links[i].Latency = lp.latency(rng)
		t.Links[i].Loss = min(lp.Loss+houseWallLoss*float64(t.Links[i].Walls), 0.5)
	}
	t.index()
	return t, nil
}

// houseRoom returns the room number of p on its floor; room 0 is the
// stairwell.
func houseRoom(p Point) int {
	rx := min(int(p.X/houseRoomSize), houseRoomsX-1)
	ry := min(int(p.Y/houseRoomSize), houseRoomsY-1)
	return ry*houseRoomsX + rx
}

func houseLinks(nodes []Point) []Link {
	byFloor := map[int][]int{}
	for i, p := range nodes {
		byFloor[p.Floor] = append(byFloor[p.Floor], i)
	}
	var links []Link
	for a, p := range nodes {
		for _, b := range byFloor[p.Floor] {
			if b <= a {
				continue
			}
			q := nodes[b]
			walls := abs(houseRoom(p)%houseRoomsX-houseRoom(q)%houseRoomsX) + abs(houseRoom(p)/houseRoomsX-houseRoom(q)/houseRoomsX)
			if math.Hypot(p.X-q.X, p.Y-q.Y)+houseWallRange*float64(walls) <= houseRange {
				links = append(links, Link{A: a, B: b, Walls: walls})
			}
		}
		if houseRoom(p) != 0 {
			continue
		}
		for _, b := range byFloor[p.Floor+1] {
			q := nodes[b]
			if houseRoom(q) == 0 && math.Hypot(p.X-q.X, p.Y-q.Y) <= houseStairRange {
				links = append(links, Link{A: a, B: b, Walls: 1})
			}
		}
	}
	slices.SortFunc(links, func(x, y Link) int {
		if x.A != y.A {
			return x.A - y.A
		}
		return x.B - y.B
	})
	return links
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
