package meshapp

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

var node = route.NodeID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}

func TestIDs(t *testing.T) {
	if got, want := DeviceID(node), "mesh-0123456789abcdef"; got != want {
		t.Errorf("DeviceID = %q, want %q", got, want)
	}
	if !homemesh.ValidID(EntityID(node, strings.Repeat("x", MaxIDLen))) {
		t.Error("the longest entity id is not a valid homemesh id")
	}
	id, uid, ok := ParseEntityID("mesh-0123456789abcdef-door_1")
	if !ok || id != node || uid != "door_1" {
		t.Errorf("ParseEntityID = %v, %q, %v", id, uid, ok)
	}
	for _, bad := range []string{
		"", "mesh-", "mesh-0123456789abcdef", "mesh-0123456789abcdef-", "mesh-0123456789ABCDEF-door",
		"mqtt-0123456789abcdef-door", "mesh-0123456789abcdefx-door", "mesh-0123456789abcdef-Door",
	} {
		if _, _, ok := ParseEntityID(bad); ok {
			t.Errorf("ParseEntityID(%q) succeeded", bad)
		}
	}
	if _, ok := ParseDeviceID("mesh-0123456789ABCDEF"); ok {
		t.Error("ParseDeviceID accepted upper case")
	}
	if got, ok := ParseDeviceID(DeviceID(node)); !ok || got != node {
		t.Errorf("ParseDeviceID(DeviceID) = %v, %v", got, ok)
	}
}

func TestHomemeshMapping(t *testing.T) {
	now := at.Add(time.Minute)
	a := examples["announce"].(*Announce)
	dev := a.HomemeshDevice("home1", node)
	wantDev := homemesh.Device{
		ID: "mesh-0123456789abcdef", HomeID: "home1", Name: "Hall sensor", Manufacturer: "homemesh",
		Model: "agent", SWVersion: "1.2.0", Identifiers: []string{"mesh-0123456789abcdef"}, Source: "mesh",
	}
	if diff := cmp.Diff(wantDev, dev); diff != "" {
		t.Errorf("device (-want +got):\n%s", diff)
	}
	ents := a.HomemeshEntities("home1", node, now)
	wantTemp := homemesh.Entity{
		ID: "mesh-0123456789abcdef-temperature", HomeID: "home1", DeviceID: "mesh-0123456789abcdef",
		UniqueID: "temperature", Kind: homemesh.KindSensor, Name: "Temperature", DeviceClass: "temperature",
		Unit: "°C", StateClass: "measurement", Source: "mesh",
		State: homemesh.State{Value: 21.5, Available: true, ChangedAt: at, UpdatedAt: at},
	}
	if diff := cmp.Diff(wantTemp, ents[0]); diff != "" {
		t.Errorf("entity (-want +got):\n%s", diff)
	}
	if ents[1].State.UpdatedAt != now {
		t.Errorf("a state without time is dated %v, want the arrival %v", ents[1].State.UpdatedAt, now)
	}
	if ents[2].Name != "thermostat" || ents[2].State.Available {
		t.Errorf("entity without name or state: %+v", ents[2])
	}
	if ups := a.StateUpdates("home1", node, now); len(ups) != 2 || ups[1].EntityID != "mesh-0123456789abcdef-light" {
		t.Errorf("StateUpdates = %+v", ups)
	}

	s := &State{UniqueID: "door", Reading: Reading{Value: "on", Available: false, Time: now.Add(time.Hour)}}
	up := s.Update("home1", node, now)
	available := false
	want := homemesh.StateUpdate{
		HomeID: "home1", DeviceID: "mesh-0123456789abcdef", EntityID: "mesh-0123456789abcdef-door",
		Value: "on", HasValue: true, Available: &available, Time: now,
	}
	if diff := cmp.Diff(want, up); diff != "" {
		t.Errorf("a state from the future (-want +got):\n%s", diff)
	}
}

func TestCommandMapping(t *testing.T) {
	c := homemesh.Command{HomeID: "home1", EntityID: "mesh-0123456789abcdef-light", Name: "turn_on", Params: map[string]any{"brightness": 3.0}}
	cmd, dst, ok := NewCommand(9, c)
	if !ok || dst != node {
		t.Fatalf("NewCommand: %v, %v", dst, ok)
	}
	if diff := cmp.Diff(&Command{ID: 9, UniqueID: "light", Name: "turn_on", Params: map[string]any{"brightness": 3.0}}, cmd); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c, cmd.Domain("home1", node)); diff != "" {
		t.Errorf("back to homemesh (-want +got):\n%s", diff)
	}
	if _, _, ok := NewCommand(1, homemesh.Command{EntityID: "kitchen_light"}); ok {
		t.Error("NewCommand accepted an entity that is not on the mesh")
	}
}
