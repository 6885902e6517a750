package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildLogin builds examples/login, from the repository root (the parent
// of this module), into dir and returns the binary's path.
func buildLogin(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	return buildExample(ctx, t, dir, "login")
}

// buildExample builds examples/NAME into dir and returns the binary's path.
func buildExample(ctx context.Context, t *testing.T, dir, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/"+name)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building examples/%s: %v\n%s", name, err, out)
	}
	return bin
}

// output collects what a server process writes to stdout and stderr.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// server is a running examples/login process.
type server struct {
	addr string // host:port it listens on, on 127.0.0.1
	out  *output
}

// startLogin runs the examples/login binary bin on a free port of
// 127.0.0.1 with a database of its own and the demo password pw, plus
// args, and waits (within ctx) until /healthz answers. It stops with the
// test.
func startLogin(ctx context.Context, t *testing.T, bin, pw string, args ...string) *server {
	t.Helper()
	return startLoginAt(ctx, t, bin, pw, freeAddr(t), filepath.Join(t.TempDir(), "auth.db"), args...)
}

// freeAddr returns a free address of 127.0.0.1 to listen on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startLoginAt is startLogin on addr with the database db.
func startLoginAt(ctx context.Context, t *testing.T, bin, pw, addr, db string, args ...string) *server {
	t.Helper()
	s := &server{addr: addr, out: &output{}}
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-db", db, "-demo-password", pw}, args...)...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("/healthz: %s", resp.Status)
		}
		select {
		case err := <-exited:
			t.Fatalf("examples/login exited: %v\n%s", err, s.out)
		case <-ctx.Done():
			t.Fatalf("examples/login did not start: %v\n%s", err, s.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The demo user is created before the server serves, and its
	// password printed once. os/exec copies the output through a pipe in a
	// goroutine of its own, which can lag behind the answer to /healthz:
	// wait for the line a while.
	want := fmt.Sprintf("Created user \"demo\" with password %s (shown only now).", pw)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("examples/login did not print %q:\n%s", want, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// waitOutput waits, within ctx, until the server's output holds text, and
// fails the test if it does not.
func (s *server) waitOutput(ctx context.Context, t *testing.T, text string) {
	t.Helper()
	for !strings.Contains(s.out.String(), text) {
		select {
		case <-ctx.Done():
			t.Fatalf("the server's output does not hold %q:\n%s", text, s.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
