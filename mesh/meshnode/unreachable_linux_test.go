package meshnode

import (
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// TestClosedNeighbourPortProbed: when a neighbour's process stops, the
// kernel answers the next datagram to its port with an ICMP port
// unreachable, and the node takes it as a failed delivery: its router
// probes the neighbour at once and declares it dead when the probes go
// unanswered, instead of waiting 2.5 Hello intervals. The Hello interval
// here is long (2 s), so only the ICMP path explains the counters.
func TestClosedNeighbourPortProbed(t *testing.T) {
	home := newTestHome(t, "home")
	slow := func(c *Config) { c.Route = route.Config{HelloInterval: 2 * time.Second} }
	a := startNode(t, home, link.RoleRouter, slow)
	b := startNode(t, home, link.RoleRouter, func(c *Config) { slow(c); c.Peers = peersOf(a) })
	hmtest.WaitFor(t, waitLong, "the link up on both sides", func() bool {
		return a.hasNeighbour(b.ID()) && b.hasNeighbour(a.ID())
	})

	b.stop()
	hmtest.WaitFor(t, waitLong, "a to declare b dead", func() bool { return !a.hasNeighbour(b.ID()) })
	c := a.Topology().Counters
	if c.Unreachable == 0 || c.Route.DeliveryFailures == 0 {
		t.Errorf("unreachable reports %d, delivery failures %d: the port closing went unnoticed", c.Unreachable, c.Route.DeliveryFailures)
	}
}

// FuzzUnreachableError: whatever the control messages of an error-queue
// read hold, parsing them never panics.
func FuzzUnreachableError(f *testing.F) {
	f.Add([]byte{})
	// A cmsghdr (len 32, SOL_IP, IP_RECVERR) and a sock_extended_err with
	// ECONNREFUSED from ICMP.
	f.Add([]byte{32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 111, 0, 0, 0, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, oob []byte) {
		unreachableError(oob)
	})
}
