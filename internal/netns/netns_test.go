package netns_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/netns"
)

// The test binary doubles as the program run inside the namespaces: with
// NETNS_TEST_ROLE set it is a UDP echo server or a client of one.
func TestMain(m *testing.M) {
	switch os.Getenv("NETNS_TEST_ROLE") {
	case "echo":
		echo(os.Getenv("NETNS_TEST_ADDR"))
		return
	case "ask":
		if err := ask(os.Getenv("NETNS_TEST_ADDR")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func echo(addr string) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// ask sends a datagram to addr and waits for its echo, retrying while the
// server starts.
func ask(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64)
	for range 20 {
		_, _ = c.Write([]byte("ping"))
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "ping" {
			return nil
		}
	}
	return fmt.Errorf("no echo from %s", addr)
}

func TestLinksCarryTrafficOnlyBetweenTheirEnds(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip("skipping: " + err.Error())
	}
	lab, err := netns.New(fmt.Sprintf("nt%d", os.Getpid()%100000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	var hosts []*netns.Host
	for _, name := range []string{"a", "b", "c"} {
		h, err := lab.Add(name)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	ab, err := lab.Connect(hosts[0], hosts[1])
	if err != nil {
		t.Fatal(err)
	}
	bc, err := lab.Connect(hosts[1], hosts[2])
	if err != nil {
		t.Fatal(err)
	}
	if ab.AIface != "veth0" || ab.BIface != "veth0" || bc.AIface != "veth1" || bc.BIface != "veth0" {
		t.Errorf("interface names %s %s %s %s", ab.AIface, ab.BIface, bc.AIface, bc.BIface)
	}

	// Echo servers on b's address towards a and on c's.
	for _, srv := range []struct {
		host *netns.Host
		addr string
	}{{hosts[1], ab.BAddr.String() + ":7000"}, {hosts[2], bc.BAddr.String() + ":7000"}} {
		cmd := srv.host.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "NETNS_TEST_ROLE=echo", "NETNS_TEST_ADDR="+srv.addr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	askFrom := func(h *netns.Host, addr string) error {
		cmd := h.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "NETNS_TEST_ROLE=ask", "NETNS_TEST_ADDR="+addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := askFrom(hosts[0], ab.BAddr.String()+":7000"); err != nil {
		t.Errorf("a cannot reach its neighbour b: %v", err)
	}
	// Nothing routes between links: a reaches c only through a relay.
	if err := askFrom(hosts[0], bc.BAddr.String()+":7000"); err == nil {
		t.Error("a reached c, two links away, without a relay")
	}
	// The test's own namespace reaches a host over a link of its own.
	ra, err := lab.Connect(lab.Root(), hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	echoA := hosts[0].Command(os.Args[0])
	echoA.Env = append(os.Environ(), "NETNS_TEST_ROLE=echo", "NETNS_TEST_ADDR="+ra.BAddr.String()+":7000")
	if err := echoA.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = echoA.Process.Kill(); _ = echoA.Wait() })
	if err := ask(ra.BAddr.String() + ":7000"); err != nil {
		t.Errorf("the root namespace cannot reach a over their link: %v", err)
	}
	if _, err := lab.Connect(hosts[0], hosts[0]); err == nil {
		t.Error("a link from a host to itself was made")
	}

	if err := ab.SetUp(false); err != nil {
		t.Fatal(err)
	}
	if err := askFrom(hosts[0], ab.BAddr.String()+":7000"); err == nil {
		t.Error("a reached b over a link that is down")
	}
}

func TestPrefixIsChecked(t *testing.T) {
	for _, p := range []string{"", "toolongname", "Caps", "a-b"} {
		if _, err := netns.New(p); err == nil {
			t.Errorf("New(%q) accepted", p)
		}
	}
}
