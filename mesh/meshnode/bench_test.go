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
