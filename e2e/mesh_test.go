package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/agent"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
)

// meshWait bounds the waits of the mesh test: a route three hops long
// takes a few Hello intervals (1 s) to form, and a dead relay 2.5 s to be
// noticed, longer on a loaded machine.
const meshWait = 90 * time.Second

// waitLong polls cond until it holds or meshWait passes.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(meshWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", meshWait, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// meshEntity is an entity as the API shows it, with the time its state
// was last reported.
type meshEntity struct {
	entity
	State struct {
		Value     any       `json:"value"`
		Available bool      `json:"available"`
		UpdatedAt time.Time `json:"updated_at"`
	} `json:"state"`
}

// meshAgent is a `homemesh agent` running in the test: paired through the
// claim endpoint, with simulated entities.
type meshAgent struct {
	name string
	node *meshnode.Node
	hub  route.NodeID
	stop context.CancelFunc
	done chan struct{}
}

// pairAgent pairs a new mesh agent with the home through the API, as
// `homemesh agent pair` does, and runs it with a thermometer and a switch,
// linked to peers only.
func pairAgent(t *testing.T, api, token, name string, peers ...string) *meshAgent {
	t.Helper()
	var pairing struct{ Code string }
	if code := call(t, "POST", api+"/pairings", token, map[string]string{"name": name}, &pairing); code != http.StatusCreated {
		t.Fatalf("create a pairing for %s = %d", name, code)
	}
	seen.add(pairing.Code)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := agent.Pair(ctx, agent.PairConfig{HubURL: strings.TrimSuffix(api, "/api/v1"), Code: pairing.Code, StateDir: dir})
	if err != nil {
		cancel()
		t.Fatalf("pair %s: %v", name, err)
	}
	if len(p.Hubs) != 1 {
		cancel()
		t.Fatalf("%s's pairing lists hubs %+v, want the one hub", name, p.Hubs)
	}
	hub, err := route.ParseNodeID(p.Hubs[0].NodeID)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a := &meshAgent{name: name, hub: hub, stop: cancel, done: make(chan struct{})}
	ready := make(chan *meshnode.Node, 1)
	go func() {
		defer close(a.done)
		err := agent.RunNode(ctx, agent.NodeConfig{
			StateDir: dir, Listen: "127.0.0.1:0", Peers: peers,
			Agent: agent.Config{
				Device:       meshapp.DeviceInfo{Name: name, Manufacturer: "homemesh", Model: "e2e"},
				Entities:     []agent.Entity{agent.NewTemperature("temperature", 1), agent.NewSwitch("relay", homemesh.KindSwitch)},
				PollInterval: 100 * time.Millisecond, TelemetryInterval: 300 * time.Millisecond,
			},
			Log:   hmtest.Logger(t).With("agent", name),
			Ready: func(n *meshnode.Node) { ready <- n },
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("agent %s: %v", name, err)
		}
	}()
	select {
	case a.node = <-ready:
	case <-a.done:
		t.Fatalf("agent %s stopped", name)
	}
	t.Cleanup(a.kill)
	return a
}

func (a *meshAgent) kill() {
	a.stop()
	<-a.done
}

func (a *meshAgent) id() route.NodeID { return a.node.ID() }

func (a *meshAgent) addr() string { return a.node.Addr().String() }

// nextHopToHub is the neighbour through which a sends to the hub.
func (a *meshAgent) nextHopToHub() (route.NodeID, bool) {
	for _, r := range a.node.Topology().Routes {
		if r.Dest == a.hub && r.Feasible {
			return r.NextHop, true
		}
	}
	return route.NodeID{}, false
}

// TestMeshSensorThreeHopsAway is the mesh's end-to-end check: the sensor
// of an agent three hops from the hub, paired through the API like every
// node, appears in the API and obeys a command; when the relay in the
// middle of its path dies the mesh reroutes it by itself and its readings
// keep arriving.
//
// Five agents (each `homemesh agent` with a thermometer and a switch) and
// the hub form a ladder, linked only through configured peers:
//
//	hub ── a1 ── b1 ── sensor
//	 │     │     │      │
//	 └──── a2 ── b2 ────┘
func TestMeshSensorThreeHopsAway(t *testing.T) {
	// With a NATS listener every service, the border included, reaches
	// the bus through auth with its own permissions.
	c := nodetest.Config(t.TempDir())
	c.NATSListen = "127.0.0.1:0"
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	api := "http://" + n.Gateway().Addr().String() + "/api/v1"
	owner := map[string]string{"code": n.Auth().OnboardingCode(), "username": "owner", "password": "correct horse battery"}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code != http.StatusCreated {
		t.Fatalf("onboard = %d", code)
	}
	tok := login(t, api)
	hubAddr := n.Border().Addr().String()

	a1 := pairAgent(t, api, tok, "a1", hubAddr)
	a2 := pairAgent(t, api, tok, "a2", hubAddr, a1.addr())
	b1 := pairAgent(t, api, tok, "b1", a1.addr())
	b2 := pairAgent(t, api, tok, "b2", a2.addr(), b1.addr())
	sensor := pairAgent(t, api, tok, "sensor", b1.addr(), b2.addr())
	relays := map[route.NodeID]*meshAgent{b1.id(): b1, b2.id(): b2}

	// The sensor appears in the API, with its readings.
	device := meshapp.DeviceID(sensor.id())
	tempID, relayID := meshapp.EntityID(sensor.id(), "temperature"), meshapp.EntityID(sensor.id(), "relay")
	var temp meshEntity
	waitLong(t, "the sensor's temperature in the API", func() bool {
		return call(t, "GET", api+"/entities/"+tempID, tok, nil, &temp) == http.StatusOK && temp.State.Available && temp.State.Value != nil
	})
	if _, ok := temp.State.Value.(float64); temp.DeviceID != device || temp.Kind != "sensor" || !ok {
		t.Fatalf("temperature entity = %+v", temp)
	}
	reading := func() time.Time {
		var e meshEntity
		call(t, "GET", api+"/entities/"+tempID, tok, nil, &e)
		return e.State.UpdatedAt
	}
	first := temp.State.UpdatedAt
	waitLong(t, "a newer reading", func() bool { return reading().After(first) })

	// It is three hops away: the hub's route to it costs at least three
	// links, and it reaches the hub through b1 or b2.
	var topo struct {
		Hub    string
		Nodes  []struct{ ID, DeviceID string }
		Routes []struct {
			Destination, NextHop string
			Metric               int
			Feasible             bool
		}
	}
	waitLong(t, "the sensor in the mesh topology", func() bool {
		if call(t, "GET", api+"/mesh/topology", tok, nil, &topo) != http.StatusOK {
			return false
		}
		for _, r := range topo.Routes {
			if r.Destination == sensor.id().String() && r.Feasible {
				return r.Metric >= 3*route.HopCost
			}
		}
		return false
	})
	hop, ok := sensor.nextHopToHub()
	if !ok || relays[hop] == nil {
		t.Fatalf("the sensor's next hop to the hub is %s (%v), not b1 or b2", hop, ok)
	}
	// The hub is not part of the sensor's links, yet it shows them: the
	// agents report their own, each direction as its end measured it.
	var links struct {
		Links []struct {
			From, To   string
			Cost       int
			ReportedBy string `json:"reported_by"`
		}
	}
	waitLong(t, "the links between the sensor and b1 in the mesh topology", func() bool {
		if call(t, "GET", api+"/mesh/topology", tok, nil, &links) != http.StatusOK {
			return false
		}
		seen := map[string]bool{}
		for _, l := range links.Links {
			if l.ReportedBy == "agent" && l.Cost > 0 {
				seen[l.From+">"+l.To] = true
			}
		}
		return seen[sensor.id().String()+">"+b1.id().String()] && seen[b1.id().String()+">"+sensor.id().String()]
	})

	// It obeys a command.
	command := func(name, want string) {
		t.Helper()
		waitLong(t, "the relay to accept "+name, func() bool {
			var e apiError
			code := call(t, "POST", api+"/entities/"+relayID+"/commands", tok, map[string]string{"command": name}, &e)
			if code != http.StatusAccepted && code != http.StatusServiceUnavailable {
				t.Fatalf("%s = %d %+v", name, code, e)
			}
			return code == http.StatusAccepted
		})
		waitLong(t, "the relay "+want, func() bool { return getEntity(t, api, tok, relayID).State.Value == want })
	}
	command("turn_on", "on")
	var refused apiError
	if code := call(t, "POST", api+"/entities/"+relayID+"/commands", tok, map[string]string{"command": "set_value"}, &refused); code != http.StatusBadRequest || refused.Error.Field != "command" {
		t.Errorf("a command the relay does not take = %d %+v, want 400 naming command", code, refused)
	}

	// The relay in the middle of its path dies; the sensor's readings go
	// on arriving through the other side of the ladder, and it still
	// obeys.
	dead := relays[hop]
	dead.kill()
	killed := time.Now()
	atKill := reading()
	waitLong(t, "the sensor to route round the dead relay", func() bool {
		next, ok := sensor.nextHopToHub()
		return ok && next != dead.id()
	})
	// A figure for the record, not an assertion: tests do not time.
	t.Logf("the sensor rerouted %v after %s stopped", time.Since(killed).Round(10*time.Millisecond), dead.name)
	waitLong(t, "readings through the other relay", func() bool { return reading().After(atKill.Add(time.Second)) })
	command("turn_off", "off")
	if e := getEntity(t, api, tok, tempID); !e.State.Available {
		t.Errorf("the sensor is unavailable after rerouting: %+v", e)
	}
}

// TestMeshHubRestart restarts the hub under a paired agent: the hub keeps
// its node id (its key is in the data directory), knows the agent from the
// bucket, and the agent's readings and commands carry on.
func TestMeshHubRestart(t *testing.T) {
	data := t.TempDir()
	c := nodetest.Config(data)
	n, stop := nodetest.Start(t, c, node.Options{CreateHome: true})
	api := "http://" + n.Gateway().Addr().String() + "/api/v1"
	owner := map[string]string{"code": n.Auth().OnboardingCode(), "username": "owner", "password": "correct horse battery"}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code != http.StatusCreated {
		t.Fatalf("onboard = %d", code)
	}
	tok := login(t, api)
	hubID, hubAddr := n.Border().ID(), n.Border().Addr().String()
	a := pairAgent(t, api, tok, "plug", hubAddr)
	relayID := meshapp.EntityID(a.id(), "relay")
	waitLong(t, "the agent's relay in the API", func() bool {
		return call(t, "GET", api+"/entities/"+relayID, tok, nil, nil) == http.StatusOK
	})

	stop()
	// Same data, same mesh address: the agent redials it.
	c.Mesh, c.HTTP = hubAddr, "127.0.0.1:0"
	n, _ = nodetest.Start(t, c, node.Options{CreateHome: true})
	if n.Border().ID() != hubID {
		t.Fatalf("the hub is node %s after a restart, was %s", n.Border().ID(), hubID)
	}
	api = "http://" + n.Gateway().Addr().String() + "/api/v1"
	tok = login(t, api)
	tempID := meshapp.EntityID(a.id(), "temperature")
	restarted := time.Now()
	waitLong(t, "a reading after the restart", func() bool {
		var e meshEntity
		return call(t, "GET", api+"/entities/"+tempID, tok, nil, &e) == http.StatusOK && e.State.UpdatedAt.After(restarted)
	})
	waitLong(t, "the relay to obey the restarted hub", func() bool {
		return call(t, "POST", api+"/entities/"+relayID+"/commands", tok, map[string]string{"command": "turn_on"}, nil) == http.StatusAccepted
	})
	waitLong(t, "the relay on", func() bool { return getEntity(t, api, tok, relayID).State.Value == "on" })
}

// TestMeshHubRefusesAndCountsForeignNodes has the hub dial a node that
// claims the hub's home but was certified by another CA: it never gets a
// link, and the hub's metrics count its certificate as refused (bad_cert).
// A foreign node dialling the hub learns the hub's certificate first and
// gives up before showing its own.
func TestMeshHubRefusesAndCountsForeignNodes(t *testing.T) {
	const home = "meshhome"
	other, err := linktest.NewHome(home, 7, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, err := other.Identity(link.RoleRouter, linktest.Rand(8))
	if err != nil {
		t.Fatal(err)
	}
	intruder, err := meshnode.New(meshnode.Config{Identity: id, Verifier: other.Verifier, Listen: "127.0.0.1:0", Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = intruder.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	c := nodetest.Config(t.TempDir())
	c.Home, c.MeshPeers = home, []string{intruder.Addr().String()}
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	metrics := "http://" + n.Gateway().Addr().String() + "/metrics"
	waitLong(t, "the hub to count the foreign node's certificate", func() bool {
		resp, err := http.Get(metrics)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `homemesh_mesh_frames_rejected_total{reason="bad_cert"}`)
	})
	var topo struct{ Links []any }
	api := "http://" + n.Gateway().Addr().String() + "/api/v1"
	owner := map[string]string{"code": n.Auth().OnboardingCode(), "username": "owner", "password": "correct horse battery"}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code != http.StatusCreated {
		t.Fatalf("onboard = %d", code)
	}
	if code := call(t, "GET", api+"/mesh/topology", login(t, api), nil, &topo); code != http.StatusOK || len(topo.Links) != 0 {
		t.Errorf("topology = %d with links %v, want none", code, topo.Links)
	}
	if len(intruder.Topology().Neighbours) != 0 {
		t.Error("the foreign node got a link")
	}
}

// TestMeshRevokedNodeIsCutOff revokes a paired node through the API: the
// hub refuses it and marks its entities unavailable, the agents it
// reaches are told and drop their links with it, and the others go on.
//
//	hub ── thief
//	 │      │
//	 └──── door
func TestMeshRevokedNodeIsCutOff(t *testing.T) {
	c := nodetest.Config(t.TempDir())
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	base := "http://" + n.Gateway().Addr().String()
	api := base + "/api/v1"
	owner := map[string]string{"code": n.Auth().OnboardingCode(), "username": "owner", "password": "correct horse battery"}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code != http.StatusCreated {
		t.Fatalf("onboard = %d", code)
	}
	tok := login(t, api)
	hubAddr := n.Border().Addr().String()
	thief := pairAgent(t, api, tok, "thief", hubAddr)
	door := pairAgent(t, api, tok, "door", hubAddr, thief.addr())
	thiefRelay, doorRelay := meshapp.EntityID(thief.id(), "relay"), meshapp.EntityID(door.id(), "relay")
	waitLong(t, "both agents' relays available in the API", func() bool {
		var a, b meshEntity
		return call(t, "GET", api+"/entities/"+thiefRelay, tok, nil, &a) == http.StatusOK && a.State.Available &&
			call(t, "GET", api+"/entities/"+doorRelay, tok, nil, &b) == http.StatusOK && b.State.Available
	})
	waitLong(t, "the link door ─ thief", func() bool {
		for _, nb := range door.node.Topology().Neighbours {
			if nb.ID == thief.id() && !nb.Dead {
				return true
			}
		}
		return false
	})

	if code := call(t, "DELETE", api+"/mesh/nodes/"+thief.id().String(), tok, nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /mesh/nodes/%s = %d", thief.id(), code)
	}
	waitLong(t, "the thief's relay unavailable", func() bool {
		var e meshEntity
		return call(t, "GET", api+"/entities/"+thiefRelay, tok, nil, &e) == http.StatusOK && !e.State.Available
	})
	if code := call(t, "POST", api+"/entities/"+thiefRelay+"/commands", tok, map[string]string{"command": "turn_on"}, nil); code != http.StatusForbidden {
		t.Errorf("command to the revoked node's relay = %d, want %d", code, http.StatusForbidden)
	}
	waitLong(t, "the door agent to drop its link with the thief", func() bool {
		return door.node.Topology().Counters.Rejected[meshnode.RejectRevoked] > 0
	})
	// The thief keeps dialling the hub and is refused, as the metrics say.
	waitLong(t, "the hub to refuse the thief's handshakes", func() bool {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `homemesh_mesh_frames_rejected_total{reason="revoked"}`)
	})
	// The thief was told nothing: its links die when the others' Hellos
	// stop coming.
	waitLong(t, "the thief without links", func() bool {
		for _, nb := range thief.node.Topology().Neighbours {
			if !nb.Dead {
				return false
			}
		}
		return true
	})
	// The door is unaffected.
	waitLong(t, "the door's relay to obey", func() bool {
		return call(t, "POST", api+"/entities/"+doorRelay+"/commands", tok, map[string]string{"command": "turn_on"}, nil) == http.StatusAccepted
	})
	waitLong(t, "the door's relay on", func() bool { return getEntity(t, api, tok, doorRelay).State.Value == "on" })
}
