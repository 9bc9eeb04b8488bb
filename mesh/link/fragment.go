package link

import (
	"fmt"
	"time"
)

// reassembler collects the fragments of payloads too large for one frame,
// within bounds: at most MaxReassemblies payloads and MaxReassemblyBytes
// bytes at once, each for at most ReassemblyTimeout. Whatever an
// authenticated peer sends, a Session holds no more than that.
type reassembler struct {
	cfg     *Config
	c       *counters
	pending []*reassembly // oldest first
	bytes   int
}

type reassembly struct {
	id      uint32
	count   uint8
	got     int
	bytes   int
	parts   [][]byte
	started time.Time
}

// add takes one fragment and returns the payload when it completes one.
func (r *reassembler) add(now time.Time, f fragment) ([]byte, error) {
	ra, i := r.find(f.id)
	if ra == nil {
		ra = &reassembly{id: f.id, count: f.count, parts: make([][]byte, f.count), started: now}
		r.pending = append(r.pending, ra)
		i = len(r.pending) - 1
	}
	switch {
	case ra.count != f.count:
		r.drop(i)
		r.c.inc(cMalformed)
		return nil, fmt.Errorf("%w: fragment of payload %d says %d pieces, not %d", ErrMalformed, f.id, f.count, ra.count)
	case ra.parts[f.index] != nil:
		r.c.inc(cMalformed)
		return nil, fmt.Errorf("%w: fragment %d of payload %d twice", ErrMalformed, f.index, f.id)
	case ra.bytes+len(f.data) > MaxPayload:
		r.drop(i)
		r.c.inc(cMalformed)
		return nil, fmt.Errorf("%w: payload %d grows past %d bytes", ErrMalformed, f.id, MaxPayload)
	}
	// Make room, oldest first, never evicting the payload being added to.
	for len(r.pending) > r.cfg.MaxReassemblies || r.bytes+len(f.data) > r.cfg.MaxReassemblyBytes {
		if r.pending[0] == ra {
			break
		}
		r.drop(0)
		r.c.inc(cReassemblyEvicted)
	}
	ra.parts[f.index] = f.data
	ra.got++
	ra.bytes += len(f.data)
	r.bytes += len(f.data)
	if ra.got < int(ra.count) {
		return nil, nil
	}
	payload := make([]byte, 0, ra.bytes)
	for _, p := range ra.parts {
		payload = append(payload, p...)
	}
	_, i = r.find(f.id)
	r.drop(i)
	return payload, nil
}

func (r *reassembler) find(id uint32) (*reassembly, int) {
	for i, ra := range r.pending {
		if ra.id == id {
			return ra, i
		}
	}
	return nil, -1
}

func (r *reassembler) drop(i int) {
	r.bytes -= r.pending[i].bytes
	r.pending = append(r.pending[:i], r.pending[i+1:]...)
}

// expire drops the payloads that took longer than ReassemblyTimeout.
func (r *reassembler) expire(now time.Time) {
	for len(r.pending) > 0 && now.Sub(r.pending[0].started) >= r.cfg.ReassemblyTimeout {
		r.drop(0)
		r.c.inc(cReassemblyTimeouts)
	}
}

// deadline is when the oldest reassembly times out (zero: none).
func (r *reassembler) deadline() time.Time {
	if len(r.pending) == 0 {
		return time.Time{}
	}
	return r.pending[0].started.Add(r.cfg.ReassemblyTimeout)
}

// heldBytes is what the reassembler holds: fragment data plus a generous
// allowance per payload for its bookkeeping.
func (r *reassembler) heldBytes() int {
	const perPayload = 64 + 255*24
	return r.bytes + len(r.pending)*perPayload
}
