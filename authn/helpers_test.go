package authn_test

import (
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/uptrace/bun"
)

// fastHasher is the cheap Hasher of the tests.
var fastHasher = testdb.FastHasher

// countingHasher counts verifications per encoded hash, so a test can tell
// real password checks from dummy ones.
type countingHasher struct {
	password.Hasher
	mu       sync.Mutex
	verifies map[string]int
	hashes   atomic.Int64
	// onVerify, when set, runs inside Verify, before it returns.
	onVerify func(encoded string)
}

func newCountingHasher(h password.Hasher) *countingHasher {
	return &countingHasher{Hasher: h, verifies: map[string]int{}}
}

func (c *countingHasher) Verify(encoded, pw string) (bool, error) {
	c.mu.Lock()
	c.verifies[encoded]++
	c.mu.Unlock()
	if c.onVerify != nil {
		c.onVerify(encoded)
	}
	return c.Hasher.Verify(encoded, pw)
}

func (c *countingHasher) Hash(pw string) (string, error) {
	c.hashes.Add(1)
	return c.Hasher.Hash(pw)
}

func (c *countingHasher) count(encoded string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verifies[encoded]
}

// clock is a settable Config.Now.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

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
