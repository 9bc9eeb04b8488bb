package sqlite

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// loadGen makes batches of one-point messages: each batch gives the next
// point of every one of its entities, a minute after the previous one;
// numeric entities follow a random walk, and every tenth entity (when
// binary is set) is a light switching on and off.
type loadGen struct {
	entities int
	binary   bool
	interval time.Duration // between two points of one entity
	seq      uint64
	step     int
	rng      *rand.Rand
	values   []float64
	names    []string
	devices  []string
}

func newLoadGen(entities int, binary bool) *loadGen {
	g := &loadGen{entities: entities, binary: binary, interval: time.Minute, rng: rand.New(rand.NewPCG(1, 2)),
		values: make([]float64, entities), names: make([]string, entities), devices: make([]string, entities)}
	for i := range g.values {
		g.values[i] = 20
		g.names[i] = fmt.Sprintf("sensor.e%04d", i)
		g.devices[i] = fmt.Sprintf("dev%04d", i/4)
	}
	return g
}

func (g *loadGen) batch(start time.Time, points int) history.Batch {
	b := history.Batch{Home: "h1", Stream: "STATES", Messages: make([]history.Message, 0, points)}
	for range points {
		e := g.step % g.entities
		at := start.Add(time.Duration(g.step/g.entities) * g.interval)
		g.step++
		g.seq++
		p := history.Point{Entity: g.names[e], Device: g.devices[e], Kind: homemesh.KindSensor, Time: at}
		if g.binary && e%10 == 0 {
			p.Kind = homemesh.KindLight
			p.State = "off"
			if g.rng.IntN(2) == 0 {
				p.State = "on"
			}
		} else {
			g.values[e] = math.Round((g.values[e]+g.rng.NormFloat64()*0.1)*100) / 100
			p.Numeric, p.Value = true, g.values[e]
		}
		b.Messages = append(b.Messages, history.Message{Seq: g.seq, Points: []history.Point{p}})
	}
	return b
}

func openBench(b *testing.B) (*Store, string) {
	b.Helper()
	path := b.TempDir() + "/history.db"
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, path
}

// BenchmarkWrite stores 1000-point batches, one point per message, from
// 100 or 1000 entities. Besides points/s it reports the process's CPU
// time per point, which varies less than wall time on a shared machine.
func BenchmarkWrite(b *testing.B) {
	for _, tt := range []struct {
		name     string
		entities int
		binary   bool
		batch    int
		interval time.Duration
	}{
		{"entities=100", 100, false, 1000, time.Minute},
		{"entities=1000", 1000, false, 1000, time.Minute},
		{"entities=1000,tenth-binary", 1000, true, 1000, time.Minute},
		{"entities=1000,batch=5000", 1000, false, 5000, time.Minute},
		// 50 points/s per entity: 50,000 points/s of 1000 entities in
		// real time, as a sustained ingest benchmark sends them.
		{"entities=1000,interval=20ms", 1000, false, 1000, 20 * time.Millisecond},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s, _ := openBench(b)
			g := newLoadGen(tt.entities, tt.binary)
			g.interval = tt.interval
			ctx := context.Background()
			points := 0
			cpu := cpuTime()
			for b.Loop() {
				res, err := s.Write(ctx, g.batch(t0, tt.batch))
				if err != nil {
					b.Fatal(err)
				}
				points += res.Points
			}
			b.ReportMetric(float64(points)/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(points), "cpu-ns/point")
		})
	}
}

// cpuTime is the user and system time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBytesPerPoint reports the file size per raw point after storing
// a million points of 1000 entities (with their statistics, entities and
// ledger), running Purge once both days they span are closed, so that the
// hourly tier is rolled up and packed as a hub keeps it, and checkpointing
// the WAL into the file. 1h-B/hour is the hourly tier's size per bucket.
func BenchmarkBytesPerPoint(b *testing.B) {
	total := 1_000_000
	if testing.Short() {
		total = 10_000
	}
	for b.Loop() {
		s, path := openBench(b)
		g := newLoadGen(1000, true)
		ctx := context.Background()
		for range total / 1000 {
			if _, err := s.Write(ctx, g.batch(t0, 1000)); err != nil {
				b.Fatal(err)
			}
		}
		maintainBench(b, s, history.Day(t0).Add(2*24*time.Hour+time.Hour))
		if _, err := s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size())/float64(total), "B/point")
		// The raw points' own share, from SQLite's page statistics.
		var rawBytes int64
		if err := s.w.QueryRow(`SELECT sum(pgsize) FROM dbstat WHERE name = 'points'`).Scan(&rawBytes); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rawBytes)/float64(total), "raw-B/point")
		b.ReportMetric(hourlyBytesPerBucket(b, s), "1h-B/hour")
		s.Close()
	}
}

// maintainBench runs Purge at now, keeping everything, until it has no
// more work.
func maintainBench(b *testing.B, s *Store, now time.Time) {
	b.Helper()
	for {
		res, err := s.Purge(context.Background(), now, history.RetentionPolicy{}, 100_000)
		if err != nil {
			b.Fatal(err)
		}
		if !res.More {
			return
		}
	}
}

// BenchmarkHistory times the two queries the charts make: 24 hours of raw
// 1-minute points of one entity among 100 (two days of data each), and a
// year of hourly statistics, packed as Purge keeps closed days. p99-µs is
// the 99th percentile of one query.
func BenchmarkHistory(b *testing.B) {
	s, _ := openBench(b)
	ctx := context.Background()
	g := newLoadGen(100, false)
	for range 2 * 1440 * 100 / 1000 {
		if _, err := s.Write(ctx, g.batch(t0, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	// A year of one point per hour for a second entity.
	year := t0.AddDate(-1, 0, 0)
	var msgs []history.Message
	for h := range 365 * 24 {
		msgs = append(msgs, history.Message{Seq: uint64(h + 1), Points: []history.Point{
			{Entity: "sensor.energy", Kind: homemesh.KindSensor, Time: year.Add(time.Duration(h) * time.Hour), Numeric: true, Value: float64(h)}}})
	}
	for c := range slices.Chunk(msgs, 1000) {
		if _, err := s.Write(ctx, history.Batch{Home: "h1", Stream: "YEAR", Messages: c}); err != nil {
			b.Fatal(err)
		}
	}
	// Roll the hours up into the hourly tier and pack the closed days, as
	// the service's periodic Purge does.
	maintainBench(b, s, t0.Add(3*24*time.Hour))
	var unpacked, days int
	if err := s.r.QueryRow(`SELECT (SELECT count(*) FROM stats_1h WHERE entity_id = e.id), (SELECT count(*) FROM stats_1h_days WHERE entity_id = e.id)
		FROM entities e WHERE entity = 'sensor.energy'`).Scan(&unpacked, &days); err != nil {
		b.Fatal(err)
	}
	if unpacked != 0 || days != 366 {
		b.Fatalf("the year is %d hourly rows and %d packed days, want 0 and 366", unpacked, days)
	}
	for _, tt := range []struct {
		name string
		q    history.HistoryQuery
		rows int
	}{
		{"raw-24h", history.HistoryQuery{Home: "h1", Entity: "sensor.e0042", From: t0.Add(12 * time.Hour), To: t0.Add(36 * time.Hour),
			Resolution: history.Raw, Limit: history.MaxLimit}, 1440},
		{"hourly-1y", history.HistoryQuery{Home: "h1", Entity: "sensor.energy", From: year, To: t0,
			Resolution: history.Hourly, Limit: history.MaxLimit}, 365 * 24},
	} {
		b.Run(tt.name, func(b *testing.B) {
			var times []time.Duration
			cpu := cpuTime()
			for b.Loop() {
				start := time.Now()
				page, err := s.History(ctx, tt.q)
				times = append(times, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if n := len(page.Points) + len(page.Stats); n != tt.rows {
					b.Fatalf("%d rows, want %d", n, tt.rows)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(len(times)), "cpu-µs/op")
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// hourlyBytesPerBucket returns the size of the hourly tier, its tables and
// indexes, per hourly bucket stored.
func hourlyBytesPerBucket(b *testing.B, s *Store) float64 {
	b.Helper()
	var size, buckets int64
	if err := s.w.QueryRow(`SELECT sum(pgsize) FROM dbstat WHERE name IN
		('stats_1h', 'stats_1h_start', 'stats_1h_days', 'sqlite_autoindex_stats_1h_days_1')`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	if err := s.w.QueryRow(`SELECT count(*) FROM stats_1h`).Scan(&buckets); err != nil {
		b.Fatal(err)
	}
	rows, err := s.w.Query(`SELECT day, data FROM stats_1h_days`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var hours []history.Stat
	for rows.Next() {
		var day int64
		var data []byte
		if err := rows.Scan(&day, &data); err != nil {
			b.Fatal(err)
		}
		if hours, err = history.UnpackHours(hours[:0], "", fromMicros(day), data); err != nil {
			b.Fatal(err)
		}
		buckets += int64(len(hours))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return float64(size) / float64(buckets)
}
