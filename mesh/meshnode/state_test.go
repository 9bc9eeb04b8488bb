package meshnode

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

func readSeqnoFile(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, seqnoFileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSeqnoPersistedAcrossRestart(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	dir := t.TempDir()
	id := home.identity(t, link.RoleRouter)
	devConfig := func(c *Config) { c.Identity, c.StateDir, c.Peers = id, dir, peersOf(hub) }

	dev := startNode(t, home, link.RoleRouter, devConfig)
	first := dev.Topology().Self.Seqno
	if got := readSeqnoFile(t, dir); got != "1\n" || first != 1 {
		t.Fatalf("first start: seqno %d, file %q; want 1", first, got)
	}
	hmtest.WaitFor(t, waitLong, "the hub's route to the device", func() bool {
		_, ok := hub.routeVia(dev.ID())
		return ok
	})
	dev.stop()

	// The restarted node starts above what it persisted, so its routes
	// are newer than what the network remembers from before.
	dev = startNode(t, home, link.RoleRouter, devConfig)
	second := dev.Topology().Self.Seqno
	if second <= first {
		t.Fatalf("after a restart: seqno %d, before %d", second, first)
	}
	hmtest.WaitFor(t, waitLong, "the hub to learn the new seqno", func() bool {
		for _, r := range hub.Topology().Routes {
			if r.Dest == dev.ID() && r.Seqno == dev.Topology().Self.Seqno && r.Feasible {
				return true
			}
		}
		return false
	})
	sendUntil(t, dev, hub, []byte("back"))
	dev.stop()
	if got, want := readSeqnoFile(t, dir), dev.Topology().Self.Seqno; got != strconv.Itoa(int(want))+"\n" {
		t.Fatalf("file %q after stop, seqno %d", got, want)
	}
}

func TestCorruptSeqnoFileTolerated(t *testing.T) {
	home := newTestHome(t, "home")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, seqnoFileName), []byte("forty-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs hmtest.LogBuffer
	n := newNode(t, home, link.RoleRouter, func(c *Config) {
		c.StateDir = dir
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if s := n.Topology().Self.Seqno; s != 1 {
		t.Errorf("seqno %d after a corrupt file, want 1", s)
	}
	if got := readSeqnoFile(t, dir); got != "1\n" {
		t.Errorf("file rewritten as %q", got)
	}
	if l := logs.String(); !strings.Contains(l, "unreadable") || !strings.Contains(l, seqnoFileName) || !strings.Contains(l, "forty-two") {
		t.Errorf("the log does not say what is wrong: %s", l)
	}
}

// TestNeighbourRestartAtSameAddress restarts a node on its old address and
// key, so the hub's session takes the new handshake as a rekey: the link
// start message must still make the hub send the restarted node its table.
func TestNeighbourRestartAtSameAddress(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	far := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })
	id := home.identity(t, link.RoleRouter)
	dev := startNode(t, home, link.RoleRouter, func(c *Config) { c.Identity, c.Peers = id, peersOf(hub) })
	sendUntil(t, dev, far, []byte("before"))
	addr := dev.Addr().String()
	dev.stop()

	dev = startNode(t, home, link.RoleRouter, func(c *Config) { c.Identity, c.Peers, c.Listen = id, peersOf(hub), addr })
	hmtest.WaitFor(t, waitLong, "the restarted node's route to the far node", func() bool {
		_, ok := dev.routeVia(far.ID())
		return ok
	})
	sendUntil(t, dev, far, []byte("after"))
	sendUntil(t, far, dev, []byte("reply"))
}

func TestTopologySnapshot(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	mid := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })
	leaf := startNode(t, home, link.RoleLeaf, func(c *Config) { c.Peers, c.Hubs = peersOf(mid), []route.NodeID{hub.ID()} })
	sendUntil(t, leaf, hub, []byte("from the leaf"))
	sendUntil(t, hub, leaf, []byte("to the leaf"))

	hmtest.WaitFor(t, waitLong, "the hub's routes", func() bool {
		return len(hub.Topology().Routes) == 2
	})
	top := hub.Topology()
	if top.Self.ID != hub.ID() || top.Self.Role != link.RoleHub || top.Self.Home != "home" || top.Self.Seqno == 0 {
		t.Errorf("self = %+v", top.Self)
	}
	for _, r := range top.Routes {
		if r.NextHop != mid.ID() || !r.Feasible || r.Hub {
			t.Errorf("hub route %+v", r)
		}
		switch r.Dest {
		case mid.ID():
			if r.Leaf || r.Metric != route.HopCost {
				t.Errorf("route to the router %+v", r)
			}
		case leaf.ID():
			if !r.Leaf || r.Metric != 2*route.HopCost {
				t.Errorf("route to the leaf %+v", r)
			}
		default:
			t.Errorf("route to a stranger %+v", r)
		}
	}

	mt := mid.Topology()
	if len(mt.Neighbours) != 2 || bytes.Compare(mt.Neighbours[0].ID[:], mt.Neighbours[1].ID[:]) >= 0 {
		t.Fatalf("router's neighbours, sorted by id: %+v", mt.Neighbours)
	}
	for _, nb := range mt.Neighbours {
		want, role := hub, link.RoleHub
		if nb.ID == leaf.ID() {
			want, role = leaf, link.RoleLeaf
		}
		if nb.ID != want.ID() || nb.Role != role || nb.Addr == "" || nb.Dead || nb.UpSince.IsZero() ||
			nb.Cost == 0 || nb.Quality <= 0 || nb.Quality > 1 {
			t.Errorf("router's neighbour %+v", nb)
		}
	}
	var hubRoute bool
	for _, r := range mt.Routes {
		hubRoute = hubRoute || r.Dest == hub.ID() && r.Hub
	}
	if id, ok := mid.NearestHub(); !hubRoute || !ok || id != hub.ID() {
		t.Errorf("router's routes %+v, nearest hub %s %v", mt.Routes, id, ok)
	}

	if id, ok := leaf.NearestHub(); !ok || id != hub.ID() {
		t.Errorf("leaf's nearest hub %s %v, want the configured hub", id, ok)
	}
	lt := leaf.Topology()
	if len(lt.Neighbours) != 1 || !lt.Neighbours[0].Parent || lt.Neighbours[0].ID != mid.ID() {
		t.Errorf("leaf's neighbours %+v", lt.Neighbours)
	}
	c := mt.Counters
	if c.Route.Sent[route.MsgHello].Messages == 0 || c.Route.DataForwarded < 2 || c.Link.HandshakesCompleted < 2 ||
		c.DatagramsIn == 0 || c.BytesOut == 0 || c.LinksUp != 2 || c.Rejected == nil {
		t.Errorf("router's counters %+v", c)
	}
	if c := leaf.Topology().Counters; c.E2E.PayloadsDelivered == 0 || c.MessagesDelivered == 0 || c.MessagesSent == 0 {
		t.Errorf("leaf's counters %+v", c)
	}
}

// TestHubRestartReopensEndToEnd restarts the hub with its address and key:
// the device still holds an end-to-end channel the hub has lost, and its
// messages must get through again without waiting for a rekey.
func TestHubRestartReopensEndToEnd(t *testing.T) {
	home := newTestHome(t, "home")
	id := home.identity(t, link.RoleHub)
	hub := startNode(t, home, link.RoleHub, func(c *Config) { c.Identity = id })
	dev := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })
	sendUntil(t, dev, hub, []byte("before"))
	sendUntil(t, hub, dev, []byte("reply before"))
	addr := hub.Addr().String()
	hub.stop()

	hub = startNode(t, home, link.RoleHub, func(c *Config) { c.Identity, c.Listen = id, addr })
	sendUntil(t, dev, hub, []byte("after"))
	sendUntil(t, hub, dev, []byte("reply after"))
}
