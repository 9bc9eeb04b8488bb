package link

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"
)

func payloadOf(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func TestFragmentRoundTrip(t *testing.T) {
	home := newHome(t, "home")
	for _, mtu := range []int{MinMTU, DefaultMTU, 9000} {
		tweak := func(c *Config) { c.MTU = mtu }
		sa, sb := connect(t, t0, home.node(t, RoleRouter, tweak), home.node(t, RoleRouter, tweak), true)
		for _, n := range []int{0, 1, MaxWhole(mtu), MaxWhole(mtu) + 1, 5000, MaxPayload - 1, MaxPayload} {
			t.Run(fmt.Sprintf("mtu=%d size=%d", mtu, n), func(t *testing.T) {
				p := payloadOf(n, uint64(n))
				frames := seal(t, t0, sa, p)
				want := (n + mtu - fragmentOverhead - 1) / (mtu - fragmentOverhead)
				if n+wholeOverhead <= mtu {
					want = 1
				}
				if len(frames) != want {
					t.Fatalf("%d frames, want %d", len(frames), want)
				}
				for _, f := range frames {
					if len(f) > mtu {
						t.Fatalf("frame of %d bytes over MTU %d", len(f), mtu)
					}
				}
				// Reversed order: fragments may arrive in any order.
				var got [][]byte
				for i := len(frames) - 1; i >= 0; i-- {
					_, d, err := sb.Handle(t0, frames[i])
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, d...)
				}
				if len(got) != 1 || !bytes.Equal(got[0], p) {
					t.Fatalf("got %d payloads", len(got))
				}
			})
		}
	}
	sa, _ := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	if _, err := sa.Seal(t0, make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Seal of MaxPayload+1: %v", err)
	}
}

// TestFragmentLoss: a payload missing a fragment is never delivered, and
// its memory is released when it times out.
func TestFragmentLoss(t *testing.T) {
	home := newHome(t, "home")
	sa, sb := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	p := payloadOf(MaxPayload, 1)
	frames := seal(t, t0, sa, p)
	for i, f := range frames {
		if i == 17 {
			continue
		}
		if _, got, _ := sb.Handle(t0, f); len(got) != 0 {
			t.Fatal("payload delivered without one fragment")
		}
	}
	if sb.ReassemblyBytes() < MaxPayload-DefaultMTU {
		t.Fatalf("holding %d bytes", sb.ReassemblyBytes())
	}
	if d := sb.Deadline(); d.After(t0.Add(5 * time.Second)) {
		t.Fatalf("deadline %v later than the reassembly timeout", d)
	}
	if _, err := sb.Tick(t0.Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if sb.ReassemblyBytes() != 0 || sb.Counters().ReassemblyTimeouts != 1 {
		t.Fatalf("after the timeout: %d bytes, %+v", sb.ReassemblyBytes(), sb.Counters())
	}
	// The late fragment alone starts a new reassembly that also times out.
	now := t0.Add(6 * time.Second)
	if _, got, _ := sb.Handle(now, frames[17]); len(got) != 0 {
		t.Fatal("late fragment delivered something")
	}
	// Over a lossy wire, complete payloads arrive whole and the rest time out.
	w := newWire(t, 9, sa, sb)
	w.now = now
	w.loss = 0.01
	sent := 0
	w.run(20*time.Second, func() {
		if sent < 100 {
			w.sealAt(0, payloadOf(MaxPayload, uint64(sent)))
			sent++
		}
	})
	for _, got := range w.got[1] {
		if len(got) != MaxPayload {
			t.Fatalf("payload of %d bytes", len(got))
		}
	}
	c := sb.Counters()
	if len(w.got[1]) == 0 || len(w.got[1]) == 100 || c.ReassemblyTimeouts+c.ReassemblyEvicted == 0 {
		t.Fatalf("%d of 100 delivered, counters %+v", len(w.got[1]), c)
	}
	if sb.ReassemblyBytes() != 0 {
		t.Fatalf("still holding %d bytes", sb.ReassemblyBytes())
	}
	t.Logf("1%% loss: %d of 100 payloads of 64 KiB delivered, %d timed out, %d evicted", len(w.got[1]), c.ReassemblyTimeouts, c.ReassemblyEvicted)
}

// TestReassemblyBounded: a peer that starts many payloads and never
// finishes them cannot make the session hold more than its bounds.
func TestReassemblyBounded(t *testing.T) {
	home := newHome(t, "home")
	sa, sb := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	cfg := sb.ch.cfg
	limit := cfg.MaxReassemblyBytes + cfg.MaxReassemblies*(64+255*24)
	for i := range 200 {
		frames := seal(t, t0, sa, payloadOf(MaxPayload, uint64(i)))
		for _, f := range frames[:len(frames)-1] {
			if _, got, _ := sb.Handle(t0, f); len(got) != 0 {
				t.Fatal("incomplete payload delivered")
			}
			if n := sb.ReassemblyBytes(); n > limit {
				t.Fatalf("holding %d bytes, bound %d", n, limit)
			}
		}
	}
	if c := sb.Counters(); c.ReassemblyEvicted < 190 {
		t.Fatalf("counters %+v", c)
	}
	// A complete payload still gets through.
	p := payloadOf(MaxPayload, 999)
	if _, got := pump(t, t0, sa, sb, nil, seal(t, t0, sa, p)); len(got) != 1 || !bytes.Equal(got[0], p) {
		t.Fatal("complete payload lost")
	}
}

// TestBadFragments: an authenticated peer sending inconsistent fragments
// gets them counted and dropped.
func TestBadFragments(t *testing.T) {
	home := newHome(t, "home")
	sa, sb := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	send := func(plain []byte) [][]byte {
		buf := append(make([]byte, transportHeaderLen, len(plain)+TransportOverhead), plain...)
		frame, err := sa.ch.seal(t0, buf)
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := sb.Handle(t0, frame)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	big := make([]byte, 40000)
	for name, plains := range map[string][][]byte{
		"unknown kind":   {{0x7f, 1, 2}},
		"one piece":      {appendFragment(nil, fragment{id: 1, index: 0, count: 1, data: []byte("x")})},
		"index ≥ count":  {appendFragment(nil, fragment{id: 2, index: 3, count: 3, data: []byte("x")})},
		"count changes":  {appendFragment(nil, fragment{id: 3, count: 3, data: []byte("x")}), appendFragment(nil, fragment{id: 3, index: 1, count: 4, data: []byte("y")})},
		"piece twice":    {appendFragment(nil, fragment{id: 4, count: 2, data: []byte("x")}), appendFragment(nil, fragment{id: 4, count: 2, data: []byte("x")})},
		"over 64 KiB":    {appendFragment(nil, fragment{id: 5, count: 3, data: big}), appendFragment(nil, fragment{id: 5, index: 1, count: 3, data: big})},
		"empty fragment": {{kindFragment, 0, 0, 0, 6, 0, 2}},
	} {
		before := sb.Counters().Malformed
		var got [][]byte
		for _, p := range plains {
			got = append(got, send(p)...)
		}
		if len(got) != 0 || sb.Counters().Malformed == before {
			t.Errorf("%s: %d payloads, malformed %d → %d", name, len(got), before, sb.Counters().Malformed)
		}
	}
}
