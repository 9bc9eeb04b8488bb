package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/history"
)

// Defaults for HistoryConfig fields left at their zero value.
const (
	DefaultHistoryDuration   = 10 * time.Second
	DefaultHistoryEntities   = 1000
	DefaultPointsPerMessage  = 100
	DefaultHistoryQueries    = 200
	DefaultHistoryPublishers = 2
	DefaultHistoryInFlight   = 4096
	DefaultHistoryDrain      = 5 * time.Minute
	// DefaultMaxBacklog is a quarter of a home's STATES and TELEMETRY streams'
	// 512 MiB: far enough ahead to keep the service's batches full, far
	// enough from the limit that no unconsumed message is discarded.
	DefaultMaxBacklog = 128 << 20
)

// Bounds on a history run.
const (
	MaxHistoryEntities   = 100_000
	MaxPointsPerMessage  = 1000
	MaxHistoryQueries    = 100_000
	MaxHistoryPublishers = 64
)

// drainStall ends the wait for the store early when it has stored nothing
// new for this long: the points still missing will not come.
const drainStall = 30 * time.Second

// HistoryConfig describes one run of the history benchmark.
type HistoryConfig struct {
	// Store is the backend under test, StoreSQLite or StorePostgres.
	Store string
	// DSN names the PostgreSQL server on which the run creates (and then
	// drops) a database of its own.
	DSN string
	// Duration is how long the publishers send.
	Duration time.Duration
	// Entities is the number of simulated entities, in devices of four.
	Entities int
	// PointsPerMessage is how many state changes one message of the
	// home's state log carries (the registry logs each batch it commits as
	// one message, so under load this is its batch), or, with Telemetry,
	// how many points a device's telemetry message carries.
	PointsPerMessage int
	// Telemetry publishes telemetry instead of state changes.
	Telemetry bool
	// Queries is how many times each query is timed (0 skips them).
	Queries int
	// Publishers is the number of publishing connections, and InFlight
	// the bound on publishes awaiting JetStream's ack, shared among them.
	Publishers, InFlight int
	// MaxBacklog bounds the bytes published and not yet stored, so that
	// publishers run at the store's pace instead of overrunning the
	// stream; negative leaves them unbounded: as fast as JetStream
	// accepts.
	MaxBacklog int64
	// BatchSize and BatchWait are passed to the history service; zero
	// keeps the service's defaults.
	BatchSize int
	BatchWait time.Duration
	// Drain bounds the wait for the store to catch up after the last
	// publish.
	Drain time.Duration
	// Log receives the service's logs; nil discards them.
	Log *slog.Logger
}

func (c HistoryConfig) withDefaults() (HistoryConfig, error) {
	if c.Duration == 0 {
		c.Duration = DefaultHistoryDuration
	}
	if c.Entities == 0 {
		c.Entities = DefaultHistoryEntities
	}
	if c.PointsPerMessage == 0 {
		c.PointsPerMessage = DefaultPointsPerMessage
	}
	if c.Publishers == 0 {
		c.Publishers = DefaultHistoryPublishers
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultHistoryInFlight
	}
	if c.Drain == 0 {
		c.Drain = DefaultHistoryDrain
	}
	switch {
	case c.MaxBacklog == 0:
		c.MaxBacklog = DefaultMaxBacklog
	case c.MaxBacklog < 0:
		c.MaxBacklog = 0
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Store != StoreSQLite && c.Store != StorePostgres:
		return c, homemesh.Invalid("store", "%q is not %s or %s", c.Store, StoreSQLite, StorePostgres)
	case c.Duration < 0 || c.Duration > MaxDuration:
		return c, homemesh.Invalid("duration", "must be above 0 and at most %v", MaxDuration)
	case c.Entities < 0 || c.Entities > MaxHistoryEntities:
		return c, homemesh.Invalid("entities", "must be 1 to %d", MaxHistoryEntities)
	case c.PointsPerMessage < 0 || c.PointsPerMessage > MaxPointsPerMessage:
		return c, homemesh.Invalid("points_per_message", "must be 1 to %d", MaxPointsPerMessage)
	case c.Queries < 0 || c.Queries > MaxHistoryQueries:
		return c, homemesh.Invalid("queries", "must be 0 to %d", MaxHistoryQueries)
	case c.Publishers < 0 || c.Publishers > MaxHistoryPublishers:
		return c, homemesh.Invalid("publishers", "must be 1 to %d", MaxHistoryPublishers)
	case c.InFlight < c.Publishers:
		return c, homemesh.Invalid("in_flight", "must be at least one per publisher")
	case c.BatchSize < 0 || c.BatchWait < 0 || c.Drain < 0:
		return c, homemesh.Invalid("batch_size", "batch size, batch wait and drain must not be negative")
	}
	return c, nil
}

// HistoryResult is the outcome of one history run, printed as JSON.
type HistoryResult struct {
	Store            string  `json:"store"`
	Database         string  `json:"database"`
	Path             string  `json:"path"`
	Entities         int     `json:"entities"`
	PointsPerMessage int     `json:"points_per_message"`
	Publishers       int     `json:"publishers"`
	InFlight         int     `json:"in_flight"`
	MaxBacklogBytes  int64   `json:"max_backlog_bytes"` // 0: unbounded
	DurationSeconds  float64 `json:"duration_seconds"`  // the publishing window asked for

	Ingest  HistoryIngest  `json:"ingest"`
	Disk    HistoryDisk    `json:"disk"`
	Queries HistoryQueries `json:"queries"`
}

// HistoryIngest is what the sustained ingest achieved.
type HistoryIngest struct {
	PublishedMessages int `json:"published_messages"` // accepted (acked) by JetStream
	PublishedPoints   int `json:"published_points"`
	FailedMessages    int `json:"failed_messages"`   // publishes JetStream refused or never acked
	StalledPublishes  int `json:"stalled_publishes"` // waits for the in-flight bound to free a slot
	BacklogWaits      int `json:"backlog_waits"`     // waits for the store to work the backlog off
	// StoredPoints is the sum of the points the store reported stored;
	// ReadBackPoints counts them again by reading every entity's raw
	// history from the store. Both must equal PublishedPoints.
	StoredPoints   int `json:"stored_points"`
	ReadBackPoints int `json:"read_back_points"`
	Duplicates     int `json:"duplicates"` // messages the store skipped as already stored
	Writes         int `json:"writes"`     // store transactions (batches)
	// WriteMS is the duration of the store's writes; WritingSeconds
	// their sum, to compare with Seconds: a store that was writing all
	// along set the pace.
	WriteMS        LatencyMS `json:"write_ms"`
	WritingSeconds float64   `json:"writing_seconds"`
	// PublishSeconds runs from the first publish to the last ack;
	// Seconds from the first publish to the commit of the last point.
	PublishSeconds    float64 `json:"publish_seconds"`
	PublishMsgsPerSec float64 `json:"publish_msgs_per_sec"`
	Seconds           float64 `json:"seconds"`
	PointsPerSec      float64 `json:"points_per_sec"`
	MessagesPerSec    float64 `json:"messages_per_sec"`
	PointsPerWrite    float64 `json:"points_per_write"`
}

// HistoryDisk is the store's footprint after the ingest, before the query
// data is seeded.
type HistoryDisk struct {
	Measured      string           `json:"measured"`
	TotalBytes    int64            `json:"total_bytes"` // the whole database
	Tables        map[string]int64 `json:"tables"`
	RawTable      string           `json:"raw_table"`
	RawBytes      int64            `json:"raw_bytes"`
	Points        int              `json:"points"`
	RawBytesPer   float64          `json:"raw_bytes_per_point"`
	TotalBytesPer float64          `json:"total_bytes_per_point"` // statistics tiers, ledger and entities included
}

// HistoryQueries are the query latencies, each query read through (every
// page), via the bus (client → history service → store) and directly on
// the store.
type HistoryQueries struct {
	Raw24h   QueryFigures `json:"raw_24h"`   // one entity, 24 h of 1-minute points, raw
	Hourly1y QueryFigures `json:"hourly_1y"` // one entity, a year of hourly data, 1h tier
}

// QueryFigures are the latencies of one query.
type QueryFigures struct {
	Rows  int       `json:"rows"`  // points or buckets each query returns
	Pages int       `json:"pages"` // pages each query takes
	Bus   LatencyMS `json:"bus"`
	Store LatencyMS `json:"store"`
}

// LatencyMS are latency percentiles in milliseconds over Count queries.
type LatencyMS struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// History runs the history benchmark: an embedded NATS server with
// file-backed JetStream in a temporary directory, the streams, a fresh
// store and the real history service; publishers send for cfg.Duration as
// fast as JetStream accepts; the run waits until the store holds every
// accepted point, checks that by reading them back, measures the store's
// footprint, then seeds two entities and times the history queries.
//
// It returns the figures even when it fails after the ingest, so that a
// loss is reported with what was measured: the error then says what went
// wrong.
func History(ctx context.Context, cfg HistoryConfig) (HistoryResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return HistoryResult{}, err
	}
	res := HistoryResult{
		Store: cfg.Store, Entities: cfg.Entities, PointsPerMessage: cfg.PointsPerMessage,
		InFlight: cfg.InFlight, MaxBacklogBytes: cfg.MaxBacklog, DurationSeconds: cfg.Duration.Seconds(),
		Path: fmt.Sprintf("state changes, %d per message, on the home's state log (STATES stream)", cfg.PointsPerMessage),
	}
	if cfg.Telemetry {
		res.Path = fmt.Sprintf("telemetry, %d points per message, on the home's TELEMETRY stream", cfg.PointsPerMessage)
	}
	dir, err := os.MkdirTemp("", "homemesh-bench-history-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)

	srv, err := natsbus.StartServer(natsbus.ServerConfig{Name: "bench", StoreDir: filepath.Join(dir, "jetstream")}, cfg.Log)
	if err != nil {
		return res, err
	}
	defer srv.Shutdown()
	admin, err := srv.Connect("bench-admin")
	if err != nil {
		return res, err
	}
	defer admin.Close()
	home := "bench-" + homemesh.RandomID(6)
	if err := history.Streams(ctx, admin, home); err != nil {
		return res, fmt.Errorf("declare history streams: %w", err)
	}

	bs, err := openBenchStore(ctx, cfg, dir)
	if err != nil {
		return res, err
	}
	res.Database = bs.where
	closed := false
	defer func() {
		if !closed {
			bs.Close()
		}
		if err := bs.remove(context.WithoutCancel(ctx)); err != nil {
			cfg.Log.Warn("bench store not removed", "err", err)
		}
	}()

	store := &countingStore{Store: bs.Store}
	svcConn, err := srv.Connect("history")
	if err != nil {
		return res, err
	}
	defer svcConn.Close()
	svc, err := history.New(history.Config{Home: home, BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait},
		history.Deps{Bus: svcConn, Store: store, Log: cfg.Log, Metrics: prometheus.NewRegistry()})
	if err != nil {
		return res, err
	}
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(svcCtx) }()
	stopped := false
	stopService := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopSvc()
		return <-svcDone
	}
	defer stopService()
	select {
	case <-svc.Ready():
	case err := <-svcDone:
		stopped = true
		return res, fmt.Errorf("history service: %w", err)
	case <-ctx.Done():
		return res, ctx.Err()
	}

	devices := benchFleet(home, cfg.Entities)
	lossErr, err := ingest(ctx, cfg, srv, home, devices, store, bs, &res)
	if err != nil {
		return res, err
	}

	if err := measureDisk(ctx, bs, &res); err != nil {
		return res, fmt.Errorf("measure the store's footprint: %w", err)
	}

	if cfg.Queries > 0 {
		qConn, err := srv.Connect("bench-query")
		if err != nil {
			return res, err
		}
		defer qConn.Close()
		if err := queries(ctx, cfg.Queries, home, bs.Store, history.NewClient(qConn, home), &res.Queries); err != nil {
			return res, errors.Join(lossErr, err)
		}
	}

	if err := stopService(); err != nil {
		return res, errors.Join(lossErr, fmt.Errorf("history service: %w", err))
	}
	closed = true
	if err := bs.Close(); err != nil {
		return res, errors.Join(lossErr, fmt.Errorf("close store: %w", err))
	}
	return res, lossErr
}

// ingest runs the sustained ingest and waits for the store to catch up.
// A store that ends up holding other than what JetStream accepted is
// reported in lost, with the figures filled in; err means the run itself
// failed.
func ingest(ctx context.Context, cfg HistoryConfig, srv *natsbus.Server, home string, devices []*benchDevice, store *countingStore, bs *benchStore, res *HistoryResult) (lost, err error) {
	n := min(cfg.Publishers, len(devices))
	res.Publishers = n
	counts := ingestCounts{maxBacklog: cfg.MaxBacklog, ppm: int64(cfg.PointsPerMessage), stored: &store.points}
	pubs := make([]*publisher, n)
	for i := range pubs {
		conn, err := srv.Connect(fmt.Sprintf("bench-publisher-%d", i))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		var share []*benchDevice
		for j := i; j < len(devices); j += n {
			share = append(share, devices[j])
		}
		if pubs[i], err = newPublisher(conn, home, share, cfg.PointsPerMessage, cfg.Telemetry, cfg.InFlight/n, &counts); err != nil {
			return nil, err
		}
	}
	start, published, err := publishAll(ctx, pubs, cfg.Duration, &counts)
	in := &res.Ingest
	in.PublishedMessages = int(counts.acked.Load())
	in.PublishedPoints = in.PublishedMessages * cfg.PointsPerMessage
	in.FailedMessages = int(counts.failed.Load())
	in.StalledPublishes = int(counts.stalled.Load())
	in.BacklogWaits = int(counts.backlogWaits.Load())
	in.PublishSeconds = round3(published.Sub(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if in.PublishSeconds > 0 {
		in.PublishMsgsPerSec = round1(float64(in.PublishedMessages) / published.Sub(start).Seconds())
	}

	// Wait for the store: until it has stored every accepted point, and a
	// little longer when publishes failed (JetStream may have stored
	// some of them), bounded by Drain and ended early by a stall.
	want := int64(in.PublishedPoints)
	deadline := time.Now().Add(cfg.Drain)
	lastCount, lastProgress := store.points.Load(), time.Now()
	for store.points.Load() < want && time.Now().Before(deadline) && time.Since(lastProgress) < drainStall {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if c := store.points.Load(); c != lastCount {
			lastCount, lastProgress = c, time.Now()
		}
	}
	in.StoredPoints = int(store.points.Load())
	in.Duplicates = int(store.duplicates.Load())
	in.Writes = int(store.writes.Load())
	in.WriteMS = latencies(&store.writeTime, in.Writes)
	in.WritingSeconds = round3(time.Duration(store.busy.Load()).Seconds())
	if last := store.lastCommit.Load(); last > 0 {
		in.Seconds = round3(time.Unix(0, last).Sub(start).Seconds())
	}
	if in.Seconds > 0 {
		secs := time.Unix(0, store.lastCommit.Load()).Sub(start).Seconds()
		in.PointsPerSec = round1(float64(in.StoredPoints) / secs)
		in.MessagesPerSec = round1(float64(in.StoredPoints) / float64(cfg.PointsPerMessage) / secs)
	}
	if in.Writes > 0 {
		in.PointsPerWrite = round1(float64(in.StoredPoints) / float64(in.Writes))
	}

	if in.ReadBackPoints, err = readBack(ctx, bs.Store, home, devices, start.Add(-time.Minute), time.Now().Add(time.Hour)); err != nil {
		return nil, fmt.Errorf("read the stored points back: %w", err)
	}
	failedPoints := in.FailedMessages * cfg.PointsPerMessage
	for _, got := range []struct {
		what string
		n    int
	}{{"the store reported storing", in.StoredPoints}, {"reading back found", in.ReadBackPoints}} {
		if got.n < in.PublishedPoints || got.n > in.PublishedPoints+failedPoints {
			lost = errors.Join(lost, fmt.Errorf("bench: JetStream accepted %d points (%d more in failed publishes) but %s %d",
				in.PublishedPoints, failedPoints, got.what, got.n))
		}
	}
	return lost, nil
}

// readBack counts the raw points of every bench entity in [from, to) by
// reading them from the store page by page.
func readBack(ctx context.Context, st history.Reader, home string, devices []*benchDevice, from, to time.Time) (int, error) {
	total := 0
	for _, d := range devices {
		for _, e := range d.entities {
			q := history.HistoryQuery{Home: home, Entity: e.id, From: from, To: to, Resolution: history.Raw, Limit: history.MaxLimit}
			for {
				page, err := st.History(ctx, q)
				if err != nil {
					return total, fmt.Errorf("entity %s: %w", e.id, err)
				}
				total += len(page.Points)
				if !page.More || len(page.Points) == 0 {
					break
				}
				q.After = page.Points[len(page.Points)-1].Time
			}
		}
	}
	return total, nil
}

func measureDisk(ctx context.Context, bs *benchStore, res *HistoryResult) error {
	total, tables, how, err := bs.disk(ctx)
	if err != nil {
		return err
	}
	raw, ok := tables[bs.rawTable]
	if !ok {
		return fmt.Errorf("no raw table %q among %v", bs.rawTable, tables)
	}
	d := &res.Disk
	d.Measured, d.TotalBytes, d.Tables, d.RawTable, d.RawBytes = how, total, tables, bs.rawTable, raw
	d.Points = res.Ingest.ReadBackPoints
	if d.Points > 0 {
		d.RawBytesPer = round1(float64(raw) / float64(d.Points))
		d.TotalBytesPer = round1(float64(total) / float64(d.Points))
	}
	return nil
}

// Query seeds: one entity with 24 hours of 1-minute points, one with a
// year of hourly points (which fill the hourly tier).
const (
	seedDayPoints  = 24 * 60
	seedYearPoints = 365 * 24
	seedStream     = "BENCH_SEED" // no consumer reads it: only the stores' ledgers name it
	seedPerMessage = 500
)

// queries seeds the two query entities directly into the store, then times
// n reads of each through the client and directly on the store.
func queries(ctx context.Context, n int, home string, st history.Store, client *history.Client, out *HistoryQueries) error {
	end := time.Now().UTC().Truncate(time.Hour)
	day := seedPoints("bench-seed_day", end.Add(-24*time.Hour), time.Minute, seedDayPoints)
	year := seedPoints("bench-seed_year", end.Add(-seedYearPoints*time.Hour), time.Hour, seedYearPoints)
	var seq uint64
	for _, pts := range [][]history.Point{day, year} {
		for len(pts) > 0 {
			chunk := pts[:min(seedPerMessage, len(pts))]
			pts = pts[len(chunk):]
			seq++
			if _, err := st.Write(ctx, history.Batch{Home: home, Stream: seedStream, Messages: []history.Message{{Seq: seq, Points: chunk}}}); err != nil {
				return fmt.Errorf("seed the query entities: %w", err)
			}
		}
	}
	// The service's minute-by-minute Purge keeps closed days of the hourly
	// tier packed; the seeded year is as old as a year of real data would
	// be, so it is timed as the service keeps it.
	if err := maintain(ctx, st); err != nil {
		return err
	}

	for _, q := range []struct {
		fig  *QueryFigures
		req  history.HistoryRequest
		want int
	}{
		{&out.Raw24h, history.HistoryRequest{EntityID: "bench-seed_day", From: end.Add(-24 * time.Hour), To: end, Resolution: history.Raw}, seedDayPoints},
		{&out.Hourly1y, history.HistoryRequest{EntityID: "bench-seed_year", From: end.Add(-seedYearPoints * time.Hour), To: end, Resolution: history.Hourly}, seedYearPoints},
	} {
		q.req.Limit = history.MaxLimit
		q.fig.Rows = q.want
		var bus, direct histogram
		for range n {
			rows, pages, waited, err := busQuery(ctx, client, q.req)
			bus.record(int64(waited))
			if err != nil {
				return fmt.Errorf("query %s %s through the service: %w", q.req.EntityID, q.req.Resolution, err)
			}
			if rows != q.want {
				return fmt.Errorf("query %s %s through the service returned %d rows, want %d", q.req.EntityID, q.req.Resolution, rows, q.want)
			}
			q.fig.Pages = pages
		}
		q.fig.Bus = latencies(&bus, n)
		sq := history.HistoryQuery{Home: home, Entity: q.req.EntityID, From: q.req.From, To: q.req.To, Resolution: q.req.Resolution, Limit: q.req.Limit}
		for range n {
			t0 := time.Now()
			rows, err := storeQuery(ctx, st, sq)
			direct.record(int64(time.Since(t0)))
			if err != nil {
				return fmt.Errorf("query %s %s on the store: %w", sq.Entity, sq.Resolution, err)
			}
			if rows != q.want {
				return fmt.Errorf("query %s %s on the store returned %d rows, want %d", sq.Entity, sq.Resolution, rows, q.want)
			}
		}
		q.fig.Store = latencies(&direct, n)
	}
	return nil
}

// maintain runs the store's Purge, with the service's default retention,
// until it has no more work, as the service's periodic purge would.
func maintain(ctx context.Context, st history.Purger) error {
	for {
		res, err := st.Purge(ctx, time.Now(), history.DefaultRetention(), 10_000)
		if err != nil {
			return fmt.Errorf("purge after seeding: %w", err)
		}
		if !res.More {
			return nil
		}
	}
}

// seedPoints returns n numeric points of entity, step apart from start.
func seedPoints(entity string, start time.Time, step time.Duration, n int) []history.Point {
	pts := make([]history.Point, n)
	for i := range pts {
		pts[i] = history.Point{
			Entity: entity, Device: "bench-seed", Kind: homemesh.KindSensor,
			Time: start.Add(time.Duration(i) * step), Numeric: true, Value: benchValue(i),
		}
	}
	return pts
}

// busQuery reads every page of req through the history service, as the
// gateway does, and says how long it waited for the pages' bytes: the
// gateway forwards a page without decoding it, so the decoding here, to
// check the rows and follow the cursor, is not part of the latency.
func busQuery(ctx context.Context, c *history.Client, req history.HistoryRequest) (rows, pages int, waited time.Duration, err error) {
	for {
		t0 := time.Now()
		data, err := c.HistoryJSON(ctx, req)
		waited += time.Since(t0)
		if err != nil {
			return rows, pages, waited, err
		}
		var reply struct {
			Points []json.RawMessage `json:"points"`
			Next   string            `json:"next"`
		}
		if err := json.Unmarshal(data, &reply); err != nil {
			return rows, pages, waited, fmt.Errorf("history reply: %w", err)
		}
		rows += len(reply.Points)
		pages++
		if reply.Next == "" {
			return rows, pages, waited, nil
		}
		req.Cursor = reply.Next
	}
}

// storeQuery reads every page of q directly from the store.
func storeQuery(ctx context.Context, st history.Reader, q history.HistoryQuery) (int, error) {
	rows := 0
	for {
		page, err := st.History(ctx, q)
		if err != nil {
			return rows, err
		}
		switch {
		case len(page.Points) > 0:
			rows += len(page.Points)
			q.After = page.Points[len(page.Points)-1].Time
		case len(page.Stats) > 0:
			rows += len(page.Stats)
			q.After = page.Stats[len(page.Stats)-1].Start
		default:
			return rows, nil
		}
		if !page.More {
			return rows, nil
		}
	}
}

func latencies(h *histogram, n int) LatencyMS {
	ms := func(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }
	return LatencyMS{Count: n, P50: ms(h.quantile(0.50)), P95: ms(h.quantile(0.95)), P99: ms(h.quantile(0.99)), Max: ms(float64(h.maxValue()))}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
