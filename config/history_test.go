package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/postgres"
)

func TestHistoryStore(t *testing.T) {
	tests := []struct {
		name   string
		store  string
		shards []string
		want   HistoryStore
		text   string
	}{
		{"default", "", nil, HistoryStore{SQLite: filepath.Join("data", "history.db")}, "sqlite data/history.db"},
		{"sqlite elsewhere", "sqlite:/var/lib/hm/history.db", nil, HistoryStore{SQLite: "/var/lib/hm/history.db"}, "sqlite /var/lib/hm/history.db"},
		{"postgres", "postgres://hm:s3cret@db:5432/history?sslmode=require", nil,
			HistoryStore{Postgres: "postgres://hm:s3cret@db:5432/history?sslmode=require"}, "postgres db:5432/history"},
		{"postgresql", "postgresql://db/history", nil, HistoryStore{Postgres: "postgresql://db/history"}, "postgres db/history"},
		{"shards", "", []string{"eu1=postgres://hm:s3cret@db1/history", "eu2=postgres://hm:s3cret@db2/history"},
			HistoryStore{Shards: []postgres.Shard{{Name: "eu1", DSN: "postgres://hm:s3cret@db1/history"}, {Name: "eu2", DSN: "postgres://hm:s3cret@db2/history"}}},
			"postgres shards eu1, eu2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Data, c.HistoryStore, c.HistoryShards = "data", tt.store, tt.shards
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := c.History()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("store (-want +got):\n%s", diff)
			}
			if got.String() != tt.text {
				t.Errorf("String() = %q, want %q", got.String(), tt.text)
			}
		})
	}
}

// TestHistorySettingsFromTheEnvironment checks the list settings the way
// an operator sets them: comma-separated in HOMEMESH_*.
func TestHistorySettingsFromTheEnvironment(t *testing.T) {
	c := Default()
	env := map[string]string{
		"HOMEMESH_HISTORY_SHARDS":    "a=postgres://db1/h, b=postgres://db2/h",
		"HOMEMESH_HISTORY_RETENTION": "raw=7d,sensor.raw=30d,events=forever",
	}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	store, _ := c.History()
	if len(store.Shards) != 2 || store.Shards[1].Name != "b" {
		t.Errorf("shards = %+v", store.Shards)
	}
	p, err := c.Retention()
	if err != nil {
		t.Fatal(err)
	}
	if p.Default.Raw != 7*24*time.Hour || p.For(homemesh.KindSensor).Raw != 30*24*time.Hour || p.Events != 0 {
		t.Errorf("retention = %+v", p)
	}
}

// TestHistoryErrorsKeepPasswords checks that no error about a history
// setting repeats a password.
func TestHistoryErrorsKeepPasswords(t *testing.T) {
	for _, tt := range []struct {
		store  string
		shards []string
	}{
		{store: "postgress://hm:s3cret@db/history"},
		{store: "postgres://hm:s3cret@db/%zz"},
		{store: "postgres://hm:s3cret@db/history", shards: []string{"a=postgres://hm:s3cret@db1/h"}},
		{shards: []string{"a=postgres://hm:s3cret@db1/h", "b=postgres://hm:s3cret@db1/h"}},
		{shards: []string{"A=postgres://hm:s3cret@db1/h"}},
		{shards: []string{"a=postgres://hm:s3cret@db1:port/h"}},
	} {
		c := Default()
		c.HistoryStore, c.HistoryShards = tt.store, tt.shards
		err := c.Validate()
		if err == nil {
			t.Errorf("%+v: accepted", tt)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || !strings.HasPrefix(homemesh.ErrorField(err), "history-") {
			t.Errorf("%+v: error %q (field %q)", tt, err, homemesh.ErrorField(err))
		}
	}
}

// FuzzHistoryStore checks that any history_store is accepted or refused
// naming the setting, and that neither the error nor the description of
// an accepted store ever repeats a URL's password: errors are fixed
// texts.
func FuzzHistoryStore(f *testing.F) {
	for _, s := range []string{"", "sqlite:", "sqlite:/x.db", "postgres://u:pw@h:5432/db?sslmode=disable", "postgresql://u:pw@[::1]/db",
		"postgres://u:p%40ss@h/db", "mysql://u:pw@h/db", "postgres://u:pw@h:bad/db", "postgres:u:pw"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Default()
		c.HistoryStore = s
		var password string
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			password, _ = u.User.Password()
		}
		store, err := c.History()
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "history-store" {
				t.Fatalf("%q: error %v does not name history-store", s, err)
			}
			if msg := homemesh.ErrorMessage(err); msg != msgSQLitePath && msg != msgBadURL && msg != msgStoreKind {
				t.Fatalf("%q: error %q is not one of the fixed messages", s, msg)
			}
			return
		}
		if len(password) >= 4 && strings.Contains(store.String(), password) {
			t.Fatalf("%q: description %q shows the password", s, store.String())
		}
	})
}
