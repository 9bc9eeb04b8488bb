package bench_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bench"
	"github.com/homemesh/homemesh/sim/simtest"
)

// FuzzSentTime checks that SentTime never panics and always finds the
// timestamp Payload wrote.
func FuzzSentTime(f *testing.F) {
	f.Add([]byte(`{"t":1}`), int64(0))
	f.Add([]byte(`{"t":}`), int64(1))
	f.Add([]byte(`"t":99999999999999999999999`), int64(-5))
	f.Fuzz(func(t *testing.T, data []byte, ts int64) {
		bench.SentTime(data)
		if ts < 0 {
			return
		}
		if got, ok := bench.SentTime(bench.Payload(len(data), ts)); !ok || got != ts {
			t.Fatalf("SentTime(Payload(_, %d)) = %d, %v", ts, got, ok)
		}
	})
}

func BenchmarkPayload(b *testing.B) {
	now := time.Now().UnixNano()
	for i := 0; b.Loop(); i++ {
		bench.Payload(i, now)
	}
}

// BenchmarkIngest runs a small ingest against an embedded broker and reports
// delivered msgs/s and latency percentiles; b.N scales the messages.
func BenchmarkIngest(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run("qos"+strconv.Itoa(int(qos)), func(b *testing.B) {
			broker := simtest.Broker(b)
			cfg := bench.IngestConfig{Broker: broker, Devices: 10, Messages: max(1, b.N/10), QoS: qos}
			sink := bench.MQTTSink(broker, "", "", "bench/+/state", qos)
			b.ResetTimer()
			res, err := bench.Ingest(context.Background(), cfg, sink)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.MsgsPerSec, "msgs/s")
			b.ReportMetric(res.LatencyMS.P50, "p50-ms")
			b.ReportMetric(res.LatencyMS.P99, "p99-ms")
			b.ReportMetric(float64(res.Lost), "lost")
		})
	}
}
