package link

import (
	"crypto/x509"
	"errors"
	"testing"
)

// ownVerifier returns a Verifier of h's CA that no other node shares, so
// that what one node revokes the others do not.
func (h *testHome) ownVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := NewVerifier([]*x509.Certificate{h.caCert}, h.name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyRefusesRevoked(t *testing.T) {
	home := newHome(t, "home")
	v := home.ownVerifier(t)
	id, other := home.identity(t, RoleRouter), home.identity(t, RoleRouter)
	p, err := v.Verify(id.Cert, t0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Revoked(p.ID) {
		t.Fatal("revoked before Revoke")
	}
	// The certificate is in the cache now: the revocation must win.
	v.Revoke(p.ID)
	if !v.Revoked(p.ID) {
		t.Fatal("not revoked after Revoke")
	}
	if _, err := v.Verify(id.Cert, t0); !errors.Is(err, ErrRevoked) {
		t.Fatalf("cached certificate of a revoked node: %v, want ErrRevoked", err)
	}
	// A certificate first seen after the revocation is refused too.
	fresh := home.ownVerifier(t)
	fresh.Revoke(p.ID)
	if _, err := fresh.Verify(id.Cert, t0); !errors.Is(err, ErrRevoked) {
		t.Fatalf("uncached certificate of a revoked node: %v, want ErrRevoked", err)
	}
	if _, err := v.Verify(other.Cert, t0); err != nil {
		t.Fatalf("another node's certificate: %v", err)
	}
	if home.verifier.Revoked(p.ID) {
		t.Fatal("a revocation leaked into another verifier")
	}
}

func TestRevokedNodesRefused(t *testing.T) {
	home := newHome(t, "home")
	for _, ik := range []bool{true, false} {
		name := map[bool]string{true: "IK", false: "XX"}[ik]
		t.Run("revoked initiator, "+name, func(t *testing.T) {
			local := home.node(t, RoleRouter, func(c *Config) { c.Verifier = home.ownVerifier(t) })
			revoked := home.node(t, RoleRouter, nil)
			local.cfg.Verifier.Revoke(revoked.ID())
			var key []byte
			if ik {
				key = local.static.Public
			}
			sr, init, err := revoked.Initiate(t0, key)
			if err != nil {
				t.Fatal(err)
			}
			sl, resp, err := local.Accept(t0, init)
			if ik {
				if !errors.Is(err, ErrRevoked) {
					t.Fatalf("Accept: %v, want ErrRevoked", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				send, _, err := sr.Handle(t0, resp)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err = sl.Handle(t0, send[0]); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrClosed) {
					t.Fatalf("finish: %v, want ErrRevoked and ErrClosed", err)
				}
				if sl.Established() {
					t.Fatal("a link with a revoked node")
				}
			}
			if c := local.Counters(); c.Revoked != 1 || c.BadCert != 0 {
				t.Fatalf("counters %+v, want one revoked", c)
			}
		})
	}
	t.Run("revoked responder", func(t *testing.T) {
		local := home.node(t, RoleRouter, func(c *Config) { c.Verifier = home.ownVerifier(t) })
		revoked := home.node(t, RoleRouter, nil)
		local.cfg.Verifier.Revoke(revoked.ID())
		sl, init, err := local.Initiate(t0, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, resp, err := revoked.Accept(t0, init)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := sl.Handle(t0, resp); !errors.Is(err, ErrRevoked) {
			t.Fatalf("response: %v, want ErrRevoked", err)
		}
		if sl.Established() || local.Counters().Revoked != 1 {
			t.Fatalf("established %v, counters %+v", sl.Established(), local.Counters())
		}
	})
}

func TestE2ERevoked(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 2, func(c *Config) { c.Verifier = home.ownVerifier(t) })
	a, b := eps[0], eps[1]
	ea, eb := net.nodes[a.ID()], net.nodes[b.ID()]
	msgs, err := ea.Seal(t0, b.ID(), []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	net.carry(t0, a.ID(), b.ID(), msgs)
	if ea.Len() != 1 || eb.Len() != 1 {
		t.Fatalf("channels: a %d, b %d", ea.Len(), eb.Len())
	}
	// b still holds the channel and sends under its keys; a revokes b and
	// forgets the channel.
	late, err := eb.Seal(t0, a.ID(), []byte("after"))
	if err != nil || len(late) != 1 {
		t.Fatalf("b seals: %v (%d messages)", err, len(late))
	}
	a.cfg.Verifier.Revoke(b.ID())
	ea.Forget(b.ID())
	if ea.Len() != 0 {
		t.Fatalf("a holds %d channels after Forget", ea.Len())
	}
	if _, err := ea.Seal(t0, b.ID(), []byte("to b")); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Seal to a revoked node: %v, want ErrRevoked", err)
	}
	if _, plain, err := ea.Open(t0, b.ID(), late[0]); !errors.Is(err, ErrRevoked) || plain != nil {
		t.Fatalf("Open from a revoked node: %q, %v, want ErrRevoked", plain, err)
	}
	// A new handshake from b is refused before it costs anything.
	eb.Forget(a.ID())
	init, err := eb.Seal(t0, a.ID(), []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ea.Open(t0, b.ID(), init[0]); !errors.Is(err, ErrRevoked) {
		t.Fatalf("handshake from a revoked node: %v, want ErrRevoked", err)
	}
	if c := ea.Counters(); c.Revoked != 3 || ea.Len() != 0 {
		t.Fatalf("counters %+v, %d channels", c, ea.Len())
	}
}
