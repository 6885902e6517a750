// Package testdb gives tests a fresh database per test on each backend the
// library supports: a SQLite file in t.TempDir() always, and a schema of its
// own in the PostgreSQL database named by MINIMOST_TEST_POSTGRES when that
// is set. One set of tests thus runs against both.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of RawPostgres and counting.go
	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/authn/postgres"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// PostgresEnv names the environment variable with the URL of a PostgreSQL
// database the tests may create schemas in, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. .ci/run sets it.
const PostgresEnv = "MINIMOST_TEST_POSTGRES"

// FastHasher keeps tests quick: the lockout and HTTP logic do not depend on
// the cost of a hash. Tests of the default parameters set password.Default().
var FastHasher password.Hasher = password.PBKDF2{Iterations: 1000}

// DB is a fresh, empty database of one backend, private to one test.
type DB struct {
	Name string // "sqlite" or "postgres"
	// Raw is a pool of its own, for looking at rows behind the library's
	// back; bun formats its "?" placeholders for either backend.
	Raw *bun.DB
	// URL is what authn.Open (a file path) or postgres.Open (a URL) takes
	// for this database.
	URL string
}

// Each runs f once per backend, in parallel subtests named after them:
// SQLite always, PostgreSQL when MINIMOST_TEST_POSTGRES is set. Under CI (CI
// set) a missing variable fails the test instead of skipping it, so the
// PostgreSQL tests cannot silently stop running there.
func Each(t *testing.T, f func(t *testing.T, db *DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		f(t, SQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, Postgres(t))
	})
}

// Open returns a new Authenticator, on a new connection pool, over the
// database; it closes with the test. Two calls stand for two processes or
// machines. Unset Hasher and Logger become FastHasher and a discarding
// logger.
func (db *DB) Open(t testing.TB, cfg authn.Config) *authn.Authenticator {
	t.Helper()
	fill(&cfg)
	open := authn.Open
	if db.Name == "postgres" {
		open = postgres.Open
	}
	a, err := open(context.Background(), db.URL, cfg)
	if err != nil {
		t.Fatalf("opening %s: %v", db.Name, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestSecretKey is the key that seals TOTP secrets in the tests' databases:
// one key, so that every instance of a test opens the others' secrets.
var TestSecretKey = []byte("minimost test key, not a secret!")

// fill gives cfg the tests' Hasher, Logger and SecretKey when it has none.
func fill(cfg *authn.Config) {
	if cfg.SecretKey == nil {
		cfg.SecretKey = TestSecretKey
	}
	if cfg.Hasher == nil {
		cfg.Hasher = FastHasher
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// SQLite returns a new SQLite file database.
func SQLite(t testing.TB) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	return &DB{Name: "sqlite", Raw: RawSQLite(t, path), URL: path}
}

// RawSQLite opens a SQLite file directly, with none of the library's code.
func RawSQLite(t testing.TB, path string) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, sqlitedialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresURL returns the test database URL, or skips the test (fails it
// under CI).
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(PostgresEnv)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set under CI: the PostgreSQL tests must run there", PostgresEnv)
		}
		t.Skipf("PostgreSQL tests skipped: set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run them", PostgresEnv)
	}
	return u
}

// Postgres creates a schema of its own for the test in the database of
// MINIMOST_TEST_POSTGRES, so that tests stay independent and can run in
// parallel, and drops it when the test ends.
func Postgres(t testing.TB) *DB {
	t.Helper()
	base := PostgresURL(t)
	schema := "authn_test_" + strings.ToLower(rand.Text()[:12])
	admin := RawPostgres(t, base)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("PostgreSQL at %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema) // pgx sends it as a run-time parameter
	u.RawQuery = q.Encode()
	return &DB{Name: "postgres", Raw: RawPostgres(t, u.String()), URL: u.String()}
}

// RawPostgres opens a small pool of its own on dsn.
func RawPostgres(t testing.TB, dsn string) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	sqldb.SetMaxOpenConns(2)
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("PostgreSQL at %s unreachable: %v", PostgresEnv, err)
	}
	return db
}
