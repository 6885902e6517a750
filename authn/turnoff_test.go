//go:build linux

package authn

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination that goroutines may write at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTurnOffConcurrently: the fast reads turned off by Open's file watch
// and by their own watch at once, while cached requests run, are turned
// off once (one log line, the pinned connection closed), and the requests
// go on, every one read from the database: a new password applies at
// once.
func TestTurnOffConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs syncBuffer
	cfg := attackConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	a, err := Open(ctx, filepath.Join(t.TempDir(), "auth.db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	f := a.store.fast
	if f == nil {
		t.Fatal("Open on a SQLite file made no fast reads")
	}
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for range 3 {
		if st := status(h, basicRequest("alice", attackPassword)); st != 200 {
			t.Fatalf("Basic auth: %d", st)
		}
	}
	if a.Stats().ReadsSkipped == 0 {
		t.Fatal("no read answered from memory before turning off: nothing to test")
	}

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { f.turnOff(ctx) })
	}
	wg.Go(func() { f.watch(ctx) })
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if st := status(h, basicRequest("alice", attackPassword)); st != 200 {
					t.Errorf("Basic auth while turning off: %d", st)
					return
				}
			}
		})
	}
	wg.Wait()

	if n := strings.Count(logs.String(), "every request reads the database from now on"); n != 1 {
		t.Errorf("%d log lines for turning off, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("an error logged turning off:\n%s", logs.String())
	}
	if _, ok := f.index.header(); ok {
		t.Error("a header read once off")
	}
	if err := f.pin.PingContext(ctx); err == nil {
		t.Error("the pinned connection is still open once off")
	}
	skipped := a.Stats().ReadsSkipped
	if err := a.SetPassword(ctx, "alice", "another long passphrase 43"); err != nil {
		t.Fatal(err)
	}
	if st := status(h, basicRequest("alice", attackPassword)); st != http.StatusUnauthorized {
		t.Errorf("the old password after a change, fast reads off: %d, want 401", st)
	}
	for range 3 {
		if st := status(h, basicRequest("alice", "another long passphrase 43")); st != 200 {
			t.Fatalf("the new password, fast reads off: %d", st)
		}
	}
	if got := a.Stats().ReadsSkipped; got != skipped {
		t.Errorf("%d reads answered from memory once off", got-skipped)
	}
}

// TestFileWatchWithoutFastReads: Open's file watch turns the fast reads
// off on a file it finds unusable; with none (Config.ReadEveryRequest) it
// still fails closed, and recovers, without a panic.
func TestFileWatchWithoutFastReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auth.db")
	a, err := Open(ctx, path, Config{Hasher: attackConfig().Hasher, ReadEveryRequest: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.store.fast != nil {
		t.Fatal("fast reads despite ReadEveryRequest")
	}
	w := fileWatchOf(t, a)
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for range 3 {
		if st := status(h, basicRequest("alice", attackPassword)); st != 200 {
			t.Fatalf("Basic auth: %d", st)
		}
	}
	if n := a.Stats().ReadsSkipped; n != 0 {
		t.Errorf("%d reads answered from memory despite ReadEveryRequest", n)
	}
	moved := path + ".moved"
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	w.check(ctx) // turns the fast reads, which are nil here, off
	if a.store.problem.Load() == nil {
		t.Fatal("the watch did not find the file missing")
	}
	if err := a.Register(ctx, "bob", attackPassword); err == nil {
		t.Fatal("Register succeeded with the file missing")
	}
	if err := os.Rename(moved, path); err != nil {
		t.Fatal(err)
	}
	w.check(ctx)
	if p := a.store.problem.Load(); p != nil {
		t.Fatalf("the watch did not find the file back: %v", *p)
	}
	if err := a.Register(ctx, "bob", attackPassword); err != nil {
		t.Fatalf("Register after the file came back: %v", err)
	}
}

// TestFileWatchTurnsFastReadsOff: a file made unusable in place (the same
// inode, which the fast reads' own watch does not notice) turns the fast
// reads off in Open's file watch; requests read once the file is back.
func TestFileWatchTurnsFastReadsOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auth.db")
	a := openAt(t, path)
	w := fileWatchOf(t, a)
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("cannot make the file immutable (needs root, chattr and a file system that has it): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	w.check(ctx)
	if a.store.problem.Load() == nil {
		t.Fatal("the watch did not find the file unusable")
	}
	if !a.store.fast.index.off.Load() {
		t.Error("fast reads still on with the file unusable")
	}
	if out, err := exec.Command("chattr", "-i", path).CombinedOutput(); err != nil {
		t.Fatalf("chattr -i: %v %s", err, out)
	}
	w.check(ctx)
	if p := a.store.problem.Load(); p != nil {
		t.Fatalf("the watch did not find the file back: %v", *p)
	}
	h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	skipped := a.Stats().ReadsSkipped
	for range 3 {
		if st := status(h, basicRequest("alice", attackPassword)); st != 200 {
			t.Fatalf("Basic auth once the file is back: %d", st)
		}
	}
	if got := a.Stats().ReadsSkipped; got != skipped {
		t.Errorf("%d reads answered from memory once off", got-skipped)
	}
}

// fileWatchOf stops a's background work, Open's file watch among it (see
// stopWatches), and returns that watch, for the test to run its checks by
// hand: each is then one look at the file, when the test says, with no
// other goroutine running it meanwhile and no interval to wait for.
func fileWatchOf(t *testing.T, a *Authenticator) *fileWatch {
	t.Helper()
	stopWatches(a)
	if a.file == nil {
		t.Fatal("Open made no file watch")
	}
	return a.file
}

// waitFor polls cond with a generous deadline: the watch looks each second.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
