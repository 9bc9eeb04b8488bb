package registry_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
)

// BenchmarkReports measures reports per second from publish to the
// published state change, over 100 entities.
func BenchmarkReports(b *testing.B) {
	ctx := context.Background()
	srv := bustest.Server(b)
	start(b, srv)
	conn := bustest.Conn(b, srv)
	client := registry.NewClient(conn, home)
	const entities = 100
	if _, err := client.PutDevice(ctx, sampleDevice()); err != nil {
		b.Fatal(err)
	}
	for i := range entities {
		e := sampleEntity()
		e.ID, e.UniqueID = fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i)
		if _, err := client.PutEntity(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	var got atomic.Int64
	sub, err := conn.NATS().Subscribe(bus.StateWildcard(home), func(*nats.Msg) { got.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		if err := client.Report(homemesh.StateUpdate{DeviceID: "kitchen-plug", EntityID: fmt.Sprintf("e%d", i%entities),
			Value: float64(i), HasValue: true}); err != nil {
			b.Fatal(err)
		}
	}
	for got.Load() < int64(b.N) && time.Since(t0) < time.Minute {
		time.Sleep(time.Millisecond) // a benchmark drains; tests never sleep to wait
	}
	b.ReportMetric(float64(got.Load())/time.Since(t0).Seconds(), "changes/s")
}
