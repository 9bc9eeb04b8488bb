package route

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero id", Config{}, "node id is zero"},
		{"leaf hub", Config{ID: testID(1), Leaf: true, Hub: true}, "leaf cannot be a hub"},
		{"hello too short", Config{ID: testID(1), HelloInterval: time.Millisecond}, "hello interval"},
		{"dead hellos", Config{ID: testID(1), DeadHellos: 20}, "dead hellos"},
		{"one dead hello", Config{ID: testID(1), DeadHellos: 1}, "dead hellos"},
		{"tiny packets", Config{ID: testID(1), MaxPacket: 10}, "max packet"},
		{"negative window", Config{ID: testID(1), UpdateWindow: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, epoch)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	r, err := New(Config{ID: testID(1), Seqno: 41}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seqno() != 42 {
		t.Errorf("seqno %d after starting from a persisted 41, want 42", r.Seqno())
	}
}

func TestETX(t *testing.T) {
	for _, tc := range []struct {
		history uint16
		want    uint16
	}{
		{0xFFFF, 256},
		{0xFFFE, 273},
		{0x00FF, 512},
		{0x0001, 4096},
		{0, MetricInfinity},
	} {
		if got := rxcostOf(tc.history); got != tc.want {
			t.Errorf("rxcostOf(%016b) = %d, want %d", tc.history, got, tc.want)
		}
	}
	if got := linkCost(512, 512); got != 1024 {
		t.Errorf("linkCost(512, 512) = %d, want 1024 (each direction loses half)", got)
	}
	if got := linkCost(100, 256); got != 256 {
		t.Errorf("linkCost(100, 256) = %d: a cost below perfect counts as perfect", got)
	}
	if linkCost(MetricInfinity, 256) != MetricInfinity || linkCost(4096, 4096) != MetricInfinity {
		t.Error("an unusable direction must make the link unusable")
	}
}

// linkedPair returns a router with one neighbour on link 1 whose Hellos the
// test delivers by hand.
func linkedPair(t *testing.T) *Router {
	r, err := New(Config{ID: testID(0)}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	r.LinkUp(epoch, 1, testID(1), false)
	return r
}

func hello(r *Router, at time.Time, seqno uint16) {
	b := appendIHU([]byte{controlMagic}, HopCost)
	b = appendHello(b, seqno, 100)
	r.Receive(at, 1, b)
}

// TestDeadAfterSilence: a neighbour is dead once it has been silent for
// two and a half Hello intervals, not before, and comes back with its next
// Hello.
func TestDeadAfterSilence(t *testing.T) {
	r := linkedPair(t)
	at := epoch
	for s := range uint16(5) {
		at = epoch.Add(time.Duration(s) * time.Second)
		hello(r, at, s)
	}
	last := at
	r.Tick(last.Add(2500*time.Millisecond - time.Millisecond))
	if n := r.Neighbours()[0]; n.Dead {
		t.Fatal("dead before 2.5 s of silence")
	}
	if d := r.Deadline(); d.After(last.Add(2500 * time.Millisecond)) {
		t.Errorf("deadline %v is after 2.5 s of silence", d.Sub(last))
	}
	r.Tick(last.Add(2500 * time.Millisecond))
	if n := r.Neighbours()[0]; !n.Dead {
		t.Fatal("alive after 2.5 s of silence")
	}
	if c := r.Counters(); c.NeighboursLost != 1 {
		t.Errorf("neighbours lost = %d", c.NeighboursLost)
	}
	hello(r, last.Add(4*time.Second), 9)
	if n := r.Neighbours()[0]; n.Dead || n.Cost != HopCost {
		t.Errorf("after a Hello the neighbour is %+v, want alive at cost %d", n, HopCost)
	}
}

// probeSerials returns the serials of the probes (packets carrying a
// Serial and no update) among sends.
func probeSerials(t *testing.T, sends []Send) []uint32 {
	t.Helper()
	var serials []uint32
	for _, snd := range sends {
		msgs, _, err := decodeControl(snd.Packet, nil)
		if err != nil {
			t.Fatalf("router sent a bad packet: %v", err)
		}
		var serial uint32
		probe := false
		for _, m := range msgs {
			switch m.typ {
			case tlvSerial:
				serial, probe = m.serial, true
			case tlvUpdate, tlvSeqnoRequest:
				probe = false
			}
		}
		if probe {
			serials = append(serials, serial)
		}
	}
	return serials
}

// TestProbesKeepLossyNeighbour: once a Hello is overdue the silent
// neighbour is probed, and as long as it acknowledges the probes it stays
// alive however many Hellos are lost. An answer counts as hearing from
// it, so the next probe waits for the next overdue Hello.
func TestProbesKeepLossyNeighbour(t *testing.T) {
	r := linkedPair(t)
	hello(r, epoch, 0)
	at := epoch
	probes := 0
	for at.Before(epoch.Add(10 * time.Second)) {
		at = r.Deadline()
		serials := probeSerials(t, r.Tick(at))
		if len(serials) > 0 {
			if first := epoch.Add(time.Second + time.Second/16); probes == 0 && at.Before(first) {
				t.Errorf("probed at %v, before the first Hello was overdue", at.Sub(epoch))
			}
			probes += len(serials)
			// The peer answers every probe a round trip later.
			r.Receive(at.Add(20*time.Millisecond), 1, appendAcks([]byte{controlMagic}, serials))
		}
		if n := r.Neighbours()[0]; n.Dead {
			t.Fatalf("declared dead at %v although it answered every probe", at.Sub(epoch))
		}
	}
	// Ten seconds of lost Hellos: a probe per Hello interval.
	if probes < 8 || probes > 10 {
		t.Errorf("%d probes in 10 s of lost Hellos, want about 9", probes)
	}
	if c := r.Counters(); c.Probes != uint64(probes) {
		t.Errorf("counted %d probes, sent %d", c.Probes, probes)
	}
	// A Hello ends the probing.
	hello(r, at.Add(time.Millisecond), 1)
	at = at.Add(time.Millisecond)
	if serials := probeSerials(t, r.Tick(at.Add(time.Second))); len(serials) > 0 {
		t.Errorf("probed %v after a Hello", time.Second)
	}
}

// TestLossRaisesCost: losing a quarter of the Hellos over a while raises
// the link's cost past the noise band, and it comes back when they flow.
func TestLossRaisesCost(t *testing.T) {
	r := linkedPair(t)
	at := epoch
	seqno := uint16(0)
	for i := range 64 {
		at = at.Add(time.Second)
		seqno++
		if i%2 == 1 {
			continue // every other Hello is lost
		}
		hello(r, at, seqno)
		r.Tick(at)
	}
	n := r.Neighbours()[0]
	if n.RxCost != 512 || n.Cost < 400 {
		t.Errorf("with half the Hellos lost: rxcost %d, cost %d", n.RxCost, n.Cost)
	}
	for range 40 {
		at = at.Add(time.Second)
		seqno++
		hello(r, at, seqno)
	}
	if n := r.Neighbours()[0]; n.Cost != HopCost {
		t.Errorf("after the loss stopped the cost is %d", n.Cost)
	}
}

func TestForward(t *testing.T) {
	n := newTestNet(t, 1)
	n.line(3)
	n.runUntil(5*time.Second, "full reachability", n.fullyReachable)
	a, b, c := n.nodes[0], n.nodes[1], n.nodes[2]
	linkAB := n.edges[edgeKey(0, 1)]

	pkt := AppendData(nil, DataHeader{Src: a.id, Dst: c.id, TTL: 5, Flow: 1}, []byte("x"))
	dec, err := a.r.Forward(n.now, 0, pkt)
	if err != nil || dec.Action != ActionForward || dec.Link != linkAB.la || dec.Header.TTL != 5 {
		t.Fatalf("originate: %+v, %v", dec, err)
	}
	dec, err = b.r.Forward(n.now, linkAB.lb, dec.Packet)
	if err != nil || dec.Action != ActionForward || dec.Header.TTL != 4 {
		t.Fatalf("relay: %+v, %v", dec, err)
	}
	if h, _, _ := ParseData(dec.Packet); h.TTL != 4 {
		t.Errorf("the relayed packet carries TTL %d, want 4", h.TTL)
	}

	expiring := AppendData(nil, DataHeader{Src: a.id, Dst: c.id, TTL: 1}, nil)
	if dec, _ := b.r.Forward(n.now, linkAB.lb, expiring); dec.Action != ActionDrop || dec.Reason != DropTTLExpired {
		t.Errorf("TTL 1 at a relay: %+v", dec)
	}
	nowhere := AppendData(nil, DataHeader{Src: a.id, Dst: testID(77), TTL: 9}, nil)
	if dec, _ := b.r.Forward(n.now, linkAB.lb, nowhere); dec.Action != ActionDrop || dec.Reason != DropNoRoute {
		t.Errorf("unknown destination: %+v", dec)
	}
	mine := AppendData(nil, DataHeader{Src: a.id, Dst: b.id, TTL: 1}, nil)
	if dec, _ := b.r.Forward(n.now, linkAB.lb, mine); dec.Action != ActionDeliver {
		t.Errorf("packet for the relay itself: %+v", dec)
	}
	cnt := b.r.Counters()
	if cnt.DataForwarded != 1 || cnt.DataTTLExpired != 1 || cnt.DataNoRoute != 1 || cnt.DataDelivered != 1 {
		t.Errorf("counters %+v", cnt)
	}

	if _, err := a.r.Forward(n.now, 0, AppendData(nil, DataHeader{Src: b.id, Dst: c.id, TTL: 3}, nil)); err == nil {
		t.Error("originating a packet with someone else's source was accepted")
	}
	if _, err := a.r.Forward(n.now, 0, AppendData(nil, DataHeader{Src: a.id, Dst: c.id}, nil)); err == nil {
		t.Error("originating a packet with TTL 0 was accepted")
	}
	if _, err := a.r.Forward(n.now, 0, []byte{controlMagic}); err == nil {
		t.Error("a control packet was forwarded as data")
	}
}

// TestRerouteHeldPacket: a relay that had no route for a packet holds it,
// and once a route appears Reroute sends it on without spending another
// hop of its TTL.
func TestRerouteHeldPacket(t *testing.T) {
	n := newTestNet(t, 1)
	n.line(3)
	n.runUntil(5*time.Second, "full reachability", n.fullyReachable)
	a, b, c := n.nodes[0], n.nodes[1], n.nodes[2]
	linkAB, linkBC := n.edges[edgeKey(0, 1)], n.edges[edgeKey(1, 2)]

	n.disconnect(1, 2)
	pkt := AppendData(nil, DataHeader{Src: a.id, Dst: c.id, TTL: 5, Flow: 1}, []byte("x"))
	dec, err := b.r.Forward(n.now, linkAB.lb, pkt)
	if err != nil || dec.Action != ActionDrop || dec.Reason != DropNoRoute {
		t.Fatalf("relay without a route: %+v, %v", dec, err)
	}
	if dec, _ := b.r.Reroute(n.now, dec.Packet); dec.Action != ActionDrop || dec.Reason != DropNoRoute {
		t.Fatalf("reroute while still without a route: %+v", dec)
	}
	linkBC = n.connect(1, 2)
	n.runUntil(5*time.Second, "full reachability", n.fullyReachable)
	dec, err = b.r.Reroute(n.now, pkt)
	if err != nil || dec.Action != ActionForward || dec.Link != linkBC.la || dec.Header.TTL != 4 {
		t.Fatalf("reroute once the route is back: %+v, %v (link B-C %d)", dec, err, linkBC.la)
	}
	if dec, _ := b.r.Reroute(n.now, AppendData(nil, DataHeader{Src: a.id, Dst: b.id, TTL: 1}, nil)); dec.Action != ActionDeliver {
		t.Errorf("a held packet for the relay itself: %+v", dec)
	}
	if _, err := b.r.Reroute(n.now, []byte{controlMagic}); err == nil {
		t.Error("a control packet was rerouted as data")
	}
}

// TestSeqnoRequestsDeduplicated: a router forwards one request per
// destination and seqno per RequestTimeout, answers the rest once the
// answer is in, and a source bumps its seqno once for any number of
// requests for it.
func TestSeqnoRequestsDeduplicated(t *testing.T) {
	n := newTestNet(t, 1)
	n.line(3)
	n.runUntil(5*time.Second, "full reachability", n.fullyReachable)
	b, c := n.nodes[1], n.nodes[2]
	in := n.edges[edgeKey(0, 1)].lb // B's link from A
	seqno := c.r.Seqno()
	req := appendSeqnoRequest([]byte{controlMagic}, seqno+1, 10, c.id)
	sent := b.r.Counters().Sent[MsgSeqnoRequest].Messages
	for range 5 {
		sends, err := b.r.Receive(n.now, in, req)
		if err != nil {
			t.Fatal(err)
		}
		n.send(1, sends)
	}
	if got := b.r.Counters().Sent[MsgSeqnoRequest].Messages - sent; got != 1 {
		t.Errorf("B forwarded %d copies of one request", got)
	}
	if got := b.r.Counters().Rejected[RejectRequestDuplicate]; got != 4 {
		t.Errorf("B counted %d duplicates, want 4", got)
	}
	n.run(time.Second)
	if c.r.Seqno() != seqno+1 || c.r.Counters().SeqnoBumps != 1 {
		t.Errorf("C's seqno is %d after %d bumps, want %d after 1", c.r.Seqno(), c.r.Counters().SeqnoBumps, seqno+1)
	}
	// A (the asker) got the new seqno back, although nothing else changed.
	if info, _ := n.nodes[0].r.Route(c.id); info.Seqno != seqno+1 {
		t.Errorf("A's route to C has seqno %d, want %d", info.Seqno, seqno+1)
	}
	// Now B has the seqno asked for and answers by itself.
	before := b.r.Counters().Sent[MsgSeqnoRequest].Messages
	sends, _ := b.r.Receive(n.now, in, req)
	n.send(1, sends)
	if b.r.Counters().Sent[MsgSeqnoRequest].Messages != before {
		t.Error("B forwarded a request it could answer")
	}
}

// TestUpdatesSurviveLossAndReordering runs a grid over links that lose
// 10 % of packets and reorder them wildly, then checks that every router
// holds, for every destination, what its neighbour announces.
func TestUpdatesSurviveLossAndReordering(t *testing.T) {
	n := newTestNet(t, 5)
	n.loss = 0.10
	n.latMin, n.latMax = time.Millisecond, 80*time.Millisecond
	n.grid(5, 5)
	n.runUntil(30*time.Second, "full reachability", n.fullyReachable)
	// Churn a little so that updates, retractions and requests all flow.
	for _, e := range n.edgeList[:6] {
		n.disconnect(e.a, e.b)
		n.run(500 * time.Millisecond)
	}
	for _, e := range n.edgeList[:6] {
		n.connect(e.a, e.b)
		n.run(500 * time.Millisecond)
	}
	n.loss = 0
	n.run(10 * time.Second)
	retransmits := n.sumCounters(func(c *Counters) uint64 { return c.Retransmits })
	if retransmits == 0 {
		t.Error("no retransmissions at 10 % loss: the test did not test them")
	}
	for _, e := range n.edgeList {
		for _, dir := range [][2]int{{e.a, e.b}, {e.b, e.a}} {
			rx, tx := n.nodes[dir[0]].r, n.nodes[dir[1]].r
			rxNb := rx.nbrs[rx.links[linkAt(e, dir[0])]]
			txSlot := tx.links[linkAt(e, dir[1])]
			if rxNb.dead || tx.nbrs[txSlot].dead {
				continue
			}
			for d := range tx.dests {
				if !tx.dests[d].live {
					continue
				}
				_, _, want := tx.advertisedTo(txSlot, uint32(d))
				got := MetricInfinity
				if i, ok := rx.index.get(rx.dests, tx.dests[d].id); ok {
					got = rxNb.entry(i).metric
				} else if tx.dests[d].id == rx.id {
					continue
				}
				if (got == MetricInfinity) != (want == MetricInfinity) || absDiff(got, want) >= 2*HopCost/4 {
					t.Errorf("node %d holds metric %d from node %d for %s, which announces %d", dir[0], got, dir[1], tx.dests[d].id, want)
				}
			}
		}
	}
	t.Logf("%d retransmissions", retransmits)
}

func linkAt(e *testEdge, node int) LinkID {
	if node == e.a {
		return e.la
	}
	return e.lb
}

// TestDeliveryFailedProbes: a failed delivery makes the neighbour suspect:
// it is probed at once, stays alive if it answers, and is dead an eighth
// of a Hello interval later if it does not (round trips being short).
func TestDeliveryFailedProbes(t *testing.T) {
	r := linkedPair(t)
	hello(r, epoch, 0)
	at := epoch.Add(100 * time.Millisecond)
	if r.InDoubt(1) || !r.InDoubt(2) {
		t.Errorf("in doubt: a live neighbour %v, a link that is not one %v", r.InDoubt(1), r.InDoubt(2))
	}
	serials := probeSerials(t, r.DeliveryFailed(at, 1))
	if len(serials) != 1 {
		t.Fatalf("%d probes after a failed delivery, want 1 at once", len(serials))
	}
	if !r.InDoubt(1) {
		t.Error("not in doubt after a failed delivery")
	}
	r.Receive(at.Add(30*time.Millisecond), 1, appendAcks([]byte{controlMagic}, serials))
	r.Tick(at.Add(time.Second / 2))
	if n := r.Neighbours()[0]; n.Dead || r.InDoubt(1) {
		t.Fatalf("dead %v, in doubt %v, although it answered the probe", n.Dead, r.InDoubt(1))
	}

	// Now it fails again and stays silent.
	at = epoch.Add(600 * time.Millisecond)
	probes := len(probeSerials(t, r.DeliveryFailed(at, 1)))
	if len(r.DeliveryFailed(at.Add(time.Millisecond), 1)) != 0 {
		t.Error("a second report while suspect sent something")
	}
	for {
		next := r.Deadline()
		if next.After(at.Add(time.Second / 8)) {
			t.Fatalf("next deadline %v after the suspicion, want one at %v", next.Sub(at), time.Second/8)
		}
		probes += len(probeSerials(t, r.Tick(next)))
		if r.Neighbours()[0].Dead {
			if !r.InDoubt(1) {
				t.Error("a dead neighbour is not in doubt")
			}
			if d := next.Sub(at); d != time.Second/8 {
				t.Errorf("dead %v after the failed delivery, want %v", d, time.Second/8)
			}
			break
		}
	}
	if probes != 4 {
		t.Errorf("%d probes in an eighth of a second of suspicion, want 4", probes)
	}
	if c := r.Counters(); c.DeliveryFailures != 2 || c.NeighboursLost != 1 {
		t.Errorf("counters: %d delivery failures, %d neighbours lost; want 2 and 1", c.DeliveryFailures, c.NeighboursLost)
	}
}
