package config

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/postgres"
)

// HistoryStore is where history is kept, as HistoryStore and
// HistoryShards say: exactly one of its fields is set.
type HistoryStore struct {
	SQLite   string           // path of the SQLite database
	Postgres string           // DSN of the one PostgreSQL database
	Shards   []postgres.Shard // PostgreSQL databases by home
}

// String describes the store for logs and messages without any secret: the
// SQLite path, a PostgreSQL database's host and name, or the shard names.
func (h HistoryStore) String() string {
	switch {
	case h.SQLite != "":
		return "sqlite " + h.SQLite
	case h.Postgres != "":
		return "postgres " + dsnPlace(h.Postgres)
	}
	names := make([]string, len(h.Shards))
	for i, s := range h.Shards {
		names[i] = s.Name
	}
	return "postgres shards " + strings.Join(names, ", ")
}

// dsnPlace is the host and database of a PostgreSQL URL, never its user
// information or parameters.
func dsnPlace(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Host + u.Path
}

// The messages of history-store errors: fixed texts, because the setting
// may hold a password and must never be repeated.
const (
	msgSQLitePath = "sqlite: must be followed by a file path, e.g. sqlite:/var/lib/homemesh/history.db"
	msgBadURL     = "is not a valid PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DATABASE)"
	msgStoreKind  = "must be empty (SQLite in the data directory), sqlite:PATH or a postgres:// URL"
)

// History parses HistoryStore and HistoryShards. Errors name the setting
// and never quote a DSN, which may hold a password.
func (c *Config) History() (HistoryStore, error) {
	if len(c.HistoryShards) > 0 {
		if c.HistoryStore != "" {
			return HistoryStore{}, homemesh.Invalid("history-shards", "take the place of --history-store; drop one")
		}
		shards, err := postgres.ParseShards(c.HistoryShards)
		if err != nil {
			return HistoryStore{}, renameField(err, "shards", "history-shards")
		}
		return HistoryStore{Shards: shards}, nil
	}
	s := strings.TrimSpace(c.HistoryStore)
	switch {
	case s == "":
		return HistoryStore{SQLite: filepath.Join(c.Data, "history.db")}, nil
	case strings.HasPrefix(s, "sqlite:"):
		path := strings.TrimPrefix(s, "sqlite:")
		if path == "" || strings.HasPrefix(path, "//") {
			return HistoryStore{}, homemesh.Invalid("history-store", msgSQLitePath)
		}
		return HistoryStore{SQLite: path}, nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		u, err := url.Parse(s)
		if err != nil || u.Opaque != "" {
			return HistoryStore{}, homemesh.Invalid("history-store", msgBadURL)
		}
		return HistoryStore{Postgres: s}, nil
	}
	return HistoryStore{}, homemesh.Invalid("history-store", msgStoreKind)
}

// Retention parses HistoryRetention.
func (c *Config) Retention() (history.RetentionPolicy, error) {
	p, err := history.ParseRetention(c.HistoryRetention)
	if err != nil {
		return p, renameField(err, "history_retention", "history-retention")
	}
	return p, nil
}

// renameField returns err with its field renamed from the parser's name
// to the setting's: prefix old becomes new, so that "shards[1].dsn" of
// postgres.ParseShards reads "history-shards[1].dsn".
func renameField(err error, old, new string) error {
	var he *homemesh.Error
	if !errors.As(err, &he) || !strings.HasPrefix(he.Field, old) {
		return err
	}
	return &homemesh.Error{Kind: he.Kind, Field: new + strings.TrimPrefix(he.Field, old), Message: he.Message}
}
