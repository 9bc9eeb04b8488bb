package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// A migration is one embedded SQL file, named NNNN_what.sql; its number is
// its version.
type migration struct {
	version int
	name    string
	sql     string
}

// parseMigrationName returns the version and name of a migration file
// name such as "0001_history.sql".
func parseMigrationName(file string) (version int, name string, err error) {
	base, ok := strings.CutSuffix(file, ".sql")
	if !ok {
		return 0, "", fmt.Errorf("migration %q: name does not end in .sql", file)
	}
	num, name, ok := strings.Cut(base, "_")
	if !ok || name == "" {
		return 0, "", fmt.Errorf("migration %q: name is not NNNN_name.sql", file)
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, "", fmt.Errorf("migration %q: version %q is not a number", file, num)
	}
	version, err = strconv.Atoi(num)
	if err != nil || version <= 0 {
		return 0, "", fmt.Errorf("migration %q: version %q is not a positive number", file, num)
	}
	return version, name, nil
}

// loadMigrations reads the migrations of fsys, ordered by version; the
// versions must be 1, 2, 3, … without gaps or repeats, so that a database's
// version says exactly which migrations it has.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	files, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, f := range files {
		file := strings.TrimPrefix(f, "migrations/")
		version, name, err := parseMigrationName(file)
		if err != nil {
			return nil, err
		}
		text, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: name, sql: string(text)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: expected version %d", m.version, m.name, i+1)
		}
	}
	return out, nil
}

// migrate brings the database of db up to the latest of migrations, all in
// one immediate transaction: a crash leaves either the old schema or the
// new one, and two processes opening one file at once apply each migration
// once. A database migrated by a newer binary is refused rather than used
// with a schema this code does not know.
func migrate(ctx context.Context, db *sql.DB, migrations []migration, now time.Time) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return err
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return err
	}
	if current > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program's %d: use a newer homemesh", current, len(migrations))
	}
	for _, m := range migrations[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, now.UnixMicro()); err != nil {
			return err
		}
	}
	return tx.Commit()
}
