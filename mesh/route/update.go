package route

import "time"

// The update stream of a link: destinations whose announcement changed are
// queued (once each), sent in batches that carry a serial, and acknowledged
// by serial. A batch not acknowledged in time puts its destinations back in
// the queue, so what is sent again is always the current announcement,
// never a stale one. The receiver keeps each entry's serial and ignores an
// entry older than the one it holds, so batches may arrive in any order.

// enqueue queues destination d for announcement on nb.
func (r *Router) enqueue(nb *neighbour, d uint32) {
	w, bit := d/64, uint64(1)<<(d%64)
	if int(w) >= len(nb.queued) {
		grown := make([]uint64, (len(r.dests)+63)/64)
		copy(grown, nb.queued)
		nb.queued = grown
	}
	if nb.queued[w]&bit != 0 {
		return
	}
	nb.queued[w] |= bit
	nb.queue.push(d)
}

// destQueue is a FIFO of destination indices. Popping advances a head
// index rather than reslicing, so that the array of a drained table dump
// is released, not kept alive by its tail.
type destQueue struct {
	items []uint32
	head  int
}

func (q *destQueue) len() int { return len(q.items) - q.head }

func (q *destQueue) push(d uint32) {
	if q.head > 256 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, d)
}

func (q *destQueue) pop() uint32 {
	d := q.items[q.head]
	q.head++
	if q.head == len(q.items) {
		if cap(q.items) > 256 {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	}
	return d
}

func (r *Router) enqueueSlot(slot int, d uint32) {
	if nb := r.nbrs[slot]; nb != nil && !nb.dead && !nb.leaf {
		r.enqueue(nb, d)
	}
}

// enqueueAll queues d on every link that takes route updates: a router's
// links to other routers (a leaf's own announcement goes through
// bumpSeqno and chooseParent).
func (r *Router) enqueueAll(d uint32) {
	for _, nb := range r.nbrs {
		if nb != nil && !nb.dead && !nb.leaf {
			r.enqueue(nb, d)
		}
	}
}

// enqueueDump queues every reachable destination on the link in slot, for
// a new or revived neighbour.
func (r *Router) enqueueDump(slot int) {
	nb := r.nbrs[slot]
	for d := range r.dests {
		if !r.dests[d].live {
			continue
		}
		if _, _, m := r.advertisedTo(slot, uint32(d)); m != MetricInfinity {
			r.enqueue(nb, uint32(d))
		}
	}
}

func (r *Router) handleRouteRequest(slot int, m *message) {
	nb := r.nbrs[slot]
	switch {
	case nb.dead:
	case r.cfg.Leaf:
		if slot == r.parent {
			r.enqueue(nb, 0)
		}
	case nb.leaf:
		// A leaf holds no routes; it has no use for a table.
	case m.wildcard:
		r.enqueueDump(slot)
	default:
		if d, ok := r.index.get(r.dests, m.dest); ok {
			r.enqueue(nb, d)
		}
	}
}

func (r *Router) handleAck(now time.Time, nb *neighbour, serial uint32) {
	for i := range nb.inflight {
		f := &nb.inflight[i]
		if f.serial != serial {
			continue
		}
		nb.sampleRTT(now.Sub(f.sentAt))
		nb.inflight = append(nb.inflight[:i], nb.inflight[i+1:]...)
		nb.backoff = 1
		return
	}
}

// sampleRTT feeds the retransmission timer as TCP does (RFC 6298). Every
// batch has its own serial and is never resent as such, so every ack is a
// clean sample.
func (nb *neighbour) sampleRTT(rtt time.Duration) {
	if nb.srtt == 0 {
		nb.srtt, nb.rttvar = rtt, rtt/2
		return
	}
	diff := nb.srtt - rtt
	if diff < 0 {
		diff = -diff
	}
	nb.rttvar = (3*nb.rttvar + diff) / 4
	nb.srtt = (7*nb.srtt + rtt) / 8
}

// Bounds of the retransmission timeout.
const (
	minRTO     = 10 * time.Millisecond
	maxBackoff = 16
)

// rto is how long a batch waits for its ack: from the measured round trip,
// or a quarter of a Hello interval before there is a measurement.
func (nb *neighbour) rto() time.Duration {
	rto := nb.interval / 4
	if nb.srtt != 0 {
		rto = max(nb.srtt+4*nb.rttvar, minRTO)
	}
	return min(rto*time.Duration(nb.backoff), 2*nb.interval)
}

// checkRetransmit requeues the destinations of batches whose ack is late.
func (r *Router) checkRetransmit(now time.Time, nb *neighbour) {
	if nb.dead || len(nb.inflight) == 0 {
		return
	}
	rto := nb.rto()
	kept := nb.inflight[:0]
	late := false
	for _, f := range nb.inflight {
		if now.Sub(f.sentAt) < rto {
			kept = append(kept, f)
			continue
		}
		late = true
		r.counters.Retransmits++
		for _, d := range f.dests {
			if int(d) < len(r.dests) && r.dests[d].live {
				r.enqueue(nb, d)
			}
		}
		for _, q := range f.reqs {
			nb.queueRequest(q)
		}
	}
	nb.inflight = kept
	if late {
		nb.backoff = min(nb.backoff*2, maxBackoff)
	}
}

// flushLink packs what is due on nb into packets: control messages, acks
// (which also ride along on any packet that goes anyway), and as many update
// batches as the window and the batch delay allow.
func (r *Router) flushLink(now time.Time, slot int, sends []Send) []Send {
	nb := r.nbrs[slot]
	const updateLen = tlvHeaderLen + updateBodyLen
	const serialLen = tlvHeaderLen + serialBodyLen
	limit := r.cfg.MaxPacket
	ctl := nb.out
	acksDue := len(nb.acks) > 0 && !now.Before(nb.ackDue)
	serial := nb.serial
	for {
		updates := r.batchDue(now, nb)
		if len(ctl) == 0 && !updates && !(acksDue && len(nb.acks) > 0) {
			break
		}
		b := make([]byte, 1, min(limit, 1+len(ctl)+4*len(nb.acks)+8+serialLen+updateLen*nb.queue.len()+(tlvHeaderLen+seqnoReqLen)*len(nb.reqs)))
		b[0] = controlMagic
		for len(ctl) > 0 {
			n := tlvHeaderLen + int(ctl[1])
			if len(b)+n > limit && len(b) > 1 {
				break
			}
			b = append(b, ctl[:n]...)
			ctl = ctl[n:]
		}
		if len(nb.acks) > 0 {
			if room := (limit - len(b) - tlvHeaderLen) / ackSerialLen; room > 0 {
				n := min(room, len(nb.acks), maxTLVBodyLen/ackSerialLen)
				b = appendAcks(b, nb.acks[:n])
				nb.acks = nb.acks[n:]
			}
		}
		if updates && limit-len(b) >= serialLen+updateLen {
			b = r.appendBatch(now, slot, b, limit)
		}
		if len(b) == 1 {
			break
		}
		r.countSent(b)
		sends = append(sends, Send{Link: nb.link, Packet: b})
	}
	if nb.probe && !nb.dead {
		// A batch that went answers as well as a probe; else an empty
		// batch goes on its own (one Serial per packet).
		if nb.serial == serial {
			nb.serial++
			b := appendSerial([]byte{controlMagic}, nb.serial)
			r.countSent(b)
			sends = append(sends, Send{Link: nb.link, Packet: b})
		}
		nb.probe = false
	}
	nb.out = nb.out[:0]
	if len(nb.acks) == 0 {
		nb.acks = nb.acks[:0:0]
	}
	return sends
}

// batchDue reports whether an update batch may go on nb now: something is
// queued, the window has room, and either the batch delay has passed since
// the last batch or there is a full packet's worth. Changes arriving in a
// burst thus share packets, while a lone change goes at once.
func (r *Router) batchDue(now time.Time, nb *neighbour) bool {
	if nb.dead || nb.queue.len() == 0 && len(nb.reqs) == 0 || len(nb.inflight) >= r.cfg.UpdateWindow {
		return false
	}
	full := (r.cfg.MaxPacket - 1 - tlvHeaderLen - serialBodyLen) / (tlvHeaderLen + updateBodyLen)
	return len(nb.reqs) > 0 || nb.queue.len() >= full || !now.Before(nb.lastBatch.Add(r.cfg.BatchDelay))
}

// queueAck queues the ack of a received batch; it goes with the next packet
// on the link, or on its own after the batch delay.
func (r *Router) queueAck(now time.Time, nb *neighbour, serial uint32) {
	if len(nb.acks) == 0 {
		nb.ackDue = now.Add(r.cfg.BatchDelay)
	}
	nb.acks = append(nb.acks, serial)
}

// appendBatch appends one update batch (a serial and the queued
// destinations that fit) to b and records it as in flight.
func (r *Router) appendBatch(now time.Time, slot int, b []byte, limit int) []byte {
	nb := r.nbrs[slot]
	const updateLen = tlvHeaderLen + updateBodyLen
	serialAt := len(b)
	nb.serial++
	b = appendSerial(b, nb.serial)
	var reqs []seqnoReq
	for len(nb.reqs) > 0 && limit-len(b) >= tlvHeaderLen+seqnoReqLen {
		q := nb.reqs[0]
		nb.reqs = nb.reqs[1:]
		b = appendSeqnoRequest(b, q.seqno, q.hops, q.dest)
		reqs = append(reqs, q)
	}
	if len(nb.reqs) == 0 {
		nb.reqs = nil
	}
	var dests []uint32
	for nb.queue.len() > 0 && limit-len(b) >= updateLen {
		d := nb.queue.pop()
		nb.queued[d/64] &^= 1 << (d % 64)
		if int(d) >= len(r.dests) || !r.dests[d].live {
			continue
		}
		flags, seqno, metric := r.advertisedTo(slot, d)
		b = appendUpdate(b, flags, seqno, metric, r.dests[d].id)
		dests = append(dests, d)
	}
	if len(dests) == 0 && len(reqs) == 0 {
		nb.serial--
		return b[:serialAt]
	}
	nb.inflight = append(nb.inflight, flight{serial: nb.serial, sentAt: now, dests: dests, reqs: reqs})
	nb.lastBatch = now
	return b
}

// countPacket adds a well-formed control packet to per-type counters, by
// the types it carries.
func countPacket(counts *[NumMsgTypes]MsgCount, b []byte) {
	var seen [NumMsgTypes]bool
	for off := 1; off+tlvHeaderLen <= len(b); {
		typ, n := tlvType(b[off]), int(b[off+1])
		if off+tlvHeaderLen+n > len(b) {
			return
		}
		var metric uint16
		if typ == tlvUpdate && n >= updateBodyLen {
			metric = uint16(b[off+5])<<8 | uint16(b[off+6])
		}
		t := msgTypeOf(typ, metric)
		if t == NumMsgTypes {
			off += tlvHeaderLen + n
			continue
		}
		count := uint64(1)
		if typ == tlvAck {
			count = uint64(n / ackSerialLen)
		}
		counts[t].Bytes += uint64(tlvHeaderLen + n)
		if typ != tlvSerial {
			counts[t].Messages += count
			if !seen[t] {
				seen[t] = true
				counts[t].Packets++
			}
		}
		off += tlvHeaderLen + n
	}
}

func (r *Router) countSent(b []byte) {
	r.counters.ControlPackets++
	r.counters.ControlBytes += uint64(len(b))
	countPacket(&r.counters.Sent, b)
}
