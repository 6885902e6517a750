//go:build linux

package authn

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/sqliteshim"
)

// TestReplacedUnderConnectionOfThisProcess: a copy in which bob is locked
// forever is moved over the database, the old -wal and -shm left in place,
// while a connection of this process, not the Authenticator's, has the old
// file open: first in a read transaction (which keeps the old -wal from
// being emptied), then idle (it could still write to the -wal at the
// path). Every request fails closed, with an error line saying why and
// what to do, until it is closed; then the copy alone is served: bob and
// carol, unlocked and registered in the old file after the copy was taken,
// are refused, and the file holds the copy's rows.
func TestReplacedUnderConnectionOfThisProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path, copyPath := filepath.Join(dir, "auth.db"), filepath.Join(dir, "copy.db")
	var logs syncBuffer
	a := openWatched(t, path, &logs)
	for _, name := range []string{"alice", "bob"} {
		if err := a.Register(ctx, name, attackPassword); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.store.db.ExecContext(ctx, "UPDATE users SET lockout_until = 1e300 WHERE username = 'bob'"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.db.ExecContext(ctx, "VACUUM INTO ?", copyPath); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := a.Register(ctx, "carol", attackPassword); err != nil {
		t.Fatal(err)
	}
	h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, name := range []string{"alice", "bob", "carol"} {
		if st := status(h, basicRequest(name, attackPassword)); st != 200 {
			t.Fatalf("%s before the copy is moved in: %d", name, st)
		}
	}

	other := rawSQLite(t, path)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 3 {
		t.Fatalf("the other connection reads %d users, %v; want 3", n, err)
	}
	if err := os.Rename(copyPath, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch to notice", func() bool { return strings.Contains(logs.String(), "database file replaced") })
	refused := func(when, why string) {
		t.Helper()
		for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, name := range []string{"alice", "bob", "carol"} {
				if st := status(h, basicRequest(name, attackPassword)); st != 503 {
					t.Fatalf("%s: %s answered %d, want 503\n%s", when, name, st, &logs)
				}
			}
		}
		if err := a.Authenticate(ctx, "bob", attackPassword); err == nil || !strings.Contains(err.Error(), "was replaced") {
			t.Fatalf("%s: Authenticate = %v, want the replacement's error", when, err)
		}
		found := false
		for line := range strings.Lines(logs.String()) {
			found = found || strings.Contains(line, "level=ERROR") && strings.Contains(line, why) && strings.Contains(line, "authctl restore")
		}
		if !found {
			t.Fatalf("%s: no error line saying %q and what to do\n%s", when, why, &logs)
		}
	}
	refused("a read transaction on the old file", "keeps it from being emptied")
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	refused("the old file open, idle", "a connection of this process still has the old file open")
	if err := errors.Join(conn.Close(), other.Close()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the copy to be served", func() bool { return status(h, basicRequest("alice", attackPassword)) != 503 })
	time.Sleep(fileCheckInterval + 500*time.Millisecond) // another look by the watch
	for name, want := range map[string]int{"alice": 200, "bob": 401, "carol": 401} {
		if st := status(h, basicRequest(name, attackPassword)); st != want {
			t.Errorf("%s once the copy is served: %d, want %d\n%s", name, st, want, &logs)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	raw := rawSQLite(t, path)
	var until float64
	if err := raw.QueryRow("SELECT lockout_until FROM users WHERE username = 'bob'").Scan(&until); err != nil || until != 1e300 {
		t.Errorf("bob's lockout_until in the file = %v, %v; the copy has 1e300", until, err)
	}
	if err := raw.QueryRow("SELECT count(*) FROM users WHERE username = 'carol'").Scan(&n); err != nil || n != 0 {
		t.Errorf("carol, registered after the copy was taken, is in the file (%d, %v)", n, err)
	}
}

// TestFileGate: the pool's connector opens the file the gate vetted, and
// refuses a file moved over it, or none at all, without creating one,
// until the new file is vetted.
func TestFileGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	gate, err := newFileGate(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := connectorOf(sqliteshim.Driver(), sqliteDSN(path, sqliteshim.DriverName()))
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(gatedConnector{c, gate})
	defer pool.Close()
	pool.SetMaxIdleConns(-1) // a connection per statement
	if _, err := pool.ExecContext(ctx, "CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}

	other := filepath.Join(dir, "other.db")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.ExecContext(ctx, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "was replaced") {
		t.Fatalf("a connection on a file not vetted: %v, want refused", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	gate.vet(fi)
	if _, err := pool.ExecContext(ctx, "CREATE TABLE u (x)"); err != nil {
		t.Fatalf("a connection on the file vetted: %v", err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.ExecContext(ctx, "SELECT 1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a connection with no file at the path: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file was created at the path: %v", err)
	}
}
