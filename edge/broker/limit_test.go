package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeAuditor records what the broker audits.
type fakeAuditor struct {
	mu  sync.Mutex
	got []Throttled
}

func (a *fakeAuditor) AuditThrottled(_ context.Context, t Throttled) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, t)
	return nil
}

func (a *fakeAuditor) all() []Throttled {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Throttled(nil), a.got...)
}

func withLimits(l Limits) brokerOpt { return func(c *Config, _ *Deps) { c.Limits = l } }

// TestFloodingClientIsThrottled floods from one client at full speed and
// checks that another client's messages all arrive, that the flood is
// dropped, reported once as an event and audited, and that the flooder is
// disconnected.
func TestFloodingClientIsThrottled(t *testing.T) {
	s := bustest.Server(t)
	reg := prometheus.NewRegistry()
	auditor := &fakeAuditor{}
	b := startBroker(t, s, withMetrics(reg), withLimits(Limits{MessagesPerSecond: 50, MessageBurst: 100}),
		func(_ *Config, d *Deps) { d.Audit = auditor })
	addr := b.Addr(ListenerTCP).String()
	spy := &recorder{}
	subscribe(t, mustConnect(t, addr, "admin", "admin-pw", "spy"), "dev/#", 1, spy)

	flooder := mustConnect(t, addr, "dev-a", "a-pw", "flooder")
	const flood = 20000
	go func() {
		for i := range flood {
			if !flooder.IsConnectionOpen() {
				return
			}
			flooder.Publish("dev/a/flood", 0, false, fmt.Sprint(i))
		}
	}()
	// The well-behaved device stays within its own budget while the other
	// floods; every one of its messages arrives.
	good := mustConnect(t, addr, "dev-b", "b-pw", "good")
	for i := range 50 {
		wait(t, good.Publish("dev/b/state", 1, false, fmt.Sprint(i)))
	}
	for i := range 50 {
		spy.waitFor(t, fmt.Sprintf("dev/b/state|%d", i))
	}
	hmtest.WaitFor(t, 20*time.Second, "the flooder to be disconnected", func() bool { return !flooder.IsConnectionOpen() })
	if got := gather(t, reg, "homemesh_mqtt_throttled_messages_total"); got < 1 {
		t.Errorf("throttled messages metric = %v", got)
	}
	if got := gather(t, reg, "homemesh_mqtt_flood_disconnects_total"); got != 1 {
		t.Errorf("flood disconnects metric = %v, want 1", got)
	}
	flooded := 0
	for _, m := range spy.all() {
		if len(m) > 11 && m[:11] == "dev/a/flood" {
			flooded++
		}
	}
	if flooded >= flood || flooded < 100 {
		t.Errorf("%d of %d flood messages delivered; want the burst and not all", flooded, flood)
	}
	hmtest.WaitFor(t, 10*time.Second, "the throttling to be audited", func() bool {
		for _, a := range auditor.all() {
			if a.ClientID == "flooder" && a.Disconnected {
				return true
			}
		}
		return false
	})
	for _, a := range auditor.all() {
		if a.ClientID != "flooder" || a.Username != "dev-a" || a.Reason != "messages" || a.DroppedMessages < 1 {
			t.Errorf("audited %+v", a)
		}
	}
	// At most one report per 10 s, plus the one that says it was dropped.
	if n := len(auditor.all()); n > 2 {
		t.Errorf("%d reports for one flood, want at most 2", n)
	}
}

// TestThrottledEvent checks the event's subject and shape.
func TestThrottledEvent(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s, withLimits(Limits{MessagesPerSecond: 1, MessageBurst: 1}))
	nc := bustest.Conn(t, s).NATS()
	sub, err := nc.SubscribeSync(bus.EventSubject(testHome, EventDeviceThrottled))
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c := mustConnect(t, b.Addr(ListenerTCP).String(), "dev-a", "a-pw", "noisy")
	for range 3 {
		wait(t, c.Publish("dev/a/state", 0, false, "x"))
	}
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no device_throttled event: %v", err)
	}
	var env struct {
		bus.Envelope
	}
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		t.Fatal(err)
	}
	var th Throttled
	if err := json.Unmarshal(env.Payload, &th); err != nil {
		t.Fatal(err)
	}
	if env.Type != EventDeviceThrottled || th.ClientID != "noisy" || th.Username != "dev-a" || th.Reason != "messages" || th.DroppedMessages != 1 {
		t.Errorf("event %s", msg.Data)
	}
}

// TestQoS1OverTheLimit: an MQTT 3 client has no negative acknowledgement,
// so a QoS 1 publish over its rate costs it the connection; what passed
// before was delivered.
func TestQoS1OverTheLimit(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s, withLimits(Limits{MessagesPerSecond: 0.01, MessageBurst: 2}))
	addr := b.Addr(ListenerTCP).String()
	spy := &recorder{}
	subscribe(t, mustConnect(t, addr, "admin", "admin-pw", "spy"), "dev/#", 1, spy)
	c := mustConnect(t, addr, "dev-a", "a-pw", "qos1")
	wait(t, c.Publish("dev/a/state", 1, false, "1"))
	wait(t, c.Publish("dev/a/state", 1, false, "2"))
	c.Publish("dev/a/state", 1, false, "3").WaitTimeout(time.Second)
	hmtest.WaitFor(t, 10*time.Second, "the client to be disconnected", func() bool { return !c.IsConnectionOpen() })
	spy.waitFor(t, "dev/a/state|2")
	if spy.has("dev/a/state|3") {
		t.Error("the publish over the limit was delivered")
	}
}

// TestReconnectStorm: one device reconnecting in a loop is refused with
// "server unavailable" (MQTT 3) once its burst is spent; other devices
// connect as usual.
func TestReconnectStorm(t *testing.T) {
	s := bustest.Server(t)
	reg := prometheus.NewRegistry()
	b := startBroker(t, s, withMetrics(reg), withLimits(Limits{ReconnectsPerSecond: 0.01, ReconnectBurst: 3}))
	addr := b.Addr(ListenerTCP).String()
	for i := range 3 {
		conn, code := rawConnect(t, addr, connectPacket("dev-a", "a-pw", "looping", ""))
		if code != 0 {
			t.Fatalf("attempt %d refused with %#x", i, code)
		}
		conn.Close()
	}
	if _, code := rawConnect(t, addr, connectPacket("dev-a", "a-pw", "looping", "")); code != 0x03 {
		t.Fatalf("attempt over the limit: CONNACK %#x, want 0x03 (server unavailable)", code)
	}
	mustConnect(t, addr, "dev-b", "b-pw", "other")
	mustConnect(t, addr, "dev-a", "a-pw", "another-client-id")
	if got := gather(t, reg, "homemesh_mqtt_connects_refused_total"); got != 1 {
		t.Errorf("refused connects metric = %v, want 1", got)
	}
}

func TestPublishLimiter(t *testing.T) {
	lim := Limits{MessagesPerSecond: 10, BytesPerSecond: 100, ByteBurst: 200}.withDefaults()
	if lim.MessageBurst != 10*burstSeconds {
		t.Fatalf("default burst = %v", lim.MessageBurst)
	}
	t0 := time.Unix(1000, 0)
	var l publishLimiter
	// One message far above the byte burst passes on a full bucket; the
	// debt then holds back the next until it is repaid.
	if v, _ := l.allowPublish(&lim, t0, 1000); v != allow {
		t.Fatalf("first large message: %v", v)
	}
	v, report := l.allowPublish(&lim, t0, 10)
	if v != drop || report == nil || report.Reason != "bytes" || report.DroppedBytes != 10 {
		t.Fatalf("message in debt: %v %+v", v, report)
	}
	// Reports come at most every 10 s.
	if _, report := l.allowPublish(&lim, t0.Add(time.Second), 10); report != nil {
		t.Errorf("second report within a second: %+v", report)
	}
	// 1000 - 200 debt is repaid after 8 s at 100 B/s, and then some.
	if v, _ := l.allowPublish(&lim, t0.Add(9*time.Second), 10); v != allow {
		t.Errorf("after the debt is repaid: %v", v)
	}
	// Flooding: more than rate × 10 s of drops (and at least
	// minFloodDrops) in one window disconnects.
	var f publishLimiter
	lim = Limits{MessagesPerSecond: 1, MessageBurst: 1}
	var last verdict
	for i := 0; i < 1000 && last != disconnect; i++ {
		last, report = f.allowPublish(&lim, t0.Add(time.Duration(i)*time.Millisecond), 1)
	}
	// The first drop was reported at once; the next minFloodDrops are in
	// this one.
	if last != disconnect || report == nil || !report.Disconnected || report.DroppedMessages != minFloodDrops {
		t.Errorf("flood: %v %+v", last, report)
	}
}

func TestConnectLimiter(t *testing.T) {
	if ok, _ := (*connectLimiter)(nil).allow("x", time.Now()); !ok {
		t.Fatal("a disabled limiter refused")
	}
	c := newConnectLimiter(1, 2)
	t0 := time.Unix(1000, 0)
	for i := range 2 {
		if ok, _ := c.allow("192.0.2.1", t0); !ok {
			t.Fatalf("attempt %d refused", i)
		}
	}
	ok, refused := c.allow("192.0.2.1", t0)
	if ok || refused != 1 {
		t.Fatalf("over the burst: ok %v refused %d", ok, refused)
	}
	if ok, refused := c.allow("192.0.2.1", t0); ok || refused != 0 {
		t.Errorf("second refusal reported again within 10 s: ok %v refused %d", ok, refused)
	}
	if ok, _ := c.allow("192.0.2.2", t0); !ok {
		t.Error("another address was refused")
	}
	if ok, _ := c.allow("192.0.2.1", t0.Add(time.Second)); !ok {
		t.Error("refused after the bucket refilled")
	}
	// Idle keys are swept once the map is full.
	for i := range maxConnectKeys + 1 {
		c.allow(fmt.Sprint(i), t0)
	}
	c.allow("late", t0.Add(time.Hour))
	if len(c.buckets) > 2 {
		t.Errorf("%d keys kept after a sweep an hour later", len(c.buckets))
	}
	for remote, want := range map[string]bool{"127.0.0.1:5": true, "[::1]:5": true, "192.0.2.1:5": false, "garbage": false} {
		if _, loop := sourceIP(remote); loop != want {
			t.Errorf("sourceIP(%q) loopback = %v", remote, loop)
		}
	}
}

// TestPublisherHeaders: the bridge names the publishing credential on
// every message and adds its allow list to discovery configs, which the
// edge checks the config's topics against.
func TestPublisherHeaders(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	msgs := mqttOnBus(t, s, 4)
	c := mustConnect(t, b.Addr(ListenerTCP).String(), "z2m", "z2m-pw", "bridge")
	wait(t, c.Publish("zigbee2mqtt/lamp", 1, false, "state"))
	wait(t, c.Publish("homeassistant/light/lamp/config", 1, false, "{}"))
	for _, want := range []struct {
		topic string
		allow []string
	}{{"zigbee2mqtt/lamp", nil}, {"homeassistant/light/lamp/config", []string{"zigbee2mqtt/#", "homeassistant/#"}}} {
		select {
		case m := <-msgs:
			if got := m.Header.Get(HeaderPublisher); got != "z2m" {
				t.Errorf("%s: publisher %q", want.topic, got)
			}
			if diff := cmp.Diff(want.allow, m.Header.Values(HeaderAllow)); diff != "" {
				t.Errorf("%s: allow (-want +got):\n%s", want.topic, diff)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("nothing bridged")
		}
	}
}

// TestMQTT5OverTheLimit: an MQTT 5 client is told "quota exceeded" in the
// PUBACK of a QoS 1 publish over its rate, and keeps its connection; its
// connection attempts over the device limit get CONNACK "quota exceeded".
func TestMQTT5OverTheLimit(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s, withLimits(Limits{MessagesPerSecond: 0.01, MessageBurst: 1, ReconnectsPerSecond: 0.01, ReconnectBurst: 1}))
	addr := b.Addr(ListenerTCP).String()
	pk := connectPacket("dev-a", "a-pw", "v5", "")
	pk.ProtocolVersion = 5
	connect5 := func() (net.Conn, byte) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		var buf bytes.Buffer
		c := pk
		c.FixedHeader.Type = packets.Connect
		if err := c.ConnectEncode(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		typ, body := readPacket(t, conn)
		if typ != packets.Connack || len(body) < 2 {
			t.Fatalf("got packet type %d, want CONNACK", typ)
		}
		return conn, body[1]
	}
	conn, code := connect5()
	if code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	puback := func(id uint16) byte {
		t.Helper()
		pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
			TopicName: "dev/a/state", Payload: []byte("x"), PacketID: id}
		var buf bytes.Buffer
		if err := pub.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		typ, body := readPacket(t, conn)
		if typ != packets.Puback {
			t.Fatalf("got packet type %d, want PUBACK", typ)
		}
		if len(body) < 3 {
			return 0 // success may omit the reason code
		}
		return body[2]
	}
	if got := puback(1); got != 0 {
		t.Fatalf("first publish: reason %#x", got)
	}
	if got := puback(2); got != packets.ErrQuotaExceeded.Code {
		t.Fatalf("publish over the limit: reason %#x, want %#x", got, packets.ErrQuotaExceeded.Code)
	}
	if got := puback(3); got != packets.ErrQuotaExceeded.Code {
		t.Fatalf("the connection did not survive: reason %#x", got)
	}
	if _, code := connect5(); code != packets.ErrQuotaExceeded.Code {
		t.Fatalf("reconnect over the limit: CONNACK %#x, want %#x", code, packets.ErrQuotaExceeded.Code)
	}
}

// readPacket reads one MQTT packet: its type and the bytes after the
// remaining length.
func readPacket(t *testing.T, conn net.Conn) (byte, []byte) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [1]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		t.Fatalf("read packet: %v", err)
	}
	n, shift := 0, 0
	for {
		var b [1]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			t.Fatalf("read length: %v", err)
		}
		n |= int(b[0]&0x7f) << shift
		if b[0]&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return hdr[0] >> 4, body
}
