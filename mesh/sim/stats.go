package sim

import (
	"encoding/json"
	"math"
	"slices"
)

// Summary is a distribution's tail: nearest-rank percentiles of N samples.
// It encodes as {"p50","p95","p99","max","n"}, the percentiles null when
// there were no samples.
type Summary struct {
	P50, P95, P99, Max float64
	N                  int
}

// Summarize returns the percentiles of samples, which it sorts in place.
func Summarize(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	return Summary{
		P50: Percentile(samples, 50),
		P95: Percentile(samples, 95),
		P99: Percentile(samples, 99),
		Max: samples[len(samples)-1],
		N:   len(samples),
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted: the
// smallest sample that at least p % of the samples do not exceed.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// MarshalJSON writes the summary with seconds rounded to four decimals.
func (s Summary) MarshalJSON() ([]byte, error) {
	type out struct {
		P50 *float64 `json:"p50"`
		P95 *float64 `json:"p95"`
		P99 *float64 `json:"p99"`
		Max *float64 `json:"max"`
		N   int      `json:"n"`
	}
	o := out{N: s.N}
	if s.N > 0 {
		o.P50, o.P95, o.P99, o.Max = round4p(s.P50), round4p(s.P95), round4p(s.P99), round4p(s.Max)
	}
	return json.Marshal(o)
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

func round4p(x float64) *float64 {
	r := round4(x)
	return &r
}
