package agent

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
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

// testMesh is a home with a hub node running on loopback.
type testMesh struct {
	home  *linktest.Home
	hubID link.Identity
	hub   *meshnode.Node
	got   *inbox
}

func newTestMesh(t *testing.T) *testMesh {
	t.Helper()
	home, err := linktest.NewHome("home1", 5, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hubID, err := home.Identity(link.RoleHub, linktest.Rand(6))
	if err != nil {
		t.Fatal(err)
	}
	m := &testMesh{home: home, hubID: hubID, got: &inbox{}}
	m.hub, err = meshnode.New(meshnode.Config{
		Identity: hubID, Verifier: home.Verifier, Listen: "127.0.0.1:0",
		Route: route.Config{HelloInterval: 100 * time.Millisecond}, OnMessage: m.got.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	hmtest.Run(t, "hub", m.hub.Run)
	return m
}

// pair stores a pairing of a new router in a state directory, as Pair
// would have, naming the hub.
func (m *testMesh) pair(t *testing.T, seed uint64) (string, *Pairing) {
	t.Helper()
	return m.pairAs(t, seed, link.RoleRouter)
}

// pairAs is pair for a node of the given role.
func (m *testMesh) pairAs(t *testing.T, seed uint64, role link.Role) (string, *Pairing) {
	t.Helper()
	id, err := m.home.Identity(role, linktest.Rand(seed))
	if err != nil {
		t.Fatal(err)
	}
	hubKey := m.hubID.Key.PublicKey().Bytes()
	p := &Pairing{Home: "home1", Key: id.Key, Cert: id.Cert, CA: []*x509.Certificate{m.home.CA},
		Hubs:     []Hub{{NodeID: route.IDFromKey(hubKey).String(), Key: hubKey, Addresses: []string{m.hub.Addr().String()}}},
		NotAfter: time.Now().Add(time.Hour)}
	if err := p.check(time.Now()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeKey(dir, id.Key); err != nil {
		t.Fatal(err)
	}
	if err := p.save(dir, ""); err != nil {
		t.Fatal(err)
	}
	return dir, p
}

// runAgent runs RunNode until the test ends.
func runAgent(t *testing.T, cfg NodeConfig) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunNode(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunNode: %v", err)
		}
	})
}

// commandLight turns the agent's light on from the hub and waits for the
// result and the new state.
func (m *testMesh) commandLight(t *testing.T, agent route.NodeID) {
	t.Helper()
	cmd, err := meshapp.Encode(&meshapp.Command{ID: 42, UniqueID: "light", Name: "turn_on", Params: map[string]any{"brightness": 100.0}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.hub.Send(agent, cmd); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 20*time.Second, "the result and the light's new state", func() bool {
		_, _, result := m.got.find(func(m meshapp.Message) bool { r, ok := m.(*meshapp.Result); return ok && r.ID == 42 && r.Error == "" })
		_, _, state := m.got.find(func(m meshapp.Message) bool {
			s, ok := m.(*meshapp.State)
			return ok && s.UniqueID == "light" && s.Value == "on" && s.Attributes["brightness"] == 100.0
		})
		return result && state
	})
}

func (m *testMesh) awaitAnnounce(t *testing.T, agent route.NodeID) {
	t.Helper()
	m.awaitAnnounceAs(t, agent, link.RoleRouter)
}

func (m *testMesh) awaitAnnounceAs(t *testing.T, agent route.NodeID, role link.Role) {
	t.Helper()
	var from link.Peer
	hmtest.WaitFor(t, 20*time.Second, "the agent's announcement at the hub", func() bool {
		var ok bool
		_, from, ok = m.got.find(func(m meshapp.Message) bool { _, ok := m.(*meshapp.Announce); return ok })
		return ok
	})
	if from.ID != agent || from.Role != role {
		t.Errorf("announcement from %+v, want the agent %s", from, agent)
	}
}

var testEntities = func() []Entity { return []Entity{NewSwitch("light", "light"), NewDoor("door", 1)} }

// TestRunNodeWithAHub runs a paired agent on a real mesh node beside a
// hub's node on loopback: the agent links with the hub its pairing named,
// announces, and obeys the hub's command.
func TestRunNodeWithAHub(t *testing.T) {
	m := newTestMesh(t)
	dir, p := m.pair(t, 7)
	runAgent(t, NodeConfig{
		StateDir: dir, Listen: "127.0.0.1:0", Hello: 100 * time.Millisecond,
		Agent: Config{Device: meshapp.DeviceInfo{Name: "Porch"}, Entities: testEntities()},
	})
	m.awaitAnnounce(t, p.NodeID)
	m.commandLight(t, p.NodeID)
}

// TestRunNodeBehindARouter runs the agent two hops from the hub: it links
// only with a router, finds the hub through it and is reached end to end
// across it.
func TestRunNodeBehindARouter(t *testing.T) { runBehindARouter(t, link.RoleRouter) }

// TestLeafBehindARouter is the same for a battery node: a leaf holds no
// routes, so it reaches the hub its pairing named through its parent.
func TestLeafBehindARouter(t *testing.T) { runBehindARouter(t, link.RoleLeaf) }

func runBehindARouter(t *testing.T, role link.Role) {
	m := newTestMesh(t)
	relay := m.startRelay(t, 8)
	dir, p := m.pairAs(t, 9, role)
	runAgent(t, NodeConfig{
		StateDir: dir, Listen: "127.0.0.1:0", Peers: []string{relay.Addr().String()}, Hello: 100 * time.Millisecond,
		Agent: Config{Device: meshapp.DeviceInfo{Name: "Shed"}, Entities: testEntities()},
	})
	m.awaitAnnounceAs(t, p.NodeID, role)
	for _, nb := range m.hub.Topology().Neighbours {
		if nb.ID == p.NodeID && !nb.Dead {
			t.Fatal("the agent linked with the hub directly")
		}
	}
	m.commandLight(t, p.NodeID)
	// The hub, which routes through the relay, hears of the agent's link
	// with it (a leaf's with its parent) from the agent.
	hmtest.WaitFor(t, 20*time.Second, "the agent's link with the relay reported", func() bool {
		_, from, ok := m.got.find(func(m meshapp.Message) bool {
			l, ok := m.(*meshapp.Links)
			return ok && len(l.Neighbours) == 1 && l.Neighbours[0].ID == relay.ID() && l.Neighbours[0].Role == link.RoleRouter
		})
		return ok && from.ID == p.NodeID
	})
}

// An agent's largest message must fit what the node carries end to end.
func TestMessageLimitIsTheNodePayloadLimit(t *testing.T) {
	if meshapp.MaxMessageSize != meshnode.MaxPayload {
		t.Errorf("meshapp.MaxMessageSize = %d, meshnode.MaxPayload = %d", meshapp.MaxMessageSize, meshnode.MaxPayload)
	}
}

// TestRunNodeObeysRevoked runs the agent behind a relay; the hub revokes
// the relay: the agent's node takes its link to the relay down at once,
// keeps the list in the state directory, and refuses the relay after a
// restart too.
func TestRunNodeObeysRevoked(t *testing.T) {
	m := newTestMesh(t)
	relay := m.startRelay(t, 10)
	dir, p := m.pair(t, 11)
	nodes := make(chan *meshnode.Node, 2)
	run := func() func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- RunNode(ctx, NodeConfig{
				StateDir: dir, Listen: "127.0.0.1:0", Peers: []string{relay.Addr().String()}, Hello: 100 * time.Millisecond,
				Agent: Config{Device: meshapp.DeviceInfo{Name: "Gate"}, Entities: testEntities()},
				Ready: func(n *meshnode.Node) { nodes <- n },
			})
		}()
		stop := func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunNode: %v", err)
			}
		}
		t.Cleanup(func() {
			if ctx.Err() == nil {
				stop()
			}
		})
		return stop
	}
	stop := run()
	node := <-nodes
	m.awaitAnnounce(t, p.NodeID)

	msg, err := meshapp.Encode(&meshapp.Revoked{Nodes: []route.NodeID{relay.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.hub.Send(p.NodeID, msg); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 20*time.Second, "the agent's link to the relay down", func() bool {
		return node.Topology().Counters.Rejected[meshnode.RejectRevoked] > 0
	})
	// The node refuses the relay before the list is written down.
	var b []byte
	hmtest.WaitFor(t, 20*time.Second, "the revoked relay kept in "+RevokedFile, func() bool {
		b, err = os.ReadFile(filepath.Join(dir, RevokedFile))
		return err == nil
	})
	if string(b) != relay.ID().String()+"\n" {
		t.Fatalf("%s: %q", RevokedFile, b)
	}

	// Restarted, the agent refuses the relay from the first handshake.
	stop()
	run()
	node = <-nodes
	hmtest.WaitFor(t, 20*time.Second, "the relay's certificate refused", func() bool {
		return node.Topology().Counters.Link.Revoked > 0
	})
	for _, nb := range node.Topology().Neighbours {
		if nb.ID == relay.ID() {
			t.Fatal("the restarted agent linked with the revoked relay")
		}
	}
}

// startRelay runs a router of the test home, linked with the hub, whose
// identity comes from seed.
func (m *testMesh) startRelay(t *testing.T, seed uint64) *meshnode.Node {
	t.Helper()
	id, err := m.home.Identity(link.RoleRouter, linktest.Rand(seed))
	if err != nil {
		t.Fatal(err)
	}
	relay, err := meshnode.New(meshnode.Config{
		Identity: id, Verifier: m.home.Verifier, Listen: "127.0.0.1:0", Peers: []string{m.hub.Addr().String()},
		Route: route.Config{HelloInterval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	hmtest.Run(t, "relay", relay.Run)
	return relay
}
