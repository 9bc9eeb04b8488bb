package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

// traffic sends a numbered payload from each side every 20 ms and returns
// a check that every payload arrived exactly once.
func traffic(w *vwire) (each func(), check func(t *testing.T)) {
	var sent [2]uint32
	tick := 0
	each = func() {
		tick++
		if tick%4 != 0 {
			return
		}
		for i := range 2 {
			if w.closed[i] == nil && w.s[i].Established() {
				sent[i]++
				w.sealAt(i, binary.BigEndian.AppendUint32(nil, sent[i]))
			}
		}
	}
	check = func(t *testing.T) {
		t.Helper()
		for i := range 2 {
			seen := map[uint32]int{}
			for _, p := range w.got[1-i] {
				seen[binary.BigEndian.Uint32(p)]++
			}
			for n := uint32(1); n <= sent[i]; n++ {
				if seen[n] != 1 {
					t.Fatalf("payload %d from side %d arrived %d times (%d sent)", n, i, seen[n], sent[i])
				}
			}
		}
	}
	return each, check
}

func TestRekeyUnderTraffic(t *testing.T) {
	home := newHome(t, "home")
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		run   time.Duration
	}{
		{"by time", nil, 10 * time.Minute},
		{"by message count", func(c *Config) { c.RekeyAfterMessages = 200 }, time.Minute},
	} {
		for _, ik := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s ik=%v", tc.name, ik), func(t *testing.T) {
				a, b := home.node(t, RoleRouter, tc.tweak), home.node(t, RoleRouter, tc.tweak)
				w := startWire(t, 1, a, b, ik, nil)
				each, check := traffic(w)
				w.run(tc.run, each)
				w.run(time.Second, nil) // drain
				check(t)
				for i, s := range w.s {
					c := s.Counters()
					if c.Rekeys < 4 {
						t.Errorf("side %d: %d rekeys", i, c.Rekeys)
					}
					if c.Forged+c.Replayed+c.UnknownKey+c.Malformed+c.StaleHandshake != 0 {
						t.Errorf("side %d refused frames: %+v", i, c)
					}
				}
			})
		}
	}
}

// TestLossyLink: with 5 % loss and reordering the link comes up, rekeys
// and stays up for 10 minutes; payloads arrive at most once.
func TestLossyLink(t *testing.T) {
	home := newHome(t, "home")
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
			w := startWire(t, seed, a, b, seed%2 == 0, nil)
			w.loss = 0.05
			var sent [2]int
			tick := 0
			w.run(10*time.Minute, func() {
				if tick++; tick%20 == 0 {
					for i := range 2 {
						if w.s[i].Established() {
							sent[i]++
							w.sealAt(i, []byte(fmt.Sprint(sent[i])))
						}
					}
				}
			})
			for i := range 2 {
				if w.closed[i] != nil {
					t.Fatalf("side %d closed: %v", i, w.closed[i])
				}
				got := len(w.got[1-i])
				if got > sent[i] || float64(got) < 0.9*float64(sent[i]) {
					t.Fatalf("side %d: %d of %d arrived", i, got, sent[i])
				}
				if c := w.s[i].Counters(); c.Forged+c.Replayed != 0 {
					t.Fatalf("side %d: %+v", i, c)
				}
			}
		})
	}
}

// TestHandshakeLosses drops each handshake message in turn, once.
func TestHandshakeLosses(t *testing.T) {
	home := newHome(t, "home")
	for _, ik := range []bool{false, true} {
		for lose := range 4 { // init, response, finish or confirmation, the answer to it
			t.Run(fmt.Sprintf("ik=%v lose=%d", ik, lose), func(t *testing.T) {
				a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
				n := 0
				w := startWire(t, 1, a, b, ik, func(int, []byte) bool {
					n++
					return n-1 == lose
				})
				w.run(5*time.Second, nil)
				for i, s := range w.s {
					if !s.Established() || w.closed[i] != nil {
						t.Fatalf("side %d: established %v, closed %v", i, s.Established(), w.closed[i])
					}
				}
				each, check := traffic(w)
				w.run(time.Second, each)
				w.run(time.Second, nil)
				check(t)
			})
		}
	}
}

func TestHandshakeTimeout(t *testing.T) {
	home := newHome(t, "home")
	a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
	sa, _, err := a.Initiate(t0, b.static.Public)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	tries := 1
	for {
		now = sa.Deadline()
		frames, err := sa.Tick(now)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatal(err)
			}
			break
		}
		tries += len(frames)
	}
	if got := now.Sub(t0); got != 10*time.Second {
		t.Fatalf("closed after %v", got)
	}
	if c := sa.Counters(); c.Closed != 1 || c.HandshakesStarted != uint64(tries) || tries != 10 {
		t.Fatalf("%d tries, counters %+v", tries, c)
	}
	if _, err := sa.Seal(now, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Seal on a closed session: %v", err)
	}
}

// TestCrossedHandshakes: both sides initiate at once, each on its session
// for the link; they settle on one handshake and the link comes up.
func TestCrossedHandshakes(t *testing.T) {
	home := newHome(t, "home")
	for _, ik := range []bool{false, true} {
		t.Run(fmt.Sprintf("ik=%v", ik), func(t *testing.T) {
			a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
			var ka, kb []byte
			if ik {
				ka, kb = b.static.Public, a.static.Public
			}
			sa, ia, err := a.Initiate(t0, ka)
			if err != nil {
				t.Fatal(err)
			}
			sb, ib, err := b.Initiate(t0, kb)
			if err != nil {
				t.Fatal(err)
			}
			w := newWire(t, 3, sa, sb)
			w.send(0, [][]byte{ia})
			w.send(1, [][]byte{ib})
			w.run(time.Second, nil)
			if !sa.Established() || !sb.Established() {
				t.Fatalf("established: %v %v", sa.Established(), sb.Established())
			}
			each, check := traffic(w)
			w.run(3*time.Minute, each)
			w.run(time.Second, nil)
			check(t)
		})
	}
}

// TestPeerRestart: b loses its session (a restart) and initiates afresh
// to a's still-established session, which takes it as a rekey.
func TestPeerRestart(t *testing.T) {
	home := newHome(t, "home")
	for _, ik := range []bool{false, true} {
		t.Run(fmt.Sprintf("ik=%v", ik), func(t *testing.T) {
			a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
			sa, _ := connect(t, t0, a, b, true)
			now := t0.Add(time.Minute)
			var key []byte
			if ik {
				key = a.static.Public
			}
			sb, init, err := b.Initiate(now, key)
			if err != nil {
				t.Fatal(err)
			}
			pump(t, now, sa, sb, [][]byte{init}, nil)
			if !sb.Established() {
				t.Fatal("restarted side not established")
			}
			atA, atB := pump(t, now, sa, sb, seal(t, now, sb, []byte("back")), seal(t, now, sa, []byte("welcome")))
			if len(atA) != 1 || len(atB) != 1 {
				t.Fatalf("payloads after restart: %d, %d", len(atA), len(atB))
			}
		})
	}
}

// TestReplayedInit: an IK first message replayed to an established
// session is refused and does not disturb the link.
func TestReplayedInit(t *testing.T) {
	home := newHome(t, "home")
	a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
	sa, init, err := a.Initiate(t0, b.static.Public)
	if err != nil {
		t.Fatal(err)
	}
	sb, resp, err := b.Accept(t0, init)
	if err != nil {
		t.Fatal(err)
	}
	pump(t, t0, sa, sb, [][]byte{resp}, nil)
	send, _, err := sb.Handle(t0, init)
	if err != nil || len(send) != 0 {
		t.Fatalf("replayed init: %v, %d frames", err, len(send))
	}
	if c := sb.Counters(); c.StaleHandshake != 1 {
		t.Fatalf("counters %+v", c)
	}
	if _, got := pump(t, t0, sa, sb, nil, seal(t, t0, sa, []byte("still up"))); len(got) != 1 {
		t.Fatal("link disturbed by a replayed init")
	}
}

func TestEndpointCountersAddUp(t *testing.T) {
	home := newHome(t, "home")
	a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
	s1, _ := connect(t, t0, a, b, true)
	s2, _ := connect(t, t0, a, b, false)
	c1, c2, total := s1.Counters(), s2.Counters(), a.Counters()
	if total.FramesSent != c1.FramesSent+c2.FramesSent || total.HandshakesCompleted != 2 {
		t.Fatalf("sessions %+v + %+v, endpoint %+v", c1, c2, total)
	}
}

// TestKeysExpireWithoutPeer: when the neighbour vanishes, both sides keep
// their keys until RejectAfter, try to rekey, and close HandshakeTimeout
// after the keys expired.
func TestKeysExpireWithoutPeer(t *testing.T) {
	home := newHome(t, "home")
	a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
	w := startWire(t, 1, a, b, true, nil)
	w.run(time.Second, nil)
	w.drop = func(int, []byte) bool { return true }
	var closedAt [2]time.Time
	w.run(4*time.Minute, func() {
		for i := range 2 {
			if w.closed[i] != nil && closedAt[i].IsZero() {
				closedAt[i] = w.now
			}
		}
	})
	for i := range 2 {
		if !errors.Is(w.closed[i], ErrClosed) {
			t.Fatalf("side %d not closed: %v", i, w.closed[i])
		}
		if d := closedAt[i].Sub(t0); d < 3*time.Minute+10*time.Second || d > 3*time.Minute+12*time.Second {
			t.Fatalf("side %d closed after %v", i, d)
		}
	}
	if c := w.s[0].Counters(); c.HandshakesStarted < 50 {
		t.Fatalf("initiator tried %d handshakes", c.HandshakesStarted)
	}
}
