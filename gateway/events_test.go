package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/gateway"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/registry"
)

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/api/v1/events" }

// dial opens the event stream, with an Authorization header when token is
// not empty.
func dial(t *testing.T, base, token string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var opts websocket.DialOptions
	if token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + token}}
	}
	c, resp, err := websocket.Dial(ctx, wsURL(base), &opts)
	if err == nil {
		c.SetReadLimit(1 << 20)
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, resp, err
}

func read(t *testing.T, c *websocket.Conn) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("message %q: %v", data, err)
	}
	return m, nil
}

func mustRead(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	m, err := read(t, c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

// readUntil reads until a message of type typ arrives, skipping others.
func readUntil(t *testing.T, c *websocket.Conn, typ string) map[string]any {
	t.Helper()
	for range 100 {
		if m := mustRead(t, c); m["type"] == typ {
			return m
		}
	}
	t.Fatalf("no %s message", typ)
	return nil
}

// closeStatus reads until the server closes and returns its status.
func closeStatus(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	for {
		if _, err := read(t, c); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func send(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	data, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestEventsStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	seed(t, e)

	connect := map[string]func(t *testing.T) *websocket.Conn{
		"header": func(t *testing.T) *websocket.Conn {
			c, _, err := dial(t, e.srv.URL, tok)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"first message": func(t *testing.T) *websocket.Conn {
			c, _, err := dial(t, e.srv.URL, "")
			if err != nil {
				t.Fatal(err)
			}
			send(t, c, map[string]string{"type": "auth", "access_token": tok})
			return c
		},
	}
	// The seeded temperature is 21.5; each subtest reports one more degree.
	// Map order is random, so the previous value is tracked, not assumed.
	value, prev := 21.5, 21.5
	for name, open := range connect {
		t.Run(name, func(t *testing.T) {
			c := open(t)
			if m := mustRead(t, c); m["type"] != "auth_ok" {
				t.Fatalf("first message = %v, want auth_ok", m)
			}
			value++
			if err := e.registry.Report(homemesh.StateUpdate{DeviceID: "thermo1", EntityID: "thermo1_temperature",
				Value: value, HasValue: true, Time: time.Now()}); err != nil {
				t.Fatal(err)
			}
			m := readUntil(t, c, "state_changed")
			got := map[string]any{"entity_id": m["entity_id"], "device_id": m["device_id"],
				"value": m["state"].(map[string]any)["value"], "old_value": m["old_state"].(map[string]any)["value"]}
			want := map[string]any{"entity_id": "thermo1_temperature", "device_id": "thermo1", "value": value, "old_value": prev}
			prev = value
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("state_changed (-want +got):\n%s", diff)
			}
			if ts, _ := m["time"].(string); ts == "" {
				t.Error("state_changed has no time")
			}

			// Registry events come through as {"type": kind, "data": …}.
			id := "plug_" + strings.ReplaceAll(name, " ", "_")
			if _, err := e.registry.PutDevice(context.Background(), homemesh.Device{ID: id, Name: "Plug", Source: "mqtt"}); err != nil {
				t.Fatal(err)
			}
			ev := readUntil(t, c, registry.EventDeviceAdded)
			if data, _ := ev["data"].(map[string]any); data["id"] != id {
				t.Errorf("device_added data = %v", ev["data"])
			}
		})
	}
}

func TestEventsRefusal(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	gateway.SetWebSocketLimits(e.gw, 300*time.Millisecond, 256)

	t.Run("bad header token", func(t *testing.T) {
		_, resp, err := dial(t, e.srv.URL, "not-a-token")
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial with a bad token: err %v, resp %v; want a 401", err, resp)
		}
	})
	messages := []struct {
		name string
		msg  any
	}{
		{"bad token message", map[string]string{"type": "auth", "access_token": "not-a-token"}},
		{"wrong message type", map[string]string{"type": "subscribe", "access_token": tok}},
		{"unknown field", map[string]string{"type": "auth", "access_token": tok, "x": "y"}},
	}
	for _, tt := range messages {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := dial(t, e.srv.URL, "")
			if err != nil {
				t.Fatal(err)
			}
			send(t, c, tt.msg)
			if m := mustRead(t, c); m["type"] != "auth_invalid" || m["message"] == "" {
				t.Errorf("reply = %v, want auth_invalid with a message", m)
			}
			if got := closeStatus(t, c); got != websocket.StatusPolicyViolation {
				t.Errorf("close status = %v, want policy violation", got)
			}
		})
	}
	t.Run("no auth message in time", func(t *testing.T) {
		c, _, err := dial(t, e.srv.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		if m := mustRead(t, c); m["type"] != "auth_invalid" {
			t.Errorf("reply = %v, want auth_invalid", m)
		}
		if got := closeStatus(t, c); got != websocket.StatusPolicyViolation {
			t.Errorf("close status = %v, want policy violation", got)
		}
	})
	t.Run("plain GET without a token", func(t *testing.T) {
		if r := e.do(t, "GET", "/api/v1/events", "", nil); r.status != 401 {
			t.Errorf("status = %d, want 401", r.status)
		}
	})
}

func TestEventsCloseWhenTokenExpires(t *testing.T) {
	e := newEnv(t, envOptions{accessTTL: 2 * time.Second})
	tok := e.onboard(t)
	c, _, err := dial(t, e.srv.URL, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if m := mustRead(t, c); m["type"] != "auth_ok" {
		t.Fatalf("first message = %v", m)
	}
	if got := closeStatus(t, c); got != websocket.StatusPolicyViolation {
		t.Errorf("close status = %v, want policy violation", got)
	}

	// A client can renew its session with a fresh token of the same user.
	c, _, err = dial(t, e.srv.URL, e.login(t).AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, c)
	send(t, c, map[string]string{"type": "auth", "access_token": e.login(t).AccessToken})
	if m := readUntil(t, c, "auth_ok"); m["type"] != "auth_ok" {
		t.Errorf("renewal reply = %v", m)
	}
}

func TestEventsDropSlowClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	seed(t, e)
	small, err := gateway.New(gateway.Config{Home: testHome}, e.gwDeps)
	if err != nil {
		t.Fatal(err)
	}
	gateway.SetWebSocketLimits(small, 10*time.Second, 4)
	smallSrv := httptest.NewServer(small.Handler())
	t.Cleanup(smallSrv.Close)

	slow, _, err := dial(t, smallSrv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, slow)
	// Flood the stream with large state changes, straight on the bus, while
	// the slow client reads nothing: its socket buffers and then its queue
	// fill up.
	big := strings.Repeat("x", 8<<10)
	const n = 3000
	for i := range n {
		entity := "e1"
		if i == n-1 {
			entity = "last"
		}
		env, err := bus.NewEnvelope(testHome, "test", "state_changed", registry.StateChange{
			HomeID: testHome, DeviceID: "d1", EntityID: entity,
			State: homemesh.State{Value: i, Attributes: map[string]any{"pad": big}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.conn.Publish(bus.StateSubject(testHome, "d1", entity), env); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := closeStatus(t, slow); got != websocket.StatusTryAgainLater {
		t.Errorf("slow client close status = %v, want try again later", got)
	}

	if r := e.do(t, "GET", "/metrics", "", nil); !strings.Contains(string(r.body), "homemesh_gateway_websocket_slow_clients_dropped_total 1") {
		t.Error("the dropped client is not counted")
	}

	// The gateway goes on serving everyone else.
	next, _, err := dial(t, e.srv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, next)
	if err := e.registry.Report(homemesh.StateUpdate{DeviceID: "lamp1", EntityID: "lamp1_light", Value: "off", HasValue: true, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ { // skip what is left of the flood
		if m := mustRead(t, next); m["entity_id"] == "lamp1_light" {
			break
		}
		if i > n {
			t.Fatal("no state change of lamp1_light")
		}
	}
}

func TestRunShutsDownGracefully(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	gw, err := gateway.New(gateway.Config{Home: testHome, Listen: "127.0.0.1:0"}, e.gwDeps)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := gw.Addr().String()

	t.Run("taken port names the address", func(t *testing.T) {
		other, err := gateway.New(gateway.Config{Home: testHome, Listen: addr}, e.gwDeps)
		if err != nil {
			t.Fatal(err)
		}
		err = other.Listen()
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Fatalf("Listen on a taken port: %v; want an error naming %s", err, addr)
		}
		var opErr *net.OpError
		if !errors.As(err, &opErr) {
			t.Errorf("error %v does not wrap the listen error", err)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	base := "http://" + addr
	hmtest.WaitFor(t, 10*time.Second, "the gateway to serve", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	c, _, err := dial(t, base, tok)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, c)

	cancel()
	if got := closeStatus(t, c); got != websocket.StatusGoingAway {
		t.Errorf("close status on shutdown = %v, want going away", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}
}

func TestServeTLS(t *testing.T) {
	e := newEnv(t, envOptions{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Home: testHome, Listen: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}, e.gwDeps)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Listen(); err != nil {
		t.Fatal(err)
	}
	run(t, "gateway", gw.Run)

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tests := []struct {
		name    string
		maxTLS  uint16
		wantErr bool
	}{
		{"TLS 1.3", tls.VersionTLS13, false},
		{"TLS 1.2 refused", tls.VersionTLS12, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tt.maxTLS}}}
			defer client.CloseIdleConnections()
			resp, err := client.Get("https://" + gw.Addr().String() + "/healthz")
			if tt.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("connected")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.TLS == nil {
				t.Errorf("status %d, TLS %v", resp.StatusCode, resp.TLS != nil)
			}
		})
	}
}
