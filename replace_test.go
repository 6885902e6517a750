//go:build linux

// Tests of a database file replaced under a running server (a restore done
// by moving a copy over auth.db), with the old -wal and -shm left in place
// or not. The server runs in a child process (TestWALChild, see
// walwatch_test.go), so that this process is another one, as an
// operator's tools or the Python application are.

package minimost_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/internal/testdb"
)

// replaceSite is a server whose database holds alice and bob, and a copy
// of that database, taken while bob was locked forever. Since the copy,
// the live database has unlocked bob and registered carol, commits that
// are still in its -wal only: a copy served with the old -wal replayed
// over it lets bob and carol in.
type replaceSite struct {
	*walServer
	path string // the live database
	copy string // the copy, in another directory
}

func newReplaceSite(t *testing.T) *replaceSite {
	t.Helper()
	dir := t.TempDir()
	r := &replaceSite{path: filepath.Join(dir, "auth.db"), copy: filepath.Join(t.TempDir(), "copy.db")}
	r.walServer = startWALServer(t, r.path)
	for _, name := range []string{"alice", "bob"} {
		if st := r.register(name); st != 201 {
			t.Fatalf("registering %s: %d\n%s", name, st, r.logs)
		}
	}
	// As the Python application's administrator would disable an account.
	r.exec(t, "UPDATE users SET lockout_until = 1e300 WHERE username = 'bob'")
	checkpoint(t, r.path) // the database file alone is whole: the copy is
	good, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.copy, good, 0o600); err != nil {
		t.Fatal(err)
	}
	r.exec(t, "UPDATE users SET lockout_until = NULL WHERE username = 'bob'")
	if st := r.register("carol"); st != 201 {
		t.Fatalf("registering carol: %d\n%s", st, r.logs)
	}
	r.want(t, "before the copy is moved in", map[string]int{"alice": 200, "bob": 200, "carol": 200})
	if fi, err := os.Stat(r.path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the live -wal holds nothing since the copy (%v): the test would prove nothing", err)
	}
	return r
}

// exec runs sql on the live database through a connection of this
// process, as the sqlite3 tool or the Python application would.
func (r *replaceSite) exec(t *testing.T, sql string) {
	t.Helper()
	raw := testdb.RawSQLite(t, r.path)
	defer raw.Close()
	if _, err := raw.Exec(sql); err != nil {
		t.Fatal(err)
	}
}

// moveCopyIn moves the copy over the live database, as "mv copy auth.db"
// does: the old -wal and -shm stay where they are.
func (r *replaceSite) moveCopyIn(t *testing.T) time.Time {
	t.Helper()
	if err := os.Rename(r.copy, r.path); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// want fails t unless each user's sign-in answers the status given.
func (r *replaceSite) want(t *testing.T, when string, statuses map[string]int) {
	t.Helper()
	for name, st := range statuses {
		if got := r.login(name); got != st {
			t.Fatalf("%s: %s's sign-in answered %d, want %d\n%s", when, name, got, st, r.logs)
		}
	}
}

// What the server logs when it sees the database file replaced, and when
// it cannot serve the new one yet (at level ERROR, with what to do).
const (
	replaceNoticed = "database file replaced"
	cannotServe    = "was replaced under the server"
)

// hasLine reports whether one line of log holds every one of parts.
func hasLine(log string, parts ...string) bool {
	for line := range strings.Lines(log) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// signIns sends bob's and carol's sign-ins until the server has logged
// that it noticed the replacement and for span after that, and counts the
// answers of those sent after it had; a 200 is a failure: neither is let
// in by the copy.
func (r *replaceSite) signIns(t *testing.T, moved time.Time, span time.Duration) map[int]int {
	t.Helper()
	counts := map[int]int{}
	var noticed time.Time
	for noticed.IsZero() || time.Since(noticed) < span {
		if noticed.IsZero() && strings.Contains(r.logs.String(), replaceNoticed) {
			noticed = time.Now()
			t.Logf("the replacement noticed %v after the move", noticed.Sub(moved).Round(time.Millisecond))
		}
		if noticed.IsZero() && time.Since(moved) > 10*time.Second {
			t.Fatalf("the replacement not noticed in 10 s\n%s", r.logs)
		}
		after := !noticed.IsZero()
		for _, name := range []string{"bob", "carol"} {
			st := r.login(name)
			if after {
				counts[st]++
			}
		}
	}
	return counts
}

// settles waits until bob's sign-in is refused with 401, the copy's
// state: 503 meanwhile; a 200 fails t.
func (r *replaceSite) settles(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(fileWatchDeadline); ; time.Sleep(50 * time.Millisecond) {
		switch st := r.login("bob"); st {
		case 401:
			return
		case 503:
		default:
			t.Fatalf("bob's sign-in answered %d once the replacement was noticed\n%s", st, r.logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still 503 %v after the replacement\n%s", fileWatchDeadline, r.logs)
		}
	}
}

// servesCopy checks that the server answers what the copy holds, and,
// once it has ended, that the file at the path is the copy: bob locked
// forever, no carol, nothing of the old -wal in it.
func (r *replaceSite) servesCopy(t *testing.T) {
	t.Helper()
	copyState := map[string]int{"alice": 200, "bob": 401, "carol": 401}
	r.want(t, "once settled", copyState)
	time.Sleep(1500 * time.Millisecond) // another look by the watch
	r.want(t, "once settled, again", copyState)
	r.kill()
	raw := testdb.RawSQLite(t, r.path)
	defer raw.Close()
	var integrity string
	if err := raw.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	var until float64
	if err := raw.QueryRow("SELECT lockout_until FROM users WHERE username = 'bob'").Scan(&until); err != nil || until != 1e300 {
		t.Errorf("bob's lockout_until in the file = %v, %v; the copy has 1e300", until, err)
	}
	var carols int
	if err := raw.QueryRow("SELECT count(*) FROM users WHERE username = 'carol'").Scan(&carols); err != nil || carols != 0 {
		t.Errorf("carol, registered after the copy was taken, is in the file (%d, %v)", carols, err)
	}
}

// TestReplacedWithOldWAL: a copy in which bob is locked forever is moved
// over the live database, the old -wal and -shm left in place (a careless
// restore). Once the server notices, it never lets bob or carol in: it
// answers 503 while it makes sure no connection will read the old -wal
// over the copy, then serves the copy alone.
func TestReplacedWithOldWAL(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	r := newReplaceSite(t)
	moved := r.moveCopyIn(t)
	counts := r.signIns(t, moved, 3*time.Second)
	t.Logf("sign-ins by bob and carol after the replacement was noticed: %v", counts)
	if counts[200] > 0 {
		t.Fatalf("%d of %d sign-ins by bob and carol let in after the replacement was noticed: the old -wal was read over the copy\n%s",
			counts[200], counts[200]+counts[401]+counts[503], r.logs)
	}
	r.settles(t)
	if strings.Contains(r.logs.String(), cannotServe) {
		t.Errorf("the server could not serve the copy with no other process on the old file:\n%s", r.logs)
	}
	r.servesCopy(t)
}

// TestReplacedUnderOtherProcess: the same careless restore while another
// process (this one) has the old file open, first in a read transaction,
// then idle. That process may still write to the old file through the
// -wal at the path, which the copy would then read: the server fails
// closed, and logs at level ERROR what happened and what to do, until it
// closes the old file; then it serves the copy.
func TestReplacedUnderOtherProcess(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	r := newReplaceSite(t)
	ctx := context.Background()
	other := testdb.RawSQLite(t, r.path)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A read transaction that has read the old -wal's frames.
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 3 {
		t.Fatalf("the other process reads %d users, %v; want 3", n, err)
	}
	moved := r.moveCopyIn(t)
	refused := func(when, why string) {
		t.Helper()
		counts := r.signIns(t, moved, 2*time.Second)
		if len(counts) != 1 || counts[503] == 0 {
			t.Fatalf("%s: sign-ins by bob and carol answered %v, want 503 only\n%s", when, counts, r.logs)
		}
		if st := r.login("alice"); st != 503 {
			t.Fatalf("%s: alice's sign-in answered %d, want 503", when, st)
		}
		if !hasLine(r.logs.String(), "level=ERROR", cannotServe, why, "authctl restore") {
			t.Fatalf("%s: no error line saying what happened and what to do\n%s", when, r.logs)
		}
	}
	refused("another process in a read transaction on the old file", "another process still has the old file open")
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	refused("another process with the old file open, idle", "another process still has the old file open")
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	r.settles(t)
	r.servesCopy(t)
}

// TestReplacedWithOwnWAL: a copy moved in with its own -wal and -shm (all
// three files of a database taken together, its last commit, which locks
// bob, still in its -wal) is served as it is, at once: no error, and
// bob's lock, which only its -wal holds, applies.
func TestReplacedWithOwnWAL(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	r := newReplaceSite(t)
	// The copy, with bob unlocked in its database file and locked again in
	// its -wal: its three files copied while a connection has it open.
	copyDB := testdb.RawSQLite(t, r.copy)
	for _, sql := range []string{
		"PRAGMA journal_mode = WAL",
		"UPDATE users SET lockout_until = NULL WHERE username = 'bob'",
		"PRAGMA wal_checkpoint(TRUNCATE)",
		"UPDATE users SET lockout_until = 1e300 WHERE username = 'bob'",
	} {
		if _, err := copyDB.Exec(sql); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(r.copy + suffix)
		if err != nil {
			t.Fatal(err)
		}
		files[suffix] = b
	}
	if len(files["-wal"]) == 0 {
		t.Fatal("the copy's -wal is empty: the test would prove nothing")
	}
	if err := copyDB.Close(); err != nil {
		t.Fatal(err)
	}
	// Written beside the live files, then moved in, the database first.
	var moved time.Time
	for _, suffix := range []string{"", "-wal", "-shm"} {
		tmp := r.path + ".new" + suffix
		if err := os.WriteFile(tmp, files[suffix], 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(tmp)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(r.path+".new"+suffix, r.path+suffix); err != nil {
			t.Fatal(err)
		}
		if suffix == "" {
			moved = time.Now()
		}
	}
	counts := r.signIns(t, moved, 2*time.Second)
	t.Logf("sign-ins by bob and carol after the replacement was noticed: %v", counts)
	if counts[200] > 0 {
		t.Fatalf("%d sign-ins by bob or carol let in after the replacement was noticed\n%s", counts[200], r.logs)
	}
	r.settles(t)
	if strings.Contains(r.logs.String(), cannotServe) {
		t.Errorf("the server could not serve a consistent replacement at once:\n%s", r.logs)
	}
	r.servesCopy(t)
}

// TestReplacedWithoutWAL: the copy moved in and the old -wal deleted, the
// old -shm left in place. The -shm's WAL-index still lists the old -wal's
// frames; the server does not read the copy through it, and serves the
// copy alone.
func TestReplacedWithoutWAL(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	r := newReplaceSite(t)
	moved := r.moveCopyIn(t)
	if err := os.Remove(r.path + "-wal"); err != nil {
		t.Fatal(err)
	}
	counts := r.signIns(t, moved, 2*time.Second)
	t.Logf("sign-ins by bob and carol after the replacement was noticed: %v", counts)
	if counts[200] > 0 {
		t.Fatalf("%d sign-ins by bob or carol let in after the replacement was noticed\n%s", counts[200], r.logs)
	}
	r.settles(t)
	r.servesCopy(t)
}
