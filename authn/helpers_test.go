package authn_test

import (
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/uptrace/bun"
)

// fastHasher is the cheap Hasher of the tests.
var fastHasher = testdb.FastHasher

type countingHasher = testdb.CountingHasher

func newCountingHasher(h password.Hasher) *countingHasher { return testdb.NewCountingHasher(h) }

func newClock() *testdb.Clock { return testdb.NewClock() }

// openTest opens a fresh SQLite file in t.TempDir(); it closes with the test.
func openTest(t testing.TB, cfg authn.Config) (*authn.Authenticator, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	return openPath(t, path, cfg), path
}

// openPath opens the SQLite file at path with testdb's test defaults.
func openPath(t testing.TB, path string, cfg authn.Config) *authn.Authenticator {
	t.Helper()
	return (&testdb.DB{Name: "sqlite", URL: path}).Open(t, cfg)
}

// rawDB opens the SQLite file directly, to look at rows behind the
// library's back.
func rawDB(t testing.TB, path string) *bun.DB { return testdb.RawSQLite(t, path) }

// loadPythonDB writes the Python application's auth.db dump into a new file.
func loadPythonDB(t testing.TB) string {
	t.Helper()
	dump, err := os.ReadFile("testdata/minimost-auth.sql")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.db")
	db := rawDB(t, path)
	if _, err := db.DB.Exec(string(dump)); err != nil {
		t.Fatalf("loading the dump: %v", err)
	}
	if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil { // as the Python app left it
		t.Fatal(err)
	}
	db.Close()
	return path
}

type userRow struct {
	Username string
	Hash     string
	Failed   sql.NullInt64
	Until    sql.NullFloat64
}

// readUser reads one row of users directly.
func readUser(t testing.TB, db *bun.DB, name string) userRow {
	t.Helper()
	var u userRow
	err := db.QueryRow("SELECT username, password_hash, failed_attempts, lockout_until FROM users WHERE username = ?", name).
		Scan(&u.Username, &u.Hash, &u.Failed, &u.Until)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return u
}

func allUsers(t testing.TB, db *bun.DB) []userRow {
	t.Helper()
	rows, err := db.Query("SELECT username, password_hash, failed_attempts, lockout_until FROM users ORDER BY username")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []userRow
	for rows.Next() {
		var u userRow
		if err := rows.Scan(&u.Username, &u.Hash, &u.Failed, &u.Until); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

const goodPassword = "a long enough passphrase 42"

// newTextLogger logs to w, concurrency-safe.
func newTextLogger(w *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// readsFromMemory reports whether the Authenticators of db answer reads
// from memory while nothing is committed: SQLite files, on Linux, where the
// WAL-index fast path is built (see walindex_linux.go).
func readsFromMemory(db *testdb.DB) bool {
	return db.Name == "sqlite" && runtime.GOOS == "linux"
}

// syncLog is a log buffer safe for the writes of several goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logger is a text logger writing to l.
func (l *syncLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }
