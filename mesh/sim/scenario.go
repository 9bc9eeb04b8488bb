package sim

import (
	"math"
	"slices"
	"time"
)

// reachPoll is how often the simulator checks reachability while waiting
// for it: the resolution of cold_start_s and merge_s.
const reachPoll = int64(100 * time.Millisecond)

// drain is how long the run goes on after the last regular packet, so that
// packets in flight arrive before the counts are read.
const drain = int64(5 * time.Second)

// script schedules the whole run: cold start, settling, the steady
// measurement, the scenario and the final convergence.
func (s *sim) script() error {
	hello := int64(s.cfg.Hello)
	for n := range s.nodes {
		s.at(s.rngScenario.Int64N(hello), func() {
			if err := s.boot(n); err != nil {
				s.abort(err)
				return
			}
			s.compDirty = true
			s.handshake(n)
		})
	}
	s.at(hello, func() {
		s.waitReach(0, func(ok bool) {
			if ok {
				s.m.coldStart = ptr(seconds(s.now))
			}
			s.startFlows()
			s.at(s.now+int64(s.cfg.Settle), s.steadyStart)
		})
	})
	return nil
}

func (s *sim) abort(err error) {
	if s.m.err == nil {
		s.m.err = err
	}
	s.stop = true
}

func (s *sim) steadyStart() {
	s.m.steadyFrom = s.now
	s.m.steadyStartCtrl = s.snapshot()
	s.at(s.now+int64(s.cfg.Steady), s.steadyEnd)
}

func (s *sim) steadyEnd() {
	s.m.steadyTo = s.now
	s.m.steadyEndCtrl = s.snapshot()
	s.measureConverged()
	s.scenarioFrom = s.now
	s.scenarioTo = s.now + int64(s.cfg.Duration)
	switch s.cfg.Scenario {
	case ScenarioKill:
		s.killScenario()
	case ScenarioChurn:
		s.churnScenario()
	case ScenarioPartition:
		s.partitionScenario()
	}
	s.at(s.scenarioTo, s.scenarioEnd)
	if s.attack != nil {
		s.at(s.now+int64(time.Second), s.attackRound)
	}
}

// scenarioEnd stops the traffic and the failures, brings every dead node
// back and merges any partition, and waits for full reachability again.
func (s *sim) scenarioEnd() {
	s.m.scenarioCtrl = s.snapshot()
	s.traffic = false
	s.scenarioOver = true
	for i := range s.cut {
		if s.cut[i] {
			s.merge()
			break
		}
	}
	for n := range s.nodes {
		if !s.nodes[n].alive {
			s.restart(n, s.nodes[n].gen)
		}
	}
	from := s.now
	s.at(s.now+reachPoll, func() {
		s.waitReach(from, func(ok bool) {
			s.m.reachableAtEnd = ok
			if ok {
				s.m.finalReach = ptr(seconds(s.now - from))
			}
			s.at(max(s.now, from+drain), s.finish)
		})
	})
}

// finish takes the last measurements and ends the run.
func (s *sim) finish() {
	for n := range s.nodes {
		s.dropHeld(n)
	}
	for f := range s.flows {
		if s.flows[f].brokenAt >= 0 {
			s.m.unrecovered++
			s.flows[f].brokenAt = -1
		}
	}
	for _, w := range s.watches {
		s.nodes[w.node].watched--
		s.m.undetected++
	}
	s.watches = s.watches[:0]
	if len(s.nodes) <= allPairsLimit {
		all := s.allPairsReachable()
		s.m.allPairs = &all
	}
	s.stop = true
}

// killScenario kills a relay on some flow's path every KillInterval and
// restarts it, with its persisted seqno, Downtime later.
func (s *sim) killScenario() {
	for t := s.scenarioFrom; t < s.scenarioTo; t += int64(s.cfg.KillInterval) {
		s.at(t, func() {
			v := s.relayOnPath()
			if v < 0 {
				return
			}
			s.failNodes(v)
			gen := s.nodes[v].gen
			s.at(s.now+int64(s.cfg.Downtime), func() { s.restart(v, gen) })
		})
	}
}

// churnScenario kills random nodes, hubs aside, as a Poisson process of
// Churn % of the nodes a minute, each down for an exponential time of mean
// Downtime.
func (s *sim) churnScenario() {
	var candidates []int
	for v := range s.nodes {
		if !s.nodes[v].hub {
			candidates = append(candidates, v)
		}
	}
	rate := s.cfg.Churn / 100 * float64(len(candidates)) / 60 // kills per second
	if rate <= 0 {
		return
	}
	gap := time.Duration(float64(time.Second) / rate)
	var next func()
	next = func() {
		if s.now >= s.scenarioTo {
			return
		}
		// Up to a few tries to find a live node; under light churn the
		// first always is.
		for range 16 {
			v := candidates[s.rngScenario.IntN(len(candidates))]
			if !s.nodes[v].alive {
				continue
			}
			s.failNodes(v)
			gen := s.nodes[v].gen
			s.at(s.now+exp(s.rngScenario, s.cfg.Downtime), func() { s.restart(v, gen) })
			break
		}
		s.at(s.now+exp(s.rngScenario, gap), next)
	}
	s.at(s.scenarioFrom+exp(s.rngScenario, gap), next)
}

// partitionScenario cuts the network in two for PartitionTime, merges it,
// measures the time to full reachability, and repeats after as long again
// while the scenario lasts.
func (s *sim) partitionScenario() {
	span := int64(s.cfg.PartitionTime)
	for t := s.scenarioFrom; t+span <= s.scenarioTo; t += 2 * span {
		s.at(t, func() { s.failLinks(s.cutLinks()) })
		s.at(t+span, func() {
			s.merge()
			from := s.now
			s.at(s.now+reachPoll, func() {
				s.waitReach(from, func(ok bool) {
					if ok {
						s.m.merges = append(s.m.merges, seconds(s.now-from))
					} else {
						s.m.mergeFailed++
					}
				})
			})
		})
	}
}

// cutLinks returns the links that split the network in two: between the
// lower and upper floors of a house with more than one floor, else across
// the vertical line through the nodes' median x.
func (s *sim) cutLinks() []int {
	side := make([]bool, len(s.nodes))
	floors := 0
	for _, p := range s.topo.Nodes {
		floors = max(floors, p.Floor+1)
	}
	if floors > 1 {
		for v, p := range s.topo.Nodes {
			side[v] = p.Floor >= floors/2
		}
	} else {
		xs := make([]float64, len(s.topo.Nodes))
		for v, p := range s.topo.Nodes {
			xs[v] = p.X
		}
		slices.Sort(xs)
		median := xs[len(xs)/2]
		for v, p := range s.topo.Nodes {
			side[v] = p.X >= median
		}
	}
	var cut []int
	for i, l := range s.topo.Links {
		if side[l.A] != side[l.B] {
			cut = append(cut, i)
		}
	}
	return cut
}

// merge heals every cut link; both ends establish a fresh link session, as
// a link layer does once its peer answers again.
func (s *sim) merge() {
	for i, c := range s.cut {
		if !c {
			continue
		}
		s.cut[i] = false
		l := s.topo.Links[i]
		for p, pt := range s.topo.Ports(l.A) {
			if pt.Link == i {
				rtt := 2 * int64(l.Latency)
				s.at(s.now+rtt, func() { s.linkUp(l.A, p) })
			}
		}
	}
	s.compDirty = true
}

// restart boots node v again, with its persisted seqno, unless it has been
// restarted since the kill that scheduled this.
func (s *sim) restart(v int, gen uint32) {
	nd := &s.nodes[v]
	if nd.alive || nd.gen != gen {
		return
	}
	if err := s.boot(v); err != nil {
		s.abort(err)
		return
	}
	s.m.restarts++
	s.compDirty = true
	s.handshake(v)
}

// relayOnPath picks a live relay, hubs aside, on the current path of a
// random flow; -1 when no flow has one.
func (s *sim) relayOnPath() int {
	var path []int
	for range 64 {
		f := s.rngScenario.IntN(len(s.flows))
		path = s.trace(f, path[:0])
		var relays []int
		for _, v := range path {
			fl := s.flows[f]
			if v != int(fl.src) && v != int(fl.dst) && !s.nodes[v].hub && s.nodes[v].alive {
				relays = append(relays, v)
			}
		}
		if len(relays) > 0 {
			return relays[s.rngScenario.IntN(len(relays))]
		}
	}
	return -1
}

// trace appends to path the nodes flow f's packets would visit now by the
// routers' next hops, ending at the destination, at a node without a route
// or a live next hop (included), or when a node repeats.
func (s *sim) trace(f int, path []int) []int {
	fl := s.flows[f]
	dst := s.nodes[fl.dst].id
	v := int(fl.src)
	for range len(s.nodes) {
		path = append(path, v)
		if v == int(fl.dst) || !s.nodes[v].alive {
			return path
		}
		l, ok := s.nodes[v].r.NextHop(dst)
		p := int(l) - 1
		if !ok || p < 0 || p >= len(s.topo.Ports(v)) {
			return path
		}
		pt := s.topo.Ports(v)[p]
		if s.cut[pt.Link] {
			return path
		}
		v = pt.Peer
	}
	return path
}

// failNodes kills the nodes, watches their neighbours notice and starts
// recovery measurements for the flows whose paths crossed them.
func (s *sim) failNodes(victims ...int) {
	s.m.failures++
	for _, v := range victims {
		for p, pt := range s.topo.Ports(v) {
			q := int(s.peerPort[v][p])
			if s.nodes[pt.Peer].alive && !s.cut[pt.Link] && s.session[pt.Peer][q] {
				s.watch(pt.Peer, q)
			}
		}
		s.nodes[v].gen++
		s.kill(v)
	}
	s.compDirty = true
	s.breakFlows()
}

// failLinks cuts the links, watches both ends notice and starts recovery
// measurements for the flows whose paths crossed them.
func (s *sim) failLinks(links []int) {
	s.m.failures++
	for _, i := range links {
		if s.cut[i] {
			continue
		}
		s.cut[i] = true
		l := s.topo.Links[i]
		for _, end := range [2]int{l.A, l.B} {
			for p, pt := range s.topo.Ports(end) {
				if pt.Link == i && s.nodes[end].alive && s.session[end][p] {
					s.watch(end, p)
				}
			}
		}
	}
	s.compDirty = true
	s.breakFlows()
}

// breakFlows marks the flows whose current path runs into a dead node or a
// cut link, and whose ends can still reach each other, as broken since
// now, and starts their probes.
func (s *sim) breakFlows() {
	var path []int
	for f := range s.flows {
		fl := &s.flows[f]
		if fl.brokenAt >= 0 || !s.connected(fl.src, fl.dst) {
			continue
		}
		path = s.trace(f, path[:0])
		last := path[len(path)-1]
		if last == int(fl.dst) {
			continue
		}
		// The walk stopped short: at a dead node, before a cut link, or
		// at a router without a route. Only the first two are this
		// failure's doing.
		broken := !s.nodes[last].alive
		if !broken {
			if l, ok := s.nodes[last].r.NextHop(s.nodes[fl.dst].id); ok && int(l) >= 1 && int(l) <= len(s.topo.Ports(last)) {
				broken = s.cut[s.topo.Ports(last)[l-1].Link]
			}
		}
		if !broken {
			continue
		}
		fl.brokenAt = s.now
		s.m.broken++
		if !fl.probing {
			fl.probing = true
			s.queue.push(event{at: s.now + int64(s.cfg.Probe), kind: evProbe, arg: uint32(f)})
		}
	}
}

func (s *sim) watch(n, p int) {
	s.watches = append(s.watches, watch{node: int32(n), port: int32(p), since: s.now})
	s.nodes[n].watched++
}

// unwatch drops the watch on n's port p, if any, without a sample: the link
// was re-established before n noticed it was gone.
func (s *sim) unwatch(n, p int) {
	if s.nodes[n].watched == 0 {
		return
	}
	s.watches = slices.DeleteFunc(s.watches, func(w watch) bool {
		if int(w.node) == n && int(w.port) == p {
			s.nodes[n].watched--
			s.m.preempted++
			return true
		}
		return false
	})
}

// dropWatches forgets the watches on node n, which died.
func (s *sim) dropWatches(n int) {
	if s.nodes[n].watched == 0 {
		return
	}
	s.watches = slices.DeleteFunc(s.watches, func(w watch) bool { return int(w.node) == n })
	s.nodes[n].watched = 0
}

// checkWatches records a detection sample for every watched link of n whose
// neighbour n's router no longer counts as up.
func (s *sim) checkWatches(n int) {
	s.watches = slices.DeleteFunc(s.watches, func(w watch) bool {
		if int(w.node) != n {
			return false
		}
		switch {
		case neighbourGone(s.nodes[n].r, linkID(int(w.port))):
			s.m.detection = append(s.m.detection, seconds(s.now-w.since))
		case s.now-w.since > int64(s.cfg.Timeout):
			s.m.undetected++
		default:
			return false
		}
		s.nodes[n].watched--
		return true
	})
}

// waitReach polls reachability every reachPoll and calls done(true) once
// every live node reaches every checked destination in its component, or
// done(false) once Timeout has passed since from.
func (s *sim) waitReach(from int64, done func(ok bool)) {
	if s.reachable() {
		done(true)
		return
	}
	if s.now-from > int64(s.cfg.Timeout) {
		done(false)
		return
	}
	s.at(s.now+reachPoll, func() { s.waitReach(from, done) })
}

func seconds(ns int64) float64 { return time.Duration(ns).Seconds() }

func ptr[T any](v T) *T { return &v }

// exp draws an exponential time of the given mean.
func exp(rng interface{ ExpFloat64() float64 }, mean time.Duration) int64 {
	return int64(math.Round(rng.ExpFloat64() * float64(mean)))
}
