package link

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/homemesh/homemesh/mesh/route"
)

func FuzzParseTransport(f *testing.F) {
	f.Add(appendTransportHeader(nil, transportHeader{index: 3, counter: 1 << 40}))
	f.Add(append(appendTransportHeader(nil, transportHeader{index: 1, counter: 7}), make([]byte, tagLen+5)...))
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, header, ct, err := parseTransport(frame)
		if err != nil {
			return
		}
		if len(ct) < tagLen || !bytes.Equal(append(appendTransportHeader(nil, h), ct...), frame) || !bytes.Equal(header, frame[:transportHeaderLen]) {
			t.Fatalf("%x parsed to %+v, which does not write back", frame, h)
		}
	})
}

func FuzzParseInit(f *testing.F) {
	f.Add(append([]byte{typeInit, patternIK}, make([]byte, 100)...))
	f.Add(append([]byte{typeInit, patternXX}, make([]byte, dhLen)...))
	f.Add([]byte{typeInit, 9})
	f.Fuzz(func(t *testing.T, frame []byte) {
		pattern, msg, err := parseInit(frame)
		if err != nil {
			return
		}
		if len(msg) < dhLen || (pattern != patternIK && pattern != patternXX) || !bytes.Equal(append([]byte{typeInit, pattern}, msg...), frame) {
			t.Fatalf("%x parsed to %d, %x", frame, pattern, msg)
		}
	})
}

func FuzzParseHandshakePayload(f *testing.F) {
	f.Add(handshakePayload{index: 1, timestamp: 2}.appendTo(nil))
	f.Add(handshakePayload{index: 9, timestamp: 1 << 62, cert: []byte("certificate")}.appendTo(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseHandshakePayload(b)
		if err != nil {
			return
		}
		if len(p.cert) > maxCertLen || !bytes.Equal(p.appendTo(nil), b) {
			t.Fatalf("%x parsed to %+v, which does not write back", b, p)
		}
	})
}

func FuzzParseFragment(f *testing.F) {
	f.Add(appendFragment(nil, fragment{id: 1, index: 0, count: 2, data: []byte("abc")}))
	f.Add(appendFragment(nil, fragment{id: 1 << 31, index: 254, count: 255, data: []byte{0}}))
	f.Add([]byte{kindFragment, 0, 0, 0, 1, 2, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFragment(b)
		if err != nil {
			return
		}
		if fr.count < 2 || fr.index >= fr.count || len(fr.data) == 0 || !bytes.Equal(appendFragment(nil, fr), b) {
			t.Fatalf("%x parsed to %+v", b, fr)
		}
	})
}

// fuzzHome is one home shared by the fuzz targets: making CAs and keys for
// every input would only slow the fuzzer down.
func fuzzHome(tb testing.TB) *fuzzFixture {
	fixtureOnce.Do(func() {
		home := newHome(tb, "home")
		fixture = &fuzzFixture{
			home: home,
			a:    home.node(tb, RoleRouter, nil),
			b:    home.node(tb, RoleRouter, nil),
			cert: home.identity(tb, RoleLeaf).Cert,
		}
	})
	return fixture
}

var (
	fixtureOnce sync.Once
	fixture     *fuzzFixture
)

type fuzzFixture struct {
	home *testHome
	a, b *Endpoint
	cert []byte
}

func FuzzVerify(f *testing.F) {
	fx := fuzzHome(f)
	f.Add(fx.cert)
	f.Add(fx.a.cfg.Identity.Cert[:200])
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := fx.home.verifier.Verify(der, t0)
		if err != nil {
			return
		}
		if p.ID != route.IDFromKey(p.Key) || p.Home != "home" || len(p.Key) != dhLen {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// FuzzSessionHandle feeds arbitrary frames to an established session and
// to a fresh Accept: nothing panics, and only the genuine frame delivers.
func FuzzSessionHandle(f *testing.F) {
	fx := fuzzHome(f)
	sa, _ := connect(f, t0, fx.a, fx.b, true)
	genuine := seal(f, t0, sa, []byte("payload"))[0]
	f.Add(genuine)
	big := seal(f, t0, sa, make([]byte, 3000))
	f.Add(big[0])
	_, init, _ := fx.a.Initiate(t0, fx.b.static.Public)
	f.Add(init)
	_, initXX, _ := fx.a.Initiate(t0, nil)
	f.Add(initXX)
	f.Add([]byte{typeResponse})
	f.Add([]byte{typeFinish, 1, 2, 3})
	f.Fuzz(func(t *testing.T, frame []byte) {
		_, sb := connect(t, t0, fx.a, fx.b, true)
		// The receiving session's keys differ from the seed's, so nothing
		// may be delivered at all.
		_, got, err := sb.Handle(t0, frame)
		if err != nil || len(got) != 0 {
			t.Fatalf("Handle(%x): %d payloads, %v", frame, len(got), err)
		}
		if IsInit(frame) {
			fx.b.Accept(t0, frame)
		}
	})
}

func FuzzE2EOpen(f *testing.F) {
	fx := fuzzHome(f)
	keys := map[route.NodeID][]byte{fx.a.ID(): fx.a.static.Public, fx.b.ID(): fx.b.static.Public}
	lookup := func(id route.NodeID) ([]byte, bool) { k, ok := keys[id]; return k, ok }
	ea := fx.a.NewE2E(lookup)
	init, err := ea.Seal(t0, fx.b.ID(), []byte("hello"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(init[0])
	f.Add([]byte{typeTransport, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		eb := fx.b.NewE2E(lookup)
		send, plain, err := eb.Open(t0, fx.a.ID(), msg)
		if plain != nil || err == nil && !IsInit(msg) || err != nil && len(send) != 0 {
			t.Fatalf("Open(%x): %q, %d messages, %v", msg, plain, len(send), err)
		}
	})
}

// FuzzReplayWindow checks the window against a model that remembers
// every counter.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0})
	f.Add(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 5000), 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		var w replayWindow
		seen := map[uint64]bool{}
		var newest uint64
		for len(b) >= 2 {
			// Small steps around the newest counter, sometimes big jumps.
			step := uint64(binary.BigEndian.Uint16(b))
			b = b[2:]
			n := newest + step%(2*ReplayWindow) - ReplayWindow
			if step&1 == 1 && step > 60000 {
				n = newest + step*100
			}
			if n > newest+1<<40 { // wrapped below zero
				n = step % 64
			}
			want := !seen[n] && (len(seen) == 0 || n > newest || newest-n < ReplayWindow)
			if got := w.check(n); got != want {
				t.Fatalf("check(%d) = %v, want %v (newest %d)", n, got, want, newest)
			}
			if want {
				w.mark(n)
				seen[n] = true
				if n > newest || len(seen) == 1 {
					newest = n
				}
			}
		}
	})
}
