package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

func openSharded(t *testing.T, shards ...Shard) *Sharded {
	t.Helper()
	s, err := OpenSharded(context.Background(), shards)
	if err != nil {
		t.Fatalf("OpenSharded: %v", err)
	}
	return s
}

// homesIn lists the homes with points in the database at dsn.
func homesIn(t *testing.T, dsn string) []string {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.pool.Query(context.Background(), "SELECT DISTINCT e.home FROM entities e JOIN points p ON p.entity_id = e.id ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

func TestShardedPlacesHomesAndNeverMovesThem(t *testing.T) {
	a, b, c := freshDatabase(t), freshDatabase(t), freshDatabase(t)
	ctx := context.Background()
	write := func(s *Sharded, home string, seq uint64) {
		t.Helper()
		if _, err := s.Write(ctx, oneEach(home, seq, numeric("temp", t0, float64(seq)))); err != nil {
			t.Fatalf("write %s: %v", home, err)
		}
	}

	s := openSharded(t, Shard{"a", a}, Shard{"b", b})
	for i, h := range []string{"h1", "h2", "h3", "h4", "h5"} {
		write(s, h, uint64(i+1))
	}
	write(s, "h1", 10) // an existing home stays put
	if got := strings.Join(homesIn(t, a), ","); got != "h1,h3,h5" {
		t.Errorf("shard a holds %s, want h1,h3,h5", got)
	}
	if got := strings.Join(homesIn(t, b), ","); got != "h2,h4" {
		t.Errorf("shard b holds %s, want h2,h4", got)
	}
	if p := history1(t, s, "h2", "temp", history.Raw); len(p.Points) != 1 || p.Points[0].Value != 2 {
		t.Errorf("h2 history through the sharded store = %+v", p)
	}
	if p := history1(t, s, "nobody", "temp", history.Raw); len(p.Points) != 0 {
		t.Errorf("unknown home has history %+v", p)
	}
	s.Close()

	// Adding a shard: old homes stay, new ones fill the emptiest shard.
	s = openSharded(t, Shard{"a", a}, Shard{"b", b}, Shard{"c", c})
	write(s, "h1", 11)
	write(s, "h2", 12)
	for i, h := range []string{"h6", "h7", "h8"} {
		write(s, h, uint64(20+i))
	}
	if got := strings.Join(homesIn(t, c), ","); got != "h6,h7" {
		t.Errorf("shard c holds %s, want h6,h7", got)
	}
	if got := strings.Join(homesIn(t, b), ","); got != "h2,h4,h8" {
		t.Errorf("shard b holds %s, want h2,h4,h8", got)
	}
	if p := history1(t, s, "h1", "temp", history.Raw); len(p.Points) != 1 || p.Points[0].Value != 1 {
		t.Errorf("h1 history after adding a shard = %+v", p)
	}
	s.Close()

	// Without shard c, its homes are an error naming it, not re-placed;
	// the others go on.
	s = openSharded(t, Shard{"a", a}, Shard{"b", b})
	_, err := s.Write(ctx, oneEach("h6", 30, numeric("temp", t0, 1)))
	if err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("write to a home on a removed shard = %v", err)
	}
	if _, err := s.History(ctx, history.HistoryQuery{Home: "h7", Entity: "temp", From: t0, To: t0, Resolution: history.Raw}); err == nil {
		t.Error("reading a home on a removed shard succeeded")
	}
	write(s, "h3", 31)
	s.Close()

	// The directory shard cannot be dropped or moved from first place, and
	// a database cannot change its name.
	for _, cfg := range [][]Shard{
		{{"b", b}, {"c", c}},
		{{"b", b}, {"a", a}},
		{{"a", a}, {"x", b}},
	} {
		s, err := OpenSharded(ctx, cfg)
		if err == nil {
			s.Close()
			t.Errorf("OpenSharded(%s, %s) succeeded", cfg[0].Name, cfg[1].Name)
		} else if homemesh.ErrorKind(err) != homemesh.KindConflict {
			t.Errorf("OpenSharded(%s, %s) = %v, want a conflict", cfg[0].Name, cfg[1].Name, err)
		}
	}
}

func TestShardedPurgesEveryShard(t *testing.T) {
	a, b := freshDatabase(t), freshDatabase(t)
	s := openSharded(t, Shard{"a", a}, Shard{"b", b})
	defer s.Close()
	for i, h := range []string{"h1", "h2"} {
		mustWrite(t, s, oneEach(h, 1, numeric("temp", t0.Add(-11*24*time.Hour), float64(i))))
	}
	res, err := s.Purge(context.Background(), t0, history.DefaultRetention(), 100)
	if err != nil || res.Points != 2 {
		t.Errorf("Purge = %+v, %v; want 2 points from two shards", res, err)
	}
}

func TestParseShards(t *testing.T) {
	got, err := ParseShards([]string{"eu1=postgres://u:pw@db1/history", " eu2 = host=db2 dbname=history "})
	if err != nil {
		t.Fatal(err)
	}
	want := []Shard{{"eu1", "postgres://u:pw@db1/history"}, {"eu2", "host=db2 dbname=history"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseShards = %v, want %v", got, want)
	}
	for _, tt := range []struct {
		specs []string
		field string
	}{
		{nil, "shards"},
		{[]string{"postgres://db1/x"}, "shards[0]"},
		{[]string{"Eu=postgres://db1/x"}, "shards[0].name"},
		{[]string{"=postgres://db1/x"}, "shards[0].name"},
		{[]string{"a=postgres://db1/x", "a=postgres://db2/x"}, "shards[1].name"},
		{[]string{"a=postgres://db1/x", "b="}, "shards[1].dsn"},
		{[]string{"a=postgres://db1/x", "b=postgres://db1:5432/x"}, "shards[1].dsn"},
		{[]string{"a=postgres://u:secret@db1:notaport/x"}, "shards[0].dsn"},
	} {
		_, err := ParseShards(tt.specs)
		if homemesh.ErrorField(err) != tt.field {
			t.Errorf("ParseShards(%q) = %v, want invalid %s", tt.specs, err, tt.field)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseShards error quotes the DSN: %v", err)
		}
	}
}

func FuzzParseShards(f *testing.F) {
	f.Add("a=postgres://db1/x", "b=host=db2 dbname=y")
	f.Add("a=postgres://u:pw@db1:5432/x?sslmode=disable", "a=")
	f.Add("=", "x=y=z")
	f.Fuzz(func(t *testing.T, s1, s2 string) {
		shards, err := ParseShards([]string{s1, s2})
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		if len(shards) != 2 || shards[0].Name == shards[1].Name {
			t.Fatalf("ParseShards = %v", shards)
		}
		for _, sh := range shards {
			if !shardName.MatchString(sh.Name) || sh.DSN == "" {
				t.Fatalf("accepted shard %+v", sh)
			}
		}
	})
}

func TestShardedPacksEveryShard(t *testing.T) {
	shards := []Shard{{"a", freshSchema(t)}, {"b", freshSchema(t)}}
	s := openSharded(t, shards...)
	defer s.Close()
	start := history.Day(t0).Add(-2 * day)
	want := map[string][]history.Stat{}
	for i, h := range []string{"h1", "h2"} {
		var pts []history.Point
		for tm := start; tm.Before(t0); tm = tm.Add(30 * time.Minute) {
			pts = append(pts, numeric("temp", tm, float64(i)))
		}
		mustWrite(t, s, oneEach(h, 1, pts...))
		want[h] = history1(t, s, h, "temp", history.Hourly).Stats
	}
	keepAll(t, s, t0, 10)
	for i, st := range s.shards {
		if before, _, days := hourlyForms(t, st, history.Day(t0)); before != 0 || len(days) != 2 {
			t.Errorf("shard %s: %d rows of closed days left in stats_1h, %d days packed; want 0 and 2", shards[i].Name, before, len(days))
		}
	}
	for h, stats := range want {
		if diff := cmp.Diff(stats, history1(t, s, h, "temp", history.Hourly).Stats); diff != "" {
			t.Errorf("%s after packing (-before +after):\n%s", h, diff)
		}
	}
}
