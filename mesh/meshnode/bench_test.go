package meshnode

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
)

// BenchmarkLineThroughput sends end-to-end messages from one end of a
// three-node line on loopback to the other, through the relay in the
// middle, with at most window messages in flight (the OnMessage callback
// returns credit), and reports messages per second. All three nodes share
// the machine's cores, so the figure is the whole path's cost: two link
// hops, each sealed and opened, the relay's routing, and the end-to-end
// channel at both ends.
func BenchmarkLineThroughput(b *testing.B) {
	for _, size := range []int{100, 1000, 16 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			const window = 128
			credit := make(chan struct{}, window)
			var delivered atomic.Int64
			home := newTestHome(b, "home")
			dst := startNode(b, home, link.RoleHub, func(c *Config) {
				c.OnMessage = func(link.Peer, []byte) {
					delivered.Add(1)
					select {
					case credit <- struct{}{}:
					default:
					}
				}
			})
			relay := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(dst) })
			src := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(relay) })
			payload := make([]byte, size)
			next := time.Now()
			hmtest.WaitFor(b, waitLong, "the first message", func() bool {
				if delivered.Load() > 0 {
					return true
				}
				if time.Now().After(next) {
					if err := src.Send(dst.ID(), payload); err != nil {
						b.Fatal(err)
					}
					next = time.Now().Add(200 * time.Millisecond)
				}
				return false
			})
			for len(credit) > 0 {
				<-credit
			}
			for range window {
				credit <- struct{}{}
			}
			base := delivered.Load()
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				select {
				case <-credit:
				case <-time.After(time.Second):
					// A datagram lost on the way: its credit never comes
					// back, and the loss shows in the "lost" figure.
				}
				if err := src.Send(dst.ID(), payload); err != nil {
					b.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for delivered.Load()-base < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			got := delivered.Load() - base
			b.ReportMetric(float64(got)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(int64(b.N)-got), "lost")
		})
	}
}

// BenchmarkRerouteOutage measures, on the ladder of
// TestRerouteAroundKilledNode with Hellos every testHello, how long
// messages sent every 5 ms stop arriving when the relay on the active path
// stops: from the stop to the first message delivered afterwards. Run it
// with -benchtime Nx for N kills.
func BenchmarkRerouteOutage(b *testing.B) {
	var total time.Duration
	var worst time.Duration
	for range b.N {
		b.StopTimer()
		var delivered atomic.Int64
		home := newTestHome(b, "home")
		dst := startNode(b, home, link.RoleHub, func(c *Config) {
			c.OnMessage = func(link.Peer, []byte) { delivered.Add(1) }
		})
		a2 := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(dst) })
		b2 := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(dst) })
		a1 := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(a2) })
		b1 := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(b2) })
		src := startNode(b, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(a1, b1) })
		stopSending := make(chan struct{})
		sending := make(chan struct{})
		go func() {
			defer close(sending)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopSending:
					return
				case <-tick.C:
					_ = src.Send(dst.ID(), []byte("reading"))
				}
			}
		}()
		hmtest.WaitFor(b, waitLong, "steady delivery", func() bool { return delivered.Load() > 50 })
		via, _ := src.routeVia(dst.ID())
		victim := a1
		if via == b1.ID() {
			victim = b1
		}
		b.StartTimer()
		victim.stop()
		stopped := time.Now()
		// What was in flight before the stop may still arrive: count from
		// a delivery after the route moved away from the victim.
		hmtest.WaitFor(b, waitLong, "the route around the stopped relay", func() bool {
			via, ok := src.routeVia(dst.ID())
			return ok && via != victim.ID()
		})
		mark := delivered.Load()
		hmtest.WaitFor(b, waitLong, "delivery after the stop", func() bool { return delivered.Load() > mark })
		outage := time.Since(stopped)
		b.StopTimer()
		close(stopSending)
		<-sending
		total += outage
		worst = max(worst, outage)
		for _, n := range []*testNode{src, b1, a1, b2, a2, dst} {
			n.stop()
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "outage-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}
