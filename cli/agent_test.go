package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/agent"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/route"
)

// Bad flags are errors naming the flag, before anything runs.
func TestAgentRejectsBadFlags(t *testing.T) {
	state := t.TempDir()
	paired := pairedState(t)
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "pair", "--code", "x", "--state", state}, "homemesh: hub:"},
		{[]string{"agent", "pair", "--hub", "https://192.0.2.1:8080", "--ca", "/nonexistent", "--state", state}, "homemesh: code:"},
		{[]string{"agent", "pair", "--hub", "https://192.0.2.1:8080", "--code", "x", "--ca", "/nonexistent"}, "homemesh: state:"},
		{[]string{"agent", "pair", "--hub", "https://192.0.2.1:8080", "--code", "x", "--state", state, "--role", "hub"}, "homemesh: role:"},
		{[]string{"agent", "pair", "--hub", "https://192.0.2.1:8080", "--code", "x", "--state", state}, "homemesh: ca:"},
		{[]string{"agent", "pair", "--hub", "https://192.0.2.1:8080", "--code", "x", "--state", state, "--ca", "/nonexistent"}, "homemesh: ca:"},
		{[]string{"agent", "pair", "--hub", "https://192.0.2.1:8080", "--code", "x", "--state", state, "--ca-fingerprint", "12:34"}, "homemesh: ca-fingerprint:"},
		{[]string{"agent", "pair", "--hub", "http://192.0.2.1:8080", "--code", "x", "--state", state}, "homemesh: hub:"},
		{[]string{"agent", "run", "--simulate", "switch"}, "homemesh: state:"},
		{[]string{"agent", "run", "--state", state}, "homemesh: simulate:"},
		{[]string{"agent", "run", "--state", state, "--simulate", "switch,toaster"}, "homemesh: simulate:"},
		{[]string{"agent", "run", "--state", state, "--simulate", "switch", "--hello", "1ms"}, "homemesh: hello:"},
		{[]string{"agent", "run", "--state", state, "--simulate", "switch"}, "homemesh: state: " + state + ": not paired: run `homemesh agent pair"},
		{[]string{"agent", "run", "--state", state, "--simulate", "switch", "--peer", "x"}, "homemesh: state:"},
		{[]string{"agent", "run", "--state", paired, "--simulate", "switch", "--listen", "127.0.0.1:0", "--peer", "192.0.2.1"}, "homemesh: peer:"},
		{[]string{"agent", "run", "--state", paired, "--simulate", "switch", "--listen", taken.LocalAddr().String()}, "homemesh: listen: " + taken.LocalAddr().String() + " is taken"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, &stdout, &stderr)
		if code == 0 || !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want it to start with %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// api is a client of a test hub's REST API.
type api struct {
	t      *testing.T
	url    string
	token  string
	client *http.Client
}

func (a *api) do(method, path string, body any, out any) int {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.url+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	if resp.StatusCode >= 300 {
		a.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// TestAgentPairsAndRunsWithTheHub pairs an agent with a hub started by
// homemesh up over HTTPS, runs it, and sees its entities in the API obey
// a command.
func TestAgentPairsAndRunsWithTheHub(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	data := t.TempDir()
	out, _ := runMain(t, "up", "--data", data, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "", "--mesh", "127.0.0.1:0", "--https")
	url := awaitLine(t, out, apiLine)
	awaitReady(t, url, data)

	caPEM, err := os.ReadFile(filepath.Join(data, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	a := &api{t: t, url: url + "/api/v1", client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	onboarding, err := os.ReadFile(filepath.Join(data, "onboarding-code"))
	if err != nil {
		t.Fatal(err)
	}
	password := rand.Text()
	if s := a.do("POST", "/onboard", map[string]string{"code": strings.TrimSpace(string(onboarding)), "username": "owner", "password": password}, nil); s >= 300 {
		t.Fatalf("onboard: %d", s)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if s := a.do("POST", "/auth/login", map[string]string{"username": "owner", "password": password}, &tok); s != 200 {
		t.Fatalf("login: %d", s)
	}
	a.token = tok.AccessToken
	var pairing struct {
		Code string `json:"code"`
	}
	if s := a.do("POST", "/pairings", map[string]string{"name": "porch"}, &pairing); s != 201 {
		t.Fatalf("pairing: %d", s)
	}

	state := filepath.Join(t.TempDir(), "agent")
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"agent", "pair", "--hub", url, "--code", pairing.Code,
		"--ca", filepath.Join(data, "ca.crt"), "--state", state}, &stdout, &stderr); code != 0 {
		t.Fatalf("agent pair: exit %d: %s", code, stderr.String())
	}
	node := regexp.MustCompile(`paired: node ([0-9a-f]{16}) \(router\)`).FindStringSubmatch(stdout.String())
	if node == nil || !strings.Contains(stdout.String(), "  hub ") {
		t.Fatalf("agent pair printed %q", stdout.String())
	}
	// The code is spent.
	stderr.Reset()
	if code := Main(context.Background(), []string{"agent", "pair", "--hub", url, "--code", pairing.Code,
		"--ca", filepath.Join(data, "ca.crt"), "--state", t.TempDir()}, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), "setup code") {
		t.Errorf("a spent code: exit %d, %s", code, stderr.String())
	}

	agentOut, _ := runMain(t, "agent", "run", "--state", state, "--listen", "127.0.0.1:0", "--simulate", "switch,temperature",
		"--hello", "100ms", "--poll", "100ms", "--name", "Porch", "--log-level", "warn")
	awaitLine(t, agentOut, regexp.MustCompile(`mesh agent: node ([0-9a-f]{16}) listening`))

	entityID := "mesh-" + node[1] + "-switch"
	type entity struct {
		ID       string `json:"id"`
		DeviceID string `json:"device_id"`
		State    struct {
			Value     any  `json:"value"`
			Available bool `json:"available"`
		} `json:"state"`
	}
	var e entity
	hmtest.WaitFor(t, 60*time.Second, "the agent's switch in the API", func() bool {
		return a.do("GET", "/entities/"+entityID, nil, &e) == 200 && e.State.Value == "off"
	})
	if e.DeviceID != "mesh-"+node[1] {
		t.Errorf("entity %+v", e)
	}
	if s := a.do("POST", "/entities/"+entityID+"/commands", map[string]any{"command": "turn_on"}, nil); s >= 300 {
		t.Fatalf("turn_on: %d", s)
	}
	hmtest.WaitFor(t, 30*time.Second, "the switch to be on", func() bool {
		return a.do("GET", "/entities/"+entityID, nil, &e) == 200 && e.State.Value == "on"
	})
}

// pairedState writes a state directory as homemesh agent pair leaves it,
// for a home made here, with no hubs.
func pairedState(t *testing.T) string {
	t.Helper()
	home, err := linktest.NewHome("home1", 3, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, err := home.Identity(link.RoleRouter, linktest.Rand(4))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nodeID := route.IDFromKey(id.Key.PublicKey().Bytes())
	rec, _ := json.Marshal(map[string]any{"home": "home1", "node_id": nodeID.String(), "role": "router",
		"not_after": time.Now().Add(time.Hour), "hubs": []any{}})
	for name, data := range map[string][]byte{
		agent.KeyFile:     id.Key.Bytes(),
		agent.CertFile:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert}),
		agent.CAFile:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: home.CA.Raw}),
		agent.PairingFile: rec,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
