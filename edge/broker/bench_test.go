package broker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/nats-io/nats.go"
)

// BenchmarkBridgeQoS1 measures MQTT QoS 1 publishes accepted by the broker
// and bridged to a NATS subscriber: 20 paho publishers with 16 messages in
// flight each, 108-byte payloads, as in the edge comparison notes. The load
// generator shares the machine with the broker.
func BenchmarkBridgeQoS1(b *testing.B) { benchBridge(b, Limits{}) }

// BenchmarkBridgeQoS1RateLimited is BenchmarkBridgeQoS1 with per-client
// message and byte limits switched on, set above what any publisher
// reaches: it measures what the accounting costs, not throttling.
func BenchmarkBridgeQoS1RateLimited(b *testing.B) {
	benchBridge(b, Limits{MessagesPerSecond: 1e6, BytesPerSecond: 1 << 30})
}

func benchBridge(b *testing.B, limits Limits) {
	const publishers, window = 20, 16
	s := bustest.Server(b)
	br := startBroker(b, s, withLimits(limits))
	addr := br.Addr(ListenerTCP).String()

	var got atomic.Int64
	nc := bustest.Conn(b, s).NATS()
	sub, err := nc.Subscribe(bus.MQTTWildcard(testHome), func(*nats.Msg) { got.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()
	nc.Flush()

	clients := make([]paho.Client, publishers)
	for i := range clients {
		clients[i] = mustConnect(b, addr, "admin", "admin-pw", fmt.Sprintf("bench-%d", i))
	}
	payload := []byte(`{"temperature":21.5,"humidity":40.2,"battery":97,"linkquality":120,"voltage":3000,"ok":true}abcdef`)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		n := b.N / publishers
		if i < b.N%publishers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("telemetry/dev-%03d/state", i)
			inflight := make([]paho.Token, 0, window)
			for j := 0; j < n; j++ {
				if len(inflight) == window {
					inflight[0].Wait()
					inflight = inflight[1:]
				}
				inflight = append(inflight, c.Publish(topic, 1, false, payload))
			}
			for _, tok := range inflight {
				tok.Wait()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // a benchmark drains; tests never sleep to wait
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n := got.Load(); n < int64(b.N) {
		b.Fatalf("bridged %d of %d messages", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkPublishLimiter measures what rate limiting adds to each
// publish: the clock read and both token buckets, under the limits.
func BenchmarkPublishLimiter(b *testing.B) {
	lim := Limits{MessagesPerSecond: 1e9, BytesPerSecond: 1e12}.withDefaults()
	var l publishLimiter
	for b.Loop() {
		if v, _ := l.allowPublish(&lim, time.Now(), 120); v != allow {
			b.Fatal("throttled under the limit")
		}
	}
}
