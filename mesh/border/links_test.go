package border_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/border"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
)

// topology asks the border for its topology over the bus.
func (f *fixture) topology() border.Topology {
	f.t.Helper()
	topo, err := border.NewClient(f.conn, home).Topology(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return topo
}

// reportedLinks returns the topology's links as "from→to cost by", with
// node ids cut to their first four digits.
func reportedLinks(topo border.Topology) []string {
	var out []string
	for _, l := range topo.Links {
		out = append(out, l.From[:4]+"→"+l.To[:4]+" "+strconv.Itoa(l.Cost)+" "+l.ReportedBy)
	}
	return out
}

func nb(id route.NodeID, role link.Role, cost uint16) meshapp.Neighbour {
	return meshapp.Neighbour{ID: id, Role: role, Cost: cost, RxCost: cost, TxCost: cost, Quality: min(1, 256/float64(cost))}
}

func TestTopologyMergesTheAgentsLinks(t *testing.T) {
	f := setup(t, border.Config{LinksMaxAge: 1500 * time.Millisecond, ResyncInterval: time.Hour})
	hub := f.border.ID()
	a, b, stranger := f.agent(40), f.agent(41), f.agent(42)
	leaf := route.NodeID{0xcc, 0xcc, 1}
	f.mesh.mu.Lock()
	f.mesh.topo.Links = []border.Link{{From: hub.String(), To: a.ID.String(), Address: "127.0.0.1:4791", Cost: 256, RxCost: 256, TxCost: 256, Quality: 1}}
	f.mesh.mu.Unlock()
	f.mesh.route(a.ID, true)
	f.mesh.route(b.ID, true)
	f.deliver(a, plug(21, "off"))
	f.deliver(b, plug(22, "off"))
	f.waitState(meshapp.EntityID(a.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Available })
	f.waitState(meshapp.EntityID(b.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Available })

	// A node the border does not know as an agent is asked to announce;
	// its links are not shown.
	f.deliver(stranger, &meshapp.Links{Neighbours: []meshapp.Neighbour{nb(a.ID, link.RoleRouter, 256)}})
	if s := f.next(); s.dst != stranger.ID {
		t.Errorf("sent %T to %s, want a resync to the stranger", s.msg, s.dst)
	} else if _, ok := s.msg.(*meshapp.Resync); !ok {
		t.Errorf("sent %T to the stranger, want a resync", s.msg)
	}
	hmtest.WaitFor(t, 10*time.Second, "the stranger's report counted", func() bool {
		return metric(t, f.metrics, "homemesh_mesh_messages_dropped_total", "reason", "unknown_agent") == 1
	})

	// a reports its links with the hub and b (and one with itself, which
	// cannot be); b its links with a and a leaf the hub has no route to.
	sent := time.Now()
	f.deliver(a, &meshapp.Links{Neighbours: []meshapp.Neighbour{nb(hub, link.RoleHub, 256), nb(a.ID, link.RoleRouter, 256), nb(b.ID, link.RoleRouter, 300)}})
	f.deliver(b, &meshapp.Links{Neighbours: []meshapp.Neighbour{nb(a.ID, link.RoleRouter, 320), nb(leaf, link.RoleLeaf, 400)}})
	var topo border.Topology
	hmtest.WaitFor(t, 10*time.Second, "both reports in the topology", func() bool {
		topo = f.topology()
		return len(topo.Links) == 5
	})
	short := func(id route.NodeID) string { return id.String()[:4] }
	want := []string{
		short(hub) + "→" + short(a.ID) + " 256 hub",
	}
	agentLinks := []string{
		short(a.ID) + "→" + short(hub) + " 256 agent",
		short(a.ID) + "→" + short(b.ID) + " 300 agent",
		short(b.ID) + "→" + short(a.ID) + " 320 agent",
		short(b.ID) + "→" + short(leaf) + " 400 agent",
	}
	// The agents' links come after the hub's, by from and to.
	slices.Sort(agentLinks)
	want = append(want, agentLinks...)
	if diff := cmp.Diff(want, reportedLinks(topo)); diff != "" {
		t.Errorf("links (-want +got):\n%s", diff)
	}
	for _, l := range topo.Links {
		switch {
		case l.ReportedBy == border.ReportedByHub && !l.ReportedAt.IsZero():
			t.Errorf("the hub's link %+v has a report time", l)
		case l.ReportedBy == border.ReportedByAgent && (l.ReportedAt.Before(sent.Add(-time.Second)) || l.ReportedAt.After(time.Now())):
			t.Errorf("link %+v reported at %v, want about %v", l, l.ReportedAt, sent)
		case l.ReportedBy == border.ReportedByAgent && (l.Address != "" || l.Quality != 256/float64(l.Cost) || l.RxCost != l.Cost):
			t.Errorf("link %+v does not carry what the agent reported", l)
		}
	}
	// Every node a link names is listed; the leaf with the role b gave
	// it, unreachable since the hub has no route to it.
	wantNodes := []border.Node{
		{ID: hub.String(), Role: "hub", Reachable: true},
		{ID: a.ID.String(), Role: "router", DeviceID: meshapp.DeviceID(a.ID), Reachable: true},
		{ID: b.ID.String(), Role: "router", DeviceID: meshapp.DeviceID(b.ID), Reachable: true},
		{ID: leaf.String(), Role: "leaf"},
		{ID: stranger.ID.String(), Role: "router"},
	}
	if diff := cmp.Diff(wantNodes, topo.Nodes, cmpopts.SortSlices(func(x, y border.Node) bool { return x.ID < y.ID })); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if topo.Nodes[0].ID != hub.String() {
		t.Errorf("the first node is %s, want the hub", topo.Nodes[0].ID)
	}

	// A new report replaces the last; a report older than LinksMaxAge is
	// left out, its agent may be gone.
	time.Sleep(time.Second)
	f.deliver(b, &meshapp.Links{Neighbours: []meshapp.Neighbour{nb(a.ID, link.RoleRouter, 512)}})
	hmtest.WaitFor(t, 10*time.Second, "a's report to expire and b's to be replaced", func() bool {
		got := reportedLinks(f.topology())
		return cmp.Equal(got, []string{short(hub) + "→" + short(a.ID) + " 256 hub", short(b.ID) + "→" + short(a.ID) + " 512 agent"})
	})

	// A revoked agent's report goes with it, and so do links to it.
	f.deliver(a, &meshapp.Links{Neighbours: []meshapp.Neighbour{nb(hub, link.RoleHub, 256), nb(b.ID, link.RoleRouter, 300)}})
	hmtest.WaitFor(t, 10*time.Second, "a's new report", func() bool { return len(f.topology().Links) == 4 })
	f.revs.revoke(b.ID, false)
	hmtest.WaitFor(t, 10*time.Second, "the revoked agent's links gone", func() bool {
		got := reportedLinks(f.topology())
		return cmp.Equal(got, []string{short(hub) + "→" + short(a.ID) + " 256 hub", short(a.ID) + "→" + short(hub) + " 256 agent"})
	})
}
