package agent

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/homemesh/homemesh/mesh/route"
)

var (
	self   = route.NodeID{0xa1}
	hubA   = route.NodeID{0xb1}
	hubB   = route.NodeID{0xb2}
	router = route.NodeID{0xc1}
)

// sent is one payload the agent sent, decoded.
type sent struct {
	To  route.NodeID
	Msg meshapp.Message
}

// fakeNode is a Node whose nearest hub and neighbours the test sets and
// whose sends it reads.
type fakeNode struct {
	t       *testing.T
	mu      sync.Mutex
	hub     route.NodeID
	ok      bool
	nbs     []meshnode.NeighbourInfo
	out     []sent // all but links messages, which most tests need not see
	links   []sent
	order   []meshapp.Type   // of every message sent
	revoked [][]route.NodeID // each Revoke's ids
}

func (n *fakeNode) ID() route.NodeID { return self }

func (n *fakeNode) Send(dst route.NodeID, payload []byte) error {
	m, err := meshapp.Decode(payload)
	if err != nil {
		n.t.Errorf("the agent sent %s, which does not decode: %v", payload, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if m == nil {
		return nil
	}
	n.order = append(n.order, m.MessageType())
	if m.MessageType() == meshapp.TypeLinks {
		n.links = append(n.links, sent{dst, m})
	} else {
		n.out = append(n.out, sent{dst, m})
	}
	return nil
}

func (n *fakeNode) Neighbours() []meshnode.NeighbourInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.nbs)
}

func (n *fakeNode) setNeighbours(nbs ...meshnode.NeighbourInfo) {
	n.mu.Lock()
	n.nbs = nbs
	n.mu.Unlock()
}

// takeLinks returns the links messages sent since the last call, and the
// types of every message sent since then in their order.
func (n *fakeNode) takeLinks() ([]sent, []meshapp.Type) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out, order := n.links, n.order
	n.links, n.order = nil, nil
	return out, order
}

func (n *fakeNode) NearestHub() (route.NodeID, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hub, n.ok
}

func (n *fakeNode) Revoke(ids []route.NodeID) {
	n.mu.Lock()
	n.revoked = append(n.revoked, slices.Clone(ids))
	n.mu.Unlock()
}

// takeRevoked returns the ids of every Revoke since the last call.
func (n *fakeNode) takeRevoked() [][]route.NodeID {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.revoked
	n.revoked = nil
	return out
}

func (n *fakeNode) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (n *fakeNode) setHub(id route.NodeID, ok bool) {
	n.mu.Lock()
	n.hub, n.ok = id, ok
	n.mu.Unlock()
}

// take returns what was sent since the last take.
func (n *fakeNode) take() []sent {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.out
	n.out = nil
	return out
}

func payload(t *testing.T, m meshapp.Message) []byte {
	t.Helper()
	b, err := meshapp.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hubPeer(id route.NodeID) link.Peer { return link.Peer{ID: id, Home: "home1", Role: link.RoleHub} }

// start runs an agent with a switch and a temperature sensor on a fake
// node inside the test's bubble.
func start(t *testing.T) (*Agent, *fakeNode, *Switch) {
	t.Helper()
	sw := NewSwitch("switch", homemesh.KindSwitch)
	a, err := New(Config{
		Device:            meshapp.DeviceInfo{Name: "Test device", Model: "agent"},
		Entities:          []Entity{sw, NewTemperature("temperature", 1)},
		PollInterval:      time.Second,
		TelemetryInterval: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{t: t}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, n) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a, n, sw
}

func types(ss []sent) []string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s.Msg.MessageType())+" to "+s.To.String()[:2])
	}
	return out
}

func TestAgentAnnouncesToTheNearestHub(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, n, _ := start(t)
		synctest.Wait()
		if got := n.take(); len(got) != 0 {
			t.Fatalf("sent %v without a hub", types(got))
		}
		n.setHub(hubA, true)
		time.Sleep(time.Second)
		synctest.Wait()
		got := n.take()
		if diff := cmp.Diff([]string{"announce to b1"}, types(got)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		ann := got[0].Msg.(*meshapp.Announce)
		if ann.Device.Name != "Test device" || len(ann.Entities) != 2 || ann.Entities[0].State == nil || ann.Entities[0].State.Value != "off" {
			t.Errorf("announce = %+v", ann)
		}
		if cmds := ann.Entities[0].Caps.Commands; len(cmds) == 0 {
			t.Error("the switch announces no commands; the border would refuse them all")
		}

		// The nearest hub changes: the new one gets the announcement.
		n.setHub(hubB, true)
		time.Sleep(time.Second)
		synctest.Wait()
		if diff := cmp.Diff([]string{"announce to b2"}, types(n.take())); diff != "" {
			t.Errorf("after the hub changed (-want +got):\n%s", diff)
		}
		// The same hub again: nothing more.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		for _, s := range n.take() {
			if s.Msg.MessageType() == meshapp.TypeAnnounce {
				t.Errorf("announced again to an unchanged hub: %v", s)
			}
		}
	})
}

func TestAgentSendsChangesAndTelemetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, n, _ := start(t)
		n.setHub(hubA, true)
		time.Sleep(time.Second)
		synctest.Wait()
		n.take()
		// The temperature drifts, the switch does not: only temperature
		// states go out between telemetry rounds.
		time.Sleep(50 * time.Second)
		synctest.Wait()
		for _, s := range n.take() {
			st, ok := s.Msg.(*meshapp.State)
			if !ok || st.UniqueID != "temperature" || s.To != hubA {
				t.Errorf("between telemetry rounds: %+v", s)
			}
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		seen := map[string]bool{}
		for _, s := range n.take() {
			if st, ok := s.Msg.(*meshapp.State); ok {
				seen[st.UniqueID] = true
			}
		}
		if !seen["switch"] || !seen["temperature"] {
			t.Errorf("telemetry sent states of %v, want every entity", seen)
		}
	})
}

func TestAgentCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, n, sw := start(t)
		n.setHub(hubA, true)
		time.Sleep(time.Second)
		synctest.Wait()
		n.take()

		// A hub's command is carried out, answered, and the new state sent.
		a.Deliver(hubPeer(hubA), payload(t, &meshapp.Command{ID: 7, UniqueID: "switch", Name: "turn_on"}))
		synctest.Wait()
		got := n.take()
		want := []sent{
			{hubA, &meshapp.Result{ID: 7}},
			{hubA, &meshapp.State{UniqueID: "switch", Reading: meshapp.Reading{Value: "on", Available: true, Time: time.Now()}}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after turn_on (-want +got):\n%s", diff)
		}
		if sw.State().Value != "on" {
			t.Error("the switch is not on")
		}

		// A command the entity refuses, and one for no entity, are answered
		// with the reason; a hub that is not the nearest gets its answer.
		a.Deliver(hubPeer(hubB), payload(t, &meshapp.Command{ID: 8, UniqueID: "temperature", Name: "turn_on"}))
		a.Deliver(hubPeer(hubA), payload(t, &meshapp.Command{ID: 9, UniqueID: "fan", Name: "turn_on"}))
		synctest.Wait()
		results := map[uint64]sent{}
		for _, s := range n.take() {
			if r, ok := s.Msg.(*meshapp.Result); ok {
				results[r.ID] = s
			}
		}
		if r := results[8]; r.To != hubB || r.Msg.(*meshapp.Result).Error != "command: a temperature sensor accepts no commands" {
			t.Errorf("refused command: %+v", r)
		}
		if r := results[9]; r.To != hubA || r.Msg.(*meshapp.Result).Error != `no entity "fan" on this device` {
			t.Errorf("command for no entity: %+v", r)
		}

		// Commands and resyncs from nodes that are not hubs are dropped.
		a.Deliver(link.Peer{ID: router, Home: "home1", Role: link.RoleRouter}, payload(t, &meshapp.Command{ID: 10, UniqueID: "switch", Name: "turn_off"}))
		a.Deliver(link.Peer{ID: router, Home: "home1", Role: link.RoleLeaf}, payload(t, &meshapp.Resync{}))
		// Messages of the wrong direction and garbage too.
		a.Deliver(hubPeer(hubA), payload(t, &meshapp.Result{ID: 1}))
		a.Deliver(hubPeer(hubA), []byte(`{"type":"command"}`))
		synctest.Wait()
		if got := n.take(); len(got) != 0 {
			t.Errorf("answered %v", types(got))
		}
		if sw.State().Value != "on" {
			t.Error("a router switched the switch off")
		}
		c := a.Counters()
		if diff := cmp.Diff(map[string]uint64{"not_hub": 2, "wrong_direction": 1, "malformed": 1}, c.Refused); diff != "" {
			t.Errorf("refused (-want +got):\n%s", diff)
		}

		// A resync from a hub is answered with an announcement to it.
		a.Deliver(hubPeer(hubB), payload(t, &meshapp.Resync{}))
		synctest.Wait()
		if diff := cmp.Diff([]string{"announce to b2"}, types(n.take())); diff != "" {
			t.Errorf("after resync (-want +got):\n%s", diff)
		}
	})
}

// slowEntity blocks its commands until released.
type slowEntity struct {
	Switch
	release chan struct{}
}

func (s *slowEntity) Command(ctx context.Context, _ *meshapp.Command) error {
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestAgentBoundsCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := &slowEntity{Switch: *NewSwitch("slow", homemesh.KindSwitch), release: make(chan struct{})}
		a, err := New(Config{Device: meshapp.DeviceInfo{Name: "d"}, Entities: []Entity{slow}, CommandTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		n := &fakeNode{t: t, hub: hubA, ok: true}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go a.Run(ctx, n)
		synctest.Wait()
		n.take()
		for i := range maxCommandsInFlight + 1 {
			a.Deliver(hubPeer(hubA), payload(t, &meshapp.Command{ID: uint64(i), UniqueID: "slow", Name: "turn_on"}))
		}
		synctest.Wait()
		got := n.take()
		if len(got) != 1 || got[0].Msg.(*meshapp.Result).Error != "the device is busy; try again" {
			t.Fatalf("past the limit: %+v", got)
		}
		// The others time out and say so.
		time.Sleep(6 * time.Second)
		synctest.Wait()
		timeouts := 0
		for _, s := range n.take() {
			if r, ok := s.Msg.(*meshapp.Result); ok && r.Error == context.DeadlineExceeded.Error() {
				timeouts++
			}
		}
		if timeouts != maxCommandsInFlight {
			t.Errorf("%d commands timed out, want %d", timeouts, maxCommandsInFlight)
		}
	})
}

func TestNewRefusesBadEntities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no device name", Config{Entities: []Entity{NewSwitch("a", homemesh.KindSwitch)}}, "device.name"},
		{"duplicate", Config{Device: meshapp.DeviceInfo{Name: "d"}, Entities: []Entity{NewSwitch("a", homemesh.KindSwitch), NewDoor("a", 1)}}, "entities[1].unique_id"},
		{"bad id", Config{Device: meshapp.DeviceInfo{Name: "d"}, Entities: []Entity{NewSwitch("A b", homemesh.KindSwitch)}}, "entities[0].unique_id"},
		{"nil", Config{Device: meshapp.DeviceInfo{Name: "d"}, Entities: []Entity{nil}}, "entities[0]"},
		{"fast poll", Config{Device: meshapp.DeviceInfo{Name: "d"}, PollInterval: time.Millisecond}, "poll_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if homemesh.ErrorField(err) != tc.field {
				t.Errorf("error %v names %q, want %q", err, homemesh.ErrorField(err), tc.field)
			}
		})
	}
}

// neighbour is a live link of the fake node with the given cost.
func neighbour(id route.NodeID, role link.Role, cost uint16) meshnode.NeighbourInfo {
	return meshnode.NeighbourInfo{ID: id, Role: role, Cost: cost, RxCost: cost, TxCost: cost,
		Quality: min(1, float64(route.HopCost)/float64(cost))}
}

// reported returns the neighbours' ids and costs in a links message.
func reported(s sent) map[string]uint16 {
	out := map[string]uint16{}
	for _, nb := range s.Msg.(*meshapp.Links).Neighbours {
		out[nb.ID.String()[:2]+" "+nb.Role.String()] = nb.Cost
	}
	return out
}

func TestAgentReportsLinks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, n, _ := start(t)
		leaf := route.NodeID{0xd1}
		dead := neighbour(route.NodeID{0xe1}, link.RoleRouter, 256)
		dead.Dead = true
		n.setNeighbours(neighbour(hubA, link.RoleHub, 256), neighbour(router, link.RoleRouter, 300), dead)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 0 {
			t.Fatalf("reported links without a hub: %+v", got)
		}

		// Once announced, the hub hears of the live links.
		n.setHub(hubA, true)
		time.Sleep(time.Second)
		synctest.Wait()
		got, order := n.takeLinks()
		if len(got) != 1 || got[0].To != hubA {
			t.Fatalf("after announcing sent links %+v, want one message to the hub", got)
		}
		if i := slices.Index(order, meshapp.TypeAnnounce); i < 0 || i > slices.Index(order, meshapp.TypeLinks) {
			t.Errorf("sent %v, want the links after the announce", order)
		}
		want := &meshapp.Links{Neighbours: []meshapp.Neighbour{
			{ID: hubA, Role: link.RoleHub, Cost: 256, RxCost: 256, TxCost: 256, Quality: 1},
			{ID: router, Role: link.RoleRouter, Cost: 300, RxCost: 300, TxCost: 300, Quality: 256.0 / 300},
		}}
		if diff := cmp.Diff(meshapp.Message(want), got[0].Msg); diff != "" {
			t.Errorf("links (-want +got):\n%s", diff)
		}

		// A cost that wobbles by less than a quarter is no news.
		n.setNeighbours(neighbour(hubA, link.RoleHub, 300), neighbour(router, link.RoleRouter, 350), dead)
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 0 {
			t.Errorf("reported a wobble: %v", reported(got[0]))
		}

		// A neighbour that comes is reported at once; one that goes right
		// after waits for the rate limit.
		n.setNeighbours(neighbour(hubA, link.RoleHub, 300), neighbour(router, link.RoleRouter, 350), neighbour(leaf, link.RoleLeaf, 256))
		time.Sleep(time.Second)
		synctest.Wait()
		got, _ = n.takeLinks()
		if len(got) != 1 {
			t.Fatalf("a new neighbour: sent %d links messages, want 1", len(got))
		}
		if diff := cmp.Diff(map[string]uint16{"b1 hub": 300, "c1 router": 350, "d1 leaf": 256}, reported(got[0])); diff != "" {
			t.Errorf("with a new neighbour (-want +got):\n%s", diff)
		}
		n.setNeighbours(neighbour(hubA, link.RoleHub, 300), neighbour(router, link.RoleRouter, 350))
		time.Sleep(time.Second)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 0 {
			t.Errorf("reported twice within %v", linksMinInterval)
		}
		time.Sleep(linksMinInterval)
		synctest.Wait()
		got, _ = n.takeLinks()
		if len(got) != 1 {
			t.Fatalf("a neighbour gone: sent %d links messages, want 1", len(got))
		}
		if diff := cmp.Diff(map[string]uint16{"b1 hub": 300, "c1 router": 350}, reported(got[0])); diff != "" {
			t.Errorf("without the leaf (-want +got):\n%s", diff)
		}

		// A cost that moves by more than a quarter is news.
		time.Sleep(linksMinInterval)
		n.setNeighbours(neighbour(hubA, link.RoleHub, 300), neighbour(router, link.RoleRouter, 512))
		time.Sleep(time.Second)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 1 || reported(got[0])["c1 router"] != 512 {
			t.Errorf("after the router's cost rose by half: %+v", got)
		}

		// Unchanged links are reported every minute.
		time.Sleep(linksInterval - 2*time.Second)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 0 {
			t.Errorf("reported unchanged links within a minute: %+v", got)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 1 {
			t.Errorf("after a minute sent %d links messages, want 1", len(got))
		}

		// A new hub hears of them after the announcement.
		time.Sleep(linksMinInterval)
		n.setHub(hubB, true)
		time.Sleep(time.Second)
		synctest.Wait()
		if got, _ := n.takeLinks(); len(got) != 1 || got[0].To != hubB {
			t.Errorf("after the hub changed: %+v", got)
		}
		if c := a.Counters(); c.Links != 6 {
			t.Errorf("counted %d links messages, want 6", c.Links)
		}
	})
}
