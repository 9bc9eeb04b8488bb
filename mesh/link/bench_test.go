package link

import (
	"fmt"
	"testing"

	"github.com/homemesh/homemesh/mesh/route"
)

// BenchmarkHandshake measures a whole handshake, both sides, until both
// are established (certificate checks included, from the Verifier's cache
// after the first round as in a running node).
func BenchmarkHandshake(b *testing.B) {
	home := newHome(b, "home")
	x, y := home.node(b, RoleRouter, nil), home.node(b, RoleRouter, nil)
	for _, ik := range []bool{true, false} {
		name := "XX"
		if ik {
			name = "IK"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				connect(b, t0, x, y, ik)
			}
		})
	}
}

// BenchmarkVerify measures a certificate check without and with the cache.
func BenchmarkVerify(b *testing.B) {
	home := newHome(b, "home")
	cert := home.identity(b, RoleRouter).Cert
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			clear(home.verifier.cache)
			if _, err := home.verifier.Verify(cert, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := home.verifier.Verify(cert, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFrame measures Seal on one side and Handle on the other per
// payload size; 65536 is fragmented into 57 frames.
func BenchmarkFrame(b *testing.B) {
	home := newHome(b, "home")
	sa, sb := connect(b, t0, home.node(b, RoleRouter, nil), home.node(b, RoleRouter, nil), true)
	for _, n := range []int{64, 1024, MaxPayload} {
		p := make([]byte, n)
		b.Run(fmt.Sprintf("seal/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := sa.Seal(t0, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("seal+open/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				frames, err := sa.Seal(t0, p)
				if err != nil {
					b.Fatal(err)
				}
				for _, f := range frames {
					if _, _, err := sb.Handle(t0, f); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkE2E measures sealing and opening an end-to-end message on an
// established channel.
func BenchmarkE2E(b *testing.B) {
	home := newHome(b, "home")
	x, y := home.node(b, RoleRouter, nil), home.node(b, RoleRouter, nil)
	keys := map[route.NodeID][]byte{x.ID(): x.static.Public, y.ID(): y.static.Public}
	lookup := func(id route.NodeID) ([]byte, bool) { k, ok := keys[id]; return k, ok }
	ex, ey := x.NewE2E(lookup), y.NewE2E(lookup)
	msgs, _ := ex.Seal(t0, y.ID(), []byte("hello"))
	for len(msgs) > 0 { // handshake
		var back [][]byte
		for _, m := range msgs {
			s, _, err := ey.Open(t0, x.ID(), m)
			if err != nil {
				b.Fatal(err)
			}
			back = append(back, s...)
		}
		msgs = nil
		for _, m := range back {
			s, _, err := ex.Open(t0, y.ID(), m)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, s...)
		}
	}
	p := make([]byte, 1024)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		msgs, err := ex.Seal(t0, y.ID(), p)
		if err != nil || len(msgs) != 1 {
			b.Fatal(err, len(msgs))
		}
		if _, plain, err := ey.Open(t0, x.ID(), msgs[0]); err != nil || len(plain) != len(p) {
			b.Fatal(err)
		}
	}
}
