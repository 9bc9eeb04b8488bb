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
	origin bool // this router is starved and asked
}

// requestSeqno asks neighbour slot (the best one announcing an unfeasible
// route) to have destination d's source bump its seqno past our
// feasibility distance. At most one request per destination goes out per
// Config.RequestTimeout.
func (r *Router) requestSeqno(now time.Time, d uint32, slot int) {
	dst := &r.dests[d]
	want := dst.fdSeqno + 1
	q := r.requests[d]
	if q != nil && !newer(want, q.seqno) && now.Before(q.sentAt.Add(r.cfg.RequestTimeout)) {
		return
	}
	tries := uint8(1)
	if q != nil && q.origin && q.seqno == want {
		if int(q.tries) > r.cfg.RequestRetries {
			return // given up until the feasibility distance moves
		}
		tries = q.tries + 1
	}
	r.sendSeqnoRequest(slot, dst.id, want, maxRequestHops)
	r.requests[d] = &request{
		seqno:  want,
		sentAt: now,
		due:    now.Add(r.cfg.RequestTimeout << (tries - 1)),
		tries:  tries,
		origin: true,
	}
}

func (r *Router) sendSeqnoRequest(slot int, id NodeID, seqno uint16, hops uint8) {
	nb := r.nbrs[slot]
	nb.out = appendSeqnoRequest(nb.out, seqno, hops, id)
}

// retryRequests asks again for the destinations still starved when their
// request times out, and drops the records of forwarded requests.
func (r *Router) retryRequests(now time.Time) {
	var due []uint32
	for d, q := range r.requests {
		if !now.Before(q.due) {
			due = append(due, d)
		}
	}
	slices.Sort(due) // map order is random; the output must not be
	for _, d := range due {
		q := r.requests[d]
		if !q.origin || int(q.tries) > r.cfg.RequestRetries {
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
		if q := r.requests[d]; q != nil && !q.due.After(now) {
			delete(r.requests, d) // retries exhausted
		}
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
	d, ok := r.index[m.dest]
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
	if q != nil && !newer(m.seqno, q.seqno) && now.Before(q.sentAt.Add(r.cfg.RequestTimeout)) {
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
		return
	}
	r.requests[d] = &request{seqno: m.seqno, sentAt: now, due: now.Add(r.cfg.RequestTimeout)}
}
