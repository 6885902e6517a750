package minimost_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/uptrace/bun"
)

// mountTmpfs mounts a tmpfs of size at a new directory, or skips the test
// when this process may not mount (not root, or no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("mount", "-o", "remount,rw", dir).Run()
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// take returns what was logged since the last take.
func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// brokenSite is a server over a SQLite file that a test is about to break.
type brokenSite struct {
	*site
	path string
	logs *syncBuffer
	c    *http.Client // a client with a session
}

func newBrokenSite(t *testing.T, dir string) *brokenSite {
	t.Helper()
	return newBrokenSiteOn(t, filepath.Join(dir, "auth.db"), nil)
}

// newBrokenSiteOn is newBrokenSite over the SQLite file at path, with the
// Authenticator made by authn.Open, or by authn.New over pool when pool is
// not nil.
func newBrokenSiteOn(t *testing.T, path string, pool *bun.DB) *brokenSite {
	t.Helper()
	b := &brokenSite{path: path, logs: &syncBuffer{}}
	db := &testdb.DB{Name: "sqlite", URL: b.path}
	open := func(cfg authn.Config) *authn.Authenticator { return db.Open(t, cfg) }
	if pool != nil {
		open = func(cfg authn.Config) *authn.Authenticator {
			a, err := authn.New(context.Background(), pool, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			return a
		}
	}
	b.site = newSiteOn(t, db, authn.Config{
		Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		HTTP:   authn.HTTPConfig{BasicAuthCacheTTL: -1}, // every request claims and resets
	}, open)
	b.c = b.client()
	if r := b.loginForm(b.c, "alice", alicePassword, ""); r.status != 303 {
		t.Fatalf("login: %d", r.status)
	}
	b.healthy(t, "at first")
	checkpoint(t, b.path)
	return b
}

// checkpoint moves what the WAL of the SQLite file at path holds into the
// file and empties the WAL, through a connection of its own (a checkpoint
// is of the database, whichever connection asks), so that a copy of the
// file alone is whole.
func checkpoint(t *testing.T, path string) {
	t.Helper()
	db := testdb.RawSQLite(t, path)
	defer db.Close()
	var busy, walFrames, moved int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &walFrames, &moved); err != nil {
		t.Fatal(err)
	}
	if busy != 0 {
		t.Fatalf("checkpoint of %s could not finish (a reader or writer in the way)", path)
	}
}

// healthy waits (up to 10 s, the file watch runs every second) until Basic
// auth and the session work again.
func (b *brokenSite) healthy(t *testing.T, when string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		basic, session := b.basicGet("bob", bobPassword), b.do(b.c, "GET", "/app/", "", "")
		if basic.status == 200 && session.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: Basic auth %d, session %d; want 200\n%s", when, basic.status, session.status, b.logs.take())
		}
	}
}

// failsClosed waits (up to 10 s) until a request with a session, which
// writes nothing, gets 503 with the cause in the log, then checks that
// every kind of request does, that the protected handler never ran, and
// that the log names the cause. (A Basic-auth request writes its claim,
// whose commit may fail before the file watch notices the problem; a file
// replaced is first refused as replaced, until the watch has let go of
// the old one, and only then for what the new one is.)
func (b *brokenSite) failsClosed(t *testing.T, what, cause string) {
	t.Helper()
	calls := b.protectedCalls()
	var seen strings.Builder
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := b.do(b.c, "GET", "/app/", "", "").status
		seen.WriteString(b.logs.take())
		if st == 503 && strings.Contains(seen.String(), cause) {
			break
		}
		if st != 503 && st != 200 {
			t.Fatalf("%s: a session request answered %d while the file broke", what, st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not failing closed for %q after 10 s:\n%s", what, cause, seen.String())
		}
	}
	for name, r := range map[string]response{
		"basic":    b.basicGet("bob", bobPassword),
		"session":  b.do(b.c, "GET", "/app/", "", ""),
		"login":    b.loginJSON(nil, "bob", bobPassword),
		"register": b.do(nil, "POST", "/register", "application/json", `{"username":"erin","password":"erin's long passphrase"}`),
	} {
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %s answered %d, want 503 with Retry-After", what, name, r.status)
		}
	}
	// Requests before the first 503 were answered from the old file; none
	// after it reached the handler.
	if calls > b.protectedCalls() {
		t.Errorf("%s: handler count went backwards", what)
	}
	if log := b.logs.take(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, cause) {
		t.Errorf("%s: no error line naming %q in the log:\n%s", what, cause, log)
	}
}

// TestBrokenDatabase breaks the SQLite file under a running server in the
// ways a disk or an operator can: garbage written over it, the file deleted
// (then restored from a copy), the disk full, the file made read-only.
// Requests that cannot be served correctly fail closed with 503 and a log
// line naming the cause, never reaching the protected handler, and the
// server recovers when the database is back.
func TestBrokenDatabase(t *testing.T) {
	t.Parallel()
	t.Run("file replaced by garbage", func(t *testing.T) {
		t.Parallel()
		b := newBrokenSite(t, t.TempDir())
		good, err := os.ReadFile(b.path)
		if err != nil {
			t.Fatal(err)
		}
		replace := func(content []byte) { // as cp to a temporary name and mv would
			t.Helper()
			tmp := b.path + ".new"
			if err := os.WriteFile(tmp, content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, b.path); err != nil {
				t.Fatal(err)
			}
		}
		replace(bytes.Repeat([]byte("garbage!"), len(good)/8))
		b.failsClosed(t, "garbage", "file is not a database")
		replace(good)
		b.healthy(t, "after the file was restored")
	})

	t.Run("file deleted, then restored from a copy", func(t *testing.T) {
		t.Parallel()
		b := newBrokenSite(t, t.TempDir())
		good, err := os.ReadFile(b.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(b.path); err != nil {
			t.Fatal(err)
		}
		b.failsClosed(t, "deleted", "no such file or directory")
		if err := os.WriteFile(b.path, good, 0o600); err != nil { // a new inode
			t.Fatal(err)
		}
		b.healthy(t, "after the file was restored")
		if err := b.a.Register(context.Background(), "probe", "probe's long passphrase"); err != nil {
			t.Fatal(err)
		}
		// The write went to the restored file, not to the deleted one.
		if n := countIn(t, b.path, "SELECT count(*) FROM users WHERE username = 'probe'"); n != 1 {
			t.Fatalf("a write after the restore is not in the file at the path (%d rows)", n)
		}
	})

	t.Run("disk full", func(t *testing.T) {
		t.Parallel()
		dir := mountTmpfs(t, "4m")
		b := newBrokenSite(t, dir)
		filler, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		for chunk := make([]byte, 64<<10); ; {
			if _, err := filler.Write(chunk); err != nil {
				break // full
			}
		}
		filler.Close()
		// SQLite reuses the space its WAL already has, so some writes may
		// still succeed; registrations, which grow the file, run out.
		b.logs.take()
		full := false
		for i := 0; i < 200 && !full; i++ {
			r := b.do(nil, "POST", "/register", "application/json",
				fmt.Sprintf(`{"username":"filler%d","password":"filler number %d, a passphrase long enough %s"}`, i, i, strings.Repeat("x", 60)))
			switch r.status {
			case 201:
			case 503:
				full = true
			default:
				t.Fatalf("registration %d on a full disk: %d", i, r.status)
			}
		}
		if !full {
			t.Fatal("200 registrations on a full disk all succeeded")
		}
		if log := b.logs.take(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "full") {
			t.Errorf("no error line naming the full disk:\n%s", log)
		}
		// Every answer is right or 503: never a wrong 401, never the
		// handler without a verified password.
		for range 10 {
			if st := b.basicGet("bob", bobPassword).status; st != 200 && st != 503 {
				t.Fatalf("Basic auth with the right password on a full disk: %d", st)
			}
			if st := b.basicGet("bob", "wrong").status; st != 401 && st != 503 {
				t.Fatalf("Basic auth with a wrong password on a full disk: %d", st)
			}
		}
		os.Remove(filepath.Join(dir, "filler"))
		b.healthy(t, "after space was freed")
	})

	t.Run("read-only file", func(t *testing.T) {
		t.Parallel()
		b := newBrokenSite(t, t.TempDir())
		files := []string{b.path, b.path + "-wal", b.path + "-shm"}
		if out, err := exec.Command("chattr", append([]string{"+i"}, files...)...).CombinedOutput(); err != nil {
			t.Skipf("cannot make the files immutable (needs root and a file system with chattr): %v %s", err, out)
		}
		defer exec.Command("chattr", append([]string{"-i"}, files...)...).Run()
		b.failsClosed(t, "read-only", "operation not permitted")
		if out, err := exec.Command("chattr", append([]string{"-i"}, files...)...).CombinedOutput(); err != nil {
			t.Fatalf("chattr -i: %v %s", err, out)
		}
		b.healthy(t, "after the files were writable again")
	})
}

// TestDatabaseClosedOverHTTP: with the Authenticator's database closed under
// it (the application's own pool, given to authn.New, closed by the
// application), every route answers 503 and logs why; a closed pool does
// not come back.
func TestDatabaseClosedOverHTTP(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	pool := testdb.RawSQLite(t, path)
	b := newBrokenSiteOn(t, path, pool)
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	b.failsClosed(t, "closed", "database is closed")
}

func countIn(t *testing.T, path, query string) int {
	t.Helper()
	var n int
	if err := testdb.RawSQLite(t, path).QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCachedBasicAuthAfterRestore: a server that remembers bob's Basic
// credentials has its file replaced by a copy in which bob is locked. Once
// the file watch has reopened the pool, the cached request's read (a
// prepared statement, re-prepared on the new connections) sees the copy and
// refuses bob.
func TestCachedBasicAuthAfterRestore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	s := newSite(t, &testdb.DB{Name: "sqlite", URL: path}, authn.Config{})
	for range 3 { // the first verifies, the next two are cached
		if st := s.basicGet("bob", bobPassword).status; st != 200 {
			t.Fatalf("Basic auth before the restore: %d", st)
		}
	}
	checkpoint(t, path)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(restored, good, 0o600); err != nil {
		t.Fatal(err)
	}
	raw := testdb.RawSQLite(t, restored)
	var bobHash string
	if err := raw.QueryRow("SELECT password_hash FROM users WHERE username = 'bob'").Scan(&bobHash); err != nil {
		t.Fatal(err)
	}
	verifies := s.hasher.Verifies(bobHash)
	if verifies != 1 {
		t.Fatalf("bob's hash verified %d times for three requests, want 1", verifies)
	}
	if _, err := raw.Exec("UPDATE users SET lockout_until = 4102444800 WHERE username = 'bob'"); err != nil { // 2100-01-01
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil { // checkpoints: the copy is whole
		t.Fatal(err)
	}
	if err := os.Rename(restored, path); err != nil {
		t.Fatal(err)
	}
	// Up to a second may pass before the watch notices the new inode.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := s.basicGet("bob", bobPassword).status
		if st == 401 {
			break
		}
		if st != 200 && st != 503 || time.Now().After(deadline) {
			t.Fatalf("Basic auth after a restore that locks bob: %d", st)
		}
	}
	for range 3 {
		if st := s.basicGet("bob", bobPassword).status; st != 401 {
			t.Fatalf("Basic auth after the restore, again: %d, want 401", st)
		}
	}
	// Refused as locked: the dummy hash, never bob's.
	if got := s.hasher.Verifies(bobHash); got != verifies {
		t.Errorf("bob's hash was verified %d times after the restore", got-verifies)
	}
}
