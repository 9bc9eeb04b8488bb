package sim

import (
	"encoding/json"
	"testing"
)

func TestSummarize(t *testing.T) {
	var samples []float64
	for i := 100; i >= 1; i-- {
		samples = append(samples, float64(i))
	}
	s := Summarize(samples)
	if s.P50 != 50 || s.P95 != 95 || s.P99 != 99 || s.Max != 100 || s.N != 100 {
		t.Fatalf("1..100: %+v", s)
	}
	if s := Summarize([]float64{7}); s.P50 != 7 || s.P99 != 7 || s.Max != 7 {
		t.Fatalf("one sample: %+v", s)
	}
	// Nearest rank: of 10 samples, p95 and p99 are both the largest.
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if s := Summarize(ten); s.P50 != 5 || s.P95 != 10 || s.P99 != 10 {
		t.Fatalf("1..10: %+v", s)
	}
	b, _ := json.Marshal(Summarize(nil))
	if string(b) != `{"p50":null,"p95":null,"p99":null,"max":null,"n":0}` {
		t.Fatalf("no samples: %s", b)
	}
	b, _ = json.Marshal(Summarize([]float64{1.23456}))
	if string(b) != `{"p50":1.2346,"p95":1.2346,"p99":1.2346,"max":1.2346,"n":1}` {
		t.Fatalf("one sample: %s", b)
	}
}
