package agent

import (
	"bytes"
	"context"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
)

// FuzzParsePEMCerts feeds certificate files (ca.crt, node.crt, --ca) to
// their parser: it must not panic, and what it accepts is certificates.
func FuzzParsePEMCerts(f *testing.F) {
	home, err := linktest.NewHome("home1", 1, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: home.CA.Raw}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := parsePEMCerts(b)
		if err == nil && len(certs) == 0 {
			t.Fatal("accepted no certificates")
		}
		for _, c := range certs {
			if _, err := homeOf(c); err == nil && len(c.URIs) != 1 {
				t.Fatalf("a home from %v", c.URIs)
			}
		}
	})
}

// FuzzParseRevoked feeds the revoked nodes file to its parser: it must
// not panic, and what it accepts it writes back byte for byte.
func FuzzParseRevoked(f *testing.F) {
	f.Add(formatRevoked([]route.NodeID{{1}, {0xff, 2}}))
	f.Add([]byte("0100000000000000\n0100000000000000\n"))
	f.Add([]byte("0100000000000000"))
	f.Add([]byte("01000000000000AA\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := parseRevoked(b)
		if err != nil {
			return
		}
		if out := formatRevoked(ids); !bytes.Equal(out, b) {
			t.Fatalf("%q parsed to %v, written back as %q", b, ids, out)
		}
	})
}

// FuzzHandle feeds a hub's messages to an agent: nothing may panic, and
// nothing from a node that is not a hub may be acted on.
func FuzzHandle(f *testing.F) {
	for _, m := range []meshapp.Message{
		&meshapp.Command{ID: 1, UniqueID: "switch", Name: "turn_on"},
		&meshapp.Command{ID: 2, UniqueID: "switch", Name: "fly"},
		&meshapp.Resync{},
		&meshapp.Revoked{Nodes: []route.NodeID{{1}, self}},
	} {
		b, _ := meshapp.Encode(m)
		f.Add(b, uint8(link.RoleHub))
		f.Add(b, uint8(link.RoleRouter))
	}
	f.Fuzz(func(t *testing.T, payload []byte, role uint8) {
		sw := NewSwitch("switch", homemesh.KindSwitch)
		a, err := New(Config{Device: meshapp.DeviceInfo{Name: "d"}, Entities: []Entity{sw}})
		if err != nil {
			t.Fatal(err)
		}
		n := &fakeNode{t: t}
		l := &loop{Agent: a, node: n, hub: hubA, hasHub: true, lastSent: map[string]meshapp.Reading{}, results: make(chan sendTo, maxCommandsInFlight),
			revoked: map[route.NodeID]bool{}}
		ctx, cancel := context.WithCancel(context.Background())
		var commands sync.WaitGroup
		l.handle(ctx, inbound{from: link.Peer{ID: hubA, Home: "home1", Role: link.Role(role)}, payload: payload}, &commands)
		commands.Wait()
		cancel()
		if link.Role(role) != link.RoleHub && (len(n.take()) > 0 || len(l.results) > 0 || sw.State().Value != "off" || len(n.takeRevoked()) > 0) {
			t.Fatalf("a %v peer was obeyed: %q", link.Role(role), payload)
		}
	})
}
