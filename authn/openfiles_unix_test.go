//go:build unix

package authn_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestOpenOddFiles: Open, which never opens an existing file itself (see
// checkDBFile), still refuses what cannot hold the database with an error
// naming the problem, creates nothing through a dangling link, and follows
// a link to an existing file.
func TestOpenOddFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.db")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target.db")
	dangling := filepath.Join(dir, "dangling.db")
	loop := filepath.Join(dir, "loop.db")
	for link, to := range map[string]string{dangling: target, loop: loop} {
		if err := os.Symlink(to, link); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{fifo, "not a regular file"},
		{dangling, "symbolic link to a missing file"},
		{loop, "too many levels of symbolic links"},
	} {
		a, err := authn.Open(context.Background(), tc.path, authn.Config{Hasher: fastHasher})
		if err == nil {
			a.Close()
			t.Errorf("Open(%s) succeeded", filepath.Base(tc.path))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("Open(%s) = %v, want an error naming the path and saying %q", filepath.Base(tc.path), err, tc.want)
		}
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("Open created the target of a dangling link (%v)", err)
	}

	// A link to an existing database file is that file.
	real := filepath.Join(dir, "real.db")
	openPath(t, real, authn.Config{}).Close()
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	viaLink := openPath(t, link, authn.Config{})
	if err := viaLink.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	viaLink.Close()
	if err := openPath(t, real, authn.Config{}).Authenticate(context.Background(), "alice", goodPassword); err != nil {
		t.Errorf("a user registered through the link is not in the file it points to: %v", err)
	}
}

// TestOpenUnwritableFile: an existing file this process may not write is
// refused by name, as it was when Open opened it: mode 0400 for a user,
// the immutable attribute for root (which no mode stops).
func TestOpenUnwritableFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	if err := os.WriteFile(path, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	want := "permission denied"
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
			t.Skipf("running as root, and cannot make the file immutable (needs chattr and a file system that has it): %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
		want = "operation not permitted"
	}
	a, err := authn.Open(context.Background(), path, authn.Config{Hasher: fastHasher})
	if err == nil {
		a.Close()
		t.Fatal("Open of an unwritable file succeeded")
	}
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of an unwritable file: %v, want an error naming the path and saying %q", err, want)
	}
}

// TestOpenRacingCreate: Opens racing to create the same new file all
// succeed on the one file, created 0600: the losers of the exclusive
// create take the winner's file.
func TestOpenRacingCreate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	const n = 6
	as := make([]*authn.Authenticator, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			as[i], errs[i] = authn.Open(context.Background(), path, authn.Config{Hasher: fastHasher, Logger: slog.New(slog.DiscardHandler)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d of %d racing: %v", i, n, err)
		}
		defer as[i].Close()
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the racing Opens left %v (%v), want a 0600 file", fi, err)
	}
	if err := as[0].Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	for i, a := range as {
		if err := a.Authenticate(context.Background(), "alice", goodPassword); err != nil {
			t.Errorf("Authenticator %d does not see the user another registered: %v", i, err)
		}
	}
}
