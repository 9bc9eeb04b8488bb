package bench

import (
	"math"
	"testing"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		q      float64
		want   float64
	}{
		{"small exact", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5},
		{"max is exact", []int64{10, 1_000_000_007}, 1, 1_000_000_007},
		{"p99 of a ramp", ramp(1000, 1000), 0.99, 990_000},
		{"p50 of a ramp", ramp(1000, 1000), 0.5, 500_000},
		{"negative clamps to zero", []int64{-5}, 0.5, 0},
		{"huge lands in last bucket", []int64{math.MaxInt64}, 0.5, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			got := h.quantile(tt.q)
			if rel := math.Abs(got-tt.want) / math.Max(tt.want, 1); rel > 0.02 {
				t.Errorf("quantile(%v) = %v, want %v within 2%%", tt.q, got, tt.want)
			}
		})
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
}

func TestBucketRoundTrip(t *testing.T) {
	for v := int64(0); v < 1<<40; v = v*3/2 + 1 {
		mid := bucketMid(bucketOf(v))
		if rel := math.Abs(mid-float64(v)) / math.Max(float64(v), 1); rel > 0.01 {
			t.Fatalf("value %d lands in bucket %d with middle %v (%.3f off)", v, bucketOf(v), mid, rel)
		}
	}
}

func ramp(n int, step int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i+1) * step
	}
	return out
}
