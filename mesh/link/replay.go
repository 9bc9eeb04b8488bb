package link

// replayWindow is an RFC 6479 sliding window over transport counters: a
// ring of 64-bit blocks in which a bit says "seen". Moving the window
// forward clears whole blocks, so a jump costs at most one pass over the
// ring and the window keeps (replayBlocks-1)*64 counters behind the newest.
type replayWindow struct {
	newest uint64 // the highest counter marked
	any    bool   // whether any counter was marked
	ring   [replayBlocks]uint64
}

const (
	replayBlocks = 64 // 4096 bits, a power of two
	replayBits   = 64
	// ReplayWindow is how far behind the newest counter a frame may be
	// and still be accepted (if not seen before).
	ReplayWindow = (replayBlocks - 1) * replayBits
)

// check reports whether counter n may be accepted: it is ahead of the
// window, or inside it and not yet seen. It changes nothing, so that a
// frame is marked only once it has been authenticated.
func (w *replayWindow) check(n uint64) bool {
	if !w.any || n > w.newest {
		return true
	}
	if w.newest-n >= ReplayWindow {
		return false
	}
	return w.ring[(n/replayBits)%replayBlocks]&(1<<(n%replayBits)) == 0
}

// mark records counter n as seen; check(n) must have been true.
func (w *replayWindow) mark(n uint64) {
	if !w.any || n > w.newest {
		// Clear the blocks the window moves into; they held counters
		// ReplayWindow or more behind n.
		to := n / replayBits
		from := to
		if w.any {
			from = w.newest/replayBits + 1
		}
		if to >= from {
			if to-from >= replayBlocks {
				from = to - (replayBlocks - 1)
			}
			for b := from; b <= to; b++ {
				w.ring[b%replayBlocks] = 0
			}
		}
		w.newest, w.any = n, true
	}
	w.ring[(n/replayBits)%replayBlocks] |= 1 << (n % replayBits)
}
