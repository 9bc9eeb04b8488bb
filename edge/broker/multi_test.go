package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestTwoInstancesShareTraffic(t *testing.T) {
	s := bustest.Server(t)
	a := startBroker(t, s)
	b := startBroker(t, s)
	addrA, addrB := a.Addr(ListenerTCP).String(), b.Addr(ListenerTCP).String()

	onB := &recorder{}
	subB := mustConnect(t, addrB, "z2m", "z2m-pw", "ha-on-b")
	subscribe(t, subB, "zigbee2mqtt/#", 1, onB)
	onA := &recorder{}
	subA := mustConnect(t, addrA, "z2m", "z2m-pw", "ha-on-a")
	subscribe(t, subA, "zigbee2mqtt/#", 1, onA)

	pubA := mustConnect(t, addrA, "z2m", "z2m-pw", "z2m-on-a")
	settle(t, pubA, "zigbee2mqtt/start", onA)
	onB.waitFor(t, "zigbee2mqtt/start|settle")
	wait(t, pubA.Publish("zigbee2mqtt/bridge/state", 1, true, "online"))
	pubB := mustConnect(t, addrB, "z2m", "z2m-pw", "z2m-on-b")
	wait(t, pubB.Publish("zigbee2mqtt/lamp", 1, false, "from b"))

	onB.waitFor(t, "zigbee2mqtt/bridge/state|online")
	onA.waitFor(t, "zigbee2mqtt/lamp|from b")
	// Markers through both brokers: everything before them has arrived, so
	// a loop would show as a duplicate.
	wait(t, pubA.Publish("zigbee2mqtt/end", 1, false, "a"))
	wait(t, pubB.Publish("zigbee2mqtt/end", 1, false, "b"))
	for _, r := range []*recorder{onA, onB} {
		r.waitFor(t, "zigbee2mqtt/end|a")
		r.waitFor(t, "zigbee2mqtt/end|b")
	}
	want := map[string]int{"zigbee2mqtt/start|settle": 1, "zigbee2mqtt/bridge/state|online": 1, "zigbee2mqtt/lamp|from b": 1,
		"zigbee2mqtt/end|a": 1, "zigbee2mqtt/end|b": 1}
	for name, r := range map[string]*recorder{"on a": onA, "on b": onB} {
		got := map[string]int{}
		for _, m := range r.all() {
			got[m]++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("subscriber %s received (-want +got):\n%s", name, diff)
		}
	}

	// The retained message bridged into b is retained there too, and a
	// broker started later loads it from JetStream.
	late := &recorder{}
	subscribe(t, mustConnect(t, addrB, "z2m", "z2m-pw", "late-on-b"), "zigbee2mqtt/bridge/#", 1, late)
	late.waitFor(t, "zigbee2mqtt/bridge/state|online")
	c := startBroker(t, s)
	later := &recorder{}
	subscribe(t, mustConnect(t, c.Addr(ListenerTCP).String(), "z2m", "z2m-pw", "late-on-c"), "zigbee2mqtt/bridge/#", 1, later)
	later.waitFor(t, "zigbee2mqtt/bridge/state|online")
}

func TestTLSListener(t *testing.T) {
	caPool, serverCert := testCA(t)
	s := bustest.Server(t)
	b := startBroker(t, s, func(c *Config, _ *Deps) {
		c.TCP = ""
		c.TLS = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	})
	if b.Addr(ListenerTCP) != nil {
		t.Error("a TCP listener exists though none was configured")
	}
	addr := b.Addr(ListenerTLS).String()
	tc := &tls.Config{RootCAs: caPool, ServerName: "127.0.0.1"}
	r := &recorder{}
	c := mustConnect(t, addr, "dev-a", "a-pw", "tls-dev", withTLS(tc, addr))
	subscribe(t, c, "dev/a/#", 1, r)
	wait(t, c.Publish("dev/a/state", 1, false, "over tls"))
	r.waitFor(t, "dev/a/state|over tls")

	if _, err := connect(t, addr, "dev-a", "a-pw", "plain-on-tls"); err == nil {
		t.Error("a plaintext client connected to the TLS port")
	}
	if _, err := connect(t, addr, "dev-a", "a-pw", "untrusting", withTLS(&tls.Config{ServerName: "127.0.0.1"}, addr)); err == nil {
		t.Error("a client that does not trust the home CA connected")
	}
}

// testCA returns a CA pool and a server certificate it issued for 127.0.0.1.
func testCA(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	ca := hmtest.NewCA(t, "test home CA")
	return ca.Pool, ca.Issue(t, "edge", x509.ExtKeyUsageServerAuth)
}

// rawConnect sends a hand-built CONNECT on a plain socket and returns the
// connection and the CONNACK reason code, for wills and abrupt closes that
// client libraries hide.
func rawConnect(t *testing.T, addr string, pk packets.Packet) (net.Conn, byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	pk.FixedHeader.Type = packets.Connect
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := conn.Read(ack); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, ack[3]
}

func connectPacket(user, pass, id, willTopic string) packets.Packet {
	pk := packets.Packet{
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id,
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass),
		},
	}
	if willTopic != "" {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, willTopic, []byte("offline")
		pk.Connect.WillRetain, pk.Connect.WillQos = true, 1
	}
	return pk
}

func TestLastWill(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	addr := b.Addr(ListenerTCP).String()
	r := &recorder{}
	spy := mustConnect(t, addr, "admin", "admin-pw", "spy")
	subscribe(t, spy, "dev/#", 1, r)
	settle(t, spy, "dev/settle", r)

	t.Run("will outside the grant refuses the connection", func(t *testing.T) {
		_, code := rawConnect(t, addr, connectPacket("dev-a", "a-pw", "forger", "dev/b/availability"))
		if code == 0 {
			t.Fatal("connection with a forged will accepted")
		}
	})
	t.Run("will sent when the connection drops", func(t *testing.T) {
		conn, code := rawConnect(t, addr, connectPacket("dev-a", "a-pw", "dies", "dev/a/availability"))
		if code != 0 {
			t.Fatalf("CONNACK code %d", code)
		}
		conn.Close()
		r.waitFor(t, "dev/a/availability|offline")
		// The will was retained and bridged, so a late subscriber sees it.
		late := &recorder{}
		subscribe(t, mustConnect(t, addr, "dev-a", "a-pw", "late"), "dev/a/availability", 1, late)
		late.waitFor(t, "dev/a/availability|offline")
	})
	hmtest.WaitFor(t, 5*time.Second, "the will to be seen once", func() bool {
		n := 0
		for _, m := range r.all() {
			if m == "dev/a/availability|offline" {
				n++
			}
		}
		return n == 1
	})
}

func TestClientIDOfAnotherCredentialGetsNoSession(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s)
	addr := b.Addr(ListenerTCP).String()
	a := mustConnect(t, addr, "dev-a", "a-pw", "shared-id", persistentSession)
	subscribe(t, a, "dev/a/cmd", 1, &recorder{})
	a.Disconnect(50)
	ctl := mustConnect(t, addr, "admin", "admin-pw", "ctl")
	wait(t, ctl.Publish("dev/a/cmd", 1, false, "for a only"))

	r := &recorder{}
	other := mustConnect(t, addr, "dev-b", "b-pw", "shared-id", persistentSession, func(o *pahoOptions) {
		o.SetDefaultPublishHandler(r.handler)
	})
	subscribe(t, other, "dev/b/cmd", 1, r)
	settle(t, ctl, "dev/b/cmd", r)
	if diff := cmp.Diff([]string{"dev/b/cmd|settle"}, r.all()); diff != "" {
		t.Errorf("client of another credential received (-want +got):\n%s", diff)
	}
}

func TestMaxClients(t *testing.T) {
	s := bustest.Server(t)
	b := startBroker(t, s, func(c *Config, _ *Deps) { c.MaxClients = 1 })
	addr := b.Addr(ListenerTCP).String()
	mustConnect(t, addr, "dev-a", "a-pw", "one")
	if c, err := connect(t, addr, "dev-b", "b-pw", "two"); err == nil {
		c.Disconnect(0)
		t.Fatal("a client beyond MaxClients was accepted")
	}
	if got := b.Clients(); got != 1 {
		t.Errorf("Clients() = %d, want 1", got)
	}
}
