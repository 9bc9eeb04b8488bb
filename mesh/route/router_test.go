package route

import (
	"testing"
	"time"
)

// shortestHops returns BFS hop counts from src over the test net's usable
// links.
func (n *testNet) shortestHops(src int) []int {
	adj := n.adjacency()
	dist := make([]int, len(n.nodes))
	for i := range dist {
		dist[i] = -1
	}
	dist[src] = 0
	queue := []int{src}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		for _, y := range adj[x] {
			if dist[y] < 0 {
				dist[y] = dist[x] + 1
				queue = append(queue, y)
			}
		}
	}
	return dist
}

func TestConvergence(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(n *testNet)
	}{
		{"line of 12", func(n *testNet) { n.line(12) }},
		{"ring of 16", func(n *testNet) { n.ring(16) }},
		{"grid of 6x6", func(n *testNet) { n.grid(6, 6) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t, 1)
			tc.build(n)
			took := n.runUntil(30*time.Second, "full reachability", n.fullyReachable)
			t.Logf("converged in %v", took)
			// Without loss every route is a shortest path, and its metric
			// says how many hops.
			n.run(5 * time.Second)
			for a := range n.nodes {
				dist := n.shortestHops(a)
				for b := range n.nodes {
					if a == b {
						continue
					}
					hops, err := n.walk(a, b)
					if err != nil {
						t.Fatalf("%d to %d: %v", a, b, err)
					}
					if hops != dist[b] {
						t.Errorf("%d to %d: %d hops, shortest is %d", a, b, hops, dist[b])
					}
					info, ok := n.nodes[a].r.Route(n.nodes[b].id)
					if !ok || info.Metric != uint16(dist[b]*HopCost) || !info.Feasible {
						t.Errorf("%d to %d: route %+v, want metric %d", a, b, info, dist[b]*HopCost)
					}
				}
			}
			if got := n.sumCounters(func(c *Counters) uint64 { return c.Sent[MsgSeqnoRequest].Messages }); got != 0 {
				t.Errorf("a cold start sent %d seqno requests", got)
			}
			n.sendAll()
			n.run(2 * time.Second)
			if n.delivered != n.sent || n.expired != 0 {
				t.Errorf("delivered %d of %d data packets, %d TTL expiries", n.delivered, n.sent, n.expired)
			}
		})
	}
}

// sendAll sends one data packet between every ordered pair of alive nodes.
func (n *testNet) sendAll() {
	for a, na := range n.nodes {
		for b, nb := range n.nodes {
			if a != b && na.alive && nb.alive {
				n.sendData(a, b)
			}
		}
	}
}

// TestLoopFreedom breaks and heals links and restarts nodes in a lossy grid
// with data flowing, and checks after every single event that no
// destination's next hops form a cycle, and that no packet's TTL runs out.
func TestLoopFreedom(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		n := newTestNet(t, seed)
		n.loss = 0.02
		n.grid(5, 5)
		n.runUntil(30*time.Second, "full reachability", n.fullyReachable)
		n.check = n.assertAcyclic
		edges := n.sortedEdges()
		for round := range 30 {
			switch op := n.rng.IntN(10); {
			case op < 5:
				e := edges[n.rng.IntN(len(edges))]
				if e.up {
					n.disconnect(e.a, e.b)
				} else {
					n.connect(e.a, e.b)
				}
			case op < 7:
				e := edges[n.rng.IntN(len(edges))]
				e.cut = !e.cut // silent: only missed Hellos tell
			case op < 9:
				i := n.rng.IntN(len(n.nodes))
				if n.nodes[i].alive {
					n.kill(i)
				} else {
					n.restart(i, n.rng.IntN(2) == 0)
				}
			default:
				i := n.rng.IntN(len(n.nodes))
				n.restart(i, n.rng.IntN(2) == 0)
			}
			for range 20 {
				a, b := n.rng.IntN(len(n.nodes)), n.rng.IntN(len(n.nodes))
				if a != b && n.nodes[a].alive {
					n.sendData(a, b)
				}
				n.run(time.Duration(n.rng.IntN(200)) * time.Millisecond)
			}
			_ = round
		}
		for i, node := range n.nodes {
			if !node.alive {
				n.restart(i, true)
			}
		}
		for _, e := range edges {
			e.cut = false
			n.connect(e.a, e.b)
		}
		took := n.runUntil(30*time.Second, "full reachability after healing", n.fullyReachable)
		t.Logf("seed %d: healed in %v; data: %d sent, %d delivered, %d no route, %d lost, %d TTL expired",
			seed, took, n.sent, n.delivered, n.noRoute, n.lost, n.expired)
		if n.expired != 0 {
			t.Errorf("seed %d: %d data packets ran out of TTL", seed, n.expired)
		}
	}
}

// square builds D(0) - A(1) - X(2) - B(3) - D(0): X reaches D through A or
// B at equal cost.
func square(n *testNet) {
	n.addNodes(4, false)
	n.connect(0, 1)
	n.connect(1, 2)
	n.connect(2, 3)
	n.connect(3, 0)
}

func TestFailoverToFeasibleAlternative(t *testing.T) {
	n := newTestNet(t, 1)
	square(n)
	n.runUntil(10*time.Second, "full reachability", n.fullyReachable)
	n.run(3 * time.Second)
	x, d := n.nodes[2], n.nodes[0]
	link, _ := x.r.NextHop(d.id)
	via, _, _ := n.peerOf(2, link)
	other := 1 + 3 - via
	n.disconnect(2, via)
	// Straight away, without a message exchanged: the other neighbour's
	// route is feasible.
	link, ok := x.r.NextHop(d.id)
	if got, _, _ := n.peerOf(2, link); !ok || got != other {
		t.Fatalf("after losing %d, X routes to D via %d (ok %v), want %d", via, got, ok, other)
	}
	// X keeps its route to D all along, and D's seqno never moves. (The
	// node X lost its direct link to is another matter: its only other
	// route is longer, so routes to it do take a seqno request.)
	n.check = func() {
		if _, ok := x.r.NextHop(d.id); !ok {
			t.Fatalf("at %v X lost its route to D", n.now.Sub(epoch))
		}
	}
	n.runUntil(5*time.Second, "full reachability after failover", n.fullyReachable)
	if d.r.Counters().SeqnoBumps != 0 {
		t.Errorf("D bumped its seqno %d times", d.r.Counters().SeqnoBumps)
	}
}

// TestStarvationResolvedBySeqnoRequest: X(2) reaches D(0) through A(1) in
// two hops; its other route, through B(3) and C(4), is three hops long, and
// B announces a metric equal to X's feasibility distance: unfeasible. When
// X loses A, only a seqno request from D's side makes that route usable.
func TestStarvationResolvedBySeqnoRequest(t *testing.T) {
	n := newTestNet(t, 1)
	n.addNodes(5, false)
	n.connect(0, 1)
	n.connect(1, 2)
	n.connect(2, 3)
	n.connect(3, 4)
	n.connect(4, 0)
	n.runUntil(10*time.Second, "full reachability", n.fullyReachable)
	n.run(3 * time.Second)
	x, d := n.nodes[2], n.nodes[0]
	if info, _ := x.r.Route(d.id); info.NextHop != n.nodes[1].id {
		t.Fatalf("X routes to D via %s, want A", info.NextHop)
	}
	bumps := d.r.Counters().SeqnoBumps
	n.disconnect(1, 2)
	if _, ok := x.r.NextHop(d.id); ok {
		t.Fatal("X kept a route to D: the alternative should be unfeasible")
	}
	if info, ok := x.r.Route(d.id); !ok || info.Feasible || info.NextHop != n.nodes[3].id {
		t.Fatalf("X's route to D after the loss: %+v %v, want an unfeasible one via B", info, ok)
	}
	took := n.runUntil(2*time.Second, "X routes to D again", func() bool {
		_, ok := x.r.NextHop(d.id)
		return ok
	})
	t.Logf("starvation resolved in %v", took)
	if d.r.Counters().SeqnoBumps == bumps {
		t.Error("D did not bump its seqno")
	}
	if x.r.Counters().Sent[MsgSeqnoRequest].Messages == 0 {
		t.Error("X sent no seqno request")
	}
	n.runUntil(2*time.Second, "full reachability", n.fullyReachable)
}

func TestRestartedNodeAccepted(t *testing.T) {
	for _, persisted := range []bool{true, false} {
		name := "without persisted seqno"
		if persisted {
			name = "with persisted seqno"
		}
		t.Run(name, func(t *testing.T) {
			n := newTestNet(t, 4)
			n.grid(4, 4)
			n.runUntil(20*time.Second, "full reachability", n.fullyReachable)
			// Bump the seqno a few times so that "0 + 1" is well behind.
			victim := n.nodes[5]
			for range 5 {
				victim.r.bumpSeqno(victim.r.Seqno() + 1)
			}
			n.run(3 * time.Second)
			old := victim.r.Seqno()
			n.kill(5)
			n.run(6 * time.Second) // everyone notices and retracts
			for i, node := range n.nodes {
				if i != 5 {
					if _, ok := node.r.NextHop(victim.id); ok {
						t.Fatalf("node %d still routes to the dead node", i)
					}
				}
			}
			n.restart(5, persisted)
			if persisted && victim.r.Seqno() != old+1 {
				t.Errorf("restarted with seqno %d, want %d", victim.r.Seqno(), old+1)
			}
			took := n.runUntil(5*time.Second, "full reachability after restart", n.fullyReachable)
			t.Logf("reachable again %v after the restart; seqno %d (was %d)", took, victim.r.Seqno(), old)
			if newer(old, victim.r.Seqno()) || old == victim.r.Seqno() {
				t.Errorf("seqno after restart %d is not newer than before (%d)", victim.r.Seqno(), old)
			}
		})
	}
}

// TestForeignOriginRejected: a node announcing another node's id with
// metric 0 is refused and counted; the victim's route is unaffected.
func TestForeignOriginRejected(t *testing.T) {
	n := newTestNet(t, 1)
	n.line(4)
	n.runUntil(10*time.Second, "full reachability", n.fullyReachable)
	// Node 2 claims to be node 0 (which is two hops away), towards node 3.
	liar, target, victim := n.nodes[2], n.nodes[3], n.nodes[0]
	before, _ := target.r.Route(victim.id)
	e := n.edges[edgeKey(2, 3)]
	b := appendSerial([]byte{controlMagic}, 1<<30)
	b = appendUpdate(b, 0, before.Seqno+100, 0, victim.id)
	b = appendUpdate(b, 0, 7, 0, testID(99)) // an id nobody has
	if _, err := target.r.Receive(n.now, e.lb, b); err != nil {
		t.Fatal(err)
	}
	c := target.r.Counters()
	if got := c.Rejected[RejectForeignOrigin]; got != 2 {
		t.Errorf("foreign-origin rejects = %d, want 2", got)
	}
	after, _ := target.r.Route(victim.id)
	if after != before {
		t.Errorf("route to the victim changed from %+v to %+v", before, after)
	}
	if _, ok := target.r.Route(testID(99)); ok {
		t.Error("a route to the invented id was installed")
	}
	_ = liar
}

// leafNet builds routers 0-1-2 in a line and a leaf 3 linked to routers 0
// and 2.
func leafNet(t *testing.T) *testNet {
	n := newTestNet(t, 1)
	n.line(3)
	n.addNodes(1, true)
	n.connect(3, 0)
	n.connect(3, 2)
	return n
}

func TestLeafAttachAndReattach(t *testing.T) {
	n := leafNet(t)
	leaf := n.nodes[3]
	n.runUntil(10*time.Second, "full reachability", n.fullyReachable)
	parentOf := func() int {
		for _, info := range leaf.r.Neighbours() {
			if info.Parent {
				p, _, _ := n.peerOf(3, info.Link)
				return p
			}
		}
		return -1
	}
	parent := parentOf()
	if parent != 0 && parent != 2 {
		t.Fatalf("leaf's parent is %d", parent)
	}
	other := 2 - parent
	// Only the parent announces the leaf: the other router reaches it
	// through the mesh.
	if info, _ := n.nodes[other].r.Route(leaf.id); info.NextHop == leaf.id || !info.Leaf {
		t.Errorf("router %d routes to the leaf as %+v, want through the mesh", other, info)
	}
	// The leaf holds no table and never relays.
	if routes := leaf.r.Routes(); len(routes) != 0 {
		t.Errorf("the leaf holds %d routes", len(routes))
	}
	for _, node := range n.nodes[:3] {
		for _, info := range node.r.Routes() {
			if info.NextHop == leaf.id && info.Dest != leaf.id {
				t.Errorf("router %s routes to %s through the leaf", node.id, info.Dest)
			}
		}
	}
	seqno := leaf.r.Seqno()
	n.disconnect(3, parent)
	if p := parentOf(); p != other {
		t.Fatalf("after losing its parent the leaf's parent is %d, want %d", p, other)
	}
	if !newer(leaf.r.Seqno(), seqno) {
		t.Error("the leaf did not bump its seqno on re-attaching")
	}
	took := n.runUntil(2*time.Second, "full reachability after re-attaching", n.fullyReachable)
	t.Logf("re-attached in %v", took)
	if got := n.sumCounters(func(c *Counters) uint64 { return c.Sent[MsgSeqnoRequest].Messages }); got != 0 {
		t.Errorf("re-attaching cost %d seqno requests", got)
	}
	n.sendAll()
	n.run(time.Second)
	if n.delivered != n.sent {
		t.Errorf("delivered %d of %d", n.delivered, n.sent)
	}
}

func TestLeafNeverRelays(t *testing.T) {
	n := leafNet(t)
	n.runUntil(10*time.Second, "full reachability", n.fullyReachable)
	leaf := n.nodes[3]
	pkt := AppendData(nil, DataHeader{Src: n.nodes[0].id, Dst: n.nodes[2].id, TTL: 9}, nil)
	dec, err := leaf.r.Forward(n.now, n.edges[edgeKey(3, 0)].la, pkt)
	if err != nil || dec.Action != ActionDrop || dec.Reason != DropNotRouter {
		t.Fatalf("a leaf asked to relay: %+v, %v", dec, err)
	}
	if dec, _ := leaf.r.Reroute(n.now, pkt); dec.Action != ActionDrop || dec.Reason != DropNotRouter {
		t.Fatalf("a leaf asked to send on another node's held packet: %+v", dec)
	}
	// A leaf announcing someone else is refused by its router.
	e := n.edges[edgeKey(3, 0)]
	b := appendSerial([]byte{controlMagic}, 1<<30)
	b = appendUpdate(b, 0, 1, 256, n.nodes[2].id)
	if _, err := n.nodes[0].r.Receive(n.now, e.lb, b); err != nil {
		t.Fatal(err)
	}
	if got := n.nodes[0].r.Counters().Rejected[RejectLeafRelay]; got != 1 {
		t.Errorf("leaf-relay rejects = %d, want 1", got)
	}
}

// TestHysteresisPreventsFlapping: X reaches D over two equal two-hop paths
// whose links lose 8 % of their packets, so their measured costs keep
// moving (and now and then a neighbour misses three Hellos and is lost for
// a moment). X must hardly ever switch between the two.
func TestHysteresisPreventsFlapping(t *testing.T) {
	n := newTestNet(t, 7)
	n.loss = 0.08
	square(n)
	n.runUntil(20*time.Second, "full reachability", n.fullyReachable)
	x, d := n.nodes[2], n.nodes[0]
	last, _ := x.r.NextHop(d.id)
	switches := 0
	n.check = func() {
		if l, ok := x.r.NextHop(d.id); ok && l != last {
			switches++
			last = l
		}
	}
	n.run(10 * time.Minute)
	deaths := n.sumCounters(func(c *Counters) uint64 { return c.NeighboursLost })
	t.Logf("X switched routes to D %d times in 10 min (%d neighbours lost to missed Hellos)", switches, deaths)
	if switches > 5 {
		t.Errorf("X switched %d times", switches)
	}
}

// TestHysteresisRule feeds a router two equal routes whose metrics jitter
// by less than the hysteresis: it must keep its first choice, and without
// hysteresis it must not.
func TestHysteresisRule(t *testing.T) {
	switches := func(hysteresis uint16) int {
		now := epoch
		r, err := New(Config{ID: testID(0), Hysteresis: hysteresis}, now)
		if err != nil {
			t.Fatal(err)
		}
		r.LinkUp(now, 1, testID(1), false)
		r.LinkUp(now, 2, testID(2), false)
		dst := testID(9)
		rng := newTestNet(t, 3).rng
		serial := uint32(0)
		last, count := LinkID(0), 0
		for range 1000 {
			now = now.Add(100 * time.Millisecond)
			link := LinkID(1 + rng.IntN(2))
			serial++
			b := appendSerial([]byte{controlMagic}, serial)
			b = appendUpdate(b, 0, 1, uint16(512+rng.IntN(48)), dst)
			if _, err := r.Receive(now, link, b); err != nil {
				t.Fatal(err)
			}
			if l, ok := r.NextHop(dst); ok && l != last {
				count++
				last = l
			}
		}
		return count
	}
	with, without := switches(0), switches(1)
	t.Logf("switches: %d with the default hysteresis, %d without", with, without)
	if with != 1 {
		t.Errorf("with hysteresis the route changed %d times, want only the first choice", with)
	}
	if without < 50 {
		t.Errorf("without hysteresis the route changed only %d times: the test cannot tell", without)
	}
}

// TestSteadyOverhead measures the control traffic of a converged 10x10
// grid with 1 % loss: Hellos and IHUs, and whatever updates the loss
// provokes. There are no periodic table dumps, so it must stay far below
// the 5 kbit/s per node budget.
func TestSteadyOverhead(t *testing.T) {
	n := newTestNet(t, 1)
	n.loss = 0.01
	n.grid(10, 10)
	took := n.runUntil(60*time.Second, "full reachability", n.fullyReachable)
	n.run(30 * time.Second)
	start := make([]Counters, len(n.nodes))
	for i, node := range n.nodes {
		start[i] = node.r.Counters()
	}
	const window = 2 * time.Minute
	n.run(window)
	var bytes uint64
	var byType [NumMsgTypes]uint64
	for i, node := range n.nodes {
		c := node.r.Counters()
		bytes += c.ControlBytes - start[i].ControlBytes
		for typ := range byType {
			byType[typ] += c.Sent[typ].Bytes - start[i].Sent[typ].Bytes
		}
	}
	perNode := float64(bytes) / float64(len(n.nodes)) / window.Seconds()
	t.Logf("100-node grid, 1%% loss: converged in %v; steady control traffic %.1f B/s per node (%.0f bit/s)", took, perNode, perNode*8)
	for typ, b := range byType {
		t.Logf("  %-14s %8.1f B/s per node", MsgType(typ), float64(b)/float64(len(n.nodes))/window.Seconds())
	}
	if perNode*8 > 5000 {
		t.Errorf("steady overhead %.0f bit/s per node exceeds 5 kbit/s", perNode*8)
	}
}

// FuzzReceive feeds a router with two live links (one to a leaf) a
// sequence of arbitrary packets, each framed as length, link and time step,
// with ticks in between: whatever the bytes, it must not panic, and it
// must keep its own announcement and its deadline sane.
func FuzzReceive(f *testing.F) {
	frame := func(link, step byte, pkt []byte) []byte {
		return append([]byte{byte(len(pkt)), link, step}, pkt...)
	}
	seed := frame(0, 5, encodePacket(sampleMessages()))
	b := appendSerial([]byte{controlMagic}, 9)
	b = appendUpdate(b, 0, 3, 0, testID(1))
	b = appendUpdate(b, 0, 3, 256, testID(7))
	seed = append(seed, frame(0, 1, b)...)
	seed = append(seed, frame(1, 200, appendSeqnoRequest([]byte{controlMagic}, 5, 3, testID(7)))...)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		at := epoch
		r, err := New(Config{ID: testID(0)}, at)
		if err != nil {
			t.Fatal(err)
		}
		r.LinkUp(at, 1, testID(1), false)
		r.LinkUp(at, 2, testID(2), true)
		for len(in) >= 3 {
			n, link, step := int(in[0]), LinkID(1+in[1]%2), time.Duration(in[2])*10*time.Millisecond
			in = in[3:]
			pkt := in[:min(n, len(in))]
			in = in[len(pkt):]
			if IsData(pkt) {
				r.Forward(at, link, pkt)
			} else {
				r.Receive(at, link, pkt)
			}
			at = at.Add(step)
			r.Tick(at)
			if r.Deadline().Before(at) && len(r.requests) == 0 {
				t.Fatalf("deadline %v is before now %v", r.Deadline(), at)
			}
		}
		if _, ok := r.Route(r.id); ok {
			t.Fatal("a route to the router itself")
		}
		if r.StateBytes() <= 0 {
			t.Fatal("no state")
		}
	})
}

// TestNearestHub: every node finds the hub closest to it from the flag the
// hubs set in their own announcements.
func TestNearestHub(t *testing.T) {
	n := newTestNet(t, 1)
	n.configure = func(i int, cfg *Config) { cfg.Hub = i == 0 || i == 8 }
	n.line(9)
	n.runUntil(10*time.Second, "full reachability", n.fullyReachable)
	for i, node := range n.nodes {
		want := n.nodes[0].id
		if i > 4 {
			want = n.nodes[8].id
		}
		got, ok := node.r.NearestHub()
		if !ok || (i != 4 && got.Dest != want) || !got.Hub {
			t.Errorf("node %d: nearest hub %+v, %v; want %s", i, got, ok, want)
		}
	}
}
