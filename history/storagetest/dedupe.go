package storagetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

func testDuplicateMessageSkipped(t testing.TB, s history.Store) {
	first := batch(homeA, "states",
		msg(1, num("temp", at(1*time.Minute), 20)),
		msg(2, num("temp", at(2*time.Minute), 22)),
		msg(3, num("temp", at(3*time.Minute), 24)))
	mustWrite(t, s, first, history.WriteResult{Points: 3})
	mustWrite(t, s, batch(homeA, "states", first.Messages[1]), history.WriteResult{Duplicates: 1})
	mustWrite(t, s, first, history.WriteResult{Duplicates: 3})

	checkPoints(t, "temp", raw(t, s, homeA, "temp", at(0), at(time.Hour)), []history.Point{
		num("temp", at(1*time.Minute), 20), num("temp", at(2*time.Minute), 22), num("temp", at(3*time.Minute), 24)})
	want := []history.Stat{numStat("temp", at(0), 3, 66, 20, 24, 24, at(3*time.Minute))}
	checkStats(t, "5m", stats(t, s, homeA, "temp", history.FiveMinutes, at(0), at(time.Hour)), want)
	checkStats(t, "1h", stats(t, s, homeA, "temp", history.Hourly, at(0), at(time.Hour)), want)
}

func testSameSeqOtherStreamStored(t testing.TB, s history.Store) {
	mustWrite(t, s, batch(homeA, "states", msg(5, num("temp", at(time.Minute), 20))), history.WriteResult{Points: 1})
	mustWrite(t, s, batch(homeA, "telemetry", msg(5, num("power", at(time.Minute), 100))), history.WriteResult{Points: 1})
	mustWrite(t, s, batch(homeA, "telemetry", msg(5, num("power", at(time.Minute), 100))), history.WriteResult{Duplicates: 1})
	checkPoints(t, "temp", raw(t, s, homeA, "temp", at(0), at(time.Hour)), []history.Point{num("temp", at(time.Minute), 20)})
	checkPoints(t, "power", raw(t, s, homeA, "power", at(0), at(time.Hour)), []history.Point{num("power", at(time.Minute), 100)})
	checkStats(t, "power 1h", stats(t, s, homeA, "power", history.Hourly, at(0), at(time.Hour)),
		[]history.Stat{numStat("power", at(0), 1, 100, 100, 100, 100, at(time.Minute))})
}

func testMixedBatchStoresOnlyNew(t testing.TB, s history.Store) {
	mustWrite(t, s, batch(homeA, "states",
		msg(1, num("temp", at(1*time.Minute), 20)),
		msg(2, num("temp", at(2*time.Minute), 22)),
		msg(3, num("temp", at(3*time.Minute), 24))), history.WriteResult{Points: 3})
	// The old sequences carry other points this time, so that storing
	// them would show.
	mustWrite(t, s, batch(homeA, "states",
		msg(3, num("temp", at(10*time.Minute), 99)),
		msg(4, num("temp", at(4*time.Minute), 26)),
		msg(1, num("temp", at(11*time.Minute), 98), num("temp", at(12*time.Minute), 97)),
		msg(5, num("temp", at(5*time.Minute), 28))), history.WriteResult{Points: 2, Duplicates: 2})

	checkPoints(t, "temp", raw(t, s, homeA, "temp", at(0), at(time.Hour)), []history.Point{
		num("temp", at(1*time.Minute), 20), num("temp", at(2*time.Minute), 22), num("temp", at(3*time.Minute), 24),
		num("temp", at(4*time.Minute), 26), num("temp", at(5*time.Minute), 28)})
	checkStats(t, "5m", stats(t, s, homeA, "temp", history.FiveMinutes, at(0), at(time.Hour)), []history.Stat{
		numStat("temp", at(0), 4, 92, 20, 26, 26, at(4*time.Minute)),
		numStat("temp", at(5*time.Minute), 1, 28, 28, 28, 28, at(5*time.Minute)),
	})
	checkStats(t, "1h", stats(t, s, homeA, "temp", history.Hourly, at(0), at(time.Hour)), []history.Stat{
		numStat("temp", at(0), 5, 120, 20, 28, 28, at(5*time.Minute)),
	})
}

func testSameMicrosecondFirstWins(t testing.TB, s history.Store) {
	doorOn := text("door", homemesh.KindBinarySensor, at(time.Minute), "on")
	doorOff := text("door", homemesh.KindBinarySensor, at(11*time.Minute), "off")
	mustWrite(t, s, batch(homeA, "states",
		msg(1, num("temp", at(time.Minute), 20), doorOn, doorOff)), history.WriteResult{Points: 3})
	// A new message with points at stored microseconds: nothing stored,
	// and not a duplicate message either.
	mustWrite(t, s, batch(homeA, "states",
		msg(2, num("temp", at(time.Minute), 99), text("door", homemesh.KindBinarySensor, at(time.Minute), "off"))),
		history.WriteResult{})
	// Within one batch, across messages and within one message, the
	// first point in batch order wins.
	mustWrite(t, s, batch(homeA, "states",
		msg(3, num("temp", at(2*time.Minute), 30)),
		msg(4, num("temp", at(2*time.Minute), 31)),
		msg(5, num("temp", at(3*time.Minute), 40), num("temp", at(3*time.Minute), 41))),
		history.WriteResult{Points: 2})
	mustWrite(t, s, batch(homeA, "states", msg(2), msg(4)), history.WriteResult{Duplicates: 2})

	checkPoints(t, "temp", raw(t, s, homeA, "temp", at(0), at(time.Hour)), []history.Point{
		num("temp", at(time.Minute), 20), num("temp", at(2*time.Minute), 30), num("temp", at(3*time.Minute), 40)})
	checkPoints(t, "door", raw(t, s, homeA, "door", at(0), at(time.Hour)), []history.Point{doorOn, doorOff})
	checkStats(t, "temp 5m", stats(t, s, homeA, "temp", history.FiveMinutes, at(0), at(time.Hour)), []history.Stat{
		numStat("temp", at(0), 3, 90, 20, 40, 40, at(3*time.Minute))})
	checkStats(t, "door 1h", stats(t, s, homeA, "door", history.Hourly, at(0), at(time.Hour)), []history.Stat{
		onStat("door", at(0), 2, 10*time.Minute)})
}

func testLedgerGaps(t testing.TB, s history.Store) {
	// Sequences with gaps, as a consumer sees when another process took
	// the ones between: the gaps are not stored messages.
	big := uint64(1) << 62
	point := func(seq uint64) history.Message {
		return msg(seq, num("counter", at(time.Duration(seq%1000)*time.Second), float64(seq%1000)))
	}
	mustWrite(t, s, batch(homeA, "states", point(1), point(3), point(7), point(big)), history.WriteResult{Points: 4})
	mustWrite(t, s, batch(homeA, "states", point(2), point(big-1), point(big+1)), history.WriteResult{Points: 3})
	mustWrite(t, s, batch(homeA, "states", point(4), point(5), point(6), point(8)), history.WriteResult{Points: 4})
	var all []history.Message
	for seq := uint64(1); seq <= 8; seq++ {
		all = append(all, point(seq))
	}
	all = append(all, point(big-1), point(big), point(big+1))
	mustWrite(t, s, batch(homeA, "states", all...), history.WriteResult{Duplicates: 11})
	mustWrite(t, s, batch(homeA, "states", point(9), point(big-2), point(big+2)), history.WriteResult{Points: 3})
	if n := len(raw(t, s, homeA, "counter", at(0), at(time.Hour))); n != 14 {
		t.Errorf("%d points stored, want 14", n)
	}
}

// concurrentMessages are the messages both writers of a concurrency
// round write: a counter valued seq and a light switching on at odd and
// off at even sequences, every 5 s, all within the 5-minute bucket of t0.
func concurrentMessages(round int) []history.Message {
	var out []history.Message
	for seq := uint64(1); seq <= 40; seq++ {
		tm := at(time.Duration(seq) * 5 * time.Second)
		state := "off"
		if seq%2 == 1 {
			state = "on"
		}
		out = append(out, msg(seq,
			num(fmt.Sprintf("counter-%d", round), tm, float64(seq)),
			text(fmt.Sprintf("light-%d", round), homemesh.KindLight, tm, state)))
	}
	return out
}

// testConcurrentOverlappingWrites writes the same messages through a and b
// (the same store, or two handles on one database) at once, in
// overlapping batches, as two processes do after a redelivery.
func testConcurrentOverlappingWrites(t testing.TB, a, b history.Store) {
	const rounds = 4
	splitsA := [][2]int{{0, 10}, {10, 20}, {20, 30}, {30, 40}}
	splitsB := [][2]int{{4, 14}, {14, 24}, {24, 34}, {34, 40}, {0, 4}}
	for round := range rounds {
		msgs := concurrentMessages(round)
		stream := fmt.Sprintf("states-%d", round)
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total history.WriteResult
			errs  []error
		)
		start := make(chan struct{})
		writer := func(s history.Writer, splits [][2]int) {
			defer wg.Done()
			<-start
			for _, sp := range splits {
				res, err := s.Write(t.Context(), batch(homeA, stream, msgs[sp[0]:sp[1]]...))
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("write seqs %d..%d: %w", sp[0]+1, sp[1], err))
				}
				total.Points += res.Points
				total.Events += res.Events
				total.Duplicates += res.Duplicates
				mu.Unlock()
			}
		}
		wg.Add(2)
		go writer(a, splitsA)
		go writer(b, splitsB)
		close(start)
		wg.Wait()
		for _, err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if want := (history.WriteResult{Points: 80, Duplicates: 40}); total != want {
			t.Errorf("round %d: the two writers stored %+v in total, want %+v", round, total, want)
		}
		counter, light := fmt.Sprintf("counter-%d", round), fmt.Sprintf("light-%d", round)
		for _, r := range []history.Reader{a, b} {
			if n := len(raw(t, r, homeA, counter, at(0), at(time.Hour))); n != 40 {
				t.Errorf("round %d: %d counter points stored, want 40", round, n)
			}
			if n := len(raw(t, r, homeA, light, at(0), at(time.Hour))); n != 40 {
				t.Errorf("round %d: %d light points stored, want 40", round, n)
			}
			for _, tier := range history.StatTiers {
				checkStats(t, fmt.Sprintf("round %d counter %s", round, tier), stats(t, r, homeA, counter, tier, at(0), at(time.Hour)),
					[]history.Stat{numStat(counter, at(0), 40, 820, 1, 40, 40, at(200*time.Second))})
				// On from every odd sequence to the next: 20 × 5 s.
				checkStats(t, fmt.Sprintf("round %d light %s", round, tier), stats(t, r, homeA, light, tier, at(0), at(time.Hour)),
					[]history.Stat{onStat(light, at(0), 40, 100*time.Second)})
			}
		}
	}
}

func testSharedVisible(t testing.TB, a, b history.Store) {
	mustWrite(t, a, batch(homeA, "states", msg(1, num("temp", at(time.Minute), 20))), history.WriteResult{Points: 1})
	mustWrite(t, b, batch(homeA, "states", msg(2, num("temp", at(2*time.Minute), 22))), history.WriteResult{Points: 1})
	want := []history.Point{num("temp", at(time.Minute), 20), num("temp", at(2*time.Minute), 22)}
	checkPoints(t, "through a", raw(t, a, homeA, "temp", at(0), at(time.Hour)), want)
	checkPoints(t, "through b", raw(t, b, homeA, "temp", at(0), at(time.Hour)), want)
	wantStats := []history.Stat{numStat("temp", at(0), 2, 42, 20, 22, 22, at(2*time.Minute))}
	checkStats(t, "5m through a", stats(t, a, homeA, "temp", history.FiveMinutes, at(0), at(time.Hour)), wantStats)
	checkStats(t, "5m through b", stats(t, b, homeA, "temp", history.FiveMinutes, at(0), at(time.Hour)), wantStats)
}

func testSharedDuplicateAcrossHandles(t testing.TB, a, b history.Store) {
	first := batch(homeA, "states",
		msg(1, num("temp", at(time.Minute), 20)),
		msg(2, num("temp", at(2*time.Minute), 22)))
	mustWrite(t, a, first, history.WriteResult{Points: 2})
	mustWrite(t, b, first, history.WriteResult{Duplicates: 2})
	mustWrite(t, b, batch(homeA, "states", first.Messages[1], msg(3, num("temp", at(3*time.Minute), 24))),
		history.WriteResult{Points: 1, Duplicates: 1})
	mustWrite(t, a, batch(homeA, "states", msg(3, num("temp", at(3*time.Minute), 24))), history.WriteResult{Duplicates: 1})
	checkStats(t, "1h", stats(t, a, homeA, "temp", history.Hourly, at(0), at(time.Hour)), []history.Stat{
		numStat("temp", at(0), 3, 66, 20, 24, 24, at(3*time.Minute))})
}
