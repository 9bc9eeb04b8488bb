package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/netns"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
)

// TestMeshAcrossNamespaces runs the mesh on separate network stacks: the
// hub and eight `homemesh agent` processes, each in its own Linux network
// namespace, joined by veth links into two disjoint paths from the hub to
// a sensor, a short one and a long one:
//
//	hub ── a1 ── a2 ── a3 ── sensor
//	 │                         │
//	 └──── b1 ── b2 ── b3 ── b4┘
//
// Nothing routes between namespaces but the agents themselves. The sensor
// reports every 100 ms; the test kills (SIGKILL) the relay in the middle
// of the active path, measures how long the hub hears nothing from the
// sensor, restarts the relay, waits for the short path to come back and
// kills the next relay on it, for a second figure; then it freezes
// (SIGSTOP) a relay, which goes silent without its kernel reporting its
// port closed, as a relay that loses power does. It needs root (CI runs
// as root) and skips elsewhere.
func TestMeshAcrossNamespaces(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip("skipping the multi-host mesh test: " + err.Error())
	}
	lab, err := netns.New(fmt.Sprintf("hm%d", os.Getpid()%100000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("remove the namespaces: %v", err)
		}
	})
	hosts := map[string]*netns.Host{}
	for _, name := range []string{"hub", "a1", "a2", "a3", "b1", "b2", "b3", "b4", "sensor"} {
		if hosts[name], err = lab.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	// peers lists each host's neighbours' addresses, for --peer.
	const meshPort = "4790"
	peers := map[string][]string{}
	for _, l := range [][2]string{
		{"hub", "a1"}, {"a1", "a2"}, {"a2", "a3"}, {"a3", "sensor"},
		{"hub", "b1"}, {"b1", "b2"}, {"b2", "b3"}, {"b3", "b4"}, {"b4", "sensor"},
	} {
		lk, err := lab.Connect(hosts[l[0]], hosts[l[1]])
		if err != nil {
			t.Fatal(err)
		}
		peers[l[0]] = append(peers[l[0]], lk.BAddr.String()+":"+meshPort)
		peers[l[1]] = append(peers[l[1]], lk.AAddr.String()+":"+meshPort)
	}
	// The test reaches the hub's API over a link of its own, which the
	// mesh does not use.
	mgmt, err := lab.Connect(lab.Root(), hosts["hub"])
	if err != nil {
		t.Fatal(err)
	}

	data := t.TempDir()
	apiAddr := mgmt.BAddr.String() + ":8443"
	hubArgs := []string{"up", "--data", data, "--http", apiAddr, "--tls-hosts", mgmt.BAddr.String(),
		"--mesh", ":" + meshPort, "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0"}
	hub := startCmd(t, hosts["hub"].Command(binary, hubArgs...), hubArgs)
	api := hub.await(t, apiLine) + "/api/v1"
	c := newTLSAPI(t, filepath.Join(data, "ca.crt"))
	waitUntil(t, "the hub to be ready", func() bool {
		return c.call(t, "GET", strings.TrimSuffix(api, "/api/v1")+"/readyz", "", nil, nil) == http.StatusOK
	})
	code := hub.await(t, codeLine)
	seen.add(code)
	if st := c.call(t, "POST", api+"/onboard", "", map[string]string{"code": code, "username": "owner", "password": "correct horse battery"}, nil); st != http.StatusCreated {
		t.Fatalf("onboard = %d", st)
	}
	var tokens tokenPair
	if st := c.call(t, "POST", api+"/auth/login", "", map[string]string{"username": "owner", "password": "correct horse battery"}, &tokens); st != http.StatusOK {
		t.Fatalf("login = %d", st)
	}
	tok := tokens.AccessToken

	// Pair every agent through the API, as a person installing it would.
	type agentProc struct {
		state string
		id    route.NodeID
		proc  *proc
	}
	agents := map[string]*agentProc{}
	paired := regexp.MustCompile(`paired: node ([0-9a-f]{16})`)
	for name := range hosts {
		if name == "hub" {
			continue
		}
		var pairing struct{ Code string }
		if st := c.call(t, "POST", api+"/pairings", tok, map[string]string{"name": name}, &pairing); st != http.StatusCreated {
			t.Fatalf("create a pairing for %s = %d", name, st)
		}
		seen.add(pairing.Code)
		state := t.TempDir()
		out, err := exec.Command(binary, "agent", "pair", "--hub", strings.TrimSuffix(api, "/api/v1"),
			"--code", pairing.Code, "--ca", filepath.Join(data, "ca.crt"), "--state", state).CombinedOutput()
		if err != nil {
			t.Fatalf("pair %s: %v\n%s", name, err, out)
		}
		m := paired.FindSubmatch(out)
		if m == nil {
			t.Fatalf("pair %s printed no node id:\n%s", name, out)
		}
		id, err := route.ParseNodeID(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		agents[name] = &agentProc{state: state, id: id}
	}
	run := func(name string) {
		a := agents[name]
		args := []string{"agent", "run", "--state", a.state, "--listen", ":" + meshPort, "--name", name,
			"--simulate", "temperature", "--poll", "100ms", "--telemetry", "100ms"}
		for _, p := range peers[name] {
			args = append(args, "--peer", p)
		}
		a.proc = startCmd(t, hosts[name].Command(binary, args...), args)
	}
	for name := range agents {
		run(name)
	}
	kill := func(name string) {
		p := agents[name].proc
		_ = p.cmd.Process.Kill()
		<-p.done
	}

	// The hub hears the sensor over the short path: four links, through a1.
	sensor := meshapp.EntityID(agents["sensor"].id, "temperature")
	routeToSensor := func() (next string, metric int, ok bool) {
		var topo struct {
			Routes []struct {
				Destination string `json:"destination"`
				NextHop     string `json:"next_hop"`
				Metric      int    `json:"metric"`
				Feasible    bool   `json:"feasible"`
			} `json:"routes"`
		}
		if c.call(t, "GET", api+"/mesh/topology", tok, nil, &topo) != http.StatusOK {
			return "", 0, false
		}
		for _, r := range topo.Routes {
			if r.Destination == agents["sensor"].id.String() && r.Feasible {
				return r.NextHop, r.Metric, true
			}
		}
		return "", 0, false
	}
	onShortPath := func() bool {
		next, metric, ok := routeToSensor()
		return ok && next == agents["a1"].id.String() && metric < 5*route.HopCost
	}
	waitLong(t, "the hub's route to the sensor over the short path", onShortPath)
	waitLong(t, "the sensor's readings in the API", func() bool {
		var e meshEntity
		return c.call(t, "GET", api+"/entities/"+sensor, tok, nil, &e) == http.StatusOK && e.State.Available && e.State.Value != nil
	})

	// outage makes relay fail and returns the longest the hub went
	// without a reading of the sensor, from just before the failure until
	// readings arrive over the long path.
	outage := func(relay string, fail func(string)) time.Duration {
		t.Helper()
		w := watchReadings(t, c, api+"/entities/"+sensor, tok)
		time.Sleep(time.Second) // readings before the kill, to see their pace
		killedAt := time.Now()
		fail(relay)
		waitLong(t, "the hub's route to the sensor over the long path", func() bool {
			next, _, ok := routeToSensor()
			return ok && next == agents["b1"].id.String()
		})
		waitLong(t, "readings after rerouting", func() bool { return w.lastAfter(killedAt.Add(2 * time.Second)) })
		time.Sleep(time.Second)
		return w.stop(killedAt.Add(-500 * time.Millisecond))
	}
	first := outage("a2", kill)
	t.Logf("relay a2 killed: the hub heard nothing from the sensor for %v", first)

	run("a2")
	waitLong(t, "the short path back once a2 returned", onShortPath)
	second := outage("a3", kill)
	t.Logf("relay a3 killed: the hub heard nothing from the sensor for %v", second)

	// A killed relay's kernel answers for it: its port is closed, and the
	// ICMP that says so lets its neighbours probe it at once. A relay that
	// loses power, or hangs, goes silent instead: frozen, a2 keeps its
	// port, and its neighbours notice only that it stopped talking.
	run("a3")
	waitLong(t, "the short path back once a3 returned", onShortPath)
	freeze := func(name string) { _ = agents[name].proc.cmd.Process.Signal(syscall.SIGSTOP) }
	third := outage("a2", freeze)
	_ = agents["a2"].proc.cmd.Process.Signal(syscall.SIGCONT)
	t.Logf("relay a2 frozen: the hub heard nothing from the sensor for %v", third)
}

// tlsAPI calls the hub's API over HTTPS, trusting only the home CA.
type tlsAPI struct{ client *http.Client }

func newTLSAPI(t *testing.T, caFile string) *tlsAPI {
	t.Helper()
	var pem []byte
	waitUntil(t, "the home CA certificate", func() bool {
		var err error
		pem, err = os.ReadFile(caFile)
		return err == nil && len(pem) > 0
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &tlsAPI{client: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
}

// call is the harness's call over this client; a request that got no
// answer (the hub not listening yet) counts as status 0.
func (c *tlsAPI) call(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	code, _ := request(t, c.client, method, url, token, body, out)
	return code
}

// readingWatch polls an entity every 20 ms and keeps the distinct times
// of its readings.
type readingWatch struct {
	times chan time.Time
	done  chan []time.Time
	quit  chan struct{}
	last  chan time.Time
}

func watchReadings(t *testing.T, c *tlsAPI, url, token string) *readingWatch {
	w := &readingWatch{done: make(chan []time.Time, 1), quit: make(chan struct{}), last: make(chan time.Time, 1)}
	w.last <- time.Time{}
	go func() {
		var seenTimes []time.Time
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.quit:
				w.done <- seenTimes
				return
			case <-tick.C:
			}
			var e meshEntity
			if c.call(t, "GET", url, token, nil, &e) != http.StatusOK || e.State.UpdatedAt.IsZero() {
				continue
			}
			if n := len(seenTimes); n == 0 || !e.State.UpdatedAt.Equal(seenTimes[n-1]) {
				seenTimes = append(seenTimes, e.State.UpdatedAt)
				<-w.last
				w.last <- e.State.UpdatedAt
			}
		}
	}()
	return w
}

// lastAfter reports whether a reading newer than at was seen.
func (w *readingWatch) lastAfter(at time.Time) bool {
	last := <-w.last
	w.last <- last
	return last.After(at)
}

// stop ends the watch and returns the longest gap between readings from
// since on.
func (w *readingWatch) stop(since time.Time) time.Duration {
	close(w.quit)
	times := <-w.done
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var longest time.Duration
	for i := 1; i < len(times); i++ {
		if times[i].After(since) {
			longest = max(longest, times[i].Sub(times[i-1]))
		}
	}
	return longest
}
