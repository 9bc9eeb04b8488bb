package postgres

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// benchBatch returns a batch of n one-point messages: numeric points of
// 1000 entities (one in ten a binary state), each entity one point per
// minute from start. seq is the first sequence.
func benchBatch(home string, seq uint64, start time.Time, n int) history.Batch {
	b := history.Batch{Home: home, Stream: "states", Messages: make([]history.Message, n)}
	const entities = 1000
	for i := range n {
		e := (int(seq) + i) % entities
		minute := (int(seq) + i) / entities
		at := start.Add(time.Duration(minute)*time.Minute + time.Duration(e)*time.Millisecond)
		p := history.Point{Entity: fmt.Sprintf("sensor.e%04d", e), Device: fmt.Sprintf("dev%03d", e/4), Kind: homemesh.KindSensor, Time: at}
		if e%10 == 0 {
			p.Kind, p.State = homemesh.KindBinarySensor, []string{"on", "off"}[minute%2]
		} else {
			p.Numeric, p.Value = true, 20+float64((e*7+minute)%100)/10
		}
		b.Messages[i] = history.Message{Seq: seq + uint64(i), Points: []history.Point{p}}
	}
	return b
}

func openBench(b *testing.B) *Store {
	b.Helper()
	s, _ := openFresh(b)
	return s
}

// cpuMeter measures the CPU time spent by this process and by the
// PostgreSQL backends serving a store: on a loaded machine, CPU time per
// point says more than wall time.
type cpuMeter struct {
	s     *Store
	start map[int]time.Duration
	self  time.Duration
}

func processCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *cpuMeter) backends() map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, c := range m.s.pool.AcquireAllIdle(context.Background()) {
		pid := int(c.Conn().PgConn().PID())
		out[pid] = processCPU(strconv.Itoa(pid))
		c.Release()
	}
	return out
}

func startCPU(s *Store) *cpuMeter {
	m := &cpuMeter{s: s}
	m.start, m.self = m.backends(), selfCPU()
	return m
}

// report adds the CPU microseconds per point of the server and the client.
func (m *cpuMeter) report(b *testing.B, points int) { m.reportPer(b, points, "point") }

// reportPer adds the CPU microseconds of the server and the client per
// one of n things done.
func (m *cpuMeter) reportPer(b *testing.B, n int, thing string) {
	var server time.Duration
	for pid, t := range m.backends() {
		server += t - m.start[pid]
	}
	client := selfCPU() - m.self
	b.ReportMetric(float64(server.Microseconds())/float64(n), "pg-cpu-µs/"+thing)
	b.ReportMetric(float64(client.Microseconds())/float64(n), "go-cpu-µs/"+thing)
}

// BenchmarkWrite measures sustained writes of one-point messages, the raw
// points sent by COPY straight into the partitions (copy: the store's
// way), by COPY into the staging table and INSERT … SELECT … ON CONFLICT
// DO NOTHING (staging: the store's way once a batch meets a stored point),
// or as arrays in one INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING
// (unnest); by one writer, or by four at once, each for its own home.
func BenchmarkWrite(b *testing.B) {
	testDSN(b)
	for _, ins := range []struct {
		name   string
		direct bool
		f      pointInserter
	}{{"copy", true, insertPointsCopy}, {"staging", false, insertPointsCopy}, {"unnest", false, insertPointsUnnest}} {
		for _, size := range []int{1000, 5000} {
			for _, writers := range []int{1, 4} {
				b.Run(fmt.Sprintf("%s/batch=%d/writers=%d", ins.name, size, writers), func(b *testing.B) {
					s := openBench(b)
					s.direct, s.insert = ins.direct, ins.f
					start := time.Now().Add(-24 * time.Hour).Truncate(24 * time.Hour)
					// The batches are made before the clock starts: only
					// the store is measured. Each writer stands for the
					// consumer of another home.
					batches := make([]chan history.Batch, writers)
					for w := range writers {
						batches[w] = make(chan history.Batch, b.N)
						if _, err := s.Write(context.Background(), benchBatch(fmt.Sprintf("bench%d", w), 1, start, size)); err != nil {
							b.Fatal(err)
						}
					}
					for i := range b.N {
						batches[i%writers] <- benchBatch(fmt.Sprintf("bench%d", i%writers), uint64(size*(i/writers+1)+1), start, size)
					}
					for _, c := range batches {
						close(c)
					}
					cpu := startCPU(s)
					b.ResetTimer()
					var wg sync.WaitGroup
					for w := range writers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for bt := range batches[w] {
								if _, err := s.Write(context.Background(), bt); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					b.StopTimer()
					b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "points/s")
					cpu.report(b, b.N*size)
				})
			}
		}
	}
}

// BenchmarkBytesPerPoint writes a day of one-minute points of 1000
// entities (1.44 million) and reports the on-disk size of the raw
// partitions, indexes included, per point.
func BenchmarkBytesPerPoint(b *testing.B) {
	testDSN(b)
	for range b.N {
		s := openBench(b)
		start := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
		const size, total = 5000, 1440 * 1000
		for seq := 1; seq <= total; seq += size {
			if _, err := s.Write(context.Background(), benchBatch("bench", uint64(seq), start, size)); err != nil {
				b.Fatal(err)
			}
		}
		ctx := context.Background()
		if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE points"); err != nil {
			b.Fatal(err)
		}
		var bytes, heap, points int64
		err := s.pool.QueryRow(ctx, `
			SELECT sum(pg_total_relation_size(i.inhrelid)), sum(pg_relation_size(i.inhrelid)), (SELECT count(*) FROM points)
			FROM pg_inherits i WHERE i.inhparent = to_regclass('points')`).Scan(&bytes, &heap, &points)
		if err != nil {
			b.Fatal(err)
		}
		if points != total {
			b.Fatalf("stored %d points, want %d", points, total)
		}
		b.ReportMetric(float64(bytes)/float64(points), "B/point")
		b.ReportMetric(float64(heap)/float64(points), "heap-B/point")
	}
}

// BenchmarkHistory measures the two queries of the charts: 24 hours of
// one entity's one-minute raw points (1440), and a year of its hourly
// statistics (8760 buckets), among 50 other entities. The raw data older
// than ten days is purged first and the closed days' hours are packed, as
// in production. It reports the p50 and p99 latency of each, and the CPU
// time it costs the server and the client, which a loaded machine
// disturbs less.
func BenchmarkHistory(b *testing.B) {
	testDSN(b)
	s := openBench(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	yearAgo := now.Add(-365 * 24 * time.Hour)
	// A year of ten-minute points, then 24 hours of one-minute ones.
	seq := uint64(1)
	var msgs []history.Message
	flush := func() {
		if len(msgs) == 0 {
			return
		}
		if _, err := s.Write(ctx, history.Batch{Home: "bench", Stream: "states", Messages: msgs}); err != nil {
			b.Fatal(err)
		}
		msgs = nil
	}
	add := func(entity string, at time.Time, v float64) {
		msgs = append(msgs, history.Message{Seq: seq, Points: []history.Point{{Entity: entity, Kind: homemesh.KindSensor, Time: at, Numeric: true, Value: v}}})
		seq++
		if len(msgs) == 5000 {
			flush()
		}
	}
	for at := yearAgo; at.Before(now.Add(-24 * time.Hour)); at = at.Add(10 * time.Minute) {
		add("sensor.chart", at, float64(at.Unix()%1000)/10)
	}
	flush()
	for res, err := s.Purge(ctx, now, history.DefaultRetention(), 100000); res.More || err != nil; res, err = s.Purge(ctx, now, history.DefaultRetention(), 100000) {
		if err != nil {
			b.Fatal(err)
		}
	}
	for at := now.Add(-24 * time.Hour); at.Before(now); at = at.Add(time.Minute) {
		add("sensor.chart", at, float64(at.Unix()%1000)/10)
		for e := range 50 {
			add(fmt.Sprintf("sensor.other%02d", e), at.Add(time.Duration(e)*time.Millisecond), float64(e))
		}
	}
	flush()
	// Pack the closed days, expiring nothing more.
	for res, err := s.Purge(ctx, now, history.RetentionPolicy{}, 100000); res.More || err != nil; res, err = s.Purge(ctx, now, history.RetentionPolicy{}, 100000) {
		if err != nil {
			b.Fatal(err)
		}
	}
	var days int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM stats_1h_days d JOIN entities e ON e.id = d.entity_id WHERE e.entity = 'sensor.chart'").Scan(&days); err != nil || days < 365 {
		b.Fatalf("%d days of the chart packed (%v), want a year's", days, err)
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}

	for _, q := range []struct {
		name string
		q    history.HistoryQuery
		rows int
	}{
		{"raw24h", history.HistoryQuery{Home: "bench", Entity: "sensor.chart", From: now.Add(-24 * time.Hour), To: now, Resolution: history.Raw, Limit: history.MaxLimit}, 1440},
		{"hourly1y", history.HistoryQuery{Home: "bench", Entity: "sensor.chart", From: yearAgo.Truncate(time.Hour), To: now, Resolution: history.Hourly, Limit: history.MaxLimit}, 8760},
	} {
		b.Run(q.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			cpu := startCPU(s)
			for range b.N {
				t := time.Now()
				page, err := s.History(ctx, q.q)
				lat = append(lat, time.Since(t))
				if err != nil {
					b.Fatal(err)
				}
				if n := len(page.Points) + len(page.Stats); n < q.rows-1 || n > q.rows+1 {
					b.Fatalf("%d rows, want %d", n, q.rows)
				}
			}
			cpu.reportPer(b, b.N, "op")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// insertPointsUnnest sends the points as arrays in one INSERT: the
// batched-insert alternative BenchmarkWrite compares with COPY.
func insertPointsUnnest(ctx context.Context, tx pgx.Tx, pts []rawPoint) ([]pointKey, error) {
	n := len(pts)
	ids, ts := make([]int32, n), make([]time.Time, n)
	values, states, attrs := make([]*float64, n), make([]*string, n), make([][]byte, n)
	for i, rp := range pts {
		ids[i], ts[i] = rp.id, rp.p.Time
		if rp.p.Numeric {
			values[i] = &pts[i].p.Value
		}
		if rp.p.State != "" {
			states[i] = &pts[i].p.State
		}
		if len(rp.p.Attrs) > 0 {
			attrs[i] = rp.p.Attrs
		}
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO points (entity_id, ts, value, state, attrs)
		SELECT entity_id, ts, value, state, attrs
		FROM unnest($1::integer[], $2::timestamptz[], $3::float8[], $4::text[], $5::bytea[])
			WITH ORDINALITY AS t(entity_id, ts, value, state, attrs, ord)
		ORDER BY entity_id, ts, ord
		ON CONFLICT DO NOTHING
		RETURNING entity_id, ts`, ids, ts, values, states, attrs)
	if err != nil {
		return nil, fmt.Errorf("insert points: %w", err)
	}
	return scanKeys(rows, n)
}
