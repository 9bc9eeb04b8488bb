package history

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
)

// yearStore answers every history query with one fixed page.
type yearStore struct {
	Store
	stats []Stat
}

func (y yearStore) History(ctx context.Context, q HistoryQuery) (HistoryPage, error) {
	return HistoryPage{Stats: y.stats}, nil
}

// BenchmarkHistoryYearReply times the service's side of a year of hourly
// statistics, without the store and the bus: the records' JSON, as the
// service writes and measures it. The values are a sensor's, one reading
// of one decimal a minute, so the means have all their digits.
func BenchmarkHistoryYearReply(b *testing.B) {
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-8760 * time.Hour)
	r := rand.New(rand.NewPCG(1, 2))
	stats := make([]Stat, 0, 8760)
	for i := range 8760 {
		st := Stat{Entity: "sensor-e", Start: t0.Add(time.Duration(i) * time.Hour), Count: 60, NumCount: 60}
		for j := range 60 {
			v := float64(200+r.IntN(60)) / 10
			st.Sum += v
			if j == 0 || v < st.Min {
				st.Min = v
			}
			st.Max = max(st.Max, v)
			st.Last = v
		}
		stats = append(stats, st)
	}
	s := &Service{cfg: Config{Home: "h"}, store: yearStore{stats: stats}, log: slog.New(slog.DiscardHandler),
		now: time.Now, kinds: map[string]homemesh.EntityKind{}}
	req := HistoryRequest{EntityID: "sensor-e", From: t0, To: t0.Add(8760 * time.Hour), Resolution: Hourly, Limit: MaxLimit}
	b.ReportAllocs()
	for b.Loop() {
		data, err := s.history(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}
