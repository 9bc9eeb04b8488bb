package border_test

import (
	"context"
	"crypto/ecdh"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/border"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/homemesh/homemesh/registry"
	"github.com/prometheus/client_golang/prometheus"
)

const home = "h1"

// fakeMesh stands in for the mesh node: what the border sends is kept in
// sent, what the test delivers reaches the border as if an agent sent it,
// and the test decides the routes.
type fakeMesh struct {
	cfg  border.MeshConfig
	id   route.NodeID
	sent chan sent

	mu      sync.Mutex
	topo    border.Topology
	revoked []route.NodeID // every id passed to Revoke
}

type sent struct {
	dst route.NodeID
	msg meshapp.Message
}

func (m *fakeMesh) ID() route.NodeID   { return m.id }
func (m *fakeMesh) Addr() *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4790} }
func (m *fakeMesh) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (m *fakeMesh) Send(dst route.NodeID, payload []byte) error {
	msg, err := meshapp.Decode(payload)
	if err != nil {
		return fmt.Errorf("the border sent an invalid message: %w", err)
	}
	m.sent <- sent{dst, msg}
	return nil
}

func (m *fakeMesh) Revoke(ids []route.NodeID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revoked = append(m.revoked, ids...)
}

func (m *fakeMesh) isRevoked(id route.NodeID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.revoked, id)
}

func (m *fakeMesh) Topology() border.Topology {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.topo
	t.Hub = m.id.String()
	t.Routes = append([]border.Route(nil), t.Routes...)
	return t
}

// route gives the hub a usable route to id, or takes it away.
func (m *fakeMesh) route(id route.NodeID, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var routes []border.Route
	for _, r := range m.topo.Routes {
		if r.Destination != id.String() {
			routes = append(routes, r)
		}
	}
	if up {
		routes = append(routes, border.Route{Destination: id.String(), NextHop: id.String(), Metric: 256, Feasible: true})
	}
	m.topo.Routes = routes
}

type fixture struct {
	t       *testing.T
	srv     *natsbus.Server
	conn    *natsbus.Conn
	reg     *registry.Client
	ca      *linktest.Home
	dir     string
	metrics *prometheus.Registry
	revs    *fakeRevocations // nil: the border gets none

	mesh   *fakeMesh
	border *border.Border
	stop   func()
}

func setup(t *testing.T, cfg border.Config) *fixture {
	t.Helper()
	srv := bustest.Server(t)
	reg, err := registry.New(registry.Config{Home: home}, registry.Deps{Bus: bustest.Conn(t, srv), Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hmtest.Run(t, "registry", reg.Run)
	ca, err := linktest.NewHome(home, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conn := bustest.Conn(t, srv)
	f := &fixture{t: t, srv: srv, conn: conn, reg: registry.NewClient(conn, home), ca: ca, dir: t.TempDir(), revs: &fakeRevocations{}}
	hmtest.WaitFor(t, 10*time.Second, "registry", func() bool { _, err := f.reg.Devices(context.Background()); return err == nil })
	f.start(cfg)
	return f
}

// start runs a border on the fixture's bus and data directory.
func (f *fixture) start(cfg border.Config) {
	t := f.t
	t.Helper()
	cfg.Home, cfg.DataDir, cfg.Listen = home, f.dir, "127.0.0.1:0"
	bconn := bustest.Conn(t, f.srv)
	f.metrics = prometheus.NewRegistry()
	var revs border.Revocations
	if f.revs != nil {
		revs = f.revs
	}
	b, err := border.New(cfg, border.Deps{
		Bus: bconn, Registry: registry.NewClient(bconn, home), Log: hmtest.Logger(t), Metrics: f.metrics,
		HubCert: f.hubCert, Revocations: revs,
		NewMesh: func(mc border.MeshConfig) (border.Mesh, error) {
			f.mesh = &fakeMesh{cfg: mc, id: route.IDFromKey(mc.Identity.Key.PublicKey().Bytes()), sent: make(chan sent, 64)}
			return f.mesh, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	f.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("border: %v", err)
		}
	}
	t.Cleanup(func() {
		if f.border == b {
			f.stop()
		}
	})
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("border stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("border not ready")
	}
	f.border = b
}

// restart stops the border and starts another on the same bus and data.
func (f *fixture) restart(cfg border.Config) {
	f.stop()
	f.border = nil
	f.start(cfg)
}

func (f *fixture) hubCert(_ context.Context, key []byte, addrs []string) (border.HubCert, error) {
	if len(addrs) == 0 {
		return border.HubCert{}, homemesh.Invalid("addresses", "none")
	}
	pub, err := ecdh.X25519().NewPublicKey(key)
	if err != nil {
		return border.HubCert{}, homemesh.Invalid("key", "%v", err)
	}
	cert, err := link.IssueNodeCert(f.ca.CA, f.ca.Key, home, link.RoleHub, pub, time.Now(), time.Hour)
	return border.HubCert{Cert: cert, Roots: []*x509.Certificate{f.ca.CA}}, err
}

// agent makes an agent's verified identity, as the link layer reports it.
func (f *fixture) agent(seed uint64) link.Peer {
	f.t.Helper()
	id, err := f.ca.Identity(link.RoleRouter, linktest.Rand(seed))
	if err != nil {
		f.t.Fatal(err)
	}
	p, err := f.ca.Verifier.Verify(id.Cert, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// deliver hands msg to the border as if from arrived end to end.
func (f *fixture) deliver(from link.Peer, msg meshapp.Message) {
	f.t.Helper()
	payload, err := meshapp.Encode(msg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mesh.cfg.OnMessage(from, payload)
}

// next returns the next message the border sent.
func (f *fixture) next() sent {
	f.t.Helper()
	select {
	case s := <-f.mesh.sent:
		return s
	case <-time.After(10 * time.Second):
		f.t.Fatal("the border sent nothing")
		return sent{}
	}
}

func (f *fixture) entity(id string) (homemesh.Entity, bool) {
	e, err := f.reg.Entity(context.Background(), id)
	return e, err == nil
}

// waitState waits until entity id's state satisfies ok.
func (f *fixture) waitState(id, what string, ok func(homemesh.State) bool) {
	f.t.Helper()
	hmtest.WaitFor(f.t, 10*time.Second, id+" "+what, func() bool {
		e, found := f.entity(id)
		return found && ok(e.State)
	})
}

func (f *fixture) command(entityID, name string, params map[string]any) error {
	nodeID, _, _ := meshapp.ParseEntityID(entityID)
	cmd := homemesh.Command{HomeID: home, EntityID: entityID, Name: name, Params: params}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.conn.Request(ctx, bus.CommandSubject(home, meshapp.DeviceID(nodeID), entityID), cmd, nil)
}

func ptr[T any](v T) *T { return &v }

// plug announces a thermometer and a switch.
func plug(temp float64, on string) *meshapp.Announce {
	return &meshapp.Announce{
		Device: meshapp.DeviceInfo{Name: "Plug", Manufacturer: "homemesh", Model: "sim"},
		Entities: []meshapp.Entity{
			{UniqueID: "temperature", Kind: homemesh.KindSensor, DeviceClass: "temperature", Unit: "°C",
				State: &meshapp.Reading{Value: temp, Available: true}},
			{UniqueID: "relay", Kind: homemesh.KindSwitch, Caps: homemesh.Capabilities{Commands: []string{"turn_on", "turn_off", "toggle"}},
				State: &meshapp.Reading{Value: on, Available: true}},
		},
	}
}

func TestAnnounceRegistersTheAgent(t *testing.T) {
	f := setup(t, border.Config{})
	a := f.agent(10)
	f.deliver(a, plug(21.5, "off"))
	temp := meshapp.EntityID(a.ID, "temperature")
	f.waitState(temp, "reported", func(s homemesh.State) bool { return s.Value == 21.5 && s.Available })
	dev, err := f.reg.Device(context.Background(), meshapp.DeviceID(a.ID))
	if err != nil {
		t.Fatal(err)
	}
	if dev.Source != meshapp.Source || dev.Name != "Plug" {
		t.Errorf("device = %+v", dev)
	}
	e, _ := f.entity(temp)
	if e.Source != meshapp.Source || e.DeviceID != dev.ID || e.Unit != "°C" || e.Kind != homemesh.KindSensor {
		t.Errorf("entity = %+v", e)
	}

	f.deliver(a, &meshapp.State{UniqueID: "temperature", Reading: meshapp.Reading{Value: 22.0, Available: true}})
	f.waitState(temp, "updated", func(s homemesh.State) bool { return s.Value == 22.0 })

	// Announcing the same definitions again reports their states.
	f.deliver(a, plug(23, "on"))
	f.waitState(temp, "re-announced", func(s homemesh.State) bool { return s.Value == 23.0 })
	f.waitState(meshapp.EntityID(a.ID, "relay"), "re-announced", func(s homemesh.State) bool { return s.Value == "on" })

	// An announce without the switch removes it.
	f.deliver(a, &meshapp.Announce{Device: meshapp.DeviceInfo{Name: "Plug"}, Entities: plug(22, "off").Entities[:1]})
	hmtest.WaitFor(t, 10*time.Second, "the switch removed", func() bool {
		_, found := f.entity(meshapp.EntityID(a.ID, "relay"))
		return !found
	})
	if _, found := f.entity(temp); !found {
		t.Error("the thermometer went too")
	}
}

func TestUnknownAgentIsAskedToResync(t *testing.T) {
	f := setup(t, border.Config{ResyncInterval: time.Hour})
	a := f.agent(11)
	f.deliver(a, &meshapp.State{UniqueID: "temperature", Reading: meshapp.Reading{Value: 20.0, Available: true}})
	s := f.next()
	if _, ok := s.msg.(*meshapp.Resync); !ok || s.dst != a.ID {
		t.Fatalf("sent %T to %s, want a resync to %s", s.msg, s.dst, a.ID)
	}
	// Within ResyncInterval the agent is not asked again; its announce
	// then makes its states welcome.
	f.deliver(a, &meshapp.State{UniqueID: "temperature", Reading: meshapp.Reading{Value: 20.5, Available: true}})
	f.deliver(a, plug(21, "on"))
	f.waitState(meshapp.EntityID(a.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Value == "on" })
	select {
	case s := <-f.mesh.sent:
		t.Errorf("sent %T to %s, want nothing", s.msg, s.dst)
	default:
	}
	if _, found := f.entity(meshapp.EntityID(a.ID, "missing")); found {
		t.Error("an unannounced entity exists")
	}
}

// answer plays the agent: it answers the next command with errText.
func (f *fixture) answer(from link.Peer, errText string) *meshapp.Command {
	f.t.Helper()
	s := f.next()
	cmd, ok := s.msg.(*meshapp.Command)
	if !ok || s.dst != from.ID {
		f.t.Fatalf("sent %T to %s, want a command to %s", s.msg, s.dst, from.ID)
	}
	f.deliver(from, &meshapp.Result{ID: cmd.ID, Error: errText})
	return cmd
}

func TestCommandsReachTheAgent(t *testing.T) {
	f := setup(t, border.Config{CommandTimeout: 2 * time.Second})
	a := f.agent(12)
	f.mesh.route(a.ID, true)
	f.deliver(a, plug(21, "off"))
	relay := meshapp.EntityID(a.ID, "relay")
	f.waitState(relay, "announced", func(s homemesh.State) bool { return s.Value == "off" })

	got := make(chan *meshapp.Command, 1)
	go func() { got <- f.answer(a, "") }()
	if err := f.command(relay, "turn_on", map[string]any{"transition": 2.0}); err != nil {
		t.Fatalf("turn_on: %v", err)
	}
	if c := <-got; c.UniqueID != "relay" || c.Name != "turn_on" || c.Params["transition"] != 2.0 {
		t.Errorf("the agent got %+v", c)
	}

	go f.answer(a, "the relay is stuck")
	err := f.command(relay, "turn_off", nil)
	if homemesh.ErrorKind(err) != homemesh.KindInvalid || !strings.Contains(err.Error(), "the relay is stuck") {
		t.Errorf("refused command: %v", err)
	}

	// Another agent cannot answer for this one.
	b := f.agent(13)
	go func() {
		s := f.next()
		cmd := s.msg.(*meshapp.Command)
		f.deliver(b, &meshapp.Result{ID: cmd.ID, Error: "forged"})
		f.deliver(a, &meshapp.Result{ID: cmd.ID})
	}()
	if err := f.command(relay, "toggle", nil); err != nil {
		t.Errorf("a forged result decided the command: %v", err)
	}

	// Nobody answers: the agent is unavailable.
	err = f.command(relay, "turn_on", nil)
	if homemesh.ErrorKind(err) != homemesh.KindUnavailable || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("unanswered command: %v", err)
	}
	f.next() // the unanswered command

	for _, tc := range []struct {
		name, entity, command string
		kind                  homemesh.Kind
	}{
		{"not a command of the entity", relay, "set_value", homemesh.KindInvalid},
		{"a sensor", meshapp.EntityID(a.ID, "temperature"), "turn_on", homemesh.KindInvalid},
		{"an unknown entity", meshapp.EntityID(a.ID, "nothing"), "turn_on", homemesh.KindNotFound},
		{"an unknown agent", meshapp.EntityID(f.agent(14).ID, "relay"), "turn_on", homemesh.KindNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.command(tc.entity, tc.command, nil); homemesh.ErrorKind(err) != tc.kind {
				t.Errorf("error %v, want kind %s", err, tc.kind)
			}
		})
	}
	select {
	case s := <-f.mesh.sent:
		t.Errorf("a refused command reached the agent: %+v", s.msg)
	default:
	}
	if n := metric(t, f.metrics, "homemesh_mesh_commands_total", "outcome", "done"); n != 2 {
		t.Errorf("commands done = %v, want 2", n)
	}
}

func TestCommandsOfOtherDevicesAreLeftAlone(t *testing.T) {
	f := setup(t, border.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cmd := homemesh.Command{HomeID: home, EntityID: "lamp_light", Name: "turn_on"}
	err := f.conn.Request(ctx, bus.CommandSubject(home, "lamp", "lamp_light"), cmd, nil)
	if homemesh.ErrorKind(err) != homemesh.KindUnavailable {
		t.Errorf("the border answered an MQTT device's command: %v", err)
	}
}

func TestAvailabilityFollowsTheRoute(t *testing.T) {
	f := setup(t, border.Config{Grace: 200 * time.Millisecond, CheckInterval: 10 * time.Millisecond, ResyncInterval: time.Millisecond})
	a := f.agent(15)
	f.mesh.route(a.ID, true)
	f.deliver(a, plug(21, "off"))
	temp := meshapp.EntityID(a.ID, "temperature")
	f.waitState(temp, "announced", func(s homemesh.State) bool { return s.Available })

	f.mesh.route(a.ID, false)
	f.waitState(temp, "unavailable", func(s homemesh.State) bool { return !s.Available })
	err := f.command(meshapp.EntityID(a.ID, "relay"), "turn_on", nil)
	if homemesh.ErrorKind(err) != homemesh.KindUnavailable || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("command to an unreachable agent: %v", err)
	}
	if n := metric(t, f.metrics, "homemesh_mesh_agents_online"); n != 0 {
		t.Errorf("agents online = %v, want 0", n)
	}

	f.mesh.route(a.ID, true)
	f.waitState(temp, "available again", func(s homemesh.State) bool { return s.Available })
	if s := f.next(); s.dst != a.ID {
		t.Errorf("sent to %s, want %s", s.dst, a.ID)
	} else if _, ok := s.msg.(*meshapp.Resync); !ok {
		t.Errorf("sent %T, want a resync", s.msg)
	}
	if n := metric(t, f.metrics, "homemesh_mesh_agents_online"); n != 1 {
		t.Errorf("agents online = %v, want 1", n)
	}
}

func TestRestartedHubKeepsItsIdentityAndItsAgents(t *testing.T) {
	f := setup(t, border.Config{})
	hub := f.border.ID()
	a := f.agent(16)
	f.deliver(a, plug(21, "off"))
	f.waitState(meshapp.EntityID(a.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Value == "off" })
	if key, ok := f.mesh.cfg.KeyOf(a.ID); !ok || string(key) != string(a.Key) {
		t.Fatalf("KeyOf(agent) = %x, %v", key, ok)
	}
	fi, err := os.Stat(filepath.Join(f.dir, border.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("hub key file: %v, %v", fi, err)
	}

	f.restart(border.Config{CommandTimeout: 2 * time.Second})
	if f.border.ID() != hub {
		t.Errorf("hub id %s after restart, want %s", f.border.ID(), hub)
	}
	if key, ok := f.mesh.cfg.KeyOf(a.ID); !ok || string(key) != string(a.Key) {
		t.Errorf("after restart KeyOf(agent) = %x, %v", key, ok)
	}
	// The restarted hub commands the agent before it speaks again.
	f.mesh.route(a.ID, true)
	go f.answer(a, "")
	if err := f.command(meshapp.EntityID(a.ID, "relay"), "turn_on", nil); err != nil {
		t.Errorf("command after restart: %v", err)
	}
}

func TestTopologyAndMetrics(t *testing.T) {
	f := setup(t, border.Config{})
	a := f.agent(17)
	f.mesh.mu.Lock()
	f.mesh.topo.Links = []border.Link{{From: f.border.ID().String(), To: a.ID.String(), Cost: 256, RxCost: 256, TxCost: 256, Quality: 1}}
	f.mesh.topo.Counters = border.Counters{PacketsIn: 7, Rejected: map[string]uint64{"replayed": 3, "forged": 2}}
	f.mesh.mu.Unlock()
	f.mesh.route(a.ID, true)
	f.deliver(a, plug(21, "off"))
	f.waitState(meshapp.EntityID(a.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Value == "off" })

	topo, err := border.NewClient(f.conn, home).Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if topo.Hub != f.border.ID().String() || len(topo.Nodes) != 2 || topo.Nodes[0].ID != topo.Hub || topo.Nodes[0].Role != "hub" {
		t.Fatalf("topology = %+v", topo)
	}
	if n := topo.Nodes[1]; n.ID != a.ID.String() || n.DeviceID != meshapp.DeviceID(a.ID) || !n.Reachable || n.Role != "router" {
		t.Errorf("agent node = %+v", n)
	}
	if len(topo.Links) != 1 || len(topo.Routes) != 1 || topo.Counters.Rejected["replayed"] != 3 {
		t.Errorf("links %+v routes %+v counters %+v", topo.Links, topo.Routes, topo.Counters)
	}
	if _, err := border.NewClient(f.conn, "h2").Topology(context.Background()); homemesh.ErrorKind(err) != homemesh.KindNotFound {
		t.Errorf("another home's topology: %v", err)
	}

	f.mesh.cfg.OnMessage(a, []byte(`{"type":"state","unique_id":"Bad!"}`))
	hmtest.WaitFor(t, 10*time.Second, "the malformed message counted", func() bool {
		return metric(t, f.metrics, "homemesh_mesh_messages_dropped_total", "reason", "malformed") == 1
	})
	for name, want := range map[string]float64{"homemesh_mesh_neighbours": 1, "homemesh_mesh_routes": 1, "homemesh_mesh_agents_online": 1} {
		if n := metric(t, f.metrics, name); n != want {
			t.Errorf("%s = %v, want %v", name, n, want)
		}
	}
	if n := metric(t, f.metrics, "homemesh_mesh_frames_rejected_total", "reason", "forged"); n != 2 {
		t.Errorf("forged frames = %v, want 2", n)
	}
}

// metric returns the value of the metric name with the label pair given
// (none for an unlabelled one), 0 when absent.
func metric(t *testing.T, g prometheus.Gatherer, name string, label ...string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := len(label) == 0
			for _, lp := range m.GetLabel() {
				if len(label) == 2 && lp.GetName() == label[0] && lp.GetValue() == label[1] {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// TestBordersShareWhatTheyLearn runs a second border process of the same
// home: what the first learns of an agent reaches it through the bucket,
// so it can command the agent too.
func TestBordersShareWhatTheyLearn(t *testing.T) {
	f := setup(t, border.Config{})
	second := &fixture{t: t, srv: f.srv, conn: f.conn, reg: f.reg, ca: f.ca, dir: t.TempDir()}
	second.start(border.Config{CommandTimeout: 2 * time.Second})

	a := f.agent(18)
	f.deliver(a, plug(21, "off"))
	f.waitState(meshapp.EntityID(a.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Value == "off" })
	hmtest.WaitFor(t, 10*time.Second, "the second border to learn the agent's key", func() bool {
		key, ok := second.mesh.cfg.KeyOf(a.ID)
		return ok && string(key) == string(a.Key)
	})
}
