package broker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/nats-io/nats.go"
)

func TestRetainedSurvivesRestart(t *testing.T) {
	s := bustest.Server(t)
	b1 := startBroker(t, s)
	c := mustConnect(t, b1.Addr(ListenerTCP).String(), "z2m", "z2m-pw", "z2m")
	wait(t, c.Publish("homeassistant/light/lamp 1.2/config", 1, true, `{"name":"Lamp"}`))
	wait(t, c.Publish("homeassistant/sensor/gone/config", 1, true, `{"name":"Gone"}`))
	wait(t, c.Publish("homeassistant/sensor/gone/config", 1, true, "")) // deletes it
	wait(t, c.Publish("homeassistant/switch/plug/config", 0, true, `{"name":"Plug"}`))
	// QoS 0 has no acknowledgement: a QoS 1 publish behind it on the same
	// connection proves the broker has processed it.
	wait(t, c.Publish("homeassistant/sync", 1, false, "sync"))
	c.Disconnect(50)
	b1.stop()

	b2 := startBroker(t, s)
	r := &recorder{}
	sub := mustConnect(t, b2.Addr(ListenerTCP).String(), "z2m", "z2m-pw", "ha")
	subscribe(t, sub, "homeassistant/#", 1, r)
	// Retained messages are sent while subscribing, so they precede the marker.
	wait(t, sub.Publish("homeassistant/marker", 1, false, "m"))
	r.waitFor(t, "homeassistant/marker|m")
	got := r.all()
	want := []string{
		`homeassistant/light/lamp 1.2/config|{"name":"Lamp"}`,
		`homeassistant/switch/plug/config|{"name":"Plug"}`,
		"homeassistant/marker|m",
	}
	less := func(a, b string) bool { return a < b }
	if diff := cmp.Diff(want, got, cmpSortStrings(less)); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
}

func TestPersistentSessionSurvivesRestart(t *testing.T) {
	s := bustest.Server(t)
	b1 := startBroker(t, s)
	addr := b1.Addr(ListenerTCP).String()
	dev := mustConnect(t, addr, "dev-a", "a-pw", "dev-a", persistentSession)
	subscribe(t, dev, "dev/a/cmd", 1, &recorder{})
	dev.Disconnect(50)

	ctl := mustConnect(t, addr, "admin", "admin-pw", "ctl")
	wait(t, ctl.Publish("dev/a/cmd", 1, false, "while offline"))
	ctl.Disconnect(50)
	b1.stop()

	b2 := startBroker(t, s)
	addr = b2.Addr(ListenerTCP).String()
	ctl = mustConnect(t, addr, "admin", "admin-pw", "ctl")
	wait(t, ctl.Publish("dev/a/cmd", 1, false, "after restart"))
	wait(t, ctl.Publish("dev/a/other", 1, false, "not subscribed"))

	r := &recorder{}
	mustConnect(t, addr, "dev-a", "a-pw", "dev-a", persistentSession, func(o *pahoOptions) {
		o.SetDefaultPublishHandler(r.handler)
	})
	r.waitFor(t, "dev/a/cmd|while offline")
	r.waitFor(t, "dev/a/cmd|after restart")
	wait(t, ctl.Publish("dev/a/cmd", 1, false, "live"))
	r.waitFor(t, "dev/a/cmd|live")
	// mochi resends queued messages ordered by their creation second, so
	// the two queued ones may swap.
	want := []string{"dev/a/cmd|while offline", "dev/a/cmd|after restart", "dev/a/cmd|live"}
	if diff := cmp.Diff(want, r.all(), cmpSortStrings(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("session received (-want +got):\n%s", diff)
	}
}

func TestCleanSessionLeavesNoState(t *testing.T) {
	s := bustest.Server(t)
	b1 := startBroker(t, s)
	addr := b1.Addr(ListenerTCP).String()
	dev := mustConnect(t, addr, "dev-a", "a-pw", "dev-a")
	subscribe(t, dev, "dev/a/cmd", 1, &recorder{})
	dev.Disconnect(50)
	b1.stop()
	b2 := startBroker(t, s)
	if n := len(b2.srv.Clients.GetAll()); n != 0 {
		t.Errorf("restored %d clients from a clean session", n)
	}
}

func TestServiceRetainedMessagePersists(t *testing.T) {
	s := bustest.Server(t)
	b1 := startBroker(t, s)
	conn := bustest.Conn(t, s)
	subject, err := bus.MQTTSubject(testHome, "homeassistant/light/virtual/config")
	if err != nil {
		t.Fatal(err)
	}
	// A service publishes a retained MQTT message without an origin.
	r := &recorder{}
	c := mustConnect(t, b1.Addr(ListenerTCP).String(), "z2m", "z2m-pw", "ha")
	subscribe(t, c, "homeassistant/#", 1, r)
	if err := conn.NATS().PublishMsg(&nats.Msg{Subject: subject, Data: []byte(`{"name":"Virtual"}`),
		Header: nats.Header{HeaderRetain: {"1"}}}); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, `homeassistant/light/virtual/config|{"name":"Virtual"}`)
	b1.stop()

	b2 := startBroker(t, s)
	late := &recorder{}
	subscribe(t, mustConnect(t, b2.Addr(ListenerTCP).String(), "z2m", "z2m-pw", "late"), "homeassistant/#", 1, late)
	late.waitFor(t, `homeassistant/light/virtual/config|{"name":"Virtual"}`)
}
