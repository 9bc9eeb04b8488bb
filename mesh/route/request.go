package route

import (
	"slices"
	"time"
)

// maxRequestHops bounds how far a seqno request travels.
const maxRequestHops = 255

// request remembers a seqno request for one destination, sent or forwarded,
// so that duplicates are suppressed and a starved router asks again if the
// answer does not come.
type request struct {
	seqno  uint16
	sentAt time.Time
	due    time.Time // next retry (origin) or when the record is dropped
	tries  uint8
	origin bool   // this router is starved and asked
	target uint16 // slot+1 of the neighbour our last request went to
	// askers are the neighbour slots the request came from: they get the
	// answer (our route with the new seqno) as soon as it arrives.
	askers []uint16
}

func (q *request) addAsker(slot int) {
	for _, s := range q.askers {
		if int(s) == slot {
			return
		}
	}
	q.askers = append(q.askers, uint16(slot))
}

// answerRequests sends d's route, whenever it changes, to the neighbours
// that asked for a new seqno: it may be feasible for them even with the old
// one. Once the route has the seqno they asked for, the request is done.
func (r *Router) answerRequests(d uint32) {
	q := r.requests[d]
	dst := &r.dests[d]
	if q == nil || dst.selNb == 0 {
		return
	}
	for _, slot := range q.askers {
		if int(slot) < len(r.nbrs) {
			r.enqueueSlot(int(slot), d)
		}
	}
	if !newer(q.seqno, dst.selSeqno) {
		delete(r.requests, d)
	}
}

// requestSeqno asks neighbour slot (the best one announcing an unfeasible
// route) to have destination d's source bump its seqno past our
// feasibility distance. At most one request per destination goes out per
// Config.RequestTimeout, unless the best neighbour to ask changed: the
// last one may have asked into a failure it had not noticed yet.
func (r *Router) requestSeqno(now time.Time, d uint32, slot int) {
	dst := &r.dests[d]
	want := dst.fdSeqno + 1
	q := r.requests[d]
	if q != nil && !newer(want, q.seqno) && now.Before(q.sentAt.Add(r.cfg.RequestTimeout)) {
		switch {
		case !q.origin:
			// A request we forwarded a moment ago asks for the same: it
			// stands for ours, and from now on we retry it.
			q.origin, q.tries, q.target = true, 1, uint16(slot+1)
			q.due = q.sentAt.Add(r.cfg.RequestTimeout)
			r.requestDue(q.due)
			return
		case int(q.target) == slot+1 || now.Before(q.sentAt.Add(r.cfg.RequestTimeout/4)):
			return
		}
		q.tries = 0
	}
	tries := 1
	if q != nil && q.origin && q.seqno == want {
		tries = int(q.tries) + 1
	}
	// The wait doubles with every try up to RequestInterval, and stays
	// there: while a neighbour announces a route, the destination is
	// reachable, and asking now and then is cheaper than staying cut off
	// because an answer got lost.
	r.sendSeqnoRequest(slot, dst.id, want, maxRequestHops)
	next := &request{
		seqno:  want,
		sentAt: now,
		due:    now.Add(min(r.cfg.RequestTimeout<<min(tries-1, 16), r.cfg.RequestInterval)),
		tries:  uint8(min(tries, 255)),
		origin: true,
		target: uint16(slot + 1),
	}
	if q != nil {
		next.askers = q.askers
	}
	r.requests[d] = next
	r.requestDue(next.due)
}

// requestDue notes that a request record is due at t, so that Deadline and
// retryRequests need not look at every record on every call.
func (r *Router) requestDue(t time.Time) {
	if r.nextRequest.IsZero() || t.Before(r.nextRequest) {
		r.nextRequest = t
	}
}

// sendSeqnoRequest queues a seqno request on a link. Requests travel in
// the link's acknowledged batches: on a long path a lost request would
// otherwise cost the asker a whole retry interval, a lost batch costs one
// retransmission timeout on one hop.
func (r *Router) sendSeqnoRequest(slot int, id NodeID, seqno uint16, hops uint8) {
	r.nbrs[slot].queueRequest(seqnoReq{dest: id, seqno: seqno, hops: hops})
}

func (nb *neighbour) queueRequest(q seqnoReq) {
	for i := range nb.reqs {
		if nb.reqs[i].dest == q.dest {
			if newer(q.seqno, nb.reqs[i].seqno) || q.seqno == nb.reqs[i].seqno && q.hops > nb.reqs[i].hops {
				nb.reqs[i] = q
			}
			return
		}
	}
	nb.reqs = append(nb.reqs, q)
}

// retryRequests asks again for the destinations still starved when their
// request times out, and drops the records of forwarded requests.
func (r *Router) retryRequests(now time.Time) {
	if r.nextRequest.IsZero() || now.Before(r.nextRequest) {
		return
	}
	r.nextRequest = time.Time{}
	var due []uint32
	for d, q := range r.requests {
		if !now.Before(q.due) {
			due = append(due, d)
		} else {
			r.requestDue(q.due)
		}
	}
	slices.Sort(due) // map order is random; the output must not be
	for _, d := range due {
		q := r.requests[d]
		if !q.origin {
			delete(r.requests, d)
			continue
		}
		slot, ok := r.starved(d)
		if !ok {
			delete(r.requests, d)
			continue
		}
		q.sentAt = time.Time{} // let requestSeqno send
		r.requestSeqno(now, d, slot)
	}
}

// starved reports whether d still warrants a seqno request (no feasible
// route, or an unfeasible one markedly better than the selected route) and
// the neighbour to send it to.
func (r *Router) starved(d uint32) (int, bool) {
	dst := &r.dests[d]
	best, bestMetric := -1, MetricInfinity
	for slot, nb := range r.nbrs {
		if nb == nil || nb.dead || nb.cost == MetricInfinity {
			continue
		}
		e := nb.entry(d)
		if e.metric == MetricInfinity || dst.feasible(e.seqno, e.metric) {
			continue
		}
		if m := addMetric(e.metric, nb.cost); m < bestMetric {
			best, bestMetric = slot, m
		}
	}
	if best < 0 {
		return -1, false
	}
	if dst.selNb != 0 && uint32(bestMetric)+uint32(r.cfg.Hysteresis) >= uint32(dst.selMetric) {
		return -1, false
	}
	return best, true
}

// handleSeqnoRequest answers a seqno request: the source bumps its seqno;
// a router whose selected route is new enough answers with it; any other
// forwards the request towards the source, once per
// Config.RequestTimeout.
func (r *Router) handleSeqnoRequest(now time.Time, slot int, m *message) {
	nb := r.nbrs[slot]
	if nb.dead {
		return
	}
	if m.dest == r.id {
		if newer(m.seqno, r.seqno) {
			r.bumpSeqno(m.seqno)
		} else if !r.cfg.Leaf && !nb.leaf || r.cfg.Leaf && slot == r.parent {
			r.enqueue(nb, 0)
		}
		return
	}
	if r.cfg.Leaf {
		r.counters.Rejected[RejectNotRouter]++
		return
	}
	d, ok := r.index.get(r.dests, m.dest)
	if !ok {
		r.counters.Rejected[RejectRequestUnroutable]++
		return
	}
	dst := &r.dests[d]
	if dst.selNb != 0 && int(dst.selNb) != slot+1 && !newer(m.seqno, dst.selSeqno) {
		if !nb.leaf {
			r.enqueue(nb, d)
		}
		return
	}
	if m.hops <= 1 {
		r.counters.Rejected[RejectRequestUnroutable]++
		return
	}
	q := r.requests[d]
	if q != nil && !newer(m.seqno, q.seqno) && now.Before(q.sentAt.Add(r.cfg.RequestTimeout/2)) {
		q.addAsker(slot) // it gets the answer the first request brings
		r.counters.Rejected[RejectRequestDuplicate]++
		return
	}
	next := -1
	if dst.selNb != 0 && int(dst.selNb) != slot+1 {
		next = int(dst.selNb - 1)
	} else {
		bestMetric := MetricInfinity
		for s, other := range r.nbrs {
			if s == slot || other == nil || other.dead || other.cost == MetricInfinity {
				continue
			}
			if m := addMetric(other.entry(d).metric, other.cost); m < bestMetric {
				next, bestMetric = s, m
			}
		}
	}
	if next < 0 {
		r.counters.Rejected[RejectRequestUnroutable]++
		return
	}
	r.sendSeqnoRequest(next, m.dest, m.seqno, m.hops-1)
	if q != nil && q.origin {
		q.sentAt = now
		if newer(m.seqno, q.seqno) {
			q.seqno = m.seqno
		}
		q.addAsker(slot)
		return
	}
	// The record outlives the duplicate window: it must still be there,
	// to pass the answer on, when the answer comes back from the source.
	q = &request{seqno: m.seqno, sentAt: now, due: now.Add(r.cfg.RequestInterval)}
	if old := r.requests[d]; old != nil {
		q.askers = old.askers
	}
	q.addAsker(slot)
	r.requests[d] = q
	r.requestDue(q.due)
}
