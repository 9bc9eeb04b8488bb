package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
)

const home = "h1"

// start runs a registry on srv until the test ends or stop is called.
func start(t testing.TB, srv *natsbus.Server) (stop func()) {
	t.Helper()
	conn := bustest.Conn(t, srv)
	svc, err := registry.New(registry.Config{Home: home}, registry.Deps{Bus: conn, Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop = hmtest.Run(t, "registry", svc.Run)
	// Ready, not a first answer: the verbs are subscribed one by one.
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the registry did not get ready")
	}
	return stop
}

func sampleDevice() homemesh.Device {
	return homemesh.Device{ID: "kitchen-plug", Name: "Kitchen plug", Manufacturer: "Tasmota", Identifiers: []string{"A0B1C2"}, Source: "mqtt"}
}

func sampleEntity() homemesh.Entity {
	return homemesh.Entity{ID: "kitchen_plug_relay", DeviceID: "kitchen-plug", UniqueID: "A0B1C2_RL_1",
		Kind: homemesh.KindSwitch, Name: "Kitchen plug", Source: "mqtt", State: homemesh.State{Available: true}}
}

func TestDefinitionsStatesAndRestart(t *testing.T) {
	ctx := context.Background()
	srv := bustest.Server(t)
	stop := start(t, srv)
	conn := bustest.Conn(t, srv)
	client := registry.NewClient(conn, home)

	// State changes are published after they are stored.
	changes := make(chan registry.StateChange, 10)
	sub, err := conn.NATS().Subscribe(bus.StateWildcard(home), func(m *nats.Msg) {
		env, err := bus.DecodeEnvelope(m.Data)
		if err != nil {
			t.Error(err)
			return
		}
		var sc registry.StateChange
		if err := json.Unmarshal(env.Payload, &sc); err != nil {
			t.Error(err)
		}
		changes <- sc
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// The same change is logged, in a batch, for history.
	logged := make(chan []registry.StateChange, 10)
	logSub, err := conn.NATS().Subscribe(bus.StateLogSubject(home), func(m *nats.Msg) {
		env, err := bus.DecodeEnvelope(m.Data)
		if err != nil || env.Type != registry.TypeStateChanges {
			t.Errorf("state log message %q: %v", env.Type, err)
			return
		}
		var batch []registry.StateChange
		if err := json.Unmarshal(env.Payload, &batch); err != nil {
			t.Error(err)
		}
		logged <- batch
	})
	if err != nil {
		t.Fatal(err)
	}
	defer logSub.Unsubscribe()

	if _, err := client.PutEntity(ctx, sampleEntity()); homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "entity.device_id" {
		t.Fatalf("entity before its device: got %v, want invalid entity.device_id", err)
	}
	if _, err := client.PutDevice(ctx, sampleDevice()); err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutEntity(ctx, sampleEntity()); err != nil {
		t.Fatal(err)
	}
	clash := sampleEntity()
	clash.UniqueID = "someone-else"
	if _, err := client.PutEntity(ctx, clash); homemesh.ErrorKind(err) != homemesh.KindConflict {
		t.Fatalf("reusing an entity id for another unique_id: got %v, want conflict", err)
	}

	if err := client.Report(homemesh.StateUpdate{DeviceID: "kitchen-plug", EntityID: "kitchen_plug_relay", Value: "on", HasValue: true,
		Attributes: map[string]any{"power": 12.5}}); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-changes:
		if sc.State.Value != "on" || sc.Old.Value != nil || sc.EntityID != "kitchen_plug_relay" || sc.Kind != homemesh.KindSwitch {
			t.Fatalf("state change = %+v", sc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no state change published")
	}
	select {
	case batch := <-logged:
		if len(batch) != 1 || batch[0].EntityID != "kitchen_plug_relay" || batch[0].State.Value != "on" {
			t.Fatalf("state log batch = %+v", batch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no state change logged")
	}
	got, err := client.Entity(ctx, "kitchen_plug_relay")
	if err != nil {
		t.Fatal(err)
	}
	if got.State.Value != "on" || got.State.Attributes["power"] != 12.5 || !got.State.Available {
		t.Fatalf("entity state = %+v", got.State)
	}

	// A definition update keeps the state.
	renamed := sampleEntity()
	renamed.Name = "Plug"
	if _, err := client.PutEntity(ctx, renamed); err != nil {
		t.Fatal(err)
	}

	stop()
	start(t, srv)
	after, err := client.Entity(ctx, "kitchen_plug_relay")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got.State.Value, after.State.Value); diff != "" || after.Name != "Plug" {
		t.Fatalf("after restart: name %q, state diff %s", after.Name, diff)
	}
	devs, err := client.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0].Manufacturer != "Tasmota" {
		t.Fatalf("devices after restart = %+v, %v", devs, err)
	}

	// Removing the last entity removes its device.
	if err := client.RemoveEntity(ctx, "kitchen_plug_relay"); err != nil {
		t.Fatal(err)
	}
	_, err = client.Device(ctx, "kitchen-plug")
	var he *homemesh.Error
	if !errors.As(err, &he) || he.Kind != homemesh.KindNotFound {
		t.Fatalf("device after last entity removed: %v", err)
	}
}

func TestRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	srv := bustest.Server(t)
	start(t, srv)
	conn := bustest.Conn(t, srv)
	client := registry.NewClient(conn, home)
	bad := sampleDevice()
	bad.ID = "Not Valid"
	if _, err := client.PutDevice(ctx, bad); homemesh.ErrorField(err) != "device.id" {
		t.Fatalf("bad device id: %v", err)
	}
	if _, err := client.PutDevice(ctx, sampleDevice()); err != nil {
		t.Fatal(err)
	}
	e := sampleEntity()
	e.Kind = "toaster"
	if _, err := client.PutEntity(ctx, e); homemesh.ErrorField(err) != "entity.kind" {
		t.Fatalf("bad kind: %v", err)
	}
	other := registry.NewClient(conn, "other-home")
	if _, err := other.Devices(ctx); homemesh.ErrorKind(err) != homemesh.KindNotFound {
		t.Fatalf("another home's registry must not answer: %v", err)
	}
}

// A home larger than one bus message still lists completely.
func TestListsArePaged(t *testing.T) {
	ctx := context.Background()
	srv := bustest.Server(t)
	start(t, srv)
	client := registry.NewClient(bustest.Conn(t, srv), home)
	const n = 1203
	for i := range n {
		d := sampleDevice()
		d.ID = fmt.Sprintf("dev-%04d", i)
		if _, err := client.PutDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		e := sampleEntity()
		e.ID, e.DeviceID, e.UniqueID = fmt.Sprintf("ent-%04d", i), d.ID, fmt.Sprintf("u%d", i)
		e.Name = strings.Repeat("long name ", 20) // about 1.5 MiB in all
		if _, err := client.PutEntity(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	devs, err := client.Devices(ctx)
	if err != nil || len(devs) != n {
		t.Fatalf("devices: %d, %v", len(devs), err)
	}
	ents, err := client.Entities(ctx, registry.EntityFilter{})
	if err != nil || len(ents) != n {
		t.Fatalf("entities: %d, %v", len(ents), err)
	}
	for i := 1; i < n; i++ {
		if ents[i-1].ID >= ents[i].ID {
			t.Fatalf("not sorted at %d: %s, %s", i, ents[i-1].ID, ents[i].ID)
		}
	}
	one, err := client.Entities(ctx, registry.EntityFilter{DeviceID: "dev-0007"})
	if err != nil || len(one) != 1 || one[0].ID != "ent-0007" {
		t.Fatalf("filtered: %+v, %v", one, err)
	}
}
