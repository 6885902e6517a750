//go:build linux

// Tests of the -wal watch (authn/walwatch.go, Linux only) on real files and
// real processes: a server in a child process has its -wal deleted or
// truncated under it, and is then killed with SIGKILL or shut down; what the
// database holds afterwards is read by this process once the server has
// ended. While it runs, this process opens the file only for the checkpoint
// TestWALTruncated makes, as an operator's sqlite3 would.

package minimost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// walChildEnv, when set, makes TestWALChild a server for the tests below:
// it names the database file.
const walChildEnv = "MINIMOST_WAL_CHILD"

// TestWALChild serves the Authenticator's routes over the database named
// by MINIMOST_WAL_CHILD, logging to stderr, and prints "listening ADDR". On
// SIGTERM it shuts down as a service does, closes the Authenticator and
// prints "closed: " and what Close returned. It does nothing in a normal
// test run.
func TestWALChild(t *testing.T) {
	path := os.Getenv(walChildEnv)
	if path == "" {
		t.Skip("the server of the -wal tests; runs only there")
	}
	ctx := context.Background()
	generous := middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20})
	a, err := authn.Open(ctx, path, authn.Config{
		Hasher: testdb.FastHasher,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		HTTP:   authn.HTTPConfig{InsecureCookies: true, Throttle: generous, RegisterThrottle: generous, AllowRegistration: true},
	})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(3)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: a.Routes()}
	go srv.Serve(l)
	fmt.Println("listening", l.Addr())
	<-term
	srv.Shutdown(ctx)
	fmt.Println("closed:", a.Close())
	os.Exit(0)
}

// walServer is a run of TestWALChild.
type walServer struct {
	t     *testing.T
	cmd   *exec.Cmd
	base  string
	logs  *syncBuffer   // its stderr
	lines chan string   // its stdout after "listening"
	done  chan struct{} // closed when it has exited
	hc    *http.Client
}

func startWALServer(t *testing.T, path string) *walServer {
	t.Helper()
	s := &walServer{t: t, logs: &syncBuffer{}, lines: make(chan string, 16), done: make(chan struct{}),
		hc: &http.Client{Timeout: 30 * time.Second}}
	s.cmd = exec.Command(os.Args[0], "-test.run=^TestWALChild$", "-test.count=1")
	s.cmd.Env = append(os.Environ(), walChildEnv+"="+path)
	s.cmd.Stderr = s.logs
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.kill)
	select {
	case line := <-s.lines:
		addr, ok := strings.CutPrefix(line, "listening ")
		if !ok {
			t.Fatalf("server: %s\n%s", line, s.logs)
		}
		s.base = "http://" + addr
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not start in 30 s\n%s", s.logs)
	}
	return s
}

// post sends body as JSON to path and returns the status.
func (s *walServer) post(path string, body any) int {
	s.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := s.hc.Post(s.base+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func walPassword(name string) string { return "a long enough passphrase for " + name }

// register registers name: 201 when done.
func (s *walServer) register(name string) int {
	return s.post("/register", map[string]string{"username": name, "password": walPassword(name)})
}

// login signs name in: 200 when a session was made.
func (s *walServer) login(name string) int {
	return s.post("/login", map[string]string{"username": name, "password": walPassword(name)})
}

// terminate shuts the server down with SIGTERM and returns what its Close
// returned, as it printed it.
func (s *walServer) terminate() string {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case line := <-s.lines:
		<-s.done
		return line
	case <-time.After(60 * time.Second):
		s.t.Fatalf("the server did not shut down in 60 s\n%s", s.logs)
	}
	return ""
}

// kill ends the server with SIGKILL: no deferred function, no Close.
func (s *walServer) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// written is what the server answered success to: users registered, and
// users with a session.
type written struct {
	mu         sync.Mutex
	registered []string
	sessions   []string
}

// write registers name, then signs it in, and records the successes; it
// returns the registration's status.
func (w *written) write(s *walServer, name string) int {
	st := s.register(name)
	if st != 201 {
		return st
	}
	w.mu.Lock()
	w.registered = append(w.registered, name)
	w.mu.Unlock()
	if s.login(name) == 200 {
		w.mu.Lock()
		w.sessions = append(w.sessions, name)
		w.mu.Unlock()
	}
	return st
}

// check fails t unless the database at path, opened after the server
// ended, is whole and holds every success of w.
func (w *written) check(t *testing.T, path string) {
	t.Helper()
	raw := testdb.RawSQLite(t, path)
	defer raw.Close()
	var integrity string
	if err := raw.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	for _, q := range []struct {
		names []string
		query string
	}{
		{w.registered, "SELECT count(*) FROM users WHERE username = ?"},
		{w.sessions, "SELECT count(*) FROM sessions WHERE username = ?"},
	} {
		for _, name := range q.names {
			var n int
			if err := raw.QueryRow(q.query, name).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("%q found nothing after the server answered success for %s", q.query, name)
			}
		}
	}
}

// TestWALDeleted: the -wal deleted under a running server while three
// clients register and sign in. The server notices within seconds, logs it
// at level ERROR, copies the old -wal's commits into the database file,
// reopens its connections on the -wal at the path and says it serves
// again. Then it is killed with SIGKILL: every registration and sign-in it
// answered with success, before the deletion, after it and after serving
// again, is in the database. (Requests may get 503 meanwhile: while the
// watch saves the -wal, and from connections opened after the deletion,
// which find a new, empty -wal.)
func TestWALDeleted(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	path := filepath.Join(t.TempDir(), "auth.db")
	s := startWALServer(t, path)
	var w written
	for i := range 5 {
		if st := w.write(s, fmt.Sprintf("before%d", i)); st != 201 {
			t.Fatalf("registration before the deletion: %d\n%s", st, s.logs)
		}
	}
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	const back = "at its path again; serving"
	var mu sync.Mutex
	var refused int
	var clients sync.WaitGroup
	for c := range 3 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			served := 0 // since the server said it serves again
			for i := 0; served < 5 && time.Since(deleted) < 30*time.Second; i++ {
				switch st := w.write(s, fmt.Sprintf("c%d_%d", c, i)); {
				case st == 503:
					mu.Lock()
					refused++
					mu.Unlock()
				case st != 201:
					t.Errorf("registration after the deletion: %d", st)
					return
				case strings.Contains(s.logs.String(), back):
					served++
				}
			}
		}()
	}
	for !strings.Contains(s.logs.String(), "was deleted or replaced") && time.Since(deleted) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	noticed := time.Since(deleted)
	clients.Wait()
	if log := s.logs.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "was deleted or replaced") {
		t.Fatalf("no error line about the deleted -wal\n%s", log)
	}
	if noticed > 4*time.Second {
		t.Errorf("the deletion was logged %v after it happened; the watch looks each second", noticed)
	}
	if !strings.Contains(s.logs.String(), back) {
		t.Fatalf("the server never served again\n%s", s.logs)
	}
	s.kill()
	t.Logf("%d registrations answered 201 (%d sign-ins), %d refused with 503; noticed within %v",
		len(w.registered), len(w.sessions), refused, noticed.Round(10*time.Millisecond))
	w.check(t, path)
}

// TestWALTruncated: the -wal truncated under a running server. The server
// fails closed within seconds, for good, and logs what to do; it then shuts
// down (Close leaves a connection open rather than let its checkpoint copy
// the zeros that a commit after the truncation left in the -wal), or is
// killed. Either way the database file is whole (integrity_check) and holds
// everything checkpointed before the truncation; what was only in the -wal
// is lost, and no checkpoint copied it.
func TestWALTruncated(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	for _, shutdown := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(shutdown, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "auth.db")
			s := startWALServer(t, path)
			var kept written
			for i := range 5 {
				if st := kept.write(s, fmt.Sprintf("kept%d", i)); st != 201 {
					t.Fatalf("registration: %d\n%s", st, s.logs)
				}
			}
			checkpoint(t, path) // by this process, as an operator would
			// Only in the -wal, and sessions among them: pages that the
			// registrations after the truncation do not write again.
			var lost written
			for i := range 5 {
				if st := lost.write(s, fmt.Sprintf("lost%d", i)); st != 201 {
					t.Fatalf("registration: %d\n%s", st, s.logs)
				}
			}
			if err := os.Truncate(path+"-wal", 0); err != nil {
				t.Fatal(err)
			}
			// Until the watch looks, requests are served from what the
			// connections hold in memory (their commits are lost, as the
			// -wal's are), or fail on the -wal's missing frames.
			truncated := time.Now()
			const noticed = "Restart the server"
			served := 0
			for i := 0; !strings.Contains(s.logs.String(), noticed); i++ {
				if time.Since(truncated) > 10*time.Second {
					t.Fatalf("the truncation not noticed %v after it\n%s", time.Since(truncated), s.logs)
				}
				if s.register(fmt.Sprintf("after%d", i)) == 201 {
					served++
				}
			}
			if !strings.Contains(s.logs.String(), "level=ERROR") {
				t.Errorf("the truncation not logged as an error\n%s", s.logs)
			}
			// Noticed: failing closed, for good.
			for i := range 5 {
				if st := s.register(fmt.Sprintf("refused%d", i)); st != 503 {
					t.Fatalf("registration answered %d once the truncation was noticed", st)
				}
				if st := s.login("kept0"); st != 503 {
					t.Fatalf("sign-in answered %d once the truncation was noticed", st)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if shutdown == "SIGTERM" {
				if closed := s.terminate(); !strings.Contains(closed, "left open") {
					t.Errorf("Close: %q, want an error saying a connection was left open\n%s", closed, s.logs)
				}
			} else {
				s.kill()
			}
			t.Logf("%d registrations answered before the watch noticed", served)
			kept.check(t, path)

			// The file serves again.
			a, err := authn.Open(context.Background(), path, authn.Config{Hasher: testdb.FastHasher, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Register(context.Background(), "again", walPassword("again")); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			kept.registered = append(kept.registered, "again")
			kept.check(t, path)
		})
	}
}

// TestWALCheckpointByOtherProcess: the sqlite3 command-line tool, another
// process, empties the -wal (wal_checkpoint(TRUNCATE)), and writes with a
// journal_size_limit that truncates it, again and again while clients
// register and sign in: the server never takes that for a damaged -wal,
// answers every request, and logs no error.
func TestWALCheckpointByOtherProcess(t *testing.T) {
	t.Parallel()
	if os.Getenv(walChildEnv) != "" {
		t.Skip("in the child")
	}
	sqliteCmd(t, "", "") // skips without the tool
	path := filepath.Join(t.TempDir(), "auth.db")
	s := startWALServer(t, path)
	var w written
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for c := range 2 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if st := w.write(s, fmt.Sprintf("c%d_%d", c, i)); st != 201 {
					t.Errorf("registration while another process checkpoints: %d", st)
					return
				}
			}
		}()
	}
	truncations := 0
	for i := range 12 {
		sql := "PRAGMA wal_checkpoint(TRUNCATE);"
		if i%3 == 2 {
			sql = "PRAGMA journal_size_limit = 0; CREATE TABLE IF NOT EXISTS other (x); INSERT INTO other VALUES (randomblob(20000));" + sql
		}
		out := strings.Fields(runOther(t, sqliteCmd(t, path, sql)))
		if len(out) > 0 && strings.HasPrefix(out[len(out)-1], "0|") {
			truncations++
		}
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a last look by the watch
	close(stop)
	clients.Wait()
	if truncations < 3 {
		t.Errorf("only %d of 12 checkpoints emptied the -wal: the test proves little", truncations)
	}
	if strings.Contains(s.logs.String(), "level=ERROR") {
		t.Errorf("the server logged errors:\n%s", s.logs)
	}
	t.Logf("%d registrations, %d checkpoints that emptied the -wal", len(w.registered), truncations)
	s.kill()
	w.check(t, path)
}
