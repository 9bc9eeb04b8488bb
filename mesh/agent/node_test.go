package agent

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/homemesh/homemesh/mesh/route"
)

// inbox collects what a test hub's node received.
type inbox struct {
	mu   sync.Mutex
	msgs []meshapp.Message
	from []link.Peer
}

func (b *inbox) add(from link.Peer, payload []byte) {
	m, err := meshapp.Decode(payload)
	if err != nil {
		return
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.from = append(b.from, from)
	b.mu.Unlock()
}

func (b *inbox) find(match func(m meshapp.Message) bool) (meshapp.Message, link.Peer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range b.msgs {
		if match(m) {
			return m, b.from[i], true
		}
	}
	return nil, link.Peer{}, false
}

// TestRunNodeWithAHub runs a paired agent on a real mesh node beside a
// hub's node on loopback: the agent finds the hub, announces, and obeys
// the hub's command.
func TestRunNodeWithAHub(t *testing.T) {
	home, err := linktest.NewHome("home1", 5, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hubID, err := home.Identity(link.RoleHub, linktest.Rand(6))
	if err != nil {
		t.Fatal(err)
	}
	var got inbox
	hub, err := meshnode.New(meshnode.Config{
		Identity: hubID, Verifier: home.Verifier, Listen: "127.0.0.1:0",
		Route: route.Config{HelloInterval: 100 * time.Millisecond}, OnMessage: got.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hmtest.Run(t, "hub", hub.Run)

	// Pair the agent by hand, as Pair would have stored it.
	agentID, err := home.Identity(link.RoleRouter, linktest.Rand(7))
	if err != nil {
		t.Fatal(err)
	}
	hubKey := hubID.Key.PublicKey().Bytes()
	p := &Pairing{Home: "home1", Key: agentID.Key, Cert: agentID.Cert, CA: []*x509.Certificate{home.CA},
		Hubs:     []Hub{{NodeID: route.IDFromKey(hubKey).String(), Key: hubKey, Addresses: []string{hub.Addr().String()}}},
		NotAfter: time.Now().Add(time.Hour)}
	if err := p.check(time.Now()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeKey(dir, agentID.Key); err != nil {
		t.Fatal(err)
	}
	if err := p.save(dir, ""); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- RunNode(ctx, NodeConfig{
			StateDir: dir, Listen: "127.0.0.1:0", Hello: 100 * time.Millisecond,
			Agent: Config{Device: meshapp.DeviceInfo{Name: "Porch"}, Entities: []Entity{NewSwitch("light", "light"), NewDoor("door", 1)}},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunNode: %v", err)
		}
	})

	var from link.Peer
	hmtest.WaitFor(t, 20*time.Second, "the agent's announcement at the hub", func() bool {
		var ok bool
		_, from, ok = got.find(func(m meshapp.Message) bool { _, ok := m.(*meshapp.Announce); return ok })
		return ok
	})
	if from.ID != p.NodeID || from.Role != link.RoleRouter {
		t.Errorf("announcement from %+v, want the agent %s", from, p.NodeID)
	}
	cmd, err := meshapp.Encode(&meshapp.Command{ID: 42, UniqueID: "light", Name: "turn_on", Params: map[string]any{"brightness": 100.0}})
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Send(p.NodeID, cmd); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 20*time.Second, "the result and the light's new state", func() bool {
		_, _, result := got.find(func(m meshapp.Message) bool { r, ok := m.(*meshapp.Result); return ok && r.ID == 42 && r.Error == "" })
		_, _, state := got.find(func(m meshapp.Message) bool {
			s, ok := m.(*meshapp.State)
			return ok && s.UniqueID == "light" && s.Value == "on" && s.Attributes["brightness"] == 100.0
		})
		return result && state
	})
}
