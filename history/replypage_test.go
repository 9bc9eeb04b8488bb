package history

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEncodeChunksCutsWhereTheLoopDoes encodes pages of records of random
// sizes, some failing, in one chunk and in several, and wants the same
// bytes, the same count and the same skipped records: the parallel path
// must end a page exactly where the sequential one does.
func TestEncodeChunksCutsWhereTheLoopDoes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for round := range 40 {
		n := 1 + r.IntN(6000)
		sizes := make([]int, n)
		failing := map[int]bool{}
		typical := 1 + r.IntN(400)
		for i := range sizes {
			sizes[i] = 1 + r.IntN(typical)
			if r.IntN(50) == 0 {
				failing[i] = true
			}
		}
		if round%5 == 0 {
			sizes[r.IntN(n)] = maxReplyBytes // a record larger than a page
		}
		rec := func(b []byte, i int) ([]byte, error) {
			if failing[i] {
				return append(b, "partial"...), errors.New("not encodable")
			}
			return append(b, strings.Repeat(string(rune('a'+i%26)), sizes[i])...), nil
		}
		head := []byte(`{"points":[`)
		run := func(chunks int) (string, int, []int) {
			var skipped []int
			out, taken := encodeChunks(slices.Clone(head), len(head), n, chunks, rec, func(i int, err error) { skipped = append(skipped, i) })
			slices.Sort(skipped)
			return string(out), taken, skipped
		}
		wantOut, wantTaken, wantSkipped := run(1)
		for _, chunks := range []int{2, 3, 4} {
			t.Run(fmt.Sprintf("round %d in %d chunks", round, chunks), func(t *testing.T) {
				out, taken, skipped := run(chunks)
				if taken != wantTaken || out != wantOut || !slices.Equal(skipped, wantSkipped) {
					t.Fatalf("%d records: took %d (%d bytes, skipped %v), the loop took %d (%d bytes, skipped %v)",
						n, taken, len(out), skipped, wantTaken, len(wantOut), wantSkipped)
				}
			})
		}
		if len(wantOut) >= maxReplyBytes+1 && wantTaken > 1 {
			t.Fatalf("round %d: a page of %d bytes passed the limit", round, len(wantOut))
		}
	}
}

// FuzzStatRecord holds appendStatRecord to the record the service made
// of a statistics bucket before, encoded by PointRecord.appendJSON.
func FuzzStatRecord(f *testing.F) {
	f.Add(int64(60), int64(60), 1290.5, 20.25, 23.75, 22.0, int64(0), false, int64(1764410400))
	f.Add(int64(3), int64(0), 0.0, 0.0, 0.0, 0.0, int64(1800_000_000), true, int64(0))
	f.Add(int64(0), int64(0), 0.0, 0.0, 0.0, 0.0, int64(0), false, int64(-62135596800))
	f.Fuzz(func(t *testing.T, count, numCount int64, sum, lo, hi, last float64, onMicros int64, alwaysOnTime bool, unix int64) {
		st := Stat{Start: time.Unix(unix%(1<<40), 0).UTC(), Count: count, NumCount: numCount, Sum: sum, Min: lo, Max: hi, Last: last, OnMicros: onMicros}
		rec := PointRecord{Time: st.Start.UTC(), Count: st.Count}
		var nums [5]float64
		if st.NumCount > 0 {
			nums[0], nums[1], nums[2], nums[3] = st.Mean(), st.Min, st.Max, st.Last
			rec.Mean, rec.Min, rec.Max, rec.Last = &nums[0], &nums[1], &nums[2], &nums[3]
		}
		if st.OnMicros != 0 || alwaysOnTime {
			nums[4] = float64(st.OnMicros) / 1e6
			rec.OnSeconds = &nums[4]
		}
		want, wantErr := rec.appendJSON(nil)
		got, err := appendStatRecord(nil, &st, alwaysOnTime)
		if (err != nil) != (wantErr != nil) || string(got) != string(want) {
			t.Fatalf("appendStatRecord(%+v) = %s, %v; PointRecord writes %s, %v", st, got, err, want, wantErr)
		}
		if err == nil && math.IsNaN(st.Mean()) && st.NumCount > 0 {
			t.Fatalf("NaN mean encoded: %s", got)
		}
	})
}
