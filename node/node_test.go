package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/internal/webauthntest"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
)

func TestHubLifecycle(t *testing.T) {
	data := t.TempDir()
	n, stop := nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	home := n.Home().ID
	if !homemesh.ValidID(home) {
		t.Fatalf("home ID %q", home)
	}
	resp, err := http.Get("http://" + n.Gateway().Addr().String() + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after Ready: %v %v", resp, err)
	}
	resp.Body.Close()
	if n.Auth().OnboardingCode() == "" || n.Broker().Addr("tls") == nil {
		t.Fatal("first start must offer an onboarding code and an MQTTS listener")
	}
	stop()

	again, _ := nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	if again.Home().ID != home {
		t.Fatalf("home changed across restarts: %s → %s", home, again.Home().ID)
	}
}

func TestSplitProcessNeedsAHome(t *testing.T) {
	c := nodetest.Config(t.TempDir())
	n, err := node.New(c, node.Options{Services: []string{"registry"}}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); homemesh.ErrorField(err) != "home" {
		t.Fatalf("a split process without a home: %v", err)
	}
	if _, err := node.New(c, node.Options{Services: []string{"toaster"}}, hmtest.Logger(t)); homemesh.ErrorField(err) != "service" {
		t.Fatalf("unknown service: %v", err)
	}
}

func TestTakenPortNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := nodetest.Config(t.TempDir())
	c.MQTTS = ln.Addr().String()
	n, err := node.New(c, node.Options{CreateHome: true}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--mqtts") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("taken MQTTS port: %v", err)
	}
}

func TestOfflineMaintenanceLocksTheDataDirectory(t *testing.T) {
	data := t.TempDir()
	n, stop := nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	if _, err := node.OpenOffline(nodetest.Config(data), hmtest.Logger(t)); err == nil || !strings.Contains(err.Error(), "hub running") {
		t.Fatalf("maintenance while the hub runs: %v, want a refusal naming the running hub", err)
	}
	stop()

	off, err := node.OpenOffline(nodetest.Config(data), hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if off.HomeID() != n.Home().ID {
		t.Fatalf("offline home %q, hub home %q", off.HomeID(), n.Home().ID)
	}
	svc, err := off.Auth()
	if err != nil {
		t.Fatal(err)
	}
	if string(svc.CACertPEM()) == "" {
		t.Fatal("offline auth has no CA")
	}
	again, err := node.New(nodetest.Config(data), node.Options{}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(context.Background()); err == nil {
		t.Fatal("the hub started while maintenance held the data directory")
	}
	off.Close()

	if _, err := node.OpenOffline(nodetest.Config(t.TempDir()), hmtest.Logger(t)); err == nil {
		t.Fatal("maintenance on an empty data directory must fail: there is no home")
	}
}

// A hub whose HTTP port is picked at start accepts passkeys from that port
// on localhost, the origin a browser on the hub reports.
func TestHubPasskeyOriginFollowsTheBoundPort(t *testing.T) {
	n, _ := nodetest.Start(t, nodetest.Config(t.TempDir()), node.Options{CreateHome: true})
	conn, err := n.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	client := auth.NewClient(conn)
	if err := client.Onboard(ctx, n.Auth().OnboardingCode(), "alice", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	tok, err := client.Login(ctx, "alice", "correct horse battery", "")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(n.Gateway().Addr().String())
	origin := "http://localhost:" + port
	a := webauthntest.New()
	reg, err := client.BeginPasskeyRegistration(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := a.Create(reg.Options, origin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.FinishPasskeyRegistration(ctx, "", tok.AccessToken, reg.SessionID, "laptop", cred); err != nil {
		t.Fatalf("register from %s: %v", origin, err)
	}
	login, err := client.BeginPasskeyLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err = a.Get(login.Options, origin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.FinishPasskeyLogin(ctx, login.SessionID, cred); err != nil {
		t.Fatalf("log in from %s: %v", origin, err)
	}
}

func TestTakenMeshPortNamesTheFlag(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := nodetest.Config(t.TempDir())
	c.Mesh = pc.LocalAddr().String()
	n, err := node.New(c, node.Options{CreateHome: true}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--mesh") || !strings.Contains(err.Error(), c.Mesh) {
		t.Fatalf("taken mesh port: %v", err)
	}
}

func TestHubRunsTheMeshBorderUnlessTurnedOff(t *testing.T) {
	n, _ := nodetest.Start(t, nodetest.Config(t.TempDir()), node.Options{CreateHome: true})
	if n.Border() == nil || n.Border().Addr() == nil || n.Border().Addr().Port == 0 {
		t.Fatal("the hub runs no mesh border")
	}
	resp, err := http.Get("http://" + n.Gateway().Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"homemesh_mesh_neighbours", "homemesh_mesh_routes", "homemesh_mesh_agents_online", "homemesh_mesh_packets_total"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	c := nodetest.Config(t.TempDir())
	c.Mesh = ""
	off, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	if off.Border() != nil {
		t.Error("--mesh \"\" still runs the border")
	}
	if _, err := node.New(c, node.Options{Services: []string{"border"}}, hmtest.Logger(t)); homemesh.ErrorField(err) != "mesh" {
		t.Errorf("serve border without --mesh: %v", err)
	}
}

// TestServeBorderAlone runs the mesh border as its own process (homemesh
// serve border) beside a hub without one: it joins the hub's bus with its
// credential, gets its certificate from the hub's auth, and the hub's
// gateway serves its topology.
func TestServeBorderAlone(t *testing.T) {
	data := t.TempDir()
	c := nodetest.Config(data)
	c.NATSListen, c.Mesh = "127.0.0.1:0", ""
	hub, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	if hub.Border() != nil {
		t.Fatal("the hub runs a border with --mesh \"\"")
	}
	cred, err := node.BusCredential(c, "border")
	if err != nil {
		t.Fatal(err)
	}
	credFile := filepath.Join(t.TempDir(), "border.cred")
	if err := os.WriteFile(credFile, []byte(cred.Encode()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bc := nodetest.Config(t.TempDir())
	bc.Home, bc.NATS, bc.NATSCA, bc.NATSCredential = hub.Home().ID, hub.NATSURL(), filepath.Join(data, "ca.crt"), credFile
	b, _ := nodetest.Start(t, bc, node.Options{Services: []string{"border"}})
	if b.Border() == nil {
		t.Fatal("serve border runs no border")
	}

	base := "http://" + hub.Gateway().Addr().String() + "/api/v1"
	post := func(path string, body any, out any) int {
		data, _ := json.Marshal(body)
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(out)
		return resp.StatusCode
	}
	password := "correct horse battery"
	if s := post("/onboard", map[string]string{"code": hub.Auth().OnboardingCode(), "username": "owner", "password": password}, &struct{}{}); s != http.StatusCreated {
		t.Fatalf("onboard: %d", s)
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if s := post("/auth/login", map[string]string{"username": "owner", "password": password}, &tokens); s != http.StatusOK {
		t.Fatalf("login: %d", s)
	}
	req, _ := http.NewRequest("GET", base+"/mesh/topology", nil)
	req.Header.Set("Authorization", "Bearer "+tokens.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var topo struct {
		Hub     string `json:"hub"`
		Address string `json:"address"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&topo); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("topology: %d %v", resp.StatusCode, err)
	}
	if topo.Hub != b.Border().ID().String() || topo.Address != b.Border().Addr().String() {
		t.Errorf("topology of hub %s at %s, want %s at %s", topo.Hub, topo.Address, b.Border().ID(), b.Border().Addr())
	}
}
