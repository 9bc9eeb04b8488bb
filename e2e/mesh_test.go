package e2e

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
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

// meshClaim is what claiming a setup code with a mesh key returns.
type meshClaim struct {
	Identity        string `json:"identity"`
	MeshCertificate string `json:"mesh_certificate"`
	CACertificate   string `json:"ca_certificate"`
	NodeID          string `json:"node_id"`
	MeshHubs        []struct {
		NodeID    string   `json:"node_id"`
		Key       []byte   `json:"key"`
		Addresses []string `json:"addresses"`
	} `json:"mesh_hubs"`
}

// meshAgent is a mesh node paired through the API. A relay only routes;
// a sensor also speaks the agent protocol: a thermometer that reports a
// rising value every few hundred milliseconds and a relay that obeys the
// hub.
type meshAgent struct {
	name   string
	node   *meshnode.Node
	hub    route.NodeID
	stop   context.CancelFunc
	done   chan struct{}
	sensor bool

	mu    sync.Mutex
	temp  float64
	relay string
}

// pairAgent pairs a new mesh node with the home through the claim
// endpoint and starts it, linked to peers.
func pairAgent(t *testing.T, api, token, home, name string, sensor bool, peers ...string) *meshAgent {
	t.Helper()
	key, err := link.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var pairing struct{ Code string }
	if code := call(t, "POST", api+"/pairings", token, map[string]string{"name": name}, &pairing); code != http.StatusCreated {
		t.Fatalf("create a pairing for %s = %d", name, code)
	}
	var claim meshClaim
	body := map[string]string{"code": pairing.Code, "mesh_key": base64.StdEncoding.EncodeToString(key.PublicKey().Bytes()), "mesh_role": "router"}
	if code := call(t, "POST", api+"/pairings/claim", "", body, &claim); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("claim for %s = %d", name, code)
	}
	certBlock, _ := pem.Decode([]byte(claim.MeshCertificate))
	caBlock, _ := pem.Decode([]byte(claim.CACertificate))
	if certBlock == nil || caBlock == nil || len(claim.MeshHubs) != 1 {
		t.Fatalf("claim for %s: %+v", name, claim)
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id := link.Identity{Key: key, Cert: certBlock.Bytes}
	hubID, err := route.ParseNodeID(claim.MeshHubs[0].NodeID)
	if err != nil {
		t.Fatal(err)
	}
	if meshapp.DeviceID(route.IDFromKey(key.PublicKey().Bytes())) != claim.Identity {
		t.Fatalf("claim identity %q is not the node's device id", claim.Identity)
	}
	a := &meshAgent{name: name, hub: hubID, sensor: sensor, temp: 20, relay: "off", done: make(chan struct{})}
	verifier, err := link.NewVerifier([]*x509.Certificate{ca}, home)
	if err != nil {
		t.Fatal(err)
	}
	hubKey := claim.MeshHubs[0].Key
	a.node, err = meshnode.New(meshnode.Config{
		Identity: id, Verifier: verifier, Listen: "127.0.0.1:0", Peers: peers,
		Log:       hmtest.Logger(t).With("agent", name),
		OnMessage: a.onMessage,
		KeyOf: func(id route.NodeID) ([]byte, bool) {
			if id == hubID {
				return hubKey, true
			}
			return nil, false
		},
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go func() {
		defer close(a.done)
		if err := a.node.Run(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	if sensor {
		go a.report(ctx)
	}
	t.Cleanup(a.kill)
	return a
}

func (a *meshAgent) kill() {
	a.stop()
	<-a.done
}

func (a *meshAgent) id() route.NodeID { return a.node.ID() }

// send encodes m and sends it to the hub end to end.
func (a *meshAgent) send(m meshapp.Message) {
	payload, err := meshapp.Encode(m)
	if err == nil {
		err = a.node.Send(a.hub, payload)
	}
	_ = err // a stopped node; the test notices what does not arrive
}

func (a *meshAgent) announce() {
	a.mu.Lock()
	temp, relay := a.temp, a.relay
	a.mu.Unlock()
	a.send(&meshapp.Announce{
		Device: meshapp.DeviceInfo{Name: a.name, Manufacturer: "homemesh", Model: "e2e"},
		Entities: []meshapp.Entity{
			{UniqueID: "temperature", Kind: homemesh.KindSensor, DeviceClass: "temperature", Unit: "°C", StateClass: "measurement",
				State: &meshapp.Reading{Value: temp, Available: true}},
			{UniqueID: "relay", Kind: homemesh.KindSwitch, Caps: homemesh.Capabilities{Commands: []string{"turn_on", "turn_off"}},
				State: &meshapp.Reading{Value: relay, Available: true}},
		},
	})
}

// report announces once and then sends a rising temperature; a hub that
// does not know the agent yet asks it to resync.
func (a *meshAgent) report(ctx context.Context) {
	a.announce()
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		a.temp += 0.5
		temp := a.temp
		a.mu.Unlock()
		a.send(&meshapp.State{UniqueID: "temperature", Reading: meshapp.Reading{Value: temp, Available: true, Time: time.Now().UTC()}})
	}
}

// onMessage obeys the hub, and only the hub.
func (a *meshAgent) onMessage(from link.Peer, payload []byte) {
	if !a.sensor || from.Role != link.RoleHub {
		return
	}
	msg, err := meshapp.Decode(payload)
	if err != nil {
		return
	}
	switch m := msg.(type) {
	case *meshapp.Resync:
		a.announce()
	case *meshapp.Command:
		res := &meshapp.Result{ID: m.ID}
		a.mu.Lock()
		switch {
		case m.UniqueID != "relay":
			res.Error = "no such actuator"
		case m.Name == "turn_on":
			a.relay = "on"
		case m.Name == "turn_off":
			a.relay = "off"
		default:
			res.Error = "unknown command"
		}
		relay := a.relay
		a.mu.Unlock()
		a.send(res)
		a.send(&meshapp.State{UniqueID: "relay", Reading: meshapp.Reading{Value: relay, Available: true, Time: time.Now().UTC()}})
	}
}

// nextHopToHub is the neighbour through which a sends to the hub.
func (a *meshAgent) nextHopToHub() (route.NodeID, bool) {
	for _, r := range a.node.Topology().Routes {
		if r.Dest == a.hub && r.Feasible {
			return r.NextHop, true
		}
	}
	return route.NodeID{}, false
}

// TestMeshSensorThreeHopsAway is the mesh's end-to-end check: an agent's
// sensor three hops from the hub, paired through the API, appears in the
// API and obeys a command; when the relay in the middle of its path dies
// the mesh reroutes it by itself and its readings keep arriving.
//
// The nodes form a ladder, linked only through configured peers:
//
//	hub ── a1 ── b1 ── sensor
//	 │     │     │      │
//	 └──── a2 ── b2 ────┘
func TestMeshSensorThreeHopsAway(t *testing.T) {
	n, _ := nodetest.Start(t, nodetest.Config(t.TempDir()), node.Options{CreateHome: true})
	api := "http://" + n.Gateway().Addr().String() + "/api/v1"
	owner := map[string]string{"code": n.Auth().OnboardingCode(), "username": "owner", "password": "correct horse battery"}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code != http.StatusCreated {
		t.Fatalf("onboard = %d", code)
	}
	tok := login(t, api)
	hubAddr, home := n.Border().Addr().String(), n.Home().ID

	a1 := pairAgent(t, api, tok, home, "a1", false, hubAddr)
	a2 := pairAgent(t, api, tok, home, "a2", false, hubAddr, a1.node.Addr().String())
	b1 := pairAgent(t, api, tok, home, "b1", false, a1.node.Addr().String())
	b2 := pairAgent(t, api, tok, home, "b2", false, a2.node.Addr().String(), b1.node.Addr().String())
	sensor := pairAgent(t, api, tok, home, "sensor", true, b1.node.Addr().String(), b2.node.Addr().String())
	relays := map[route.NodeID]*meshAgent{b1.id(): b1, b2.id(): b2}

	// The sensor appears in the API, with its readings.
	device := meshapp.DeviceID(sensor.id())
	tempID, relayID := meshapp.EntityID(sensor.id(), "temperature"), meshapp.EntityID(sensor.id(), "relay")
	var temp entity
	waitLong(t, "the sensor's temperature in the API", func() bool {
		return call(t, "GET", api+"/entities/"+tempID, tok, nil, &temp) == http.StatusOK && temp.State.Available && temp.State.Value != nil
	})
	if temp.DeviceID != device || temp.Kind != "sensor" {
		t.Fatalf("temperature entity = %+v", temp)
	}
	first := temp.State.Value.(float64)
	waitLong(t, "a newer reading", func() bool {
		temp = getEntity(t, api, tok, tempID)
		v, _ := temp.State.Value.(float64)
		return v > first
	})

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

	// The relay in the middle of its path dies; the sensor's readings go
	// on arriving through the other side of the ladder, and it still
	// obeys.
	dead := relays[hop]
	dead.kill()
	temp = getEntity(t, api, tok, tempID)
	atKill, _ := temp.State.Value.(float64)
	waitLong(t, "readings through the other relay", func() bool {
		v, _ := getEntity(t, api, tok, tempID).State.Value.(float64)
		next, ok := sensor.nextHopToHub()
		return v >= atKill+2 && ok && next != dead.id()
	})
	command("turn_off", "off")
	if e := getEntity(t, api, tok, tempID); !e.State.Available {
		t.Errorf("the sensor is unavailable after rerouting: %+v", e)
	}
}
