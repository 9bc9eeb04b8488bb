package broker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

func TestNewRejectsBadConfig(t *testing.T) {
	s := bustest.Server(t)
	conn := bustest.Conn(t, s)
	good := Config{Home: testHome, TCP: "127.0.0.1:0"}
	tests := []struct {
		name  string
		cfg   func(*Config)
		deps  func(*Deps)
		field string
	}{
		{"bad home", func(c *Config) { c.Home = "Home One" }, nil, "home"},
		{"no listener", func(c *Config) { c.TCP = "" }, nil, "tcp"},
		{"tls without cert", func(c *Config) { c.TLS = "127.0.0.1:0" }, nil, "tls_config"},
		{"negative max clients", func(c *Config) { c.MaxClients = -1 }, nil, "max_clients"},
		{"instance id with newline", func(c *Config) { c.InstanceID = "a\nb" }, nil, "instance_id"},
		{"no bus", nil, func(d *Deps) { d.Bus = nil }, "bus"},
		{"no auth", nil, func(d *Deps) { d.Auth = nil }, "auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			deps := Deps{Bus: conn, Auth: newAuth()}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if tt.deps != nil {
				tt.deps(&deps)
			}
			_, err := New(cfg, deps)
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Fatalf("New = %v, want invalid %s", err, tt.field)
			}
		})
	}
}

func TestListenReportsTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := bustest.Server(t)
	b, err := New(Config{Home: testHome, TCP: taken.Addr().String()}, Deps{Bus: bustest.Conn(t, s), Auth: newAuth()})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Listen()
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) || homemesh.ErrorKind(err) != homemesh.KindConflict {
		t.Fatalf("Listen on a taken port = %v, want a conflict naming %s", err, taken.Addr())
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("Run after a failed Listen succeeded")
	}
}

func TestConnectRefused(t *testing.T) {
	s := bustest.Server(t)
	reg := prometheus.NewRegistry()
	b := startBroker(t, s, withMetrics(reg))
	addr := b.Addr(ListenerTCP).String()
	tests := []struct{ name, user, pass string }{
		{"anonymous", "", ""},
		{"username without password", "admin", ""},
		{"wrong password", "admin", "nope"},
		{"unknown user", "mallory", "admin-pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := connect(t, addr, tt.user, tt.pass, "c-"+tt.name)
			if err == nil {
				c.Disconnect(0)
				t.Fatal("connection accepted")
			}
			if !strings.Contains(err.Error(), "bad user name or password") && !strings.Contains(err.Error(), "Authorized") {
				t.Fatalf("connect error = %v, want a refusal", err)
			}
		})
	}
	if got := gather(t, reg, "homemesh_mqtt_auth_failures_total"); got != float64(len(tests)) {
		t.Errorf("auth failures metric = %v, want %d", got, len(tests))
	}
	if b.Clients() != 0 {
		t.Errorf("Clients() = %d after refusals", b.Clients())
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestACLDeniesAndNothingLeaks(t *testing.T) {
	s := bustest.Server(t)
	reg := prometheus.NewRegistry()
	b := startBroker(t, s, withMetrics(reg))
	addr := b.Addr(ListenerTCP).String()

	spy := &recorder{}
	admin := mustConnect(t, addr, "admin", "admin-pw", "spy")
	subscribe(t, admin, "#", 1, spy)
	onBus := &recorder{}
	nc := bustest.Conn(t, s).NATS()
	sub, err := nc.Subscribe(bus.MQTTWildcard(testHome), onBus.natsHandler(testHome))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	a := mustConnect(t, addr, "dev-a", "a-pw", "dev-a-1")
	subs := []struct {
		filter string
		want   byte
	}{
		{"dev/a/+/set", 1},
		{"dev/a/#", 1},
		{"dev/b/#", 0x80},
		{"#", 0x80},
		{"+/a/x", 0x80},
		{"$SYS/#", 0x80},
	}
	for _, sc := range subs {
		t.Run("subscribe "+sc.filter, func(t *testing.T) {
			if got := subscribe(t, a, sc.filter, 1, &recorder{}); got != sc.want {
				t.Errorf("SUBACK for %q = %#x, want %#x", sc.filter, got, sc.want)
			}
		})
	}

	// A denied QoS 0 publish is dropped; the permitted one after it on the
	// same connection proves the broker has processed both.
	wait(t, a.Publish("dev/b/state", 0, false, "forged"))
	wait(t, a.Publish("dev/a/state", 1, false, "marker"))
	spy.waitFor(t, "dev/a/state|marker")
	onBus.waitFor(t, "dev/a/state|marker")
	for name, r := range map[string]*recorder{"subscriber on #": spy, "bus": onBus} {
		if diff := cmp.Diff([]string{"dev/a/state|marker"}, r.all()); diff != "" {
			t.Errorf("%s saw (-want +got):\n%s", name, diff)
		}
	}

	// A denied QoS 1 publish from an MQTT 3 client costs it its connection.
	a.Publish("dev/b/state", 1, false, "forged again").WaitTimeout(time.Second)
	hmtest.WaitFor(t, 5*time.Second, "the offending client to be disconnected", func() bool { return !a.IsConnectionOpen() })
	a2 := mustConnect(t, addr, "dev-a", "a-pw", "dev-a-2")
	wait(t, a2.Publish("dev/a/state", 1, false, "marker 2"))
	spy.waitFor(t, "dev/a/state|marker 2")
	onBus.waitFor(t, "dev/a/state|marker 2")
	for name, r := range map[string]*recorder{"subscriber on #": spy, "bus": onBus} {
		for _, m := range r.all() {
			if strings.Contains(m, "forged") {
				t.Errorf("%s saw the denied publish %q", name, m)
			}
		}
	}
	if got := gather(t, reg, "homemesh_mqtt_acl_denials_total"); got < 6 {
		t.Errorf("ACL denials metric = %v, want at least 6", got)
	}
}

func TestBridgeToBus(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	addr := b.Addr(ListenerTCP).String()
	msgs := mqttOnBus(t, s, 16)

	c := mustConnect(t, addr, "living", "l-pw", "lamp")
	tests := []struct {
		topic   string
		qos     byte
		retain  bool
		payload string
	}{
		{"living room/lamp v1.2/state", 0, false, `{"state":"ON"}`},
		{"living room/lamp v1.2/state", 1, true, "on"},
		{"living room/dimmer/level", 2, false, "\x00\xffbinary"},
		{"living room//empty level", 1, false, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			wait(t, c.Publish(tt.topic, tt.qos, tt.retain, tt.payload))
			var m *nats.Msg
			select {
			case m = <-msgs:
			case <-time.After(10 * time.Second):
				t.Fatal("nothing bridged")
			}
			wantSubject, _ := bus.MQTTSubject(testHome, tt.topic)
			retain := "0"
			if tt.retain {
				retain = "1"
			}
			got := map[string]string{"subject": m.Subject, "payload": string(m.Data),
				"origin": m.Header.Get(HeaderOrigin), "retain": m.Header.Get(HeaderRetain), "qos": m.Header.Get(HeaderQoS)}
			want := map[string]string{"subject": wantSubject, "payload": tt.payload,
				"origin": b.cfg.InstanceID, "retain": retain, "qos": string('0' + tt.qos)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("bridged message (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBusToMQTT(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	addr := b.Addr(ListenerTCP).String()
	r := &recorder{}
	c := mustConnect(t, addr, "z2m", "z2m-pw", "z2m")
	subscribe(t, c, "zigbee2mqtt/#", 2, r)
	nc := bustest.Conn(t, s).NATS()

	publish := func(topic, payload string, hdr nats.Header) {
		t.Helper()
		subject, err := bus.MQTTSubject(testHome, topic)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: subject, Header: hdr, Data: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	// The broker's own bridged messages are never injected again; those of
	// other origins and of services (no origin) are.
	publish("zigbee2mqtt/lamp/set", "own", nats.Header{HeaderOrigin: {b.cfg.InstanceID}})
	// An escaped '+' decodes to a wildcard, which is no topic name.
	if err := nc.Publish(bus.MQTTPrefix(testHome)+"zigbee2mqtt._2B.set", []byte("wildcard")); err != nil {
		t.Fatal(err)
	}
	publish("zigbee2mqtt/living room lamp.1/set", `{"state":"ON"}`, nil)
	publish("zigbee2mqtt/lamp/set", "other edge", nats.Header{HeaderOrigin: {"edge-other"}, HeaderQoS: {"0"}})
	r.waitFor(t, "zigbee2mqtt/lamp/set|other edge")
	want := []string{`zigbee2mqtt/living room lamp.1/set|{"state":"ON"}`, "zigbee2mqtt/lamp/set|other edge"}
	if diff := cmp.Diff(want, r.all()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	r.mu.Lock()
	qos := append([]byte(nil), r.qos...)
	r.mu.Unlock()
	if diff := cmp.Diff([]byte{1, 0}, qos); diff != "" {
		t.Errorf("delivered QoS (-want +got):\n%s", diff)
	}
}

func TestRevocationDisconnects(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	addr := b.Addr(ListenerTCP).String()
	a := mustConnect(t, addr, "dev-a", "a-pw", "dev-a", persistentSession)
	subscribe(t, a, "dev/a/cmd", 1, &recorder{})
	other := mustConnect(t, addr, "dev-b", "b-pw", "dev-b")
	hmtest.WaitFor(t, 5*time.Second, "two clients", func() bool { return b.Clients() == 2 })

	conn := bustest.Conn(t, s)
	env, err := bus.NewEnvelope(testHome, "auth", revokedEvent, map[string]string{"username": "dev-a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Publish(bus.EventSubject(testHome, revokedEvent), env); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the revoked client to be dropped", func() bool { return !a.IsConnectionOpen() })
	if !other.IsConnectionOpen() {
		t.Error("a client of another credential was dropped")
	}
	if _, ok := b.srv.Clients.Get("dev-a"); ok {
		t.Error("the revoked credential's persistent session is still held")
	}
	if _, ok := b.grants.Load("dev-a"); ok {
		t.Error("the revoked credential's grant is still cached")
	}
	// The bare form of the event works too.
	if err := conn.Publish(bus.EventSubject(testHome, revokedEvent), map[string]string{"username": "dev-b"}); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the second revoked client to be dropped", func() bool { return !other.IsConnectionOpen() })
	hmtest.WaitFor(t, 5*time.Second, "no clients", func() bool { return b.Clients() == 0 })
}

func TestRunTwice(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	if err := b.Run(context.Background()); err == nil || !errors.Is(err, err) || homemesh.ErrorKind(err) != homemesh.KindConflict {
		t.Fatalf("second Run = %v, want a conflict", err)
	}
}
