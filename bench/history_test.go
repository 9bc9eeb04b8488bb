package bench

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/registry"
)

// TestHistory runs a tiny configuration of the whole benchmark on each
// store: every accepted point must be stored and read back, and every
// figure must be filled in. It asserts nothing about speed.
func TestHistory(t *testing.T) {
	dsn := os.Getenv("HOMEMESH_TEST_POSTGRES_DSN")
	tests := []struct {
		name       string
		store      string
		ppm        int
		telemetry  bool
		maxBacklog int64
	}{
		{"sqlite/state changes", StoreSQLite, 1, false, 0},
		{"sqlite/state changes in batches", StoreSQLite, 7, false, 0},
		{"sqlite/telemetry unbounded", StoreSQLite, 25, true, -1},
		// A backlog of one byte makes every publish wait for the store.
		{"sqlite/held back by the store", StoreSQLite, 1, false, 1},
		{"postgres/state changes", StorePostgres, 5, false, 0},
		{"postgres/telemetry", StorePostgres, 25, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.store == StorePostgres && dsn == "" {
				t.Skip("HOMEMESH_TEST_POSTGRES_DSN is unset")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ppm := tt.ppm
			cfg := HistoryConfig{
				Store: tt.store, DSN: dsn, Duration: 500 * time.Millisecond, Entities: 10,
				PointsPerMessage: ppm, Telemetry: tt.telemetry, Queries: 3, InFlight: 64, MaxBacklog: tt.maxBacklog,
			}
			res, err := History(ctx, cfg)
			out, _ := json.MarshalIndent(res, "", "  ")
			t.Logf("%s", out)
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			in := res.Ingest
			if in.PublishedPoints == 0 || in.PublishedPoints != in.PublishedMessages*ppm {
				t.Errorf("published %d messages, %d points; want some, %d points each", in.PublishedMessages, in.PublishedPoints, ppm)
			}
			if tt.maxBacklog == 1 && in.BacklogWaits == 0 {
				t.Errorf("no publish waited for the store with a backlog bound of one byte")
			}
			if in.StoredPoints != in.PublishedPoints || in.ReadBackPoints != in.PublishedPoints || in.FailedMessages != 0 {
				t.Errorf("published %d points, stored %d, read back %d, failed %d messages", in.PublishedPoints, in.StoredPoints, in.ReadBackPoints, in.FailedMessages)
			}
			if in.Seconds <= 0 || in.PointsPerSec <= 0 || in.MessagesPerSec <= 0 || in.PublishMsgsPerSec <= 0 || in.Writes == 0 ||
				in.WriteMS.Count != in.Writes || in.WriteMS.Max <= 0 || in.WritingSeconds <= 0 {
				t.Errorf("ingest figures missing: %+v", in)
			}
			d := res.Disk
			if d.RawTable == "" || d.RawBytes <= 0 || d.TotalBytes < d.RawBytes || d.Points != in.PublishedPoints || d.RawBytesPer <= 0 {
				t.Errorf("disk figures missing: %+v", d)
			}
			for name, q := range map[string]QueryFigures{"raw_24h": res.Queries.Raw24h, "hourly_1y": res.Queries.Hourly1y} {
				if q.Rows == 0 || q.Pages == 0 || q.Bus.Count != 3 || q.Store.Count != 3 || q.Bus.Max <= 0 || q.Store.Max <= 0 ||
					q.Bus.P50 > q.Bus.P99 || q.Bus.P99 > q.Bus.Max {
					t.Errorf("query %s figures missing: %+v", name, q)
				}
			}
			// The JSON the command prints names every figure.
			var fields map[string]any
			if err := json.Unmarshal(out, &fields); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"store", "database", "path", "ingest", "disk", "queries"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("JSON lacks %q", k)
				}
			}
			for _, k := range []string{"published_points", "stored_points", "points_per_sec", "messages_per_sec", "publish_msgs_per_sec", "seconds"} {
				if _, ok := fields["ingest"].(map[string]any)[k]; !ok {
					t.Errorf("JSON ingest lacks %q", k)
				}
			}
		})
	}
}

func TestHistoryInvalid(t *testing.T) {
	tests := []struct {
		cfg   HistoryConfig
		field string
	}{
		{HistoryConfig{Store: "mysql"}, "store"},
		{HistoryConfig{Store: StoreSQLite, Entities: -1}, "entities"},
		{HistoryConfig{Store: StoreSQLite, PointsPerMessage: MaxPointsPerMessage + 1}, "points_per_message"},
		{HistoryConfig{Store: StoreSQLite, Duration: -time.Second}, "duration"},
		{HistoryConfig{Store: StoreSQLite, Queries: -1}, "queries"},
		{HistoryConfig{Store: StoreSQLite, Publishers: 4, InFlight: 3}, "in_flight"},
		{HistoryConfig{Store: StorePostgres}, "dsn"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			_, err := History(context.Background(), tt.cfg)
			if got := homemesh.ErrorField(err); got != tt.field {
				t.Errorf("History(%+v) = %v, want an error naming %q", tt.cfg, err, tt.field)
			}
		})
	}
}

// TestStateChangePayload checks the hand-built state changes against what
// the registry's type decodes: the service under test must read what the
// registry writes.
func TestStateChangePayload(t *testing.T) {
	e := benchFleet("h1", 5)[1].entities[0]
	t1 := time.Date(2026, 11, 29, 10, 0, 0, 123456000, time.UTC)
	first := stateChangePayload("h1", e, 21.5, t1)
	second := stateChangePayload("h1", e, 18, t1.Add(time.Second))
	var got1, got2 registry.StateChange
	for _, p := range []struct {
		data []byte
		into *registry.StateChange
	}{{first, &got1}, {second, &got2}} {
		if err := json.Unmarshal(p.data, p.into); err != nil {
			t.Fatalf("%s: %v", p.data, err)
		}
	}
	state1 := homemesh.State{Value: 21.5, Available: true, ChangedAt: t1, UpdatedAt: t1}
	want := registry.StateChange{HomeID: "h1", DeviceID: "bench-1", EntityID: "bench-1_t0", Kind: homemesh.KindSensor, State: state1}
	if diff := cmp.Diff(want, got1); diff != "" {
		t.Errorf("first change (-want +got):\n%s", diff)
	}
	t2 := t1.Add(time.Second)
	want2 := want
	want2.State, want2.Old = homemesh.State{Value: float64(18), Available: true, ChangedAt: t2, UpdatedAt: t2}, state1
	if diff := cmp.Diff(want2, got2); diff != "" {
		t.Errorf("second change (-want +got):\n%s", diff)
	}
}

func TestTelemetryPayload(t *testing.T) {
	d := benchFleet("h1", 3)[0]
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	data := telemetryPayload(d, 7, 40, now)
	var got history.Telemetry
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if len(got.Points) != 7 {
		t.Fatalf("%d points, want 7: %s", len(got.Points), data)
	}
	seen := map[string]time.Time{}
	for i, p := range got.Points {
		wantEntity := d.entities[i%3].id
		if p.EntityID != wantEntity || p.Value != benchValue(40+i) {
			t.Errorf("point %d = %+v, want entity %s value %v", i, p, wantEntity, benchValue(40+i))
		}
		// Every point of an entity has its own microsecond.
		if last, ok := seen[p.EntityID]; ok && !p.Time.After(last) {
			t.Errorf("point %d of %s at %v, not after %v", i, p.EntityID, p.Time, last)
		}
		seen[p.EntityID] = p.Time
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://postgres@127.0.0.1:5432/b1?sslmode=disable"},
		{"postgresql://u:p%40ss@h/db", "postgresql://u:p%40ss@h/b1"},
		{"host=h user=u dbname=test", "host=h user=u dbname=test dbname=b1"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.dsn, "b1")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tt.dsn, got, err, tt.want)
		}
	}
	if _, err := withDatabase("postgres://u:secret@h:bad/x", "b1"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad URL: %v, want an error that does not echo the password", err)
	}
}
