package edge_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/edge"
	"github.com/homemesh/homemesh/edge/broker"
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
func setup(t *testing.T) *fixture { return setupLogged(t, hmtest.Logger(t)) }

func setupLogged(t *testing.T, log *slog.Logger) *fixture {
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	reg, err := registry.New(registry.Config{Home: home}, registry.Deps{Bus: bustest.Conn(t, srv), Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hmtest.Run(t, "registry", reg.Run)
	econn := bustest.Conn(t, srv)
	dev, err := edge.New(edge.Config{Home: home}, edge.Deps{Bus: econn, Registry: registry.NewClient(econn, home), Log: log})
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

// mqttAs injects a message as the broker bridges one from the credential
// user with the allow list allow.
func (f *fixture) mqttAs(user string, allow []string, topic, payload string) {
	f.t.Helper()
	subject, err := bus.MQTTSubject(home, topic)
	if err != nil {
		f.t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Data = []byte(payload)
	m.Header[broker.HeaderPublisher] = []string{user}
	m.Header[broker.HeaderAllow] = allow
	if err := f.conn.NATS().PublishMsg(m); err != nil {
		f.t.Fatal(err)
	}
}

// TestDiscoveryOwnership: a credential can neither take over an entity or
// device another credential announced, nor point an entity at topics
// outside its own allow list; the refusals are logged and the owner's
// entity keeps working.
func TestDiscoveryOwnership(t *testing.T) {
	var logs hmtest.LogBuffer
	f := setupLogged(t, slog.New(slog.NewJSONHandler(&logs, nil)))
	allowA := []string{"a/#", "homeassistant/#"}
	allowB := []string{"b/#", "homeassistant/+/b/#"}
	refusals := func() int {
		return strings.Count(logs.String(), "discovery config refused") + strings.Count(logs.String(), "discovery removal refused")
	}
	waitRefusals := func(n int, why string) {
		t.Helper()
		hmtest.WaitFor(t, 10*time.Second, "refusal: "+why, func() bool {
			return refusals() >= n && strings.Contains(logs.String(), why)
		})
	}

	const bTopic = "homeassistant/switch/b/plug/config"
	f.mqttAs("cred-b", allowB, bTopic, `{"name":"Plug","uniq_id":"b_plug","stat_t":"b/state","cmd_t":"b/set","dev":{"ids":["dev_b"],"name":"B"}}`)
	plugB := f.waitEntity("b_plug", nil)
	f.mqttAs("cred-b", allowB, "b/state", "ON")
	f.waitEntity("b_plug", func(e homemesh.Entity) bool { return e.State.Value == "on" })

	// A re-announces B's entity, pointing it at its own topics.
	f.mqttAs("cred-a", allowA, bTopic, `{"name":"Mine","uniq_id":"b_plug","stat_t":"a/state","cmd_t":"a/set","dev":{"ids":["dev_b"],"name":"A"}}`)
	waitRefusals(1, "the entity was announced by another credential")
	// A announces a new entity on B's device.
	f.mqttAs("cred-a", allowA, "homeassistant/switch/a/x/config", `{"name":"X","uniq_id":"a_x","stat_t":"a/x","cmd_t":"a/x/set","dev":{"ids":["dev_b"]}}`)
	waitRefusals(2, "the device was announced by another credential")
	// A announces B's unique_id under a key of its own.
	f.mqttAs("cred-a", allowA, "homeassistant/switch/a/y/config", `{"name":"Y","uniq_id":"b_plug","stat_t":"a/y","cmd_t":"a/y/set","dev":{"ids":["dev_a"]}}`)
	waitRefusals(3, "the unique_id belongs to another credential")
	// A points an entity of its own at B's state and command topics.
	f.mqttAs("cred-a", allowA, "homeassistant/switch/a/z/config", `{"name":"Z","uniq_id":"a_z","stat_t":"b/state","cmd_t":"b/set","dev":{"ids":["dev_a"]}}`)
	waitRefusals(4, `outside the announcing credential's allow list`)
	// A tries to remove B's entity.
	f.mqttAs("cred-a", allowA, bTopic, "")
	waitRefusals(5, "discovery removal refused")

	// B's entity is untouched and still follows B's state topic.
	f.mqttAs("cred-b", allowB, "b/state", "OFF")
	got := f.waitEntity("b_plug", func(e homemesh.Entity) bool { return e.State.Value == "off" })
	if got.ID != plugB.ID || got.DeviceID != plugB.DeviceID || got.Name != plugB.Name {
		t.Errorf("B's entity changed: %+v, was %+v", got, plugB)
	}
	dev, err := f.reg.Device(context.Background(), plugB.DeviceID)
	if err != nil || dev.Name != "B" {
		t.Errorf("B's device = %+v, %v", dev, err)
	}
	for _, uid := range []string{"a_x", "a_z"} {
		if _, ok := f.entity(uid); ok {
			t.Errorf("refused entity %s exists", uid)
		}
	}

	// What A may do, it can: an entity of its own on its own topics.
	f.mqttAs("cred-a", allowA, "homeassistant/switch/a/z/config", `{"name":"Z","uniq_id":"a_z","stat_t":"a/z","cmd_t":"a/z/set","dev":{"ids":["dev_a"]}}`)
	f.waitEntity("a_z", nil)
	// B may still remove its own entity.
	f.mqttAs("cred-b", allowB, bTopic, "")
	hmtest.WaitFor(t, 10*time.Second, "B's entity removed by B", func() bool { _, ok := f.entity("b_plug"); return !ok })
}

// TestEdgeLeavesMeshCommandsToTheBorder: commands for mesh devices are the
// mesh border's to answer; the edge answers only those of its own devices.
func TestEdgeLeavesMeshCommandsToTheBorder(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	device := "mesh-0123456789abcdef"
	err := f.conn.Request(ctx, bus.CommandSubject(home, device, device+"-relay"),
		homemesh.Command{HomeID: home, EntityID: device + "-relay", Name: "turn_on"}, nil)
	if homemesh.ErrorKind(err) != homemesh.KindUnavailable {
		t.Errorf("the edge answered a mesh device's command: %v", err)
	}
	err = f.conn.Request(context.Background(), bus.CommandSubject(home, "lamp", "lamp_light"),
		homemesh.Command{HomeID: home, EntityID: "lamp_light", Name: "turn_on"}, nil)
	if homemesh.ErrorKind(err) != homemesh.KindNotFound {
		t.Errorf("an unknown MQTT entity: %v, want not found", err)
	}
}

// TestMQTTCannotTakeAMeshDeviceID: a discovery config whose device id has
// the form of a mesh device's is refused, so an MQTT device cannot
// overwrite a mesh device's registry record.
func TestMQTTCannotTakeAMeshDeviceID(t *testing.T) {
	f := setup(t)
	// One topic, so the two configs are handled in order.
	topic := "homeassistant/sensor/x/temp/config"
	f.mqtt(topic, `{"dev":{"ids":"mesh-0123456789abcdef","name":"Fake"},"uniq_id":"fake_temp","stat_t":"x/t","name":"T"}`)
	f.mqtt(topic, `{"dev":{"ids":"real","name":"Real"},"uniq_id":"real_temp","stat_t":"x/t","name":"T"}`)
	hmtest.WaitFor(t, 10*time.Second, "the later config bound", func() bool { _, ok := f.entity("real_temp"); return ok })
	if _, ok := f.entity("fake_temp"); ok {
		t.Error("an MQTT config took a mesh device id")
	}
}
