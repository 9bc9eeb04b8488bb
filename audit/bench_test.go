package audit_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/bus/natsbus"
)

// BenchmarkAppend measures appends to a file-backed log over an in-process
// connection, as the hub's auth service makes them: one at a time from one
// process (serial), and from several goroutines of two processes sharing
// the chain (parallel), which adds the retries of lost races.
func BenchmarkAppend(b *testing.B) {
	start := func(b *testing.B) *natsbus.Server {
		srv, err := natsbus.StartServer(natsbus.ServerConfig{StoreDir: b.TempDir()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(srv.Shutdown)
		return srv
	}
	connect := func(b *testing.B, srv *natsbus.Server) *natsbus.Conn {
		c, err := srv.Connect("bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return c
	}
	e := audit.Entry{Action: "login", Outcome: "success", Actor: "alice", ActorID: "u1234567890", Source: "192.0.2.7",
		Details: map[string]string{"method": "password"}}
	b.Run("serial", func(b *testing.B) {
		l := open(b, connect(b, start(b)))
		ctx := context.Background()
		for b.Loop() {
			if _, err := l.Append(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	})
	b.Run("parallel-two-processes", func(b *testing.B) {
		srv := start(b)
		logs := []*audit.Log{open(b, connect(b, srv)), open(b, connect(b, srv))}
		ctx := context.Background()
		var next atomic.Int32
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			l := logs[next.Add(1)%2]
			for pb.Next() {
				if _, err := l.Append(ctx, e); err != nil {
					b.Fatal(err, errors.Unwrap(err))
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	})
}

// BenchmarkVerify measures reading and verifying a stored log of 10,000
// records, as `homemesh audit verify` does.
func BenchmarkVerify(b *testing.B) {
	srv, err := natsbus.StartServer(natsbus.ServerConfig{StoreDir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	conn, err := srv.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(conn.Close)
	l := open(b, conn)
	ctx := context.Background()
	const records = 10000
	for i := range records {
		if _, err := l.Append(ctx, entry(i)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		res, err := l.Verify(ctx)
		if err != nil || res.Records != records {
			b.Fatal(res, err)
		}
	}
	b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
}
