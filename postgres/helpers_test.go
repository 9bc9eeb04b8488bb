package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDSN returns the DSN of the PostgreSQL server tests may use, skipping
// the test when none is configured.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("HOMEMESH_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("HOMEMESH_TEST_POSTGRES_DSN is unset: no PostgreSQL server to test against")
	}
	return dsn
}

// withDatabase returns dsn pointing at database name on the same server.
func withDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal("HOMEMESH_TEST_POSTGRES_DSN does not parse as a URL")
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// freshDatabase creates an empty database on the test server, dropped when
// the test ends, and returns its DSN.
func freshDatabase(t testing.TB) string {
	t.Helper()
	base := testDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name := "hm_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return withDatabase(t, base, name)
}

// openFresh opens a store on a fresh database, closed when the test ends.
func openFresh(t testing.TB) (*Store, string) {
	t.Helper()
	dsn := freshDatabase(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}
