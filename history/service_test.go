package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/registry"
	"github.com/homemesh/homemesh/sqlite"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const home = "h1"

// openStore opens a SQLite store in the test's temporary directory.
func openStore(t testing.TB, path string) history.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "history.db")
	}
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// countingStore counts what its store reports as stored, so a test can
// tell a message stored once from one stored twice.
type countingStore struct {
	history.Store
	points, events, duplicates, writes atomic.Int64
	mu                                 sync.Mutex
	biggest                            int // most messages in one write
}

func (c *countingStore) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	res, err := c.Store.Write(ctx, b)
	c.mu.Lock()
	c.biggest = max(c.biggest, len(b.Messages))
	c.mu.Unlock()
	if err == nil {
		c.points.Add(int64(res.Points))
		c.events.Add(int64(res.Events))
		c.duplicates.Add(int64(res.Duplicates))
		c.writes.Add(1)
	}
	return res, err
}

type harness struct {
	t       *testing.T
	srv     *natsbus.Server
	conn    *natsbus.Conn
	client  *history.Client
	metrics *prometheus.Registry
	logs    *hmtest.LogBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	ctx := context.Background()
	if err := registry.Streams(ctx, conn, home); err != nil {
		t.Fatal(err)
	}
	if err := history.Streams(ctx, conn, home); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, conn: conn, client: history.NewClient(conn, home),
		metrics: prometheus.NewRegistry(), logs: &hmtest.LogBuffer{}}
}

// start runs a history service on store and waits until it is ready.
func (h *harness) start(store history.Store, cfg history.Config) (stop func()) {
	h.t.Helper()
	cfg.Home = home
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := history.New(cfg, history.Deps{Bus: bustest.Conn(h.t, h.srv), Store: store, Log: log, Metrics: h.metrics})
	if err != nil {
		h.t.Fatal(err)
	}
	stop = hmtest.Run(h.t, "history", svc.Run)
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		h.t.Fatal("history not ready")
	}
	return stop
}

// publish stores data on subject in its stream and waits for the stream
// to accept it.
func (h *harness) publish(subject string, data []byte) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.conn.JetStream().Publish(ctx, subject, data); err != nil {
		h.t.Fatalf("publish %s: %v", subject, err)
	}
}

func (h *harness) publishEnvelope(subject, typ string, payload any) string {
	h.t.Helper()
	env, err := bus.NewEnvelope(home, "test", typ, payload)
	if err != nil {
		h.t.Fatal(err)
	}
	data, _ := json.Marshal(env)
	h.publish(subject, data)
	return env.ID
}

func (h *harness) publishState(device, entity string, kind homemesh.EntityKind, st homemesh.State) {
	h.t.Helper()
	// As the registry logs it: a batch, here of one.
	h.publishEnvelope(bus.StateLogSubject(home), history.TypeStateChanges,
		[]registry.StateChange{{HomeID: home, DeviceID: device, EntityID: entity, Kind: kind, State: st}})
}

func (h *harness) publishTelemetry(device string, points ...history.TelemetryPoint) {
	h.t.Helper()
	h.publishEnvelope(bus.TelemetrySubject(home, device), history.TypeTelemetry, history.Telemetry{Points: points})
}

// metric returns the value of a counter or gauge, summed over the series
// whose labels include want.
func (h *harness) metric(name string, want map[string]string) float64 {
	h.t.Helper()
	families, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// rawPoints reads every raw point of entity in [from, to), page by page.
func (h *harness) rawPoints(entity string, from, to time.Time) []history.PointRecord {
	h.t.Helper()
	var all []history.PointRecord
	cursor := ""
	for {
		reply, err := h.client.History(context.Background(), history.HistoryRequest{EntityID: entity, From: from, To: to,
			Resolution: history.Raw, Cursor: cursor, Limit: history.MaxLimit})
		if err != nil {
			h.t.Fatalf("history of %s: %v", entity, err)
		}
		all = append(all, reply.Points...)
		if reply.Next == "" {
			return all
		}
		cursor = reply.Next
	}
}

func TestIngestStatesTelemetryAndEventsThenQuery(t *testing.T) {
	h := newHarness(t)
	h.start(openStore(t, ""), history.Config{})
	now := time.Now().UTC().Truncate(time.Millisecond)
	t0 := now.Add(-time.Hour)

	// State changes: numbers, numeric strings, booleans, text, and an
	// unavailable entity, with attributes.
	h.publishState("thermo", "temp", homemesh.KindSensor, homemesh.State{Value: 21.5, Available: true, UpdatedAt: t0})
	h.publishState("thermo", "temp", homemesh.KindSensor, homemesh.State{Value: "22.25", Available: true, ChangedAt: t0.Add(time.Minute)})
	h.publishState("plug", "relay", homemesh.KindSwitch, homemesh.State{Value: true, Available: true, UpdatedAt: t0,
		Attributes: map[string]any{"power": 12.5}})
	h.publishState("plug", "relay", homemesh.KindSwitch, homemesh.State{Value: "off", Available: true, UpdatedAt: t0.Add(30 * time.Minute)})
	h.publishState("plug", "relay", homemesh.KindSwitch, homemesh.State{Value: "on", Available: false, UpdatedAt: t0.Add(40 * time.Minute)})
	h.publishState("hvac", "mode", homemesh.KindClimate, homemesh.State{Value: "heat", Available: true, UpdatedAt: t0})
	// Telemetry: many points of several entities in one message.
	var tp []history.TelemetryPoint
	for i := range 100 {
		tp = append(tp, history.TelemetryPoint{EntityID: "power", Time: t0.Add(time.Duration(i) * time.Second), Value: float64(i)},
			history.TelemetryPoint{EntityID: "voltage", Time: t0.Add(time.Duration(i) * time.Second), Value: 230})
	}
	h.publishTelemetry("meter", tp...)
	// Events, with and without device and entity references.
	e1 := h.publishEnvelope(bus.EventSubject(home, registry.EventDeviceAdded), "device_added", map[string]any{"id": "plug", "device_id": "plug"})
	e2 := h.publishEnvelope(bus.EventSubject(home, "button_pressed"), "button_pressed", map[string]any{"device_id": "remote", "entity_id": "remote_button"})
	e3 := h.publishEnvelope(bus.EventSubject(home, "button_pressed"), "button_pressed", map[string]any{"device_id": "remote", "entity_id": "remote_button"})

	from, to := t0.Add(-time.Minute), now.Add(time.Minute)
	hmtest.WaitFor(t, 10*time.Second, "every point stored", func() bool {
		return len(h.rawPoints("power", from, to)) == 100 && len(h.rawPoints("relay", from, to)) == 3 &&
			len(h.rawPoints("temp", from, to)) == 2 && len(h.rawPoints("mode", from, to)) == 1
	})
	temp := h.rawPoints("temp", from, to)
	if temp[0].Value != 21.5 || temp[1].Value != 22.25 || !temp[0].Time.Equal(t0) || !temp[1].Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("temp = %+v", temp)
	}
	relay := h.rawPoints("relay", from, to)
	if relay[0].Value != "on" || string(relay[0].Attributes) != `{"power":12.5}` || relay[1].Value != "off" || relay[2].Value != "unavailable" {
		t.Errorf("relay = %+v", relay)
	}
	if mode := h.rawPoints("mode", from, to); mode[0].Value != "heat" {
		t.Errorf("mode = %+v", mode)
	}

	// Paging with a cursor returns every point once, in order.
	var paged []history.PointRecord
	cursor := ""
	for range 20 {
		reply, err := h.client.History(context.Background(), history.HistoryRequest{EntityID: "power", From: from, To: to,
			Resolution: history.Raw, Cursor: cursor, Limit: 30})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, reply.Points...)
		if cursor = reply.Next; cursor == "" {
			break
		}
	}
	if len(paged) != 100 {
		t.Fatalf("paged %d points, want 100", len(paged))
	}
	for i, p := range paged {
		if p.Value != float64(i) {
			t.Fatalf("paged point %d = %+v", i, p)
		}
	}

	// Statistics: the hour of power holds 100 numeric points.
	reply, err := h.client.History(context.Background(), history.HistoryRequest{EntityID: "power", From: t0.Add(-time.Hour), To: to, Resolution: history.Hourly})
	if err != nil {
		t.Fatal(err)
	}
	var count int64
	for _, p := range reply.Points {
		count += p.Count
		if p.Mean == nil || p.Min == nil || p.Max == nil || p.Last == nil {
			t.Errorf("numeric bucket without mean/min/max/last: %+v", p)
		}
	}
	if count != 100 || reply.Resolution != history.Hourly {
		t.Errorf("hourly power = %+v", reply)
	}
	// A switch's buckets carry its on-time.
	reply, err = h.client.History(context.Background(), history.HistoryRequest{EntityID: "relay", From: t0.Add(-time.Hour), To: to, Resolution: history.Hourly})
	if err != nil {
		t.Fatal(err)
	}
	var on float64
	for _, p := range reply.Points {
		if p.OnSeconds == nil {
			t.Errorf("switch bucket without on_seconds: %+v", p)
			continue
		}
		on += *p.OnSeconds
	}
	if on != 30*60 {
		t.Errorf("relay on for %vs, want 1800 (on at +0, off at +30m)", on)
	}

	// Events, by kind and device, paged.
	hmtest.WaitFor(t, 10*time.Second, "events stored", func() bool {
		r, err := h.client.Events(context.Background(), history.EventsRequest{From: from, To: to})
		return err == nil && len(r.Events) == 3
	})
	evs, err := h.client.Events(context.Background(), history.EventsRequest{Kind: "button_pressed", From: from, To: to, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Events) != 1 || evs.Events[0].ID != e2 || evs.Events[0].DeviceID != "remote" || evs.Events[0].EntityID != "remote_button" || evs.Next == "" {
		t.Fatalf("first button event page = %+v", evs)
	}
	evs, err = h.client.Events(context.Background(), history.EventsRequest{Kind: "button_pressed", From: from, To: to, Limit: 1, Cursor: evs.Next})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Events) != 1 || evs.Events[0].ID != e3 {
		t.Fatalf("second button event page = %+v", evs)
	}
	evs, err = h.client.Events(context.Background(), history.EventsRequest{DeviceID: "plug", From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Events) != 1 || evs.Events[0].ID != e1 || evs.Events[0].Kind != registry.EventDeviceAdded || !strings.Contains(string(evs.Events[0].Data), `"id":"plug"`) {
		t.Fatalf("plug events = %+v", evs)
	}

	if got := h.metric("homemesh_history_points_stored_total", nil); got != 206 {
		t.Errorf("points stored metric = %v, want 206", got)
	}
	if got := h.metric("homemesh_history_events_stored_total", nil); got != 3 {
		t.Errorf("events stored metric = %v, want 3", got)
	}
}

// commitThenFail stores the first batch and then reports a failure, as a
// database that committed but lost the connection before answering would.
type commitThenFail struct {
	*countingStore
	failed atomic.Bool
}

func (c *commitThenFail) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	res, err := c.countingStore.Write(ctx, b)
	if err == nil && c.failed.CompareAndSwap(false, true) {
		return history.WriteResult{}, errors.New("connection lost after commit")
	}
	return res, err
}

func TestWriteCommittedButReportedFailedIsStoredOnce(t *testing.T) {
	h := newHarness(t)
	store := &commitThenFail{countingStore: &countingStore{Store: openStore(t, "")}}
	h.start(store, history.Config{})
	t0 := time.Now().Add(-time.Minute)
	for i := range 10 {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: t0.Add(time.Duration(i) * time.Millisecond), Value: float64(i)})
	}
	hmtest.WaitFor(t, 10*time.Second, "every message acknowledged", func() bool {
		return h.metric("homemesh_history_points_stored_total", nil)+h.metric("homemesh_history_duplicate_messages_total", nil) >= 10 &&
			store.failed.Load()
	})
	hmtest.WaitFor(t, 10*time.Second, "nothing left to deliver", func() bool { return pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0 })
	if got := store.points.Load(); got != 10 {
		t.Errorf("store stored %d points, want 10", got)
	}
	if store.duplicates.Load() == 0 || h.metric("homemesh_history_duplicate_messages_total", nil) != float64(store.duplicates.Load()) {
		t.Errorf("duplicates: store %d, metric %v; want the redelivered batch counted", store.duplicates.Load(),
			h.metric("homemesh_history_duplicate_messages_total", nil))
	}
	if got := len(h.rawPoints("power", t0.Add(-time.Second), time.Now())); got != 10 {
		t.Errorf("%d points readable, want 10", got)
	}
	if h.metric("homemesh_history_write_errors_total", nil) != 1 {
		t.Errorf("write errors = %v, want 1", h.metric("homemesh_history_write_errors_total", nil))
	}
}

// pendingAcks returns how many messages the history consumer of stream
// holds without an ack, plus those not delivered yet.
func pendingAcks(t testing.TB, conn *natsbus.Conn, stream string) int {
	t.Helper()
	cons, err := conn.JetStream().Consumer(context.Background(), stream, "history_"+home)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending + int(info.NumPending)
}

// outageStore fails every write while down is set.
type outageStore struct {
	*countingStore
	down     atomic.Bool
	failures atomic.Int64
}

func (o *outageStore) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	if o.down.Load() {
		o.failures.Add(1)
		return history.WriteResult{}, errors.New("database is down")
	}
	return o.countingStore.Write(ctx, b)
}

func TestStoreOutageUnderLoadLosesAndDuplicatesNothing(t *testing.T) {
	h := newHarness(t)
	store := &outageStore{countingStore: &countingStore{Store: openStore(t, "")}}
	h.start(store, history.Config{BatchSize: 200})

	t0 := time.Now().Add(-time.Hour)
	var published atomic.Int64
	stopPublishing := make(chan struct{})
	publisherDone := make(chan struct{})
	go func() {
		defer close(publisherDone)
		// A steady stream, paced so that the test stays short.
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopPublishing:
				return
			case <-pace.C:
			}
			points := make([]history.TelemetryPoint, 10)
			for j := range points {
				n := i*10 + j
				points[j] = history.TelemetryPoint{EntityID: "power", Time: t0.Add(time.Duration(n) * time.Millisecond), Value: float64(n)}
			}
			env, _ := bus.NewEnvelope(home, "test", history.TypeTelemetry, history.Telemetry{Points: points})
			data, _ := json.Marshal(env)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := h.conn.JetStream().Publish(ctx, bus.TelemetrySubject(home, "meter"), data)
			cancel()
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Add(10)
		}
	}()

	hmtest.WaitFor(t, 10*time.Second, "a first batch stored", func() bool { return store.points.Load() > 0 })
	store.down.Store(true)
	hmtest.WaitFor(t, 10*time.Second, "writes failing", func() bool { return store.failures.Load() >= 3 })
	downAt := time.Now()
	hmtest.WaitFor(t, 10*time.Second, "two seconds of outage", func() bool { return time.Since(downAt) >= 2*time.Second })
	failures := store.failures.Load()
	store.down.Store(false)
	hmtest.WaitFor(t, 10*time.Second, "writes resuming", func() bool { return store.writes.Load() > 1 && store.failures.Load() == failures })
	hmtest.WaitFor(t, 10*time.Second, "publishing during recovery", func() bool { return time.Since(downAt) >= 3*time.Second })
	close(stopPublishing)
	<-publisherDone

	want := published.Load()
	t.Logf("published %d points", want)
	hmtest.WaitFor(t, 20*time.Second, fmt.Sprintf("all %d points stored", want), func() bool {
		return store.points.Load() >= want && pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0
	})
	if got := store.points.Load(); got != want {
		t.Errorf("stored %d points, want %d exactly", got, want)
	}
	if got := len(h.rawPoints("power", t0.Add(-time.Second), time.Now())); int64(got) != want {
		t.Errorf("%d points readable, want %d", got, want)
	}
	// One outage, one error line, however many retries.
	if n := strings.Count(h.logs.String(), "history store write failed"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if n := strings.Count(h.logs.String(), "history store writable again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	if h.metric("homemesh_history_write_errors_total", nil) < 3 {
		t.Errorf("write errors metric = %v", h.metric("homemesh_history_write_errors_total", nil))
	}
}

func TestRejectsBadMessagesAndStoresTheRest(t *testing.T) {
	h := newHarness(t)
	store := &countingStore{Store: openStore(t, "")}
	h.start(store, history.Config{})
	t0 := time.Now().Add(-time.Minute).UTC()
	good := func(i int) history.TelemetryPoint {
		return history.TelemetryPoint{EntityID: "power", Time: t0.Add(time.Duration(i) * time.Second), Value: float64(i)}
	}
	raw := func(home, typ string, payload string) []byte {
		return bus.EncodeEnvelopeRaw(home, "test", typ, []byte(payload))
	}
	h.publishTelemetry("meter", good(0))
	h.publish(bus.TelemetrySubject(home, "meter"), []byte(`{"v":1,"home":"h1","payload":{"points":[`))
	h.publish(bus.TelemetrySubject(home, "meter"), raw("h2", history.TypeTelemetry, `{"points":[]}`))
	h.publish(bus.TelemetrySubject(home, "meter"), raw(home, history.TypeTelemetry, `{"points":[{"entity_id":"Bad Entity","time":"2026-11-29T10:00:00Z","value":1}]}`))
	h.publish(bus.TelemetrySubject(home, "meter"), raw(home, history.TypeTelemetry,
		fmt.Sprintf(`{"points":[{"entity_id":"power","time":%q,"value":1}]}`, time.Now().Add(time.Hour).Format(time.RFC3339))))
	h.publish(bus.TelemetrySubject(home, "meter"), raw(home, history.TypeTelemetry, `{"points":[{"entity_id":"power","time":"2026-11-29T10:00:00Z","value":1e999}]}`))
	many := make([]history.TelemetryPoint, history.MaxTelemetryPoints+1)
	for i := range many {
		many[i] = good(i)
	}
	h.publishTelemetry("meter", many...)
	h.publishTelemetry("meter", good(1))
	h.publishState("plug", "relay", homemesh.KindSwitch, homemesh.State{Value: "on", Available: true, UpdatedAt: t0})
	h.publish(bus.StateLogSubject(home), raw(home, "state_changes", `[{"home_id":"h2","device_id":"plug","entity_id":"relay","state":{"value":"off","available":true}}]`))
	h.publish(bus.EventSubject(home, "x"), []byte(`not json`))
	h.publishEnvelope(bus.EventSubject(home, "button_pressed"), "button_pressed", map[string]any{"device_id": "remote"})

	hmtest.WaitFor(t, 10*time.Second, "good messages stored and bad ones settled", func() bool {
		return store.points.Load() == 3 && store.events.Load() == 1 &&
			pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0 && pendingAcks(t, h.conn, history.StatesStream(home)) == 0 &&
			pendingAcks(t, h.conn, history.EventsStream(home)) == 0
	})
	want := map[string]float64{"malformed": 3, "wrong_home": 2, "invalid_id": 1, "bad_time": 1, "too_many_points": 1}
	for reason, n := range want {
		if got := h.metric("homemesh_history_rejected_messages_total", map[string]string{"reason": reason}); got != n {
			t.Errorf("rejected %s = %v, want %v", reason, got, n)
		}
	}
	logs := h.logs.String()
	for reason := range want {
		if !strings.Contains(logs, `"reason":"`+reason+`"`) {
			t.Errorf("no rejection logged for %s", reason)
		}
	}
	if !strings.Contains(logs, `"stream_seq":2`) || strings.Contains(logs, "Bad Entity") || strings.Contains(logs, "not json") {
		t.Errorf("rejections must name the stream sequence and never quote the payload:\n%s", logs)
	}
}

func TestTwoServicesShareTheWork(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "history.db")
	a := &countingStore{Store: openStore(t, path)}
	b := &countingStore{Store: openStore(t, path)}
	h.start(a, history.Config{BatchSize: 20})
	h.metrics = prometheus.NewRegistry() // the second process has its own
	h.start(b, history.Config{BatchSize: 20})

	t0 := time.Now().Add(-time.Hour)
	const messages = 2000
	for i := range messages {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: t0.Add(time.Duration(i) * time.Millisecond), Value: float64(i)})
	}
	hmtest.WaitFor(t, 20*time.Second, "every message stored", func() bool {
		return a.points.Load()+b.points.Load() >= messages && pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0
	})
	if got := a.points.Load() + b.points.Load(); got != messages {
		t.Errorf("stored %d points, want %d exactly", got, messages)
	}
	if a.points.Load() == 0 || b.points.Load() == 0 {
		t.Errorf("one process did all the work: %d and %d", a.points.Load(), b.points.Load())
	}
	if got := len(h.rawPoints("power", t0.Add(-time.Second), time.Now())); got != messages {
		t.Errorf("%d points readable, want %d", got, messages)
	}
}

func TestRetentionPurgesExpiredPoints(t *testing.T) {
	h := newHarness(t)
	policy, err := history.ParseRetention([]string{"raw=1h", "events=1h"})
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t, "")
	h.start(store, history.Config{Retention: policy, PurgeInterval: 20 * time.Millisecond})
	now := time.Now().UTC()
	old, fresh := now.Add(-2*time.Hour), now.Add(-time.Minute)
	h.publishTelemetry("meter",
		history.TelemetryPoint{EntityID: "power", Time: old, Value: 1},
		history.TelemetryPoint{EntityID: "power", Time: fresh, Value: 2})
	from, to := now.Add(-3*time.Hour), now.Add(time.Minute)
	hmtest.WaitFor(t, 10*time.Second, "the old point purged and the fresh one kept", func() bool {
		pts := h.rawPoints("power", from, to)
		return len(pts) == 1 && pts[0].Value == 2.0
	})
	// The hourly statistics outlive the raw points.
	reply, err := h.client.History(context.Background(), history.HistoryRequest{EntityID: "power", From: from, To: to, Resolution: history.Hourly})
	if err != nil {
		t.Fatal(err)
	}
	var count int64
	for _, p := range reply.Points {
		count += p.Count
	}
	if count != 2 {
		t.Errorf("hourly statistics count %d points, want 2", count)
	}
	hmtest.WaitFor(t, 5*time.Second, "purge counted", func() bool {
		return h.metric("homemesh_history_purged_rows_total", map[string]string{"table": "points"}) >= 1
	})
}

func TestQueryValidationNamesTheField(t *testing.T) {
	h := newHarness(t)
	h.start(openStore(t, ""), history.Config{})
	now := time.Now()
	ctx := context.Background()
	tests := []struct {
		name  string
		req   history.HistoryRequest
		field string
	}{
		{"bad entity", history.HistoryRequest{EntityID: "Bad Entity"}, "entity_id"},
		{"no entity", history.HistoryRequest{}, "entity_id"},
		{"from after to", history.HistoryRequest{EntityID: "temp", From: now, To: now.Add(-time.Hour)}, "from"},
		{"span too long", history.HistoryRequest{EntityID: "temp", From: now.Add(-500 * 24 * time.Hour), To: now}, "to"},
		{"resolution", history.HistoryRequest{EntityID: "temp", Resolution: "10m"}, "resolution"},
		{"limit too big", history.HistoryRequest{EntityID: "temp", Limit: history.MaxLimit + 1}, "limit"},
		{"negative limit", history.HistoryRequest{EntityID: "temp", Limit: -1}, "limit"},
		{"garbage cursor", history.HistoryRequest{EntityID: "temp", Cursor: "!!"}, "cursor"},
		{"cursor outside range", history.HistoryRequest{EntityID: "temp", From: now.Add(-time.Hour), To: now, Cursor: "MTIz"}, "cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.History(ctx, tt.req)
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Fatalf("got %v, want invalid %s", err, tt.field)
			}
		})
	}
	evTests := []struct {
		name  string
		req   history.EventsRequest
		field string
	}{
		{"bad kind", history.EventsRequest{Kind: "a.b"}, "kind"},
		{"bad device", history.EventsRequest{DeviceID: "A"}, "device_id"},
		{"history cursor", history.EventsRequest{Cursor: "MTIz"}, "cursor"},
		{"limit", history.EventsRequest{Limit: history.MaxLimit + 1}, "limit"},
	}
	for _, tt := range evTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.Events(ctx, tt.req)
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Fatalf("got %v, want invalid %s", err, tt.field)
			}
		})
	}
	other := history.NewClient(h.conn, "h2")
	if _, err := other.History(ctx, history.HistoryRequest{EntityID: "temp"}); homemesh.ErrorKind(err) != homemesh.KindNotFound {
		t.Fatalf("another home's history: got %v, want not found", err)
	}
}

func TestAutoResolutionPicksTheTier(t *testing.T) {
	h := newHarness(t)
	policy, err := history.ParseRetention([]string{"sensor.raw=2d", "sensor.5m=10d"})
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: openStore(t, "")}
	h.start(store, history.Config{Retention: policy})
	// A state change teaches the service that temp is a sensor.
	h.publishState("thermo", "temp", homemesh.KindSensor, homemesh.State{Value: 20, Available: true, UpdatedAt: time.Now().Add(-time.Minute)})
	hmtest.WaitFor(t, 10*time.Second, "the state change stored", func() bool { return store.points.Load() == 1 })
	now := time.Now()
	day := 24 * time.Hour
	tests := []struct {
		name     string
		entity   string
		from, to time.Time
		want     history.Resolution
	}{
		{"a day is raw", "temp", now.Add(-day), now, history.Raw},
		{"a week is 5m", "temp", now.Add(-7 * day), now, history.FiveMinutes},
		{"a quarter is hourly", "temp", now.Add(-90 * day), now, history.Hourly},
		{"an hour beyond the sensor's raw retention is 5m", "temp", now.Add(-3 * day), now.Add(-3*day + time.Hour), history.FiveMinutes},
		{"a week beyond its 5m retention is hourly", "temp", now.Add(-20 * day), now.Add(-13 * day), history.Hourly},
		{"another kind keeps raw 10 days", "other", now.Add(-3 * day), now.Add(-3*day + time.Hour), history.Raw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := h.client.History(context.Background(), history.HistoryRequest{EntityID: tt.entity, From: tt.from, To: tt.to, Resolution: history.Auto})
			if err != nil {
				t.Fatal(err)
			}
			if reply.Resolution != tt.want {
				t.Fatalf("resolution %s, want %s", reply.Resolution, tt.want)
			}
		})
	}
}

func TestNewChecksItsInputs(t *testing.T) {
	h := newHarness(t)
	store := openStore(t, "")
	if _, err := history.New(history.Config{Home: "Bad Home"}, history.Deps{Bus: h.conn, Store: store}); homemesh.ErrorField(err) != "home" {
		t.Errorf("bad home: %v", err)
	}
	if _, err := history.New(history.Config{Home: home}, history.Deps{Bus: h.conn}); err == nil {
		t.Error("no store accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := history.New(history.Config{Home: home}, history.Deps{Bus: h.conn, Store: store, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := history.New(history.Config{Home: home}, history.Deps{Bus: h.conn, Store: store, Metrics: reg}); err == nil {
		t.Error("a second service registered the same metrics")
	}
}

// BenchmarkIngestTelemetry measures the full path: JetStream → history →
// SQLite commit, in points per second, with telemetry of 100 points per
// message published ahead of the service.
func BenchmarkIngestTelemetry(b *testing.B) {
	benchmarkIngest(b, 100, func(i int, t0 time.Time) (string, []byte) {
		points := make([]history.TelemetryPoint, 100)
		for j := range points {
			n := i*100 + j
			points[j] = history.TelemetryPoint{EntityID: fmt.Sprintf("sensor_%d", n%50), Time: t0.Add(time.Duration(n) * time.Microsecond), Value: float64(n)}
		}
		data, _ := bus.EncodeEnvelope(home, "bench", history.TypeTelemetry, history.Telemetry{Points: points})
		return bus.TelemetrySubject(home, "meter"), data
	})
}

// BenchmarkIngestStates is BenchmarkIngestTelemetry for state changes,
// one point per message as the registry publishes them.
func BenchmarkIngestStates(b *testing.B) {
	benchmarkIngest(b, 1, func(i int, t0 time.Time) (string, []byte) {
		entity := fmt.Sprintf("sensor_%d", i%50)
		data, _ := bus.EncodeEnvelope(home, "registry", history.TypeStateChanges, []registry.StateChange{{
			HomeID: home, DeviceID: "meter", EntityID: entity, Kind: homemesh.KindSensor,
			State: homemesh.State{Value: float64(i), Available: true, UpdatedAt: t0.Add(time.Duration(i) * time.Microsecond)},
		}})
		return bus.StateLogSubject(home), data
	})
}

func benchmarkIngest(b *testing.B, perMessage int, message func(i int, t0 time.Time) (string, []byte)) {
	srv := bustest.Server(b)
	conn := bustest.Conn(b, srv)
	ctx := context.Background()
	if err := registry.Streams(ctx, conn, home); err != nil {
		b.Fatal(err)
	}
	if err := history.Streams(ctx, conn, home); err != nil {
		b.Fatal(err)
	}
	store := &countingStore{Store: openStore(b, "")}
	t0 := time.Now().Add(-time.Hour)
	messages := max(b.N/perMessage, 1)
	js := conn.JetStream()
	for i := range messages {
		subject, data := message(i, t0)
		if _, err := js.PublishAsync(subject, data); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	svc, err := history.New(history.Config{Home: home}, history.Deps{Bus: bustest.Conn(b, srv), Store: store})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	hmtest.Run(b, "history", svc.Run)
	want := int64(messages * perMessage)
	for store.points.Load() < want {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(want)/time.Since(start).Seconds(), "points/s")
}

func TestDeletedConsumerIsCreatedAgain(t *testing.T) {
	t.Cleanup(history.SetPullHeartbeat(500 * time.Millisecond))
	h := newHarness(t)
	store := &countingStore{Store: openStore(t, "")}
	h.start(store, history.Config{})
	at := time.Now().Add(-time.Minute)
	h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: at, Value: 1})
	hmtest.WaitFor(t, 10*time.Second, "the first point stored", func() bool { return store.points.Load() == 1 })

	if err := h.conn.JetStream().DeleteConsumer(context.Background(), history.TelemetryStream(home), "history_"+home); err != nil {
		t.Fatal(err)
	}
	// The streams keep a message only while a consumer wants it, so what is
	// published between the deletion and the new consumer is not kept:
	// deleting history's consumer by hand throws away what it held. Once
	// the consumer is back, ingestion goes on.
	hmtest.WaitFor(t, 20*time.Second, "the consumer created again", func() bool {
		_, err := h.conn.JetStream().Consumer(context.Background(), history.TelemetryStream(home), "history_"+home)
		return err == nil
	})
	h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: at.Add(time.Second), Value: 2})
	hmtest.WaitFor(t, 20*time.Second, "the point published after the new consumer stored", func() bool { return store.points.Load() == 2 })
	if !strings.Contains(h.logs.String(), "history consumer lost") {
		t.Error("the lost consumer was not logged")
	}
}

func TestLargePagesEndEarlyWithACursor(t *testing.T) {
	h := newHarness(t)
	store := &countingStore{Store: openStore(t, "")}
	h.start(store, history.Config{})
	blob := strings.Repeat("x", 150<<10)
	var ids []string
	for range 8 {
		ids = append(ids, h.publishEnvelope(bus.EventSubject(home, "snapshot"), "snapshot", map[string]any{"device_id": "cam", "image": blob}))
	}
	hmtest.WaitFor(t, 10*time.Second, "the events stored", func() bool { return store.events.Load() == 8 })
	var got []string
	cursor := ""
	pages := 0
	for {
		reply, err := h.client.Events(context.Background(), history.EventsRequest{Kind: "snapshot", Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range reply.Events {
			got = append(got, e.ID)
		}
		if cursor = reply.Next; cursor == "" {
			break
		}
	}
	if pages < 2 || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("%d pages of %d events, want every event once over at least 2 pages", pages, len(got))
	}
}

func TestBatchesOfBigTelemetryStayBounded(t *testing.T) {
	h := newHarness(t)
	store := &countingStore{Store: openStore(t, "")}
	// 10 messages a batch, so 500 rows make it due: one message of 1,000
	// points does alone. A due batch may grow while the writer is busy,
	// but never past 5 × 500 rows, which three such messages exceed.
	h.start(store, history.Config{BatchSize: 10, BatchWait: time.Second})
	t0 := time.Now().Add(-time.Hour)
	for i := range 5 {
		points := make([]history.TelemetryPoint, 1000)
		for j := range points {
			points[j] = history.TelemetryPoint{EntityID: "power", Time: t0.Add(time.Duration(i*1000+j) * time.Millisecond), Value: float64(j)}
		}
		h.publishTelemetry("meter", points...)
	}
	hmtest.WaitFor(t, 10*time.Second, "every point stored", func() bool { return store.points.Load() == 5000 })
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.biggest > 3 {
		t.Errorf("a write held %d messages of 1,000 points, want at most 3", store.biggest)
	}
}

// gatedStore holds every write until the gate opens.
type gatedStore struct {
	history.Store
	gate chan struct{}
}

func (g *gatedStore) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	<-g.gate
	return g.Store.Write(ctx, b)
}

func TestConsumerLagIsReported(t *testing.T) {
	h := newHarness(t)
	for i := range 50 {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: time.Now().Add(-time.Hour + time.Duration(i)*time.Second), Value: 1})
	}
	store := &gatedStore{Store: openStore(t, ""), gate: make(chan struct{})}
	h.start(store, history.Config{BatchSize: 1})
	var open sync.Once
	release := func() { open.Do(func() { close(store.gate) }) }
	t.Cleanup(release) // before the service stops, even if the test fails
	lag := func() float64 {
		return h.metric("homemesh_history_consumer_pending_messages", map[string]string{"stream": history.TelemetryStream(home)})
	}
	hmtest.WaitFor(t, 10*time.Second, "the backlog reported", func() bool { return lag() >= 40 })
	release()
	hmtest.WaitFor(t, 10*time.Second, "the backlog consumed", func() bool { return lag() == 0 })
}

func TestAYearOfHourlyStatisticsPagesUnderTheBusLimit(t *testing.T) {
	h := newHarness(t)
	store := openStore(t, "")
	h.start(store, history.Config{})
	const hours = 24 * 365
	end := time.Now().UTC().Truncate(time.Hour)
	start := end.Add(-hours * time.Hour)
	points := make([]history.Point, hours)
	for i := range points {
		// Values with all their digits make the longest replies.
		points[i] = history.Point{Entity: "temp", Device: "thermo", Kind: homemesh.KindSensor,
			Time: start.Add(time.Duration(i) * time.Hour), Numeric: true, Value: float64(i) / 3}
	}
	if _, err := store.Write(context.Background(), history.Batch{Home: home, Stream: "SEED", Messages: []history.Message{{Seq: 1, Points: points}}}); err != nil {
		t.Fatal(err)
	}
	var rows, pages int
	cursor := ""
	for {
		reply, err := h.client.History(context.Background(), history.HistoryRequest{EntityID: "temp", From: start, To: end,
			Resolution: history.Hourly, Limit: history.MaxLimit, Cursor: cursor})
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		rows += len(reply.Points)
		if cursor = reply.Next; cursor == "" {
			break
		}
	}
	if rows != hours || pages < 2 {
		t.Fatalf("%d rows in %d pages, want %d rows over at least 2 pages", rows, pages, hours)
	}
}

func TestMessagesHeldThroughAnOutageAreNotRedelivered(t *testing.T) {
	t.Cleanup(history.SetAckWait(time.Second))
	h := newHarness(t)
	store := &outageStore{countingStore: &countingStore{Store: openStore(t, "")}}
	store.down.Store(true)
	h.start(store, history.Config{})
	at := time.Now().Add(-time.Hour)
	for i := range 5 {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: at.Add(time.Duration(i) * time.Second), Value: 1})
	}
	// Three ack waits of outage: without the in-progress marks JetStream
	// would deliver the held messages again.
	hmtest.WaitFor(t, 10*time.Second, "writes failing", func() bool { return store.failures.Load() > 0 })
	down := time.Now()
	hmtest.WaitFor(t, 10*time.Second, "three ack waits", func() bool { return time.Since(down) > 3*time.Second })
	store.down.Store(false)
	hmtest.WaitFor(t, 10*time.Second, "every point stored", func() bool {
		return store.points.Load() == 5 && pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0
	})
	cons, err := h.conn.JetStream().Consumer(context.Background(), history.TelemetryStream(home), "history_"+home)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || store.duplicates.Load() != 0 {
		t.Errorf("%d messages redelivered, %d duplicates; want none", info.NumRedelivered, store.duplicates.Load())
	}
}

func TestRejectionFloodIsCountedButNotAllLogged(t *testing.T) {
	h := newHarness(t)
	h.start(openStore(t, ""), history.Config{})
	for range 100 {
		h.publish(bus.TelemetrySubject(home, "meter"), []byte(`garbage`))
	}
	rejected := func() float64 {
		return h.metric("homemesh_history_rejected_messages_total", map[string]string{"reason": "malformed"})
	}
	hmtest.WaitFor(t, 10*time.Second, "every message rejected", func() bool { return rejected() == 100 })
	if n := strings.Count(h.logs.String(), "history message rejected"); n > 40 {
		t.Errorf("%d rejection lines for 100 messages, want the log bounded", n)
	}
	// Once the bucket refills, the next line says how many were left out.
	hmtest.WaitFor(t, 10*time.Second, "a line counting the suppressed ones", func() bool {
		if strings.Contains(h.logs.String(), `"suppressed":`) {
			return true
		}
		h.publish(bus.TelemetrySubject(home, "meter"), []byte(`garbage`))
		return false
	})
}

// refusingStore refuses, as invalid, every batch holding a point of
// value 666, as a store with a rule the decoder does not know would.
type refusingStore struct{ *countingStore }

func (r refusingStore) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	for _, m := range b.Messages {
		for _, p := range m.Points {
			if p.Value == 666 {
				return history.WriteResult{}, fmt.Errorf("write history batch: %w", homemesh.Invalid("messages[0].points[0].value", "refused"))
			}
		}
	}
	return r.countingStore.Write(ctx, b)
}

func TestAMessageTheStoreRefusesIsTerminatedAlone(t *testing.T) {
	h := newHarness(t)
	store := refusingStore{&countingStore{Store: openStore(t, "")}}
	h.start(store, history.Config{BatchWait: time.Second})
	at := time.Now().Add(-time.Hour)
	for i, v := range []float64{1, 2, 666, 4, 5} {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: at.Add(time.Duration(i) * time.Second), Value: v})
	}
	hmtest.WaitFor(t, 10*time.Second, "the others stored and the refused one settled", func() bool {
		return store.points.Load() == 4 && pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0
	})
	if got := h.metric("homemesh_history_rejected_messages_total", map[string]string{"reason": "refused_by_store"}); got != 1 {
		t.Errorf("refused messages = %v, want 1", got)
	}
	if !strings.Contains(h.logs.String(), `"stream_seq":3`) {
		t.Errorf("the refused message (sequence 3) was not logged:\n%s", h.logs.String())
	}
}

func TestStoppingDuringAnOutageHandsTheBatchBack(t *testing.T) {
	h := newHarness(t)
	store := &outageStore{countingStore: &countingStore{Store: openStore(t, "")}}
	store.down.Store(true)
	stop := h.start(store, history.Config{})
	at := time.Now().Add(-time.Hour)
	for i := range 3 {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: at.Add(time.Duration(i) * time.Second), Value: 1})
	}
	hmtest.WaitFor(t, 10*time.Second, "writes failing", func() bool { return store.failures.Load() > 0 })
	stop() // Run returns nil: a clean stop, with the batch unstored
	if !strings.Contains(h.logs.String(), "history stopping with a batch not stored") {
		t.Error("the unstored batch was not logged")
	}
	store.down.Store(false)
	h.metrics = prometheus.NewRegistry()
	h.start(store, history.Config{})
	// Well within the 30 s ack wait: the batch was handed back at once.
	hmtest.WaitFor(t, 10*time.Second, "the batch stored by the next start", func() bool {
		return store.points.Load() == 3 && pendingAcks(t, h.conn, history.TelemetryStream(home)) == 0
	})
	if store.duplicates.Load() != 0 {
		t.Errorf("%d duplicates, want none", store.duplicates.Load())
	}
}

// The streams keep what history has not stored, however long it waits,
// and let go of it once stored: a full stream refuses new messages rather
// than dropping accepted ones.
func TestStreamsKeepWhatHistoryHasNotStored(t *testing.T) {
	h := newHarness(t)
	at := time.Now().Add(-time.Minute)
	for i := range 3 {
		h.publishTelemetry("meter", history.TelemetryPoint{EntityID: "power", Time: at.Add(time.Duration(i) * time.Second), Value: float64(i)})
	}
	ctx := context.Background()
	stream, err := h.conn.JetStream().Stream(ctx, history.TelemetryStream(home))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Retention != jetstream.InterestPolicy || info.Config.Discard != jetstream.DiscardNew || info.State.Msgs != 3 {
		t.Fatalf("before history runs: retention %v, discard %v, %d messages; want interest, new, 3", info.Config.Retention, info.Config.Discard, info.State.Msgs)
	}
	store := &countingStore{Store: openStore(t, "")}
	h.start(store, history.Config{})
	hmtest.WaitFor(t, 10*time.Second, "the points stored and let go", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && store.points.Load() == 3 && info.State.Msgs == 0
	})
}
