package bench

import (
	"math"
	"math/bits"
	"sync"
)

// subBits sets the histogram's resolution: 2^subBits buckets per power of
// two, so a recorded value is known to within 1/2^(subBits-1) (about 1.6%).
const subBits = 7

// histBuckets covers values up to 2^47 ns (about 39 hours); larger values
// land in the last bucket.
const histBuckets = (47-subBits+1)<<(subBits-1) + 1<<subBits

// histogram is a fixed-size log-linear histogram of durations in
// nanoseconds, safe for concurrent use. Its memory is constant however many
// values it records.
type histogram struct {
	mu     sync.Mutex
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 1<<subBits {
		return int(u)
	}
	shift := bits.Len64(u) - subBits
	i := shift<<(subBits-1) + int(u>>shift)
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketMid returns a representative value of bucket i: the middle of the
// range of values it holds.
func bucketMid(i int) float64 {
	if i < 1<<subBits {
		return float64(i)
	}
	shift := (i - 1<<(subBits-1)) >> (subBits - 1)
	mant := i - shift<<(subBits-1)
	lo := float64(uint64(mant) << shift)
	return lo + float64(uint64(1)<<shift)/2
}

func (h *histogram) record(v int64) {
	h.mu.Lock()
	h.counts[bucketOf(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
	h.mu.Unlock()
}

// quantile returns the value at quantile q (0..1), or 0 when empty. It never
// exceeds the largest recorded value.
func (h *histogram) quantile(q float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == histBuckets-1 {
				return float64(h.max) // the overflow bucket has no upper bound
			}
			return math.Min(bucketMid(i), float64(h.max))
		}
	}
	return float64(h.max)
}

func (h *histogram) maxValue() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}
