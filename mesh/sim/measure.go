package sim

import (
	"runtime"
	"slices"

	"github.com/homemesh/homemesh/mesh/route"
)

// allPairsLimit is the largest network whose every node pair's
// reachability the run checks at its end.
const allPairsLimit = 2000

// pathStretchPairs bounds the (source, destination) pairs whose actual
// forwarding path is walked to measure path stretch.
const pathStretchPairs = 20000

// reachState is the scratch space of the reachability walks, kept so that
// a check allocates nothing.
type reachState struct {
	dests   []int // the destinations checked: every node, or hubs and a sample
	lastBad int   // where the previous check failed, checked first next time
	gen     uint32
	stamp   []uint32 // by node: gen when resolved (or being walked)
	pending []bool   // by node: on the walk in progress
	good    []bool   // by node: reaches the destination
	path    []int
}

// components labels every live node with its component over uncut links.
func (s *sim) components() {
	if !s.compDirty {
		return
	}
	s.compDirty = false
	for i := range s.comp {
		s.comp[i] = -1
	}
	var stack []int
	label := int32(0)
	for v := range s.nodes {
		if !s.nodes[v].alive || s.comp[v] >= 0 {
			continue
		}
		s.comp[v] = label
		stack = append(stack[:0], v)
		for len(stack) > 0 {
			u := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, pt := range s.topo.Ports(u) {
				if s.nodes[pt.Peer].alive && !s.cut[pt.Link] && s.comp[pt.Peer] < 0 {
					s.comp[pt.Peer] = label
					stack = append(stack, pt.Peer)
				}
			}
		}
		label++
	}
}

// reachDests returns the destinations reachability is checked for: every
// node in a network of at most ReachDests nodes, else the hubs and a fixed
// random sample.
func (s *sim) reachDests() []int {
	r := &s.reach
	if r.dests != nil {
		return r.dests
	}
	r.stamp = make([]uint32, len(s.nodes))
	r.pending = make([]bool, len(s.nodes))
	r.good = make([]bool, len(s.nodes))
	if len(s.nodes) <= s.cfg.ReachDests {
		for v := range s.nodes {
			r.dests = append(r.dests, v)
		}
		return r.dests
	}
	r.dests = append(r.dests, s.topo.Hubs...)
	for _, v := range s.rngScenario.Perm(len(s.nodes)) {
		if len(r.dests) >= s.cfg.ReachDests {
			break
		}
		if !slices.Contains(s.topo.Hubs, v) {
			r.dests = append(r.dests, v)
		}
	}
	return r.dests
}

// reachable reports whether every live node can reach, by its routers'
// next hops over live links, every checked destination in its component,
// and every hub every node in its component.
func (s *sim) reachable() bool {
	s.components()
	dests := s.reachDests()
	r := &s.reach
	for i := range dests {
		k := (r.lastBad + i) % len(dests)
		if !s.allReach(dests[k]) {
			r.lastBad = k
			return false
		}
	}
	if len(dests) < len(s.nodes) {
		for _, h := range s.topo.Hubs {
			if !s.nodes[h].alive {
				continue
			}
			for v := range s.nodes {
				if s.connected(int32(h), int32(v)) && !s.walk(h, v) {
					return false
				}
			}
		}
	}
	return true
}

// allReach reports whether every live node in d's component reaches d.
// Each node is walked at most once: a walk stops at a node already known
// to reach d or not.
func (s *sim) allReach(d int) bool {
	if !s.nodes[d].alive {
		return true
	}
	r := &s.reach
	r.gen++
	r.stamp[d], r.good[d] = r.gen, true
	dst := s.nodes[d].id
	for v := range s.nodes {
		if r.stamp[v] == r.gen || !s.connected(int32(v), int32(d)) {
			continue
		}
		r.path = r.path[:0]
		u, ok := v, false
		for {
			if r.stamp[u] == r.gen {
				if r.pending[u] {
					s.m.tableLoops++
				} else {
					ok = r.good[u]
				}
				break
			}
			r.stamp[u], r.pending[u] = r.gen, true
			r.path = append(r.path, u)
			next, hop := s.nextHop(u, dst)
			if !hop {
				break
			}
			u = next
		}
		for _, w := range r.path {
			r.good[w], r.pending[w] = ok, false
		}
		if !ok {
			return false
		}
	}
	return true
}

// walk reports whether packets from a reach b by the routers' next hops.
func (s *sim) walk(a, b int) bool {
	dst := s.nodes[b].id
	u := a
	for range len(s.nodes) {
		if u == b {
			return true
		}
		next, ok := s.nextHop(u, dst)
		if !ok {
			return false
		}
		u = next
	}
	s.m.tableLoops++
	return false
}

// nextHop returns the live neighbour node u forwards to for dst, if it
// has a route through a live, uncut link.
func (s *sim) nextHop(u int, dst route.NodeID) (int, bool) {
	l, ok := s.nodes[u].r.NextHop(dst)
	p := int(l) - 1
	if !ok || p < 0 || p >= len(s.topo.Ports(u)) {
		return 0, false
	}
	pt := s.topo.Ports(u)[p]
	if s.cut[pt.Link] || !s.nodes[pt.Peer].alive {
		return 0, false
	}
	return pt.Peer, true
}

// allPairsReachable reports whether every live node reaches every other
// live node in its component.
func (s *sim) allPairsReachable() bool {
	s.components()
	s.reachDests()
	for d := range s.nodes {
		if !s.allReach(d) {
			return false
		}
	}
	return true
}

// trueCosts returns every link's cost on the routing's own scale had the
// routers measured its loss exactly: the oracle's metric.
func (s *sim) trueCosts() []int64 {
	costs := make([]int64, len(s.topo.Links))
	for i, l := range s.topo.Links {
		costs[i] = trueCost(l.Loss)
	}
	return costs
}

// measureConverged records, at the end of the steady phase, the routes'
// stretch against Dijkstra on the true metric (of the paths packets take,
// and of the metrics the routers hold), the routing state's size and the
// routes per node.
func (s *sim) measureConverged() {
	costs := s.trueCosts()
	index := make(map[route.NodeID]int, len(s.nodes))
	for v := range s.nodes {
		index[s.nodes[v].id] = v
	}
	var sources []int
	if len(s.nodes) <= s.cfg.StretchSources {
		for v := range s.nodes {
			sources = append(sources, v)
		}
	} else {
		sources = append(sources, s.topo.Hubs...)
		for _, v := range s.rngScenario.Perm(len(s.nodes)) {
			if len(sources) >= s.cfg.StretchSources {
				break
			}
			if !slices.Contains(s.topo.Hubs, v) {
				sources = append(sources, v)
			}
		}
	}
	perSource := max(1, pathStretchPairs/len(sources))
	cost := func(l int) int64 { return costs[l] }
	usable := func(l int) bool { return !s.cut[l] }
	var ratio, pathStretch []float64
	var routes, missing int
	s.m.routesMin = len(s.nodes)
	for _, src := range sources {
		if !s.nodes[src].alive {
			continue
		}
		dist := s.topo.Dijkstra(src, cost, usable)
		infos := s.nodes[src].r.Routes()
		routes += len(infos)
		s.m.routesMin = min(s.m.routesMin, len(infos))
		for _, ri := range infos {
			d, ok := index[ri.Dest]
			if !ok || d == src || dist[d] == Unreachable || dist[d] == 0 {
				continue
			}
			m, ok := routeMetric(ri)
			if !ok {
				continue
			}
			ratio = append(ratio, float64(m)/float64(dist[d]))
		}
		for v := range s.nodes {
			if v != src && dist[v] != Unreachable {
				if _, ok := s.nodes[src].r.NextHop(s.nodes[v].id); !ok {
					missing++
				}
			}
		}
		for _, d := range s.rngScenario.Perm(len(s.nodes))[:min(perSource, len(s.nodes))] {
			if d == src || dist[d] == Unreachable {
				continue
			}
			if c, ok := s.pathCost(src, d, costs); ok {
				pathStretch = append(pathStretch, float64(c)/float64(dist[d]))
			}
		}
	}
	s.m.metricRatio = Summarize(ratio)
	s.m.pathStretch = Summarize(pathStretch)
	s.m.routesSampled = len(sources)
	s.m.routesMean = float64(routes) / float64(len(sources))
	s.m.missingRoutes = missing
	var bytes, most int
	for v := range s.nodes {
		if s.nodes[v].alive {
			b := s.nodes[v].r.StateBytes()
			bytes += b
			most = max(most, b)
		}
	}
	s.m.stateBytesMean = float64(bytes) / float64(len(s.nodes))
	s.m.stateBytesMax = most
	// The simulator's own live heap with every router up: what the run
	// costs in memory, the routers' share included.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.m.heapBytes = ms.HeapAlloc
}

// pathCost returns the true cost of the path packets from a to b take now.
func (s *sim) pathCost(a, b int, costs []int64) (int64, bool) {
	dst := s.nodes[b].id
	var total int64
	u := a
	for range len(s.nodes) {
		if u == b {
			return total, true
		}
		l, ok := s.nodes[u].r.NextHop(dst)
		p := int(l) - 1
		if !ok || p < 0 || p >= len(s.topo.Ports(u)) {
			return 0, false
		}
		pt := s.topo.Ports(u)[p]
		total += costs[pt.Link]
		u = pt.Peer
	}
	return 0, false
}
