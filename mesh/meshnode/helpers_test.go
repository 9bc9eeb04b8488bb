package meshnode

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/route"
)

// testHello is the Hello interval of test meshes: short, so links and
// routes settle quickly, yet long enough for a loaded machine.
const testHello = 100 * time.Millisecond

// waitLong is how long tests wait for something that takes a few Hellos.
const waitLong = 20 * time.Second

// testHome is a home CA and the keys of every node made for it, which the
// nodes' KeyOf looks up as a registry would.
type testHome struct {
	*linktest.Home
	mu   sync.Mutex
	seed uint64
	keys map[route.NodeID][]byte
}

var homeSeed struct {
	sync.Mutex
	n uint64
}

func newTestHome(t testing.TB, name string) *testHome {
	t.Helper()
	homeSeed.Lock()
	homeSeed.n++
	seed := homeSeed.n * 1000003
	homeSeed.Unlock()
	h, err := linktest.NewHome(name, seed, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testHome{Home: h, seed: seed, keys: map[route.NodeID][]byte{}}
}

func (h *testHome) identity(t testing.TB, role link.Role) link.Identity {
	t.Helper()
	h.mu.Lock()
	h.seed++
	seed := h.seed
	h.mu.Unlock()
	id, err := h.Identity(role, linktest.Rand(seed))
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Key.PublicKey().Bytes()
	h.mu.Lock()
	h.keys[route.IDFromKey(pub)] = pub
	h.mu.Unlock()
	return id
}

func (h *testHome) keyOf(id route.NodeID) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, ok := h.keys[id]
	return k, ok
}

// received is what a test node's OnMessage got.
type received struct {
	From    link.Peer
	Payload []byte
}

// testNode is a running node and what it received.
type testNode struct {
	*Node
	t    testing.TB
	stop func()

	mu   sync.Mutex
	msgs []received
}

// newNode makes a node of home with role on 127.0.0.1, port 0, after
// tweak adjusts its config; it does not run it.
func newNode(t testing.TB, home *testHome, role link.Role, tweak func(*Config)) *testNode {
	t.Helper()
	tn := &testNode{t: t}
	cfg := Config{
		Identity:  home.identity(t, role),
		Verifier:  home.Verifier,
		Listen:    "127.0.0.1:0",
		Route:     route.Config{HelloInterval: testHello},
		Log:       hmtest.Logger(t),
		KeyOf:     home.keyOf,
		OnMessage: tn.onMessage,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.Node = n
	t.Cleanup(func() { n.Close() }) // a no-op once Run ran
	return tn
}

// startNode makes and runs a node until the test ends or stop is called.
func startNode(t testing.TB, home *testHome, role link.Role, tweak func(*Config)) *testNode {
	t.Helper()
	tn := newNode(t, home, role, tweak)
	tn.start()
	return tn
}

func (tn *testNode) start() {
	tn.stop = hmtest.Run(tn.t, "node "+tn.ID().String(), tn.Run)
}

func (tn *testNode) onMessage(from link.Peer, payload []byte) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.msgs = append(tn.msgs, received{From: from, Payload: payload})
}

// got reports whether the node received payload from src.
func (tn *testNode) got(src route.NodeID, payload []byte) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	for _, m := range tn.msgs {
		if m.From.ID == src && bytes.Equal(m.Payload, payload) {
			return true
		}
	}
	return false
}

func (tn *testNode) count() int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return len(tn.msgs)
}

// hasNeighbour reports whether the node has an up link to id.
func (tn *testNode) hasNeighbour(id route.NodeID) bool {
	for _, nb := range tn.Topology().Neighbours {
		if nb.ID == id && !nb.Dead {
			return true
		}
	}
	return false
}

// routeVia returns the next hop of the node's feasible route to dst.
func (tn *testNode) routeVia(dst route.NodeID) (route.NodeID, bool) {
	for _, r := range tn.Topology().Routes {
		if r.Dest == dst && r.Feasible && r.Metric != route.MetricInfinity {
			return r.NextHop, true
		}
	}
	return route.NodeID{}, false
}

// sendUntil sends payload from src to dst again and again until dst has it:
// a message sent before the route settles may be lost, as on any network.
func sendUntil(t testing.TB, src, dst *testNode, payload []byte) {
	t.Helper()
	next := time.Now()
	hmtest.WaitFor(t, waitLong, "a message from "+src.ID().String()+" to "+dst.ID().String(), func() bool {
		if dst.got(src.ID(), payload) {
			return true
		}
		if time.Now().After(next) {
			if err := src.Send(dst.ID(), payload); err != nil {
				t.Fatalf("Send: %v", err)
			}
			next = time.Now().Add(500 * time.Millisecond)
		}
		return false
	})
}

func peersOf(nodes ...*testNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Addr().String())
	}
	return out
}
