//go:build linux

package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/sqliteshim"
)

// openWatched opens the SQLite file at path with its log in logs, and
// fails unless the -wal watch has its connection.
func openWatched(t *testing.T, path string, logs *syncBuffer) *Authenticator {
	t.Helper()
	cfg := attackConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	a, err := Open(context.Background(), path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if a.file == nil || a.file.keeper == nil {
		t.Fatalf("Open watches no -wal\n%s", logs)
	}
	return a
}

// walFilesOf returns the -shm and -wal of the database at path, as SQLite
// has them open in this process.
func walFilesOf(t *testing.T, path string) (shm, wal *sqliteFile) {
	t.Helper()
	shm, err := openedFile(path + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	wal, err = openedFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return shm, wal
}

// TestCheckWALUnderCheckpoints: while the Authenticator and another pool
// commit, and the other pool restarts and empties the -wal every way
// SQLite does (checkpoints PASSIVE, RESTART and TRUNCATE, a
// journal_size_limit that truncates it at the first commit after a
// restart), checkWAL never takes the -wal for damaged, and the watch never
// fails closed: a -wal emptied by a checkpoint has its WAL-index header
// rewritten first.
func TestCheckWALUnderCheckpoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auth.db")
	var logs syncBuffer
	a := openWatched(t, path, &logs)
	other, err := sql.Open(sqliteshim.ShimName, sqliteDSN(path, sqliteshim.DriverName()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "CREATE TABLE filler (x BLOB)"); err != nil {
		t.Fatal(err)
	}
	shm, wal := walFilesOf(t, path)

	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var commits, checkpoints atomic.Int64
	fail := make(chan error, 3)
	run := func(f func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if err := f(i); err != nil {
					fail <- err
					return
				}
			}
		}()
	}
	run(func(i int) error {
		err := a.Register(ctx, fmt.Sprintf("user%d", i), attackPassword)
		commits.Add(1)
		return err
	})
	writer, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	// No fsync for the other pool's commits and checkpoints, so that many
	// run: the order of its writes to the files is the same.
	for _, pragma := range []string{"PRAGMA journal_size_limit = 0", "PRAGMA synchronous = OFF"} {
		if _, err := writer.ExecContext(ctx, pragma); err != nil {
			t.Fatal(err)
		}
	}
	run(func(int) error {
		_, err := writer.ExecContext(ctx, "INSERT INTO filler VALUES (randomblob(3000))")
		commits.Add(1)
		time.Sleep(200 * time.Microsecond)
		return err
	})
	// The checkpoints wait little for the writers, so that many finish.
	checkpointer, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer checkpointer.Close()
	for _, pragma := range []string{"PRAGMA busy_timeout = 1", "PRAGMA synchronous = OFF"} {
		if _, err := checkpointer.ExecContext(ctx, pragma); err != nil {
			t.Fatal(err)
		}
	}
	modes := []string{"PASSIVE", "RESTART", "TRUNCATE", "TRUNCATE"}
	run(func(i int) error {
		var busy, frames, copied int
		err := checkpointer.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+modes[i%len(modes)]+")").Scan(&busy, &frames, &copied)
		if err == nil && busy == 0 {
			checkpoints.Add(1)
		}
		time.Sleep(200 * time.Microsecond)
		return err
	})

	var verdicts, unsettled int
	for time.Now().Before(deadline) {
		damage, err := checkWAL(shm, wal)
		switch {
		case errors.Is(err, errWALUnsettled):
			unsettled++
		case err != nil:
			t.Fatal(err)
		case damage != "":
			t.Fatalf("a -wal changed by commits and checkpoints taken for damaged: %s", damage)
		default:
			verdicts++
		}
	}
	wg.Wait()
	close(fail)
	for err := range fail {
		t.Fatal(err)
	}
	t.Logf("%d verdicts (%d unsettled) over %d commits and %d checkpoints", verdicts, unsettled, commits.Load(), checkpoints.Load())
	if verdicts < 100 || checkpoints.Load() < 20 {
		t.Errorf("only %d verdicts over %d checkpoints: the test proves little", verdicts, checkpoints.Load())
	}
	time.Sleep(fileCheckInterval + 500*time.Millisecond) // one more look by the watch
	if p := a.store.problem.Load(); p != nil {
		t.Errorf("the watch failed closed: %v", *p)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", &logs)
	}
}

// TestCheckWALDamage: a -wal truncated under the server, or truncated and
// grown back (a hole of zeros where frames were, as a commit appending
// after a truncation leaves), is damage, found by checkWAL and by the
// watch, which fails closed for good with an error line; Close then leaves
// a connection open and says so.
func TestCheckWALDamage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mangle func(t *testing.T, wal string, size int64)
		want   string
	}{
		{"truncated", func(t *testing.T, wal string, size int64) { truncateFile(t, wal, 0) }, "bytes; the WAL-index lists"},
		{"truncated, grown back", func(t *testing.T, wal string, size int64) {
			truncateFile(t, wal, 0)
			truncateFile(t, wal, size)
		}, "its header is not the one"},
		{"truncated in the middle, grown back", func(t *testing.T, wal string, size int64) {
			truncateFile(t, wal, walFileHeaderSize+2*(walFrameHeaderSize+4096)) // two frames left
			truncateFile(t, wal, size)
		}, "frame 3 of the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "auth.db")
			var logs syncBuffer
			a := openWatched(t, path, &logs)
			for i := range 5 {
				if err := a.Register(ctx, fmt.Sprintf("user%d", i), attackPassword); err != nil {
					t.Fatal(err)
				}
			}
			shm, wal := walFilesOf(t, path)
			if damage, err := checkWAL(shm, wal); err != nil || damage != "" {
				t.Fatalf("before: %q, %v", damage, err)
			}
			size, err := wal.size()
			if err != nil {
				t.Fatal(err)
			}
			tc.mangle(t, path+"-wal", size)
			damage, err := checkWAL(shm, wal)
			if err != nil || !strings.Contains(damage, tc.want) {
				t.Fatalf("checkWAL = %q, %v; want damage saying %q", damage, err, tc.want)
			}
			waitFor(t, "the watch to fail closed", func() bool { return a.store.problem.Load() != nil })
			// It fails closed first, then logs: wait for the line too.
			waitFor(t, "the watch to log", func() bool { return strings.Contains(logs.String(), "Restart the server") })
			if log := logs.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "Restart the server") {
				t.Errorf("no error line saying what to do:\n%s", log)
			}
			h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			if st := status(h, basicRequest("user0", attackPassword)); st != 503 {
				t.Errorf("Basic auth with a damaged -wal: %d, want 503", st)
			}
			if err := a.Register(ctx, "late", attackPassword); err == nil {
				t.Error("Register succeeded with a damaged -wal")
			}
			time.Sleep(fileCheckInterval + 500*time.Millisecond)
			if a.store.problem.Load() == nil {
				t.Error("the watch served again with the -wal still damaged")
			}
			if err := a.Close(); err == nil || !strings.Contains(err.Error(), "left open") {
				t.Errorf("Close = %v, want an error saying a connection was left open", err)
			}
		})
	}
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// TestWALDeletedUnderWriters: the -wal deleted while goroutines register
// users without pause. Every registration that succeeded, before the
// deletion, while the watch saved the old -wal and once it served again,
// is in the database after Close and a fresh Open: no commit went to the
// deleted file after its frames were copied out. The watch logs what
// happened, then that it serves again, with the -wal at its path in use.
func TestWALDeletedUnderWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auth.db")
	var logs syncBuffer
	a := openWatched(t, path, &logs)
	var mu sync.Mutex
	var registered []string
	var refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d_%d", w, i)
				if err := a.Register(ctx, name, attackPassword); err != nil {
					refused.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				registered = append(registered, name)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch to serve again", func() bool {
		return strings.Contains(logs.String(), "at its path again; serving")
	})
	time.Sleep(300 * time.Millisecond) // registrations on the new -wal
	close(stop)
	wg.Wait()
	log := logs.String()
	for _, want := range []string{"level=ERROR", "deleted or replaced", "are in the database file"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if p := a.store.problem.Load(); p != nil {
		t.Errorf("still failing closed: %v", *p)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no -wal at the path once serving again: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openWatched(t, path, &logs)
	n, err := b.store.db.NewSelect().Table("users").Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range registered {
		if _, err := b.Account(ctx, name); err != nil {
			t.Fatalf("%s was registered and is gone (%d of %d registrations kept): %v", name, n, len(registered), err)
		}
	}
	t.Logf("%d registrations kept, %d refused while the watch saved the -wal", len(registered), refused.Load())
	if refused.Load() == 0 {
		t.Log("no registration was refused: the save fell between two")
	}
}

// TestWALDeletedWithStatementInFlight: a connection in use when the -wal
// is deleted (a statement in flight, which passed the check of the
// problem before the watch noticed) commits after the watch noticed. The
// watch waits for it before it copies the old -wal into the database
// file, so its commit is kept, and serves again once it is returned.
func TestWALDeletedWithStatementInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auth.db")
	var logs syncBuffer
	a := openWatched(t, path, &logs)
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	conn, err := a.store.db.DB.Conn(ctx) // opened before the deletion: it writes to the old -wal
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch to notice", func() bool { return strings.Contains(logs.String(), "was deleted or replaced") })
	time.Sleep(2 * fileCheckInterval)
	if strings.Contains(logs.String(), "are in the database file") {
		t.Fatal("the old -wal was copied with a statement still in flight")
	}
	if _, err := conn.ExecContext(ctx, "UPDATE users SET failed_attempts = 7 WHERE username = 'alice'"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch to serve again", func() bool { return strings.Contains(logs.String(), "at its path again; serving") })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openWatched(t, path, &logs)
	acct, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if acct.FailedAttempts != 7 {
		t.Errorf("the statement in flight's commit is lost: failed_attempts %d, want 7", acct.FailedAttempts)
	}
}
