package edge_test

import (
	"context"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/edge"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
)

const home = "h1"

type fixture struct {
	t    *testing.T
	conn *natsbus.Conn
	reg  *registry.Client
}

// setup runs a registry and the edge's device pipeline on a real bus. MQTT
// traffic is injected on the bridged subjects, exactly as the broker does.
func setup(t *testing.T) *fixture {
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	reg, err := registry.New(registry.Config{Home: home}, registry.Deps{Bus: bustest.Conn(t, srv), Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hmtest.Run(t, "registry", reg.Run)
	econn := bustest.Conn(t, srv)
	dev, err := edge.New(edge.Config{Home: home}, edge.Deps{Bus: econn, Registry: registry.NewClient(econn, home), Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hmtest.Run(t, "edge", dev.Run)
	select {
	case <-dev.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("edge not ready")
	}
	f := &fixture{t: t, conn: conn, reg: registry.NewClient(conn, home)}
	hmtest.WaitFor(t, 10*time.Second, "registry", func() bool { _, err := f.reg.Devices(context.Background()); return err == nil })
	return f
}

func (f *fixture) mqtt(topic, payload string) {
	f.t.Helper()
	subject, err := bus.MQTTSubject(home, topic)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.conn.NATS().Publish(subject, []byte(payload)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) entity(uniqueID string) (homemesh.Entity, bool) {
	list, err := f.reg.Entities(context.Background(), registry.EntityFilter{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range list {
		if e.UniqueID == uniqueID {
			return e, true
		}
	}
	return homemesh.Entity{}, false
}

func (f *fixture) waitEntity(uniqueID string, cond func(homemesh.Entity) bool) homemesh.Entity {
	f.t.Helper()
	var got homemesh.Entity
	hmtest.WaitFor(f.t, 10*time.Second, "entity "+uniqueID, func() bool {
		e, ok := f.entity(uniqueID)
		got = e
		return ok && (cond == nil || cond(e))
	})
	return got
}

func TestDeviceBasedDiscoveryLifecycle(t *testing.T) {
	f := setup(t)
	const topic = "homeassistant/device/plug1/config"
	f.mqtt(topic, `{"dev":{"ids":"plug1","name":"Plug","mf":"Shelly"},"o":{"name":"test"},"stat_t":"plug1/state",
		"cmps":{"relay":{"p":"switch","uniq_id":"plug1_relay","cmd_t":"plug1/set","val_tpl":"{{ value_json.relay }}"},
		        "power":{"p":"sensor","uniq_id":"plug1_power","unit_of_meas":"W","dev_cla":"power","val_tpl":"{{ value_json.power }}"}}}`)
	relay := f.waitEntity("plug1_relay", nil)
	f.waitEntity("plug1_power", nil)
	if relay.Kind != homemesh.KindSwitch {
		t.Fatalf("relay kind %s", relay.Kind)
	}
	f.mqtt("plug1/state", `{"relay":"ON","power":"12.5"}`)
	f.waitEntity("plug1_relay", func(e homemesh.Entity) bool { return e.State.Value == "on" })
	f.waitEntity("plug1_power", func(e homemesh.Entity) bool { return e.State.Value == 12.5 })

	// A command becomes the device's payload on its command topic.
	got := make(chan *nats.Msg, 1)
	cmdSubject, _ := bus.MQTTSubject(home, "plug1/set")
	sub, _ := f.conn.NATS().Subscribe(cmdSubject, func(m *nats.Msg) { got <- m })
	defer sub.Unsubscribe()
	err := f.conn.Request(context.Background(), bus.CommandSubject(home, relay.DeviceID, relay.ID),
		homemesh.Command{HomeID: home, EntityID: relay.ID, Name: "turn_off"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "OFF" {
			t.Fatalf("command payload %q, want OFF", m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no command published")
	}
	err = f.conn.Request(context.Background(), bus.CommandSubject(home, relay.DeviceID, relay.ID),
		homemesh.Command{HomeID: home, EntityID: relay.ID, Name: "set_temperature"}, nil)
	if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "command" {
		t.Fatalf("unsupported command: %v", err)
	}

	// Re-announcing without a component removes it; an empty payload
	// removes the rest, and the device with them.
	f.mqtt(topic, `{"dev":{"ids":"plug1","name":"Plug"},"o":{"name":"test"},"stat_t":"plug1/state",
		"cmps":{"relay":{"p":"switch","uniq_id":"plug1_relay","cmd_t":"plug1/set","val_tpl":"{{ value_json.relay }}"}}}`)
	hmtest.WaitFor(t, 10*time.Second, "power removed", func() bool { _, ok := f.entity("plug1_power"); return !ok })
	f.mqtt(topic, "")
	hmtest.WaitFor(t, 10*time.Second, "relay removed", func() bool { _, ok := f.entity("plug1_relay"); return !ok })
	if _, err := f.reg.Device(context.Background(), relay.DeviceID); homemesh.ErrorKind(err) != homemesh.KindNotFound {
		devs, _ := f.reg.Devices(context.Background())
		ents, _ := f.reg.Entities(context.Background(), registry.EntityFilter{})
		t.Fatalf("device %q still there: %v; devices %+v entities %+v", relay.DeviceID, err, devs, ents)
	}
}

func TestOptimisticAndExpiry(t *testing.T) {
	f := setup(t)
	// No state topic: the switch is optimistic.
	f.mqtt("homeassistant/switch/fan1/config", `{"name":"Fan","uniq_id":"fan1_sw","cmd_t":"fan1/cmd","dev":{"ids":["fan1"]}}`)
	sw := f.waitEntity("fan1_sw", nil)
	if err := f.conn.Request(context.Background(), bus.CommandSubject(home, sw.DeviceID, sw.ID),
		homemesh.Command{HomeID: home, EntityID: sw.ID, Name: "turn_on"}, nil); err != nil {
		t.Fatal(err)
	}
	f.waitEntity("fan1_sw", func(e homemesh.Entity) bool { return e.State.Value == "on" })

	// expire_after makes a silent sensor unavailable.
	f.mqtt("homeassistant/sensor/t1/config", `{"name":"T","uniq_id":"t1_temp","stat_t":"t1/temp","exp_aft":1,"dev":{"ids":["t1"]}}`)
	f.waitEntity("t1_temp", nil)
	f.mqtt("t1/temp", "20.5")
	f.waitEntity("t1_temp", func(e homemesh.Entity) bool { return e.State.Value == 20.5 && e.State.Available })
	f.waitEntity("t1_temp", func(e homemesh.Entity) bool { return !e.State.Available })
}

func TestBadDiscoveryIsIgnored(t *testing.T) {
	f := setup(t)
	f.mqtt("homeassistant/sensor/x/config", `{not json`)
	f.mqtt("homeassistant/sensor/y/config", `{"name":"Y","uniq_id":"y1","stat_t":"y/state","dev":{"ids":["y"]}}`)
	f.waitEntity("y1", nil)
	if _, ok := f.entity("x"); ok {
		t.Fatal("a malformed config produced an entity")
	}
}
