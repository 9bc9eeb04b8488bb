package route

import (
	"time"
	"unsafe"
)

// RouteInfo describes the route to one destination.
type RouteInfo struct {
	Dest NodeID
	// Link and NextHop are the next hop's link and id.
	Link    LinkID
	NextHop NodeID
	Metric  uint16
	Seqno   uint16
	// Feasible is false for a route the router holds but may not use: the
	// best of the unfeasible ones, listed while it waits for a new seqno.
	Feasible bool
	// Hub and Leaf are what the destination announced about itself.
	Hub, Leaf bool
}

// NeighbourInfo describes one link.
type NeighbourInfo struct {
	Link LinkID
	Peer NodeID
	// Leaf says the peer is a leaf; Parent that it is this leaf's parent.
	Leaf, Parent bool
	// Dead is set after the peer missed too many Hellos (the link is
	// still up as far as the host knows).
	Dead bool
	// RxCost is measured here from the peer's Hellos, TxCost is the peer's
	// measurement from its IHUs, Cost is the ETX cost routes use.
	RxCost, TxCost, Cost uint16
	// LastHello is when the last Hello came (zero if none yet).
	LastHello time.Time
	// Routes is how many destinations the peer announces as reachable.
	Routes int
}

// NextHop returns the link to send a packet for dst on. A leaf sends
// everything to its parent.
func (r *Router) NextHop(dst NodeID) (LinkID, bool) {
	if r.cfg.Leaf {
		if r.parent < 0 || dst == r.id {
			return 0, false
		}
		return r.nbrs[r.parent].link, true
	}
	d, ok := r.index.get(r.dests, dst)
	if !ok || d == 0 {
		return 0, false
	}
	sel := r.dests[d].selNb
	if sel == 0 {
		return 0, false
	}
	return r.nbrs[sel-1].link, true
}

// Routes returns a route per destination the router knows a finite route
// for: the selected one, or else the best unfeasible one.
func (r *Router) Routes() []RouteInfo {
	var out []RouteInfo
	for d := 1; d < len(r.dests); d++ {
		if info, ok := r.routeInfo(uint32(d)); ok {
			out = append(out, info)
		}
	}
	return out
}

// Route returns the route to dst, as Routes lists it.
func (r *Router) Route(dst NodeID) (RouteInfo, bool) {
	d, ok := r.index.get(r.dests, dst)
	if !ok || d == 0 {
		return RouteInfo{}, false
	}
	return r.routeInfo(d)
}

func (r *Router) routeInfo(d uint32) (RouteInfo, bool) {
	dst := &r.dests[d]
	if !dst.live {
		return RouteInfo{}, false
	}
	info := RouteInfo{Dest: dst.id, Hub: dst.flags&flagHub != 0, Leaf: dst.flags&flagLeaf != 0}
	if dst.selNb != 0 {
		nb := r.nbrs[dst.selNb-1]
		info.Link, info.NextHop = nb.link, nb.peer
		info.Metric, info.Seqno, info.Feasible = dst.selMetric, dst.selSeqno, true
		return info, true
	}
	best := -1
	info.Metric = MetricInfinity
	for slot, nb := range r.nbrs {
		if nb == nil || nb.dead {
			continue
		}
		e := nb.entry(d)
		if m := addMetric(e.metric, nb.cost); m < info.Metric {
			best, info.Metric, info.Seqno = slot, m, e.seqno
		}
	}
	if best < 0 {
		return RouteInfo{}, false
	}
	info.Link, info.NextHop = r.nbrs[best].link, r.nbrs[best].peer
	return info, true
}

// NearestHub returns the route to the reachable hub with the smallest
// metric (this node itself, with metric 0, if it is a hub).
func (r *Router) NearestHub() (RouteInfo, bool) {
	if r.cfg.Hub {
		return RouteInfo{Dest: r.id, Feasible: true, Hub: true}, true
	}
	var best RouteInfo
	found := false
	for d := 1; d < len(r.dests); d++ {
		dst := &r.dests[d]
		if !dst.live || dst.flags&flagHub == 0 || dst.selNb == 0 {
			continue
		}
		if !found || dst.selMetric < best.Metric {
			best, _ = r.routeInfo(uint32(d))
			found = true
		}
	}
	return best, found
}

// Neighbours describes every link that is up, in no particular order.
func (r *Router) Neighbours() []NeighbourInfo {
	var out []NeighbourInfo
	for slot, nb := range r.nbrs {
		if nb == nil {
			continue
		}
		info := NeighbourInfo{
			Link: nb.link, Peer: nb.peer, Leaf: nb.leaf, Parent: r.cfg.Leaf && slot == r.parent,
			Dead: nb.dead, RxCost: nb.rxcost, TxCost: nb.txcost, Cost: nb.cost, LastHello: nb.lastHello,
		}
		if nb.leaf {
			if nb.leafDest != 0 && nb.leafRoute.metric != MetricInfinity {
				info.Routes = 1
			}
		} else {
			for _, e := range nb.routes {
				if e.metric != MetricInfinity {
					info.Routes++
				}
			}
		}
		out = append(out, info)
	}
	return out
}

// Sizes used by StateBytes. mapEntryBytes is the measured cost of one
// entry of a Go map (swiss tables: 13 bytes a slot, at a load between 7/16
// and 7/8), for the links and requests; see BenchmarkStateBytes.
const (
	destBytes     = int(unsafe.Sizeof(dest{}))
	entryBytes    = int(unsafe.Sizeof(entry{}))
	nbBytes       = int(unsafe.Sizeof(neighbour{}))
	flightBytes   = int(unsafe.Sizeof(flight{}))
	requestBytes  = int(unsafe.Sizeof(request{})) + 32
	mapEntryBytes = 24
	sliceBytes    = 24
)

// StateBytes estimates the memory the routing state holds: the
// destination table and its index, every neighbour's announced routes and
// update stream, and the pending requests. It counts capacities, not
// lengths, so slack is included; the estimate is checked against the heap
// in the package's benchmark.
func (r *Router) StateBytes() int {
	n := int(unsafe.Sizeof(*r))
	n += cap(r.dests)*destBytes + r.index.bytes() + cap(r.free)*4
	n += cap(r.nbrs)*8 + len(r.links)*mapEntryBytes
	for _, nb := range r.nbrs {
		if nb == nil {
			continue
		}
		n += nbBytes + cap(nb.routes)*entryBytes + cap(nb.queue.items)*4 + cap(nb.queued)*8
		n += cap(nb.out) + cap(nb.acks)*4 + cap(nb.inflight)*flightBytes
		n += cap(nb.reqs) * int(unsafe.Sizeof(seqnoReq{}))
		for _, f := range nb.inflight {
			n += cap(f.dests)*4 + cap(f.reqs)*int(unsafe.Sizeof(seqnoReq{}))
		}
	}
	n += len(r.requests) * (requestBytes + mapEntryBytes)
	n += cap(r.msgs) * int(unsafe.Sizeof(message{}))
	return n
}
