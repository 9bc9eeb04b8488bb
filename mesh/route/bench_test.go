package route

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// loadedRouter returns a router with degree router neighbours, each of
// which announced dests destinations (every one of them, as in a dense
// mesh), and has sent it back its own announcements' acks.
func loadedRouter(tb testing.TB, dests, degree int) *Router {
	now := epoch
	r, err := New(Config{ID: testID(0)}, now)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]NodeID, dests)
	for i := range ids {
		binary.BigEndian.PutUint64(ids[i][:], rng.Uint64())
	}
	for l := 1; l <= degree; l++ {
		r.LinkUp(now, LinkID(l), testID(l), false)
	}
	const perPacket = 70
	serial := uint32(0)
	for l := 1; l <= degree; l++ {
		for i := 0; i < len(ids); i += perPacket {
			serial++
			b := appendSerial([]byte{controlMagic}, serial)
			for _, id := range ids[i:min(i+perPacket, len(ids))] {
				b = appendUpdate(b, 0, 1, uint16(HopCost*(1+rng.IntN(40))), id)
			}
			if _, err := r.Receive(now, LinkID(l), b); err != nil {
				tb.Fatal(err)
			}
		}
	}
	// Acknowledge everything the router sent, as its neighbours would,
	// until its update streams are drained.
	for range 10000 {
		drained := true
		for _, nb := range r.nbrs {
			if len(nb.inflight) > 0 || nb.queue.len() > 0 {
				drained = false
			}
			for _, f := range nb.inflight {
				b := appendAcks([]byte{controlMagic}, []uint32{f.serial})
				r.Receive(now, nb.link, b)
			}
		}
		if drained {
			break
		}
		now = now.Add(20 * time.Millisecond)
		r.Tick(now)
	}
	return r
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStateBytes measures the routing state of a router that knows
// 10,000 destinations through 6 neighbours (the 10,000-node mesh of the
// brief), on the heap and as StateBytes estimates it.
func BenchmarkStateBytes(b *testing.B) {
	const dests, degree = 10000, 6
	for range b.N {
		before := heapInUse()
		r := loadedRouter(b, dests, degree)
		heap := heapInUse() - before
		est := r.StateBytes()
		if len(r.Routes()) != dests {
			b.Fatalf("%d routes, want %d", len(r.Routes()), dests)
		}
		b.ReportMetric(float64(heap)/dests, "heap-B/dest")
		b.ReportMetric(float64(est)/dests, "est-B/dest")
		b.ReportMetric(float64(heap)/1024, "heap-KiB")
		runtime.KeepAlive(r)
	}
}

// TestStateBytesIsHonest checks StateBytes against the heap the state
// really takes, within 25 %.
func TestStateBytesIsHonest(t *testing.T) {
	before := heapInUse()
	r := loadedRouter(t, 10000, 6)
	heap := heapInUse() - before
	est := r.StateBytes()
	t.Logf("10,000 destinations, 6 neighbours: heap %d B (%.0f B/dest), StateBytes %d B (%.0f B/dest)",
		heap, float64(heap)/10000, est, float64(est)/10000)
	if float64(est) < 0.75*float64(heap) || float64(est) > 1.25*float64(heap) {
		t.Errorf("StateBytes %d is not within 25%% of the heap's %d", est, heap)
	}
	runtime.KeepAlive(r)
}

// BenchmarkColdStartGrid starts a 20x20 grid from nothing and reports how
// long (in virtual time) it takes every node to reach every other, and
// what that costs in control traffic.
func BenchmarkColdStartGrid(b *testing.B) {
	for range b.N {
		n := newTestNet(b, 1)
		n.loss = 0.01
		n.grid(20, 20)
		took := n.runUntil(2*time.Minute, "full reachability", n.fullyReachable)
		nodes := float64(len(n.nodes))
		b.ReportMetric(took.Seconds(), "converge-s")
		b.ReportMetric(float64(n.controlBytes())/nodes, "ctl-B/node")
		b.ReportMetric(float64(n.sumCounters(func(c *Counters) uint64 { return c.ControlPackets })), "packets")
		b.ReportMetric(float64(n.sumCounters(func(c *Counters) uint64 { return c.Retransmits })), "retransmits")
		b.ReportMetric(float64(n.sumCounters(func(c *Counters) uint64 { return c.Sent[MsgUpdate].Messages }))/nodes/nodes, "updates/node/dest")
	}
}

// BenchmarkReceiveUpdate measures handling one update batch of 70
// destinations.
func BenchmarkReceiveUpdate(b *testing.B) {
	r := loadedRouter(b, 10000, 6)
	ids := make([]NodeID, 0, 70)
	for _, d := range r.dests[1:71] {
		ids = append(ids, d.id)
	}
	serial := uint32(1 << 20)
	b.ResetTimer()
	for i := range b.N {
		serial++
		p := appendSerial([]byte{controlMagic}, serial)
		for _, id := range ids {
			p = appendUpdate(p, 0, 1, uint16(HopCost*(2+i%3)), id)
		}
		r.Receive(epoch, 1, p)
	}
}

// BenchmarkRandomMesh runs the scenarios the simulator's targets are about
// on a 400-node random geometric mesh (degree 6, 10–20 ms links, 1 % loss,
// 1 s Hellos): cold start, steady state, relays killed one after another,
// and a partition along the middle that heals. Times are virtual; the
// kill's recovery time runs from the kill (so it includes the 2–3 s it
// takes to notice) to every pair of live nodes reaching each other again.
func BenchmarkRandomMesh(b *testing.B) {
	const nodes = 400
	for range b.N {
		n := newTestNet(b, 1)
		n.loss = 0.01
		n.randomGeometric(nodes, 6)
		cold := n.runUntil(time.Minute, "cold start", n.fullyReachable)
		n.run(20 * time.Second)
		before := n.controlBytes()
		n.run(time.Minute)
		steady := float64(n.controlBytes()-before) / nodes / 60

		var recoveries []float64
		var killBytes uint64
		for range 8 {
			victim := n.rng.IntN(nodes)
			for !n.nodes[victim].alive {
				victim = n.rng.IntN(nodes)
			}
			before := n.controlBytes()
			n.kill(victim)
			took := n.runUntil(time.Minute, "recovery", n.fullyReachable)
			recoveries = append(recoveries, took.Seconds())
			n.run(10 * time.Second)
			killBytes += n.controlBytes() - before
		}
		slices.Sort(recoveries)

		var cut []*testEdge
		for _, e := range n.edgeList {
			if e.up && (n.xs[e.a] < 0.5) != (n.xs[e.b] < 0.5) {
				cut = append(cut, e)
			}
		}
		for _, e := range cut {
			e.cut = true // silent, as a wall or a dead switch would be
		}
		n.runUntil(time.Minute, "split", n.fullyReachable)
		n.run(20 * time.Second)
		for _, e := range cut {
			e.cut = false
		}
		merge := n.runUntil(time.Minute, "merge", n.fullyReachable)

		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(steady, "steady-B/s/node")
		b.ReportMetric(recoveries[len(recoveries)/2], "kill-p50-s")
		b.ReportMetric(recoveries[len(recoveries)-1], "kill-max-s")
		b.ReportMetric(float64(killBytes)/float64(len(recoveries))/nodes, "B/node/kill")
		b.ReportMetric(merge.Seconds(), "merge-s")
	}
}
