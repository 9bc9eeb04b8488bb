package route

import "time"

// dest is one destination: what this router selected, what it announces
// and its feasibility distance. It is a small value in one slice, with no
// pointers, because a router holds one per node of the mesh.
type dest struct {
	id NodeID
	// fdSeqno and fdMetric are the feasibility distance: the best
	// (seqno, metric) this router has announced. fdMetric is
	// MetricInfinity while nothing was announced.
	fdSeqno, fdMetric uint16
	// advSeqno and advMetric are what is announced to every neighbour but
	// the next hop (which gets MetricInfinity: poisoned reverse).
	advSeqno, advMetric uint16
	// selSeqno and selMetric describe the selected route through
	// neighbour slot selNb-1; selNb is 0 while there is none.
	selSeqno, selMetric uint16
	selNb               uint16
	flags               uint8
	live                bool
	// lostAt is 1 + the second (since New) the destination became
	// unreachable, 0 while it is reachable.
	lostAt uint32
}

// newer reports whether seqno a is newer than b, modulo 2^16 (RFC 8966
// §3.2.1).
func newer(a, b uint16) bool { return int16(a-b) > 0 }

// serialNewer is newer for batch serials.
func serialNewer(a, b uint32) bool { return int32(a-b) > 0 }

// addMetric adds a link cost to a metric, saturating at infinity.
func addMetric(m, cost uint16) uint16 {
	s := uint32(m) + uint32(cost)
	if s >= uint32(MetricInfinity) {
		return MetricInfinity
	}
	return uint16(s)
}

// feasible is RFC 8966's feasibility condition: a route announced with
// (seqno, metric) may be selected only if it is strictly better than the
// feasibility distance: a newer seqno, or the same seqno and a smaller
// metric. Along any chain of next hops the feasibility distances then
// strictly decrease, so the chain cannot close into a loop.
func (dst *dest) feasible(seqno, metric uint16) bool {
	if dst.fdMetric == MetricInfinity {
		return true
	}
	return newer(seqno, dst.fdSeqno) || (seqno == dst.fdSeqno && metric < dst.fdMetric)
}

func (r *Router) newDest(id NodeID) uint32 {
	d := dest{
		id:        id,
		fdMetric:  MetricInfinity,
		advMetric: MetricInfinity,
		selMetric: MetricInfinity,
		live:      true,
	}
	var i uint32
	if n := len(r.free); n > 0 {
		i = r.free[n-1]
		r.free = r.free[:n-1]
		r.dests[i] = d
	} else {
		i = uint32(len(r.dests))
		r.dests = append(r.dests, d)
	}
	r.index.put(r.dests, id, i)
	return i
}

func (r *Router) secondsSinceStart(now time.Time) uint32 {
	return uint32(now.Sub(r.start) / time.Second)
}

func (r *Router) handleUpdate(now time.Time, slot int, serial uint32, m *message) {
	nb := r.nbrs[slot]
	switch {
	case nb.dead:
		return // counted once for the batch
	case r.cfg.Leaf:
		r.counters.Rejected[RejectNotRouter]++
		return
	case m.metric == 0 && m.dest != nb.peer:
		r.counters.Rejected[RejectForeignOrigin]++
		return
	case m.dest == r.id:
		// A neighbour's route back to us is of no use. One with a newer
		// seqno than ours is what a node restarted without its persisted
		// seqno hears from its neighbours: jump past it.
		if m.metric != MetricInfinity && newer(m.seqno, r.seqno) {
			r.counters.Rejected[RejectOwnID]++
			r.bumpSeqno(m.seqno + 1)
		}
		return
	case nb.leaf && m.dest != nb.peer:
		r.counters.Rejected[RejectLeafRelay]++
		return
	}
	d, ok := r.index.get(r.dests, m.dest)
	if !ok {
		if m.metric == MetricInfinity {
			return // a retraction of a route never held
		}
		if r.index.len() >= r.cfg.MaxRoutes {
			r.counters.Rejected[RejectTableFull]++
			return
		}
		d = r.newDest(m.dest)
	}
	e := nb.entryRef(d, len(r.dests))
	if e.serial != 0 && !serialNewer(serial, e.serial) {
		return // a reordered batch older than what we hold
	}
	*e = entry{seqno: m.seqno, metric: m.metric, serial: serial}
	if m.metric != MetricInfinity {
		r.dests[d].flags = m.flags
	}
	r.reselect(now, d)
}

// reselect runs route selection for destination d: the cheapest feasible
// route, unless the current one is still feasible and within
// Config.Hysteresis of it. It then updates what is announced and asks for a
// new seqno if the router is starved of a feasible route, or if an
// unfeasible one would be markedly better.
func (r *Router) reselect(now time.Time, d uint32) {
	if d == 0 {
		return
	}
	dst := &r.dests[d]
	oldNb := dst.selNb
	// While neighbours wait for a newer seqno through us, routes that have
	// it win over better-looking ones that do not: only they answer the
	// request, and the newer seqno reaches the starved part of the mesh
	// along the requests' path instead of by a flood.
	var want uint16
	wanting := false
	if q := r.requests[d]; q != nil && len(q.askers) > 0 {
		want, wanting = q.seqno, true
	}
	fresh := false
	var best, unfeasible uint16
	bestMetric, curMetric, unfeasibleMetric := MetricInfinity, MetricInfinity, MetricInfinity
	for slot, nb := range r.nbrs {
		if nb == nil || nb.dead || nb.cost == MetricInfinity {
			continue
		}
		e := nb.entry(d)
		if e.metric == MetricInfinity {
			continue
		}
		m := addMetric(e.metric, nb.cost)
		if m == MetricInfinity {
			continue
		}
		id := uint16(slot + 1)
		if !dst.feasible(e.seqno, e.metric) {
			if m < unfeasibleMetric {
				unfeasible, unfeasibleMetric = id, m
			}
			continue
		}
		isFresh := wanting && !newer(want, e.seqno)
		if fresh && !isFresh {
			continue
		}
		if isFresh && !fresh {
			fresh = true
			best, bestMetric, curMetric = 0, MetricInfinity, MetricInfinity
		}
		if id == oldNb {
			curMetric = m
		}
		if m < bestMetric {
			best, bestMetric = id, m
		}
	}
	sel, selMetric := best, bestMetric
	if curMetric != MetricInfinity && uint32(bestMetric)+uint32(r.cfg.Hysteresis) >= uint32(curMetric) {
		sel, selMetric = oldNb, curMetric
	}
	dst.selNb, dst.selMetric = sel, selMetric
	if sel != 0 {
		dst.selSeqno = r.nbrs[sel-1].entry(d).seqno
		dst.lostAt = 0
	} else if dst.lostAt == 0 {
		dst.lostAt = r.secondsSinceStart(now) + 1
	}
	if sel != oldNb {
		r.counters.RouteChanges++
	}
	r.announce(d, oldNb)
	if unfeasible != 0 && (sel == 0 || uint32(unfeasibleMetric)+uint32(r.cfg.Hysteresis) < uint32(selMetric)) {
		r.requestSeqno(now, d, int(unfeasible-1))
	}
}

// announce updates what is announced for d after selection and queues the
// update for the neighbours that must hear it. A change of reachability or
// of the metric goes to every neighbour. A new seqno alone goes only to the
// neighbours that asked for it: the rest of the mesh has no use for it (an
// old seqno is as loop-free as a new one, and leaves feasibility
// distances looser), and announcing it everywhere would flood the whole
// mesh for every seqno request. A new next hop alone concerns the old and
// the new next hop (the poisoned reverse).
func (r *Router) announce(d uint32, oldNb uint16) {
	dst := &r.dests[d]
	if dst.selNb == 0 {
		if dst.advMetric != MetricInfinity {
			dst.advMetric = MetricInfinity
			r.enqueueAll(d)
		}
		return
	}
	wide := dst.advMetric == MetricInfinity ||
		absDiff(dst.selMetric, dst.advMetric) >= max(r.cfg.UpdateThreshold, dst.advMetric/16)
	if wide || dst.advSeqno != dst.selSeqno {
		dst.advSeqno, dst.advMetric = dst.selSeqno, dst.selMetric
		// The feasibility distance must be at least as good as anything
		// announced, so it moves before the announcement leaves.
		switch {
		case dst.fdMetric == MetricInfinity || newer(dst.advSeqno, dst.fdSeqno):
			dst.fdSeqno, dst.fdMetric = dst.advSeqno, dst.advMetric
		case dst.advSeqno == dst.fdSeqno && dst.advMetric < dst.fdMetric:
			dst.fdMetric = dst.advMetric
		}
	}
	if wide {
		r.enqueueAll(d)
	} else if dst.selNb != oldNb {
		if oldNb != 0 {
			r.enqueueSlot(int(oldNb-1), d)
		}
		r.enqueueSlot(int(dst.selNb-1), d)
	}
	r.answerRequests(d)
}

func absDiff(a, b uint16) uint16 {
	if a > b {
		return a - b
	}
	return b - a
}

// advertisedTo returns what this router announces for d on the link in
// slot.
func (r *Router) advertisedTo(slot int, d uint32) (flags uint8, seqno, metric uint16) {
	if d == 0 {
		if r.cfg.Leaf && slot != r.parent {
			return r.flags, r.seqno, MetricInfinity
		}
		return r.flags, r.seqno, 0
	}
	dst := &r.dests[d]
	if dst.advMetric == MetricInfinity || int(dst.selNb) == slot+1 {
		return dst.flags, dst.advSeqno, MetricInfinity
	}
	return dst.flags, dst.advSeqno, dst.advMetric
}

// bumpSeqno sets this router's own seqno and announces it.
func (r *Router) bumpSeqno(s uint16) {
	r.seqno = s
	r.counters.SeqnoBumps++
	r.dests[0].advSeqno = s
	if r.cfg.Leaf {
		if r.parent >= 0 {
			r.enqueue(r.nbrs[r.parent], 0)
		}
		return
	}
	r.enqueueAll(0)
}

// collectGarbage forgets destinations unreachable for Config.SourceGCTime.
// One still announced by a neighbour (unfeasibly, or it would be selected)
// only loses its feasibility distance, as in babeld: by now every
// neighbour has heard this router's retraction, so none routes through it.
func (r *Router) collectGarbage(now time.Time) {
	cutoff := r.secondsSinceStart(now)
	gc := uint32(r.cfg.SourceGCTime / time.Second)
	for d := uint32(1); d < uint32(len(r.dests)); d++ {
		dst := &r.dests[d]
		if !dst.live || dst.selNb != 0 || dst.lostAt == 0 || cutoff-(dst.lostAt-1) < gc {
			continue
		}
		if r.announcedByAny(d) {
			dst.fdMetric = MetricInfinity
			dst.lostAt = 0
			r.reselect(now, d)
			continue
		}
		r.forget(d)
	}
}

func (r *Router) announcedByAny(d uint32) bool {
	for _, nb := range r.nbrs {
		if nb != nil && nb.entry(d).metric != MetricInfinity {
			return true
		}
	}
	return false
}

// forget frees destination d's slot for reuse.
func (r *Router) forget(d uint32) {
	dst := &r.dests[d]
	r.index.remove(r.dests, dst.id)
	delete(r.requests, d)
	for _, nb := range r.nbrs {
		if nb == nil {
			continue
		}
		if nb.leaf && nb.leafDest == d+1 {
			nb.leafDest = 0
		} else if int(d) < len(nb.routes) {
			nb.routes[d] = noEntry
		}
	}
	*dst = dest{}
	r.free = append(r.free, d)
}
