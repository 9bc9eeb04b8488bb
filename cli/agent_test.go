package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
)

// Bad flags are errors naming the flag, before anything runs.
func TestAgentRejectsBadFlags(t *testing.T) {
	state := t.TempDir()
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
