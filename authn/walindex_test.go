//go:build linux

package authn

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// openFast opens a fresh SQLite file with Open and returns it with its
// path (this file is built on Linux alone, where the fast path is). The
// hasher is a cheap one: no test here is about the cost of a hash.
func openFast(t *testing.T) (*Authenticator, string) {
	t.Helper()
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	a, err := Open(context.Background(), path, attackConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if a.store.fast == nil {
		t.Fatal("Open on a SQLite file made no fast reads")
	}
	return a, path
}

// rawSQLite is a pool of its own on the file at path, as another part of
// the application could have.
func rawSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open(sqliteshim.ShimName, "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestWALHeaderOfRealFile: the header read through the mapping is the one
// in the -shm file SQLite wrote, valid, and any damage makes it invalid.
func TestWALHeaderOfRealFile(t *testing.T) {
	a, path := openFast(t)
	h, ok := a.store.fast.index.header()
	if !ok {
		t.Fatal("no valid header right after Open")
	}
	// Read through SQLite's own descriptor: opening and closing the file
	// would drop the process's locks on it.
	var st syscall.Stat_t
	if err := syscall.Stat(path+"-shm", &st); err != nil {
		t.Fatal(err)
	}
	fd, err := descriptorOf(&st)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 2*walHeaderWords*4)
	if n, err := syscall.Pread(fd, raw, 0); err != nil || n != len(raw) {
		t.Fatalf("reading the -shm: %d bytes, %v", n, err)
	}
	var fromFile walHeader
	for i := range fromFile {
		fromFile[i] = binary.NativeEndian.Uint32(raw[4*i:])
	}
	if fromFile != h || !fromFile.valid() {
		t.Fatalf("mapped header %v, file has %v (valid %v)", h, fromFile, fromFile.valid())
	}
	for word := range walHeaderWords {
		damaged := h
		damaged[word] ^= 1 << 8
		if damaged.valid() {
			t.Errorf("header with word %d changed still valid", word)
		}
	}
	var zero walHeader
	if zero.valid() {
		t.Error("zero header valid")
	}
}

// TestWALHeaderChangesOnEveryCommit: a commit through another pool of the
// process changes the header; a read does not; neither does a
// transaction rolled back. A checkpoint that restarts the WAL changes it
// (a harmless read again).
func TestWALHeaderChangesOnEveryCommit(t *testing.T) {
	a, path := openFast(t)
	raw := rawSQLite(t, path)
	header := func() walHeader {
		t.Helper()
		h, ok := a.store.fast.index.header()
		if !ok {
			t.Fatal("no valid header")
		}
		return h
	}
	before := header()
	if _, err := raw.Exec("SELECT count(*) FROM users"); err != nil {
		t.Fatal(err)
	}
	if header() != before {
		t.Error("a read changed the header")
	}
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO users (username, password_hash) VALUES ('x', 'y')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if header() != before {
		t.Error("a transaction rolled back changed the header")
	}
	seen := map[walHeader]bool{before: true}
	for i := range 20 {
		if _, err := raw.Exec("INSERT INTO users (username, password_hash) VALUES (?, 'y')", fmt.Sprint("u", i)); err != nil {
			t.Fatal(err)
		}
		h := header()
		if seen[h] {
			t.Fatalf("commit %d left a header seen before", i)
		}
		seen[h] = true
	}
	if _, err := raw.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	last := header()
	if _, err := raw.Exec("DELETE FROM users WHERE username = 'u1'"); err != nil {
		t.Fatal(err)
	}
	if header() == last {
		t.Error("a commit after a checkpoint left the header as it was")
	}
}

// TestMemoIsBounded: however many rows are read, a memo keeps at most
// memoEntries, and a commit makes the rows read before it the first to go.
func TestMemoIsBounded(t *testing.T) {
	a, path := openFast(t)
	m := newMemo[int](a.store.fast.index, new(atomic.Int64))
	one := func(int) func() (int, error) { return func() (int, error) { return 1, nil } }
	for i := range memoEntries + 500 {
		if _, err := m.read(fmt.Sprint(i), one(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.rows); n > memoEntries {
		t.Fatalf("%d rows remembered, at most %d allowed", n, memoEntries)
	}
	if _, err := rawSQLite(t, path).Exec("INSERT INTO users (username, password_hash) VALUES ('x', 'y')"); err != nil {
		t.Fatal(err)
	}
	for i := range memoEntries { // fills it again after the commit
		m.read(fmt.Sprint("new", i), one(i))
	}
	now, _ := a.store.fast.index.header()
	for k, e := range m.rows { // evicting once, after the commit, drops them all
		if e.seen != now {
			t.Fatalf("row %q, read before the commit, kept", k)
		}
	}
	if n := len(m.rows); n > memoEntries || n < memoEntries/2 {
		t.Fatalf("%d rows remembered, want between %d and %d", n, memoEntries/2, memoEntries)
	}
}

// TestMemoNeverAnswersAcrossACommit: a row read before a commit is read
// again after it, however the two interleave; the failing read of a row
// is not remembered.
func TestMemoNeverAnswersAcrossACommit(t *testing.T) {
	a, path := openFast(t)
	raw := rawSQLite(t, path)
	var skipped atomic.Int64
	m := newMemo[string](a.store.fast.index, &skipped)
	reads := 0
	value := "v1"
	read := func() (string, error) { reads++; return value, nil }
	for range 3 {
		if got, _ := m.read("k", read); got != "v1" {
			t.Fatalf("got %q", got)
		}
	}
	if reads != 1 || skipped.Load() != 2 {
		t.Fatalf("%d reads, %d skipped; want 1 and 2", reads, skipped.Load())
	}
	value = "v2"
	if _, err := raw.Exec("INSERT INTO users (username, password_hash) VALUES ('x', 'y')"); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.read("k", read); got != "v2" || reads != 2 {
		t.Fatalf("after a commit: %q after %d reads, want v2 after 2", got, reads)
	}
	failing := func() (string, error) { reads++; return "", sql.ErrNoRows }
	m.read("gone", failing)
	m.read("gone", failing)
	if reads != 4 {
		t.Errorf("a read that found nothing was remembered (%d reads)", reads)
	}
}

// TestFastReadsOnlyWhereTheyHold: no fast reads for an in-memory database,
// a database in another journal mode, or once closed; a second Close is
// fine.
func TestFastReadsOnlyWhereTheyHold(t *testing.T) {
	ctx := context.Background()
	mem, err := sql.Open(sqliteshim.ShimName, "file::memory:?cache=shared")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	a, err := New(ctx, bun.NewDB(mem, sqlitedialect.New()), attackConfig())
	if err != nil {
		t.Fatal(err)
	}
	if a.store.fast != nil {
		t.Error("fast reads for an in-memory database")
	}
	a.Close()

	// Reading uncommitted rows, a row a rollback takes back could be
	// remembered.
	dirty, err := sql.Open(sqliteshim.ShimName, "file:"+filepath.Join(t.TempDir(), "dirty.db")+"?cache=shared")
	if err != nil {
		t.Fatal(err)
	}
	defer dirty.Close()
	dirty.SetMaxOpenConns(1) // the pragma is the one connection's
	if _, err := dirty.Exec("PRAGMA read_uncommitted = 1"); err != nil {
		t.Fatal(err)
	}
	d, err := New(ctx, bun.NewDB(dirty, sqlitedialect.New()), attackConfig())
	if err != nil {
		t.Fatal(err)
	}
	if d.store.fast != nil {
		t.Error("fast reads over connections that read uncommitted rows")
	}
	d.Close()

	// Config.ReadEveryRequest turns them off: each cached request reads.
	every, err := Open(ctx, filepath.Join(t.TempDir(), "every.db"), Config{Hasher: attackConfig().Hasher, ReadEveryRequest: true})
	if err != nil {
		t.Fatal(err)
	}
	if every.store.fast != nil || every.store.users != nil {
		t.Error("fast reads despite ReadEveryRequest")
	}
	every.Close()

	b, _ := openFast(t)
	index := b.store.fast.index
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := index.header(); ok {
		t.Error("a header read after Close")
	}
}

// TestFastReadsOffWhenTheFileIsReplaced: a database file replaced under
// its name (a restored backup) turns the fast reads off for good, through
// the watches Open and New start (which of the two does it is for the
// tests below).
func TestFastReadsOffWhenTheFileIsReplaced(t *testing.T) {
	a, path := openFast(t)
	if err := a.Register(context.Background(), "alice", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	replaceDatabase(t, path)
	deadline := time.Now().Add(30 * time.Second)
	for !a.store.fast.index.off.Load() {
		if time.Now().After(deadline) {
			t.Fatal("fast reads still on 30 s after the file was replaced")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := a.store.fast.index.header(); ok {
		t.Error("a header read once off")
	}
}

// replaceDatabase replaces the SQLite file at path by a copy of itself, as
// restoring a backup does: the same rows under a new inode. The pool that
// made the copy is closed first: a connection of this process left open
// on the old file keeps Open's watch from serving the new one (see
// replace.go).
func replaceDatabase(t *testing.T, path string) {
	t.Helper()
	copyPath := path + ".copy"
	db := rawSQLite(t, path)
	if _, err := db.Exec("VACUUM INTO ?", copyPath); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(copyPath, path); err != nil {
		t.Fatal(err)
	}
}

// stopWatches stops a's background work (the file watches among it) and
// waits until it has stopped, so that a test that runs one watch by hand
// knows that this watch alone did what it sees.
func stopWatches(a *Authenticator) {
	a.stop()
	a.bg.Wait()
}

// TestFastReadsOwnWatch: the fast reads' own watch turns them off at its
// first look after the database file, or only its -shm, is replaced under
// the same name. A new -shm is another WAL-index: the mapping would go on
// reading a header that no connection opened from now on writes, and answer
// from memory across their commits.
func TestFastReadsOwnWatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, path string)
	}{
		{"database file", replaceDatabase},
		{"-shm", func(t *testing.T, path string) {
			// A new file renamed over it: the old one is never opened
			// here, which would drop SQLite's locks on it (see
			// createDBFile).
			tmp := path + "-shm.new"
			if err := os.WriteFile(tmp, make([]byte, 32<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path+"-shm"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, path := openFast(t)
			stopWatches(a)
			f := a.store.fast
			f.watch(context.Background())
			if f.index.off.Load() {
				t.Fatal("off before anything was replaced")
			}
			tc.replace(t, path)
			f.watch(context.Background())
			if !f.index.off.Load() {
				t.Fatalf("fast reads still on after the watch looked at a replaced %s", tc.name)
			}
			if _, ok := f.index.header(); ok {
				t.Error("a header read once off")
			}
		})
	}
}

// TestFileWatchTurnsFastReadsOffOnReplace: Open's file watch turns the
// fast reads off in the very check that finds the database file replaced,
// before it has any connection replaced (a connection on the new file must
// not have its rows remembered under the old file's header), without
// waiting for the fast reads' own watch.
func TestFileWatchTurnsFastReadsOffOnReplace(t *testing.T) {
	a, path := openFast(t)
	w := fileWatchOf(t, a)
	ctx := context.Background()
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	w.check(ctx)
	if a.store.fast.index.off.Load() {
		t.Fatal("off before the file was replaced")
	}
	replaceDatabase(t, path)
	w.check(ctx)
	if !a.store.fast.index.off.Load() {
		t.Fatal("fast reads still on after the file watch found the file replaced")
	}
	h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	skipped := a.Stats().ReadsSkipped
	for range 3 {
		if st := status(h, basicRequest("alice", attackPassword)); st != 200 {
			t.Fatalf("Basic auth on the replaced file: %d", st)
		}
	}
	if got := a.Stats().ReadsSkipped; got != skipped {
		t.Errorf("%d reads answered from memory once off", got-skipped)
	}
}
