package route

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// testNet wires Routers over virtual links driven by a small event loop:
// deterministic for a seed, in virtual time, with per-link latency and
// loss. It stands in for the host: it turns Sends into deliveries, calls
// Tick at each router's Deadline and forwards data packets hop by hop.
type testNet struct {
	t        testing.TB
	seed     uint64
	now      time.Time
	rng      *rand.Rand
	nodes    []*testNode
	xs       []float64 // x coordinates of a random geometric mesh
	edges    map[[2]int]*testEdge
	edgeList []*testEdge
	byLink   map[LinkID]*testEdge
	events   eventQueue
	seq      uint64
	links    LinkID

	latMin, latMax time.Duration
	loss           float64
	// configure adjusts every node's Config before New.
	configure func(i int, cfg *Config)
	// check runs after every event, for invariants such as loop freedom.
	check func()
	// tap sees every control packet sent, and whether the link lost it.
	tap func(from, to int, packet []byte, lost bool)

	// Data traffic outcomes.
	sent, delivered, expired, noRoute, lost int
	sameTime                                int
	checkedChanges                          uint64
}

type testNode struct {
	i         int
	id        NodeID
	leaf      bool
	r         *Router
	alive     bool
	tickAt    time.Time
	tickGen   uint64
	persisted uint16
}

type testEdge struct {
	a, b   int
	la, lb LinkID
	up     bool    // the host sees the link up (LinkUp was called)
	cut    bool    // packets vanish silently
	loss   float64 // overrides the net's loss when >= 0
}

type eventKind uint8

const (
	evDeliver eventKind = iota
	evTick
	evData
)

type event struct {
	at     time.Time
	ns     int64 // at, for fast ordering
	seq    uint64
	kind   eventKind
	node   int
	link   LinkID
	gen    uint64
	packet []byte
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].ns != q[j].ns {
		return q[i].ns < q[j].ns
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestNet(t testing.TB, seed uint64) *testNet {
	return &testNet{
		t:      t,
		seed:   seed,
		now:    epoch,
		rng:    rand.New(rand.NewPCG(seed, 0x5eed)),
		edges:  map[[2]int]*testEdge{},
		byLink: map[LinkID]*testEdge{},
		latMin: 10 * time.Millisecond,
		latMax: 20 * time.Millisecond,
	}
}

func (n *testNet) newRouter(node *testNode, seqno uint16) {
	cfg := Config{ID: node.id, Seqno: seqno, Leaf: node.leaf, Seed: n.seed}
	if n.configure != nil {
		n.configure(node.i, &cfg)
	}
	r, err := New(cfg, n.now)
	if err != nil {
		n.t.Fatal(err)
	}
	node.r = r
	node.alive = true
	node.tickGen++
	node.tickAt = time.Time{}
	n.reschedule(node)
}

// addNodes adds count routers (or leaves) and returns the first's index.
func (n *testNet) addNodes(count int, leaf bool) int {
	first := len(n.nodes)
	for range count {
		node := &testNode{i: len(n.nodes), id: testID(len(n.nodes)), leaf: leaf}
		n.nodes = append(n.nodes, node)
		n.newRouter(node, 0)
	}
	return first
}

func edgeKey(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// connect brings a link between a and b up on both sides, as the host does
// after a handshake.
func (n *testNet) connect(a, b int) *testEdge {
	e := n.edges[edgeKey(a, b)]
	if e == nil {
		e = &testEdge{a: a, b: b, loss: -1}
		n.edges[edgeKey(a, b)] = e
		n.edgeList = append(n.edgeList, e)
	}
	if e.up {
		return e
	}
	e.up, e.cut = true, false
	delete(n.byLink, e.la)
	delete(n.byLink, e.lb)
	n.links++
	e.la = n.links
	n.links++
	e.lb = n.links
	n.byLink[e.la], n.byLink[e.lb] = e, e
	if n.nodes[a].alive && n.nodes[b].alive {
		n.linkUp(a, e.la, b)
		n.linkUp(b, e.lb, a)
	}
	return e
}

func (n *testNet) linkUp(i int, l LinkID, peer int) {
	node := n.nodes[i]
	n.send(i, node.r.LinkUp(n.now, l, n.nodes[peer].id, n.nodes[peer].leaf))
	n.reschedule(node)
}

// disconnect takes a link down on both sides, as a transport error does.
func (n *testNet) disconnect(a, b int) {
	e := n.edges[edgeKey(a, b)]
	if e == nil || !e.up {
		return
	}
	e.up = false
	for _, end := range []struct {
		i int
		l LinkID
	}{{e.a, e.la}, {e.b, e.lb}} {
		if node := n.nodes[end.i]; node.alive {
			n.send(end.i, node.r.LinkDown(n.now, end.l))
			n.reschedule(node)
		}
	}
}

// kill stops a node without telling anyone: its neighbours notice from
// the missing Hellos.
func (n *testNet) kill(i int) {
	node := n.nodes[i]
	node.persisted = node.r.Seqno()
	node.alive = false
	node.tickGen++
}

// restart starts a killed node again, with its persisted seqno or without,
// and re-establishes its links (new sessions: LinkDown then LinkUp on the
// neighbours' side).
func (n *testNet) restart(i int, persisted bool) {
	node := n.nodes[i]
	if node.alive {
		n.kill(i)
	}
	var seqno uint16
	if persisted {
		seqno = node.persisted
	}
	n.newRouter(node, seqno)
	for _, e := range n.sortedEdges() {
		if !e.up || (e.a != i && e.b != i) {
			continue
		}
		other := e.a + e.b - i
		e.up = false
		if n.nodes[other].alive {
			l := e.la
			if other == e.b {
				l = e.lb
			}
			n.send(other, n.nodes[other].r.LinkDown(n.now, l))
		}
		n.connect(e.a, e.b)
	}
}

// sortedEdges returns the edges in the order they were first connected.
func (n *testNet) sortedEdges() []*testEdge { return n.edgeList }

func (n *testNet) push(e *event) {
	n.seq++
	e.seq = n.seq
	e.ns = e.at.UnixNano()
	heap.Push(&n.events, e)
}

func (n *testNet) reschedule(node *testNode) {
	if !node.alive {
		return
	}
	at := node.r.Deadline()
	if at.Before(n.now) {
		at = n.now
	}
	// An earlier tick already scheduled stays: ticking early is harmless,
	// and it reschedules.
	if !node.tickAt.IsZero() && !at.Before(node.tickAt) {
		return
	}
	node.tickGen++
	node.tickAt = at
	n.push(&event{at: at, kind: evTick, node: node.i, gen: node.tickGen})
}

// peerOf returns the far end of link l (as seen from node i).
func (n *testNet) peerOf(i int, l LinkID) (int, LinkID, *testEdge) {
	e := n.byLink[l]
	switch {
	case e == nil:
		return -1, 0, nil
	case e.la == l:
		return e.b, e.lb, e
	case e.lb == l:
		return e.a, e.la, e
	}
	return -1, 0, nil
}

func (n *testNet) transit(e *testEdge) (time.Duration, bool) {
	loss := n.loss
	if e.loss >= 0 {
		loss = e.loss
	}
	if e.cut || !e.up || (loss > 0 && n.rng.Float64() < loss) {
		return 0, false
	}
	return n.latMin + time.Duration(n.rng.Int64N(int64(n.latMax-n.latMin)+1)), true
}

func (n *testNet) send(from int, sends []Send) {
	for _, s := range sends {
		peer, l, e := n.peerOf(from, s.Link)
		if e == nil {
			n.t.Fatalf("node %d sent on unknown link %d", from, s.Link)
		}
		lat, ok := n.transit(e)
		if n.tap != nil {
			n.tap(from, peer, s.Packet, !ok)
		}
		if ok {
			n.push(&event{at: n.now.Add(lat), kind: evDeliver, node: peer, link: l, packet: s.Packet})
		}
	}
}

// step processes the next event; it returns false when there is none
// before until.
func (n *testNet) step(until time.Time) bool {
	if len(n.events) == 0 || n.events[0].at.After(until) {
		return false
	}
	ev := heap.Pop(&n.events).(*event)
	if ev.at.Equal(n.now) {
		n.sameTime++
		if n.sameTime > 100000 {
			n.t.Fatalf("no progress at %v", n.now.Sub(epoch))
		}
	} else {
		n.sameTime = 0
	}
	n.now = ev.at
	node := n.nodes[ev.node]
	switch ev.kind {
	case evTick:
		if !node.alive || ev.gen != node.tickGen {
			return true
		}
		node.tickAt = time.Time{}
		n.send(node.i, node.r.Tick(n.now))
	case evDeliver:
		if !node.alive {
			return true
		}
		if _, _, e := n.peerOf(node.i, ev.link); e == nil || !e.up {
			return true
		}
		sends, err := node.r.Receive(n.now, ev.link, ev.packet)
		if err != nil {
			n.t.Errorf("node %d: %v", node.i, err)
		}
		n.send(node.i, sends)
	case evData:
		n.forward(node, ev.link, ev.packet)
	}
	n.reschedule(node)
	if n.check != nil {
		n.check()
	}
	return true
}

func (n *testNet) run(d time.Duration) {
	until := n.now.Add(d)
	for n.step(until) {
	}
	n.now = until
}

// runUntil runs until cond holds (checked every 10 ms of virtual time) and
// returns how long that took, or fails after limit.
func (n *testNet) runUntil(limit time.Duration, what string, cond func() bool) time.Duration {
	n.t.Helper()
	start := n.now
	for !cond() {
		if n.now.Sub(start) >= limit {
			n.t.Fatalf("%s: not reached after %v", what, limit)
		}
		n.run(10 * time.Millisecond)
	}
	return n.now.Sub(start)
}

// sendData originates a data packet from src to dst.
func (n *testNet) sendData(src, dst int) {
	n.sent++
	h := DataHeader{Src: n.nodes[src].id, Dst: n.nodes[dst].id, TTL: DefaultTTL, Flow: uint32(n.sent)}
	n.forward(n.nodes[src], 0, AppendData(nil, h, []byte("payload")))
}

func (n *testNet) forward(node *testNode, from LinkID, packet []byte) {
	if !node.alive {
		n.lost++
		return
	}
	dec, err := node.r.Forward(n.now, from, packet)
	if err != nil {
		n.t.Fatalf("node %d: forward: %v", node.i, err)
	}
	switch dec.Action {
	case ActionDeliver:
		n.delivered++
	case ActionForward:
		peer, l, e := n.peerOf(node.i, dec.Link)
		if lat, ok := n.transit(e); ok {
			n.push(&event{at: n.now.Add(lat), kind: evData, node: peer, link: l, packet: dec.Packet})
		} else {
			n.lost++
		}
	case ActionDrop:
		switch dec.Reason {
		case DropTTLExpired:
			n.expired++
		case DropNoRoute:
			n.noRoute++
		default:
			n.lost++
		}
	}
}

// components labels every alive node with its connected component over
// links that are up and not cut (the truth routing should find). A leaf
// joins its routers' component but never connects two of them: it does
// not relay.
func (n *testNet) components() []int {
	comp := make([]int, len(n.nodes))
	for i := range comp {
		comp[i] = -1
	}
	adj := n.adjacency()
	for i, node := range n.nodes {
		if comp[i] >= 0 || !node.alive || node.leaf {
			continue
		}
		comp[i] = i
		stack := []int{i}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, y := range adj[x] {
				if comp[y] < 0 {
					comp[y] = i
					if !n.nodes[y].leaf {
						stack = append(stack, y)
					}
				}
			}
		}
	}
	return comp
}

// adjacency lists the usable links between alive nodes (none between two
// leaves).
func (n *testNet) adjacency() [][]int {
	adj := make([][]int, len(n.nodes))
	for _, e := range n.sortedEdges() {
		if !e.up || e.cut || !n.nodes[e.a].alive || !n.nodes[e.b].alive {
			continue
		}
		if n.nodes[e.a].leaf && n.nodes[e.b].leaf {
			continue
		}
		adj[e.a] = append(adj[e.a], e.b)
		adj[e.b] = append(adj[e.b], e.a)
	}
	return adj
}

// walk follows next hops from src towards dst without time passing and
// returns the hop count, or an error for a loop or a dead end.
func (n *testNet) walk(src, dst int) (int, error) {
	cur := src
	for hops := 0; hops <= len(n.nodes); hops++ {
		if cur == dst {
			return hops, nil
		}
		l, ok := n.nodes[cur].r.NextHop(n.nodes[dst].id)
		if !ok {
			return hops, fmt.Errorf("no route at node %d", cur)
		}
		next, _, _ := n.peerOf(cur, l)
		if !n.nodes[next].alive {
			return hops, fmt.Errorf("next hop of node %d is dead node %d", cur, next)
		}
		cur = next
	}
	return 0, fmt.Errorf("loop from %d to %d", src, dst)
}

// fullyReachable reports whether every alive node reaches every other
// alive node of its component by following next hops.
func (n *testNet) fullyReachable() bool { return n.unreachablePairs(true) == 0 }

// unreachablePairs counts the (source, destination) pairs of alive nodes
// in one component whose next hops do not lead from one to the other; with
// stop, it stops at the first.
func (n *testNet) unreachablePairs(stop bool) int {
	comp := n.components()
	count := 0
	// reaches[x] for one destination: 0 unknown, 1 on the current walk,
	// 2 reaches it, 3 does not.
	reaches := make([]uint8, len(n.nodes))
	for dst, nd := range n.nodes {
		if !nd.alive {
			continue
		}
		clear(reaches)
		reaches[dst] = 2
		for src, ns := range n.nodes {
			if !ns.alive || comp[src] != comp[dst] {
				continue
			}
			var path []int
			cur := src
			for reaches[cur] == 0 {
				reaches[cur] = 1
				path = append(path, cur)
				next := -1
				if l, ok := n.nodes[cur].r.NextHop(nd.id); ok {
					next, _, _ = n.peerOf(cur, l)
				}
				if next < 0 || !n.nodes[next].alive {
					break
				}
				cur = next
			}
			verdict := reaches[cur]
			if verdict != 2 {
				verdict = 3
				if stop {
					return 1
				}
			}
			for _, p := range path {
				reaches[p] = verdict
				if verdict == 3 && comp[p] == comp[dst] {
					count++
				}
			}
		}
	}
	return count
}

// assertAcyclic fails if, for any destination, the next hops of the alive
// routers form a cycle. Next hops change only with a counted route change,
// so it checks only when the count moved.
func (n *testNet) assertAcyclic() {
	n.t.Helper()
	changes := n.sumCounters(func(c *Counters) uint64 { return c.RouteChanges })
	if changes == n.checkedChanges {
		return
	}
	n.checkedChanges = changes
	state := make([]uint8, len(n.nodes))
	for dst, nd := range n.nodes {
		if !nd.alive {
			continue
		}
		clear(state)
		for start := range n.nodes {
			var path []int
			cur := start
			for cur >= 0 && cur != dst && state[cur] == 0 && n.nodes[cur].alive {
				state[cur] = 1
				path = append(path, cur)
				next := -1
				if l, ok := n.nodes[cur].r.NextHop(nd.id); ok {
					next, _, _ = n.peerOf(cur, l)
				}
				cur = next
			}
			if cur >= 0 && state[cur] == 1 {
				n.t.Fatalf("at %v: routing loop towards node %d through %v", n.now.Sub(epoch), dst, path)
			}
			for _, p := range path {
				state[p] = 2
			}
		}
	}
}

// controlBytes sums the control bytes every node sent.
func (n *testNet) controlBytes() uint64 {
	var sum uint64
	for _, node := range n.nodes {
		if node.r != nil {
			sum += node.r.Counters().ControlBytes
		}
	}
	return sum
}

func (n *testNet) sumCounters(f func(c *Counters) uint64) uint64 {
	var sum uint64
	for _, node := range n.nodes {
		sum += f(&node.r.counters)
	}
	return sum
}

// Topologies.

func (n *testNet) line(count int) {
	first := n.addNodes(count, false)
	for i := first; i < first+count-1; i++ {
		n.connect(i, i+1)
	}
}

func (n *testNet) ring(count int) {
	n.line(count)
	n.connect(len(n.nodes)-count, len(n.nodes)-1)
}

func (n *testNet) grid(w, h int) {
	first := n.addNodes(w*h, false)
	for y := range h {
		for x := range w {
			i := first + y*w + x
			if x+1 < w {
				n.connect(i, i+1)
			}
			if y+1 < h {
				n.connect(i, i+w)
			}
		}
	}
}

// randomGeometric places count routers uniformly in a unit square and links
// every pair closer than the radius that gives the wanted mean degree.
func (n *testNet) randomGeometric(count int, degree float64) {
	first := n.addNodes(count, false)
	xs, ys := make([]float64, count), make([]float64, count)
	for i := range xs {
		xs[i], ys[i] = n.rng.Float64(), n.rng.Float64()
	}
	n.xs = append(n.xs[:first], xs...)
	r2 := degree / (math.Pi * float64(count))
	for a := range count {
		for b := a + 1; b < count; b++ {
			dx, dy := xs[a]-xs[b], ys[a]-ys[b]
			if dx*dx+dy*dy < r2 {
				n.connect(first+a, first+b)
			}
		}
	}
}
