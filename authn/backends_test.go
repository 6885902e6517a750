package authn_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// postgresEnv names the environment variable with the URL of a PostgreSQL
// database the tests may create schemas in, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. .ci/run sets it.
const postgresEnv = "MINIMOST_TEST_POSTGRES"

// testDB is a fresh, empty database of one backend, private to one test.
type testDB struct {
	name string // "sqlite" or "postgres"
	// raw is a pool of its own, for looking at rows behind the library's
	// back; bun formats its "?" placeholders for either backend.
	raw *bun.DB
	// open returns a new Authenticator, on a new connection pool, over
	// the database: two calls stand for two processes or machines.
	open func(t testing.TB, cfg authn.Config) *authn.Authenticator
}

// eachBackend runs f once per backend: SQLite always, PostgreSQL when
// MINIMOST_TEST_POSTGRES is set. Under CI (CI set) a missing variable fails
// the test instead of skipping it, so the PostgreSQL tests cannot silently
// stop running there.
func eachBackend(t *testing.T, f func(t *testing.T, db *testDB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		f(t, newSQLiteDB(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, newPostgresDB(t))
	})
}

func newSQLiteDB(t testing.TB) *testDB {
	path := filepath.Join(t.TempDir(), "auth.db")
	return &testDB{
		name: "sqlite",
		raw:  rawDB(t, path),
		open: func(t testing.TB, cfg authn.Config) *authn.Authenticator { return openPath(t, path, cfg) },
	}
}

// postgresURL returns the test database URL, or skips (fails under CI).
func postgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(postgresEnv)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set under CI: the PostgreSQL tests must run there", postgresEnv)
		}
		t.Skipf("PostgreSQL tests skipped: set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run them", postgresEnv)
	}
	return u
}

// newPostgresDB creates a schema of its own for the test in the database of
// MINIMOST_TEST_POSTGRES, so that tests stay independent and can run in
// parallel, and drops it afterwards.
func newPostgresDB(t testing.TB) *testDB {
	t.Helper()
	base := postgresURL(t)
	schema := "authn_test_" + strings.ToLower(rand.Text()[:12])
	admin := openRawPostgres(t, base)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("PostgreSQL at %s: %v", postgresEnv, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", postgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema) // pgx sends it as a run-time parameter
	u.RawQuery = q.Encode()
	dsn := u.String()
	return &testDB{
		name: "postgres",
		raw:  openRawPostgres(t, dsn),
		open: func(t testing.TB, cfg authn.Config) *authn.Authenticator {
			t.Helper()
			a, err := authn.OpenPostgres(context.Background(), dsn, testConfig(cfg))
			if err != nil {
				t.Fatalf("OpenPostgres: %v", err)
			}
			t.Cleanup(func() { a.Close() })
			return a
		},
	}
}

func openRawPostgres(t testing.TB, dsn string) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	sqldb.SetMaxOpenConns(2)
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("PostgreSQL at %s unreachable: %v", postgresEnv, err)
	}
	return db
}

// countRows counts the rows of a table matching a condition.
func countRows(t testing.TB, db *bun.DB, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", table, where), args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
