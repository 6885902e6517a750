package minimost_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

// crashChildEnv, when set, makes TestCrashChild the child of TestCrash: it
// names the database and a prefix for the users it registers.
const crashChildEnv = "MINIMOST_CRASH_CHILD"

// TestCrashChild registers users and records failures on the database named
// by MINIMOST_CRASH_CHILD until it is killed, printing "registered NAME"
// after each registration returns. It does nothing in a normal test run.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("the child of TestCrash; runs only there")
	}
	path, prefix, _ := strings.Cut(spec, "|")
	ctx := context.Background()
	a, err := authn.Open(ctx, path, authn.Config{Hasher: testdb.FastHasher, LockoutThreshold: 1 << 30})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if err := a.Register(ctx, name, "a long enough passphrase "+name); err != nil {
			fmt.Println("register:", err)
			os.Exit(3)
		}
		fmt.Println("registered", name)
		a.Authenticate(ctx, name, "a wrong password")            // a claim: one write
		a.SetPassword(ctx, name, "another long passphrase here") // a transaction
	}
}

// TestCrash kills a child process that writes to the database with SIGKILL
// at random moments, 20 times. After each kill the database passes
// PRAGMA integrity_check, opens, holds every user the child reported as
// registered, and no row is half-written.
func TestCrash(t *testing.T) {
	t.Parallel()
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	path := filepath.Join(t.TempDir(), "auth.db")
	var reported []string
	for run := range 20 {
		reported = append(reported, crashOnce(t, path, fmt.Sprintf("r%d_", run))...)

		raw := testdb.RawSQLite(t, path)
		var check string
		if err := raw.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Fatalf("run %d: integrity_check = %q, %v", run, check, err)
		}
		present := map[string]bool{}
		rows, err := raw.Query("SELECT username, password_hash, failed_attempts FROM users")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name, hash string
			var failed *int64
			if err := rows.Scan(&name, &hash, &failed); err != nil {
				t.Fatal(err)
			}
			if err := password.Check(hash); err != nil || failed == nil {
				t.Errorf("run %d: half-written user %s: hash %q (%v), failed_attempts %v", run, name, hash, err, failed)
			}
			present[name] = true
		}
		rows.Close()
		for _, name := range reported {
			if !present[name] {
				t.Fatalf("run %d: %s was reported registered and is gone", run, name)
			}
		}
		raw.Close()
		a := (&testdb.DB{Name: "sqlite", URL: path}).Open(t, authn.Config{})
		if len(reported) > 0 {
			if _, err := a.Account(context.Background(), reported[len(reported)-1]); err != nil {
				t.Fatalf("run %d: reading after the crash: %v", run, err)
			}
		}
		a.Close()
	}
	t.Logf("%d registrations reported in 20 runs, all present", len(reported))
}

// crashOnce runs the child until it has registered a few users, kills it
// at a random moment, and returns the names it reported.
func crashOnce(t *testing.T, path, prefix string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path+"|"+prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var names []string
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		var once sync.Once
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "registered "); ok {
				mu.Lock()
				names = append(names, name)
				mu.Unlock()
				once.Do(func() { close(first) })
			} else if sc.Text() != "" {
				t.Errorf("child: %s", sc.Text())
			}
		}
		once.Do(func() { close(first) })
	}()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("the child registered nobody in 30 s")
	}
	time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return names
}
