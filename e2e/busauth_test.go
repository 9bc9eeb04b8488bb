package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// busClient is a NATS client outside homemesh that presents a service's
// bus credential file, as a compromised or misbehaving process would.
type busClient struct {
	nc *nats.Conn
	mu sync.Mutex
	// errs are the asynchronous errors the server reported.
	errs []string
}

// connectAs dials h's NATS over TLS with the credential file of service.
func connectAs(t *testing.T, h *hub, service string, password func(string) string) (*busClient, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.credDir, service+".cred"))
	if err != nil {
		t.Fatal(err)
	}
	// The file's one line is hmbus1.<home>.<service>.<secret>
	// (docs/security.md); the NATS user is <service>@<home>.
	parts := strings.Split(strings.TrimSpace(string(data)), ".")
	if len(parts) != 4 {
		t.Fatalf("credential file of %s: %d parts", service, len(parts))
	}
	home, secret := parts[1], parts[3]
	c := &busClient{}
	nc, err := nats.Connect(h.natsURL, nats.UserInfo(service+"@"+home, password(secret)), nats.RootCAs(h.natsCA),
		nats.CustomInboxPrefix("_INBOX.hm."+home+"."+service),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err.Error())
			c.mu.Unlock()
		}))
	if err != nil {
		return nil, err
	}
	c.nc = nc
	t.Cleanup(nc.Close)
	return c, nil
}

// violation waits for the server to report a permissions violation for op
// ("publish" or "subscription") on subject.
func (c *busClient) violation(t *testing.T, op, subject string) {
	t.Helper()
	want := strings.ToLower(`permissions violation for ` + op + ` to "` + subject + `"`)
	waitUntil(t, want, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.ContainsFunc(c.errs, func(e string) bool { return strings.Contains(strings.ToLower(e), want) })
	})
}

func (c *busClient) clean(t *testing.T) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) > 0 {
		t.Fatalf("the server reported errors for allowed actions: %v", c.errs)
	}
}

// A process holding the edge's identity uses the edge's subjects and
// nothing else: the NATS server, told by auth, refuses the rest.
func TestSplitBusPermissions(t *testing.T) {
	h := split(t)
	same := func(s string) string { return s }
	edge, err := connectAs(t, h, "edge", same)
	if err != nil {
		t.Fatalf("connect with the edge's credential: %v", err)
	}

	// Its own subjects work: the MQTT bridge both ways, and the auth verb
	// it calls answers (refusing the made-up MQTT login, which is the
	// answer of a service that was reached).
	bridge, err := edge.nc.SubscribeSync("hm.e2e.mqtt.probe")
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.nc.Publish("hm.e2e.mqtt.probe", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m, err := bridge.NextMsg(10 * time.Second); err != nil || string(m.Data) != "hello" {
		t.Fatalf("the edge's own bridge subject: %v", err)
	}
	reply, err := edge.nc.Request("hm.svc.auth.mqtt_authenticate", []byte(`{"username":"nobody","password":"x","client_id":"c"}`), 10*time.Second)
	if err != nil || reply.Header.Get("Hm-Error") != "unauthenticated" {
		t.Fatalf("the edge calls mqtt_authenticate: %v %v", err, reply)
	}
	edge.clean(t)

	// Everybody else's subjects are refused, each reported to the client.
	for _, subject := range []string{
		"hm.svc.auth.credential_create",
		"hm.svc.auth.login",
		"hm.svc.registry.devices.list",
		"hm.svc.registry.entities.get",
		"hm.e2e.state.lamp.light",
		"hm.e2e.event.entity_added",
		"hm.other.mqtt.probe",
	} {
		if err := edge.nc.Publish(subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		edge.violation(t, "publish", subject)
	}
	for _, subject := range []string{"hm.svc.auth.>", "hm.svc.registry.>", "hm.e2e.state.>", "_INBOX.>", "_INBOX.hm.e2e.gateway.>"} {
		if _, err := edge.nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		edge.violation(t, "subscription", subject)
	}

	// A wrong secret is refused outright.
	if _, err := connectAs(t, h, "edge", func(s string) string { return s + "x" }); err == nil {
		t.Fatal("a wrong edge secret was accepted")
	}
	// A plaintext client is refused: the listener speaks TLS only.
	addr := strings.TrimPrefix(strings.TrimPrefix(h.natsURL, "tls://"), "nats://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if !strings.Contains(string(buf[:n]), `"tls_required":true`) {
		t.Fatalf("NATS greeting without tls_required: %q", buf[:n])
	}
	_, _ = conn.Write([]byte("CONNECT {\"user\":\"edge@e2e\"}\r\nPING\r\n"))
	n, _ = conn.Read(buf)
	if strings.Contains(string(buf[:n]), "PONG") {
		t.Fatalf("a plaintext client was served: %q", buf[:n])
	}
}

// A hub that lets other processes join its embedded NATS serves it over
// TLS with a certificate from the home CA and admits a split-mode gateway
// by its credential, made offline from the hub's data directory; its own
// services pass the same callout.
func TestHubAdmitsSplitServiceOverTLS(t *testing.T) {
	data := t.TempDir()
	hubProc := start(t, "up", "--data", data, "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "", "--nats-listen", "127.0.0.1:0")
	natsURL := hubProc.await(t, natsLine)
	home := hubProc.await(t, homeLine)
	code := hubProc.await(t, codeLine)
	hubProc.await(t, apiLine)
	if !strings.HasPrefix(natsURL, "tls://") {
		t.Fatalf("the hub's NATS listener is %s, want tls://", natsURL)
	}
	cred := filepath.Join(t.TempDir(), "gateway.cred")
	run(t, "nats-credential", "gateway", "--data", data, "--out", cred)
	if fi, err := os.Stat(cred); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", fi, err)
	}
	args := []string{"serve", "gateway", "--nats", natsURL, "--nats-ca", filepath.Join(data, "ca.crt"),
		"--home", home, "--data", t.TempDir(), "--http", "127.0.0.1:0"}
	gw := start(t, append(args, "--nats-credential", cred)...)
	api := gw.await(t, apiLine) + "/api/v1"
	owner := map[string]string{"code": code, "username": "owner", "password": "correct horse battery"}
	if status := call(t, "POST", api+"/onboard", "", owner, nil); status != 201 {
		t.Fatalf("onboard through the split gateway = %d", status)
	}
	tok := login(t, api)
	if status := call(t, "GET", api+"/entities", tok, nil, nil); status != 200 {
		t.Fatalf("GET /entities through the split gateway = %d", status)
	}

	// Without its credential, or without the CA, the gateway cannot join.
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"no credential", nil, "--nats-credential"},
		{"no CA", []string{"--nats-credential", cred, "--nats-ca", ""}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, append(slices.Clone(args), tc.extra...)...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the gateway started: %s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("the error does not mention %s:\n%s", tc.want, out)
			}
		})
	}
}
