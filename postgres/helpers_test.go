package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	name := createTemporary(t, base, "CREATE DATABASE %s", "DROP DATABASE IF EXISTS %s WITH (FORCE)")
	return withDatabase(t, base, name)
}

// createTemporary runs create (a statement with %s for a fresh name) on the
// test server and drop (likewise) when the test ends; it returns the name.
func createTemporary(t testing.TB, base, create, drop string) string {
	t.Helper()
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
	if _, err := conn.Exec(ctx, fmt.Sprintf(create, name)); err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(create, name), err)
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
		if _, err := conn.Exec(ctx, fmt.Sprintf(drop, name)); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// freshSchema creates an empty schema in the test database, dropped when
// the test ends, and returns a DSN whose connections use it: a fresh store
// at a fraction of the cost of a fresh database.
func freshSchema(t testing.TB) string {
	t.Helper()
	base := testDSN(t)
	name := createTemporary(t, base, "CREATE SCHEMA %s", "DROP SCHEMA IF EXISTS %s CASCADE")
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal("HOMEMESH_TEST_POSTGRES_DSN does not parse as a URL")
		}
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + name
}

// openFresh opens a store on a fresh database, closed when the test ends.
func openFresh(t testing.TB) (*Store, string) {
	t.Helper()
	dsn := freshSchema(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}
