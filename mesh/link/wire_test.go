package link

import (
	"errors"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"
)

// vwire joins two sessions by a virtual link with latency, jitter (which
// reorders frames) and loss, driven in steps of virtual time.
type vwire struct {
	t        testing.TB
	rng      *mrand.Rand
	now      time.Time
	s        [2]*Session
	got      [2][][]byte
	inflight []inflight
	latency  time.Duration // base; each frame adds up to as much again
	loss     float64
	// drop, when set, decides the fate of each frame instead of loss.
	drop func(from int, frame []byte) bool
	// closed records a session's fatal error instead of failing the test.
	closed [2]error
}

type inflight struct {
	at    time.Time
	to    int
	frame []byte
}

func newWire(t testing.TB, seed uint64, a, b *Session) *vwire {
	return &vwire{t: t, rng: mrand.New(mrand.NewPCG(seed, 1)), now: t0, s: [2]*Session{a, b}, latency: 10 * time.Millisecond}
}

func (w *vwire) send(from int, frames [][]byte) {
	for _, f := range frames {
		if w.drop != nil && w.drop(from, f) || w.drop == nil && w.rng.Float64() < w.loss {
			continue
		}
		d := w.latency + time.Duration(w.rng.Int64N(int64(w.latency)+1))
		w.inflight = append(w.inflight, inflight{at: w.now.Add(d), to: 1 - from, frame: f})
	}
}

func (w *vwire) fail(i int, err error) {
	if !errors.Is(err, ErrClosed) {
		w.t.Fatalf("session %d: %v", i, err)
	}
	w.closed[i] = err
}

// step advances virtual time by d: delivers frames due, runs Tick where a
// session's deadline passed.
func (w *vwire) step(d time.Duration) {
	w.now = w.now.Add(d)
	slices.SortStableFunc(w.inflight, func(a, b inflight) int { return a.at.Compare(b.at) })
	for len(w.inflight) > 0 && !w.inflight[0].at.After(w.now) {
		f := w.inflight[0]
		w.inflight = w.inflight[1:]
		if w.closed[f.to] != nil {
			continue
		}
		send, got, err := w.s[f.to].Handle(f.at, f.frame)
		if err != nil {
			w.fail(f.to, err)
		}
		w.got[f.to] = append(w.got[f.to], got...)
		w.send(f.to, send)
	}
	for i, s := range w.s {
		if w.closed[i] != nil {
			continue
		}
		if dl := s.Deadline(); !dl.IsZero() && !dl.After(w.now) {
			send, err := s.Tick(w.now)
			if err != nil {
				w.fail(i, err)
			}
			w.send(i, send)
			if dl := s.Deadline(); !dl.IsZero() && !dl.After(w.now) && w.closed[i] == nil {
				w.t.Fatalf("session %d: deadline %v not after the tick at %v", i, dl, w.now)
			}
		}
	}
}

// run steps for total in steps of 5 ms, calling each (if set) every step.
func (w *vwire) run(total time.Duration, each func()) {
	end := w.now.Add(total)
	for w.now.Before(end) {
		if each != nil {
			each()
		}
		w.step(5 * time.Millisecond)
	}
}

// sealAt seals payload on side i at the wire's time and sends it.
func (w *vwire) sealAt(i int, payload []byte) {
	frames, err := w.s[i].Seal(w.now, payload)
	if err != nil {
		w.t.Fatalf("Seal on %d: %v", i, err)
	}
	w.send(i, frames)
}

// start initiates from a to b over the wire; b accepts the first frame
// that arrives.
func startWire(t testing.TB, seed uint64, a, b *Endpoint, ik bool, drop func(int, []byte) bool) *vwire {
	t.Helper()
	var key []byte
	if ik {
		key = b.static.Public
	}
	sa, init, err := a.Initiate(t0, key)
	if err != nil {
		t.Fatal(err)
	}
	w := newWire(t, seed, sa, nil)
	w.drop = drop
	// b has no session until an init reaches it.
	pendingInit := [][]byte{init}
	accept := func() {
		for _, f := range pendingInit {
			if w.drop != nil && w.drop(0, f) {
				continue
			}
			sb, resp, err := b.Accept(w.now, f)
			if err != nil {
				t.Fatal(err)
			}
			w.s[1] = sb
			w.send(1, [][]byte{resp})
			return
		}
	}
	accept()
	for w.s[1] == nil {
		if w.now.Sub(t0) > 30*time.Second {
			t.Fatal("no init reached b")
		}
		w.now = w.now.Add(5 * time.Millisecond)
		if dl := sa.Deadline(); !dl.After(w.now) {
			pendingInit, err = sa.Tick(w.now)
			if err != nil {
				t.Fatal(err)
			}
			accept()
		}
	}
	return w
}
