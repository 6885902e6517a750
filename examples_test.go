package minimost_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// String returns all that was written (brokendb_test.go defines the type).
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is one run of an example binary, with its output kept.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when it has exited
	err            error         // of Wait, once done is closed
}

// runExample starts examples/NAME (built once per test process) in dir
// with args. It is killed, if still running, when the test ends.
func runExample(t *testing.T, name, dir string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(buildExample(t, name), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Stdout, p.cmd.Stderr = dir, p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// exitCode waits (60 s at most) for the process to exit and returns its
// exit status.
func (p *process) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit\nstdout:\n%s\nstderr:\n%s", p.cmd.Path, p.stdout, p.stderr)
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		t.Fatalf("waiting for %s: %v", p.cmd.Path, p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitHealthy waits until base/healthz answers, or the process exits.
func (p *process) waitHealthy(t *testing.T, base string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("exited before serving: %v\nstdout:\n%s\nstderr:\n%s", p.err, p.stdout, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 30 s: %v\nstderr:\n%s", err, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns an address of 127.0.0.1 nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestExampleTakenPort: an example started on an address already taken
// exits non-zero, saying so, before it creates the database, a user or a
// password.
func TestExampleTakenPort(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, name := range []string{"basicauth", "login", "forwardauth"} {
		dir := t.TempDir()
		p := runExample(t, name, dir, "-addr", taken.Addr().String())
		if code := p.exitCode(t); code == 0 {
			t.Errorf("%s on a taken address exited 0", name)
		}
		if !strings.Contains(p.stderr.String(), "-addr "+taken.Addr().String()) || !strings.Contains(p.stderr.String(), "address already in use") {
			t.Errorf("%s: stderr %q does not name the address and the problem", name, p.stderr)
		}
		if out := p.stdout.String() + p.stderr.String(); strings.Contains(strings.ToLower(out), "password") {
			t.Errorf("%s printed a password on a taken address:\n%s", name, out)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s on a taken address created %v", name, entries)
		}
	}
}

// TestExampleSIGTERM: SIGTERM, as a service manager sends, shuts an example
// down gracefully, with exit status 0, as Ctrl-C (SIGINT, checked on one
// example) does.
func TestExampleSIGTERM(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sig  os.Signal
	}{{"basicauth", syscall.SIGTERM}, {"login", syscall.SIGTERM}, {"login", os.Interrupt}, {"forwardauth", syscall.SIGTERM}} {
		addr := freeAddr(t)
		p := runExample(t, tc.name, t.TempDir(), "-addr", addr)
		p.waitHealthy(t, "http://"+addr)
		p.cmd.Process.Signal(tc.sig)
		if code := p.exitCode(t); code != 0 {
			t.Errorf("%s after %v: exit %d, want 0\n%s", tc.name, tc.sig, code, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "shutting down") {
			t.Errorf("%s after %v: no shutdown in\n%s", tc.name, tc.sig, p.stderr)
		}
	}
}

// TestExampleExistingUsers: the first start creates demo and prints its
// password; a later start over the same database creates no user and
// prints no password, but says why and how to set demo's password.
func TestExampleExistingUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const pw = "the first start's passphrase"
	for i, want := range []string{
		`Created user "demo" with password ` + pw,
		"The database auth.db already has users, demo among them: no password is printed",
	} {
		addr := freeAddr(t)
		p := runExample(t, "basicauth", dir, "-addr", addr, "-demo-password", pw)
		p.waitHealthy(t, "http://"+addr)
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.exitCode(t); code != 0 {
			t.Fatalf("start %d: exit %d\n%s", i, code, p.stderr)
		}
		out := p.stdout.String()
		if !strings.Contains(out, want) {
			t.Errorf("start %d printed %q, want %q", i, out, want)
		}
		if i == 1 && (strings.Contains(out, pw) || !strings.Contains(out, "go run ./examples/authctl -db auth.db passwd demo\n")) {
			t.Errorf("second start printed %q", out)
		}
	}
}

// TestExampleStrayArguments: an argument that is not a flag (and any flag
// after it, which Go's flag package would silently leave unread) stops an
// example with exit status 2 and a message naming what was not read,
// before it listens or touches a database.
func TestExampleStrayArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"auth.db"}, {"-demo-password", "x", "mine.db", "-addr", "127.0.0.1:1"}} {
		for _, name := range []string{"basicauth", "login", "forwardauth"} {
			dir := t.TempDir()
			p := runExample(t, name, dir, args...)
			if code := p.exitCode(t); code != 2 {
				t.Errorf("%s %q: exit %d, want 2\n%s", name, args, code, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), "not read: ") || !strings.Contains(p.stderr.String(), "Flags go first") ||
				!strings.Contains(p.stderr.String(), "did you mean -db ") {
				t.Errorf("%s %q: stderr %q", name, args, p.stderr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%s %q created %v", name, args, entries)
			}
		}
	}
}

// TestExampleForwardAuthFlags: examples/forwardauth refuses a
// -trusted-proxies it cannot read, with exit status 2, before it listens or
// touches a database.
func TestExampleForwardAuthFlags(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"nonsense", "10.0.0.0/33", "127.0.0.1,::1/129"} {
		dir := t.TempDir()
		p := runExample(t, "forwardauth", dir, "-addr", freeAddr(t), "-trusted-proxies", v)
		if code := p.exitCode(t); code != 2 || !strings.Contains(p.stderr.String(), "-trusted-proxies") {
			t.Errorf("-trusted-proxies %q: exit %d, stderr %q", v, code, p.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("-trusted-proxies %q created %v", v, entries)
		}
	}
}

// TestExampleAPIJSON: examples/login's /api/ answers JSON, declared as
// such, for the signed-in user.
func TestExampleAPIJSON(t *testing.T) {
	t.Parallel()
	const pw = "the demo account's passphrase"
	s := startExample(t, "login", "-demo-password", pw)
	req, _ := http.NewRequest("GET", s.base+"/api/", nil)
	req.SetBasicAuth("demo", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got struct{ Username string }
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &got) != nil || got.Username != "demo" || strings.TrimSpace(string(body)) != `{"username":"demo"}` {
		t.Fatalf("/api/: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestExampleDatabaseURI: a -db that is a file: URI is refused, creating
// nothing.
func TestExampleDatabaseURI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := runExample(t, "basicauth", dir, "-addr", freeAddr(t), "-db", "file:auth.db?mode=rwc")
	if code := p.exitCode(t); code != 1 || !strings.Contains(p.stderr.String(), "a file: URI is not accepted") {
		t.Fatalf("exit %d, stderr %q", code, p.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("created %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "file:auth.db?mode=rwc")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}
