package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
)

// runIn runs an agent with a state directory on a fake node inside the
// test's bubble, until stop is called or the test ends; stop returns
// Run's error.
func runIn(t *testing.T, dir string) (a *Agent, n *fakeNode, stop func() error) {
	t.Helper()
	a, err := New(Config{Device: meshapp.DeviceInfo{Name: "d"}, Entities: []Entity{NewSwitch("switch", homemesh.KindSwitch)}, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n = &fakeNode{t: t}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, n) }()
	var err2 error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err2, stopped = <-done, true
		}
		return err2
	}
	t.Cleanup(func() { stop() })
	return a, n, stop
}

func TestAgentObeysRevokedFromHubsAndKeepsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		a, n, stop := runIn(t, dir)
		c1, c2, c3 := route.NodeID{0xd1}, route.NodeID{0xd2}, route.NodeID{0xd3}

		// A router cannot revoke anyone.
		a.Deliver(link.Peer{ID: router, Home: "home1", Role: link.RoleRouter}, payload(t, &meshapp.Revoked{Nodes: []route.NodeID{hubA}}))
		synctest.Wait()
		if got := n.takeRevoked(); len(got) != 0 {
			t.Fatalf("a router's revocation obeyed: %v", got)
		}
		if a.Counters().Refused["not_hub"] != 1 {
			t.Errorf("refused %v", a.Counters().Refused)
		}

		a.Deliver(hubPeer(hubA), payload(t, &meshapp.Revoked{Nodes: []route.NodeID{c2, c1}}))
		synctest.Wait()
		// The same list again, from another hub, with one more: only the
		// new one is news.
		a.Deliver(hubPeer(hubB), payload(t, &meshapp.Revoked{Nodes: []route.NodeID{c1, c3, c2}}))
		synctest.Wait()
		if diff := cmp.Diff([][]route.NodeID{{c2, c1}, {c3}}, n.takeRevoked()); diff != "" {
			t.Errorf("Revoke calls (-want +got):\n%s", diff)
		}
		if c := a.Counters(); c.Revoked != 3 {
			t.Errorf("counters %+v", c)
		}
		b, err := os.ReadFile(filepath.Join(dir, RevokedFile))
		if err != nil {
			t.Fatal(err)
		}
		want := c1.String() + "\n" + c2.String() + "\n" + c3.String() + "\n"
		if string(b) != want {
			t.Errorf("%s = %q, want %q", RevokedFile, b, want)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}

		// A restarted agent refuses them before its node runs.
		a, n, _ = runIn(t, dir)
		synctest.Wait()
		if diff := cmp.Diff([][]route.NodeID{{c1, c2, c3}}, n.takeRevoked()); diff != "" {
			t.Errorf("Revoke calls after a restart (-want +got):\n%s", diff)
		}
		if c := a.Counters(); c.Revoked != 3 {
			t.Errorf("counters after a restart %+v", c)
		}
	})
}

func TestAgentRevokedItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, n, _ := runIn(t, t.TempDir())
		// The agent cannot do much about it but say so; the node ignores
		// its own id.
		a.Deliver(hubPeer(hubA), payload(t, &meshapp.Revoked{Nodes: []route.NodeID{self}}))
		synctest.Wait()
		if diff := cmp.Diff([][]route.NodeID{{self}}, n.takeRevoked()); diff != "" {
			t.Errorf("Revoke calls (-want +got):\n%s", diff)
		}
	})
}

func TestAgentRefusesToStartWithAnUnreadableRevokedList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, RevokedFile), []byte("d100000000000000\nnot a node\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, n, stop := runIn(t, dir)
		err := stop()
		if err == nil || !strings.Contains(err.Error(), RevokedFile) || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("Run: %v, want an error naming the file and the line", err)
		}
		if len(n.takeRevoked()) != 0 {
			t.Error("a partial list applied")
		}
	})
}

func TestParseRevoked(t *testing.T) {
	ids := []route.NodeID{{0xd3}, {0xd1}, {0xd1}, {0x01, 0x02}}
	b := formatRevoked(ids)
	got, err := parseRevoked(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]route.NodeID{{0x01, 0x02}, {0xd1}, {0xd3}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"d100000000000000",                     // no newline
		"D100000000000000\n",                   // upper case
		"d1000000\n",                           // short
		"d300000000000000\nd100000000000000\n", // not sorted
		"d100000000000000\nd100000000000000\n", // twice
		"\n",
	} {
		if ids, err := parseRevoked([]byte(bad)); err == nil {
			t.Errorf("%q parsed to %v", bad, ids)
		}
	}
}
