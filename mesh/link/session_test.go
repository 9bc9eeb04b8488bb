package link

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHandshake(t *testing.T) {
	home := newHome(t, "home")
	for _, tc := range []struct {
		name string
		ik   bool
	}{{"XX first contact", false}, {"IK known key", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a := home.node(t, RoleHub, nil)
			b := home.node(t, RoleRouter, nil)
			sa, sb := connect(t, t0, a, b, tc.ik)
			pa, ok := sb.Peer()
			if !ok || pa.ID != a.ID() || pa.Role != RoleHub || pa.Home != "home" {
				t.Errorf("b sees %+v, %v", pa, ok)
			}
			pb, ok := sa.Peer()
			if !ok || pb.ID != b.ID() || pb.Role != RoleRouter {
				t.Errorf("a sees %+v, %v", pb, ok)
			}
			now := t0.Add(time.Millisecond)
			atA, atB := pump(t, now, sa, sb, seal(t, now, sb, []byte("to a")), seal(t, now, sa, []byte("to b")))
			if diff := cmp.Diff([][]byte{[]byte("to a")}, atA); diff != "" {
				t.Errorf("a got (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([][]byte{[]byte("to b")}, atB); diff != "" {
				t.Errorf("b got (-want +got):\n%s", diff)
			}
			for _, s := range []*Session{sa, sb} {
				c := s.Counters()
				if c.Forged+c.Replayed+c.BadCert+c.Malformed+c.UnknownKey+c.StaleHandshake != 0 {
					t.Errorf("refusals on a clean handshake: %+v", c)
				}
			}
		})
	}
}

func TestSealBeforeEstablished(t *testing.T) {
	home := newHome(t, "home")
	a, b := home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil)
	sa, _, err := a.Initiate(t0, b.static.Public)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.Seal(t0, []byte("x")); !errors.Is(err, ErrNotEstablished) {
		t.Fatalf("Seal before the handshake: %v", err)
	}
}

func TestForeignNodesRefused(t *testing.T) {
	home := newHome(t, "home")
	other := newHome(t, "other")
	// A CA that calls its home "home" too, but is not this home's CA.
	impostor := newHome(t, "home")
	for _, tc := range []struct {
		name    string
		from    *testHome
		ik      bool
		wantErr error
		counted func(Counters) uint64
	}{
		{"another home, IK", other, true, ErrForeignHome, func(c Counters) uint64 { return c.ForeignHome }},
		{"another home, XX", other, false, ErrForeignHome, func(c Counters) uint64 { return c.ForeignHome }},
		{"another CA, IK", impostor, true, ErrBadCert, func(c Counters) uint64 { return c.BadCert }},
		{"another CA, XX", impostor, false, ErrBadCert, func(c Counters) uint64 { return c.BadCert }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := home.node(t, RoleRouter, nil)
			// The stranger trusts our CA too, so only our side refuses.
			cfg := Config{Identity: tc.from.identity(t, RoleRouter), Verifier: tc.from.verifier}
			stranger, err := New(cfg, t0)
			if err != nil {
				t.Fatal(err)
			}
			stranger.cfg.Verifier = home.verifier
			var key []byte
			if tc.ik {
				key = local.static.Public
			}
			ss, init, err := stranger.Initiate(t0, key)
			if err != nil {
				t.Fatal(err)
			}
			sl, resp, err := local.Accept(t0, init)
			if tc.ik {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Accept: %v, want %v", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				send, _, err := ss.Handle(t0, resp)
				if err != nil {
					t.Fatal(err)
				}
				_, _, err = sl.Handle(t0, send[0])
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrClosed) {
					t.Fatalf("finish: %v, want %v and ErrClosed", err, tc.wantErr)
				}
				if sl.Established() {
					t.Fatal("a link with a foreign node")
				}
				if _, ok := sl.Peer(); ok {
					t.Fatal("foreign peer reported")
				}
			}
			if got := tc.counted(local.Counters()); got != 1 {
				t.Fatalf("counted %d times: %+v", got, local.Counters())
			}
		})
	}
}

// TestInitiatorRefusesForeignResponder: our side initiates and the other
// side's certificate is refused before the link is up.
func TestInitiatorRefusesForeignResponder(t *testing.T) {
	home := newHome(t, "home")
	other := newHome(t, "other")
	for _, ik := range []bool{false, true} {
		t.Run(fmt.Sprintf("ik=%v", ik), func(t *testing.T) {
			local := home.node(t, RoleRouter, nil)
			cfg := Config{Identity: other.identity(t, RoleRouter), Verifier: other.verifier}
			stranger, err := New(cfg, t0)
			if err != nil {
				t.Fatal(err)
			}
			stranger.cfg.Verifier = home.verifier
			var key []byte
			if ik {
				key = stranger.static.Public
			}
			sl, init, err := local.Initiate(t0, key)
			if err != nil {
				t.Fatal(err)
			}
			_, resp, err := stranger.Accept(t0, init)
			if err != nil {
				t.Fatal(err)
			}
			send, _, err := sl.Handle(t0, resp)
			if !errors.Is(err, ErrForeignHome) || len(send) != 0 || sl.Established() {
				t.Fatalf("Handle: %v, %d frames, established %v", err, len(send), sl.Established())
			}
			if c := local.Counters(); c.ForeignHome != 1 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

func TestReplayRejected(t *testing.T) {
	home := newHome(t, "home")
	sa, sb := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	frames := seal(t, t0, sa, []byte("once"))
	_, got := pump(t, t0, sa, sb, nil, frames)
	if len(got) != 1 {
		t.Fatalf("got %d payloads", len(got))
	}
	before := sb.Counters().Replayed
	for range 3 {
		send, got, err := sb.Handle(t0, frames[0])
		if err != nil || len(got) != 0 || len(send) != 0 {
			t.Fatalf("replay: %v, %d payloads, %d frames", err, len(got), len(send))
		}
	}
	if n := sb.Counters().Replayed - before; n != 3 {
		t.Fatalf("replayed counted %d times", n)
	}
}

func TestForgedRejected(t *testing.T) {
	home := newHome(t, "home")
	sa, sb := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	frame := seal(t, t0, sa, []byte("genuine payload"))[0]
	for i := 1; i < len(frame); i++ { // every byte after the type, header included
		for _, bit := range []byte{0x01, 0x80} {
			forged := bytes.Clone(frame)
			forged[i] ^= bit
			_, got, err := sb.Handle(t0, forged)
			if err != nil || len(got) != 0 {
				t.Fatalf("byte %d bit %#x: %v, %d payloads", i, bit, err, len(got))
			}
		}
	}
	c := sb.Counters()
	if c.Forged == 0 || c.PayloadsDelivered != 0 {
		t.Fatalf("counters %+v", c)
	}
	if total := c.Forged + c.UnknownKey + c.Replayed; total != uint64(2*(len(frame)-1)) {
		t.Fatalf("%d refusals for %d forgeries: %+v", total, 2*(len(frame)-1), c)
	}
	// The genuine frame still gets through: forgeries did not advance the window.
	if _, got, _ := sb.Handle(t0, frame); len(got) != 1 {
		t.Fatal("genuine frame refused after forgeries")
	}
}

func TestReorderWithinWindow(t *testing.T) {
	home := newHome(t, "home")
	sa, sb := connect(t, t0, home.node(t, RoleRouter, nil), home.node(t, RoleRouter, nil), true)
	var frames [][]byte
	for i := range 3000 {
		frames = append(frames, seal(t, t0, sa, fmt.Appendf(nil, "%d", i))...)
	}
	// Deliver the newest first, then the rest from newest to oldest: every
	// frame is within ReplayWindow of the newest.
	got := map[string]bool{}
	for i := len(frames) - 1; i >= 0; i-- {
		_, p, err := sb.Handle(t0, frames[i])
		if err != nil || len(p) != 1 {
			t.Fatalf("frame %d: %v, %d payloads", i, err, len(p))
		}
		got[string(p[0])] = true
	}
	if len(got) != 3000 {
		t.Fatalf("%d distinct payloads", len(got))
	}
	// One more than the window behind is refused as a replay.
	for range ReplayWindow {
		seal(t, t0, sa, nil)
	}
	late := seal(t, t0, sa, []byte("late"))
	for range ReplayWindow {
		pump(t, t0, sa, sb, nil, seal(t, t0, sa, nil))
	}
	if _, p, _ := sb.Handle(t0, late[0]); len(p) != 0 || sb.Counters().Replayed != 1 {
		t.Fatalf("a frame behind the window: %d payloads, counters %+v", len(p), sb.Counters())
	}
}
