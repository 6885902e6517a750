package minimost_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/internal/testdb"
)

// server is an example server running as its own process.
type server struct {
	base string
	db   string // its SQLite database file, for authctl
	pid  int
	mu   sync.Mutex
	log  strings.Builder
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// builds holds the example binaries built so far by this test process, in
// a directory TestMain removes: each example is linked once, however many
// tests run it.
var builds struct {
	sync.Mutex
	dir  string
	bins map[string]string // example name -> binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// buildExample builds examples/NAME once per test process and returns the
// binary's path.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if bin, ok := builds.bins[name]; ok {
		return bin
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "minimost-examples-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.bins = dir, map[string]string{}
	}
	bin := filepath.Join(builds.dir, name)
	if out, err := exec.Command("go", "build", "-o", bin, "./examples/"+name).CombinedOutput(); err != nil {
		t.Fatalf("building examples/%s: %v\n%s", name, err, out)
	}
	builds.bins[name] = bin
	return bin
}

// startExample starts examples/NAME with args, on a free port of 127.0.0.1
// and with a database of its own, and waits until /healthz answers. It
// stops with the test.
func startExample(t *testing.T, name string, args ...string) *server {
	t.Helper()
	return startExampleOn(t, name, filepath.Join(t.TempDir(), "auth.db"), args...)
}

// startExampleOn is startExample on the database db (a SQLite file or a
// postgres:// URL), which several servers may share.
func startExampleOn(t *testing.T, name, db string, args ...string) *server {
	t.Helper()
	bin := buildExample(t, name)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-db", db}, args...)...)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{base: "http://" + addr, db: db, pid: cmd.Process.Pid}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		<-done
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("examples/%s did not start: %v\n%s", name, err, s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientFrom returns an HTTP client whose connections come from the local
// address ip (any of 127.0.0.0/8 works on Linux), so that one test is many
// clients to the server.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 60 * time.Second,
	}
}

// tryBasic and tryForm send one login attempt and return the status.
func tryBasic(c *http.Client, base, user, pw string) (int, error) {
	req, _ := http.NewRequest("GET", base+"/api/", nil)
	req.SetBasicAuth(user, pw)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func tryForm(c *http.Client, base, user, pw string) (int, error) {
	resp, err := c.PostForm(base+"/login", url.Values{"username": {user}, "password": {pw}})
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestParallelGuessingAgainstExampleServer: 500 wrong passwords at once for
// one account, from 50 client addresses, half through Basic auth and half
// through the login form of the running examples/login server, with its
// default hasher (PBKDF2, 600,000 iterations). The server's own log counts
// the real password checks: exactly T=5, one budget for both routes. Most
// guesses find no free hashing slot within -hash-wait (1 s here; 5 s by
// default) and get 503; none is let through. The right password is then
// refused on both routes during the lock (20 s: several times the flood,
// also on a loaded machine under -race), which lasts what was asked, and
// works once it has ended.
func TestParallelGuessingAgainstExampleServer(t *testing.T) {
	t.Parallel()
	const right = "the demo account's passphrase"
	const lock = 20 * time.Second
	s := startExample(t, "login", "-demo-password", right, "-lockout", "5", "-lockout-duration", lock.String(), "-hash-wait", "1s")

	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make(chan int, 500)
	for i := range 500 {
		c := clientFrom(fmt.Sprintf("127.0.0.%d", 10+i%50))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			try := tryBasic
			if i%2 == 1 {
				try = tryForm
			}
			st, err := try(c, s.base, "demo", fmt.Sprintf("guess number %d", i))
			if err != nil {
				t.Error(err)
			}
			statuses <- st
		}()
	}
	floodStart := time.Now() // the lock cannot start before this
	close(start)
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for st := range statuses {
		counts[st]++
	}
	t.Logf("500 guesses in %v: %v", time.Since(floodStart), counts)
	// On a loaded machine fewer than 5 guesses may get a hashing slot
	// within -hash-wait (the rest get 503). Then guess on, one at a time,
	// from one more address, until the server logs the lockout: the real
	// checks must still come to exactly 5.
	clientsSeen, late := 51, clientFrom("127.0.0.201")
	lockNotBefore := floodStart // when the fifth check, which locks, may have begun
	if counts[401] < 5 {
		lockNotBefore = time.Now() // it is one of the late guesses
	}
	for i := 0; i < 5 && !strings.Contains(s.logText(), "event=lockout user=demo"); i++ {
		st, err := tryBasic(late, s.base, "demo", fmt.Sprintf("late guess %d", i))
		if err != nil {
			t.Fatal(err)
		}
		counts[st]++
		clientsSeen = 52
	}
	others := 0
	for st, n := range counts {
		if st != 401 && st != 503 {
			others += n
		}
	}
	if others > 0 || counts[401] < 5 {
		t.Errorf("answers to the wrong guesses: %v, want only 401 (at least 5) and 503", counts)
	}

	fresh := clientFrom("127.0.0.200")
	for route, try := range map[string]func(*http.Client, string, string, string) (int, error){"basic": tryBasic, "form": tryForm} {
		if st, err := try(fresh, s.base, "demo", right); err != nil || st != 401 {
			t.Errorf("right password through %s during the lock: %d %v, want 401", route, st, err)
		}
	}
	if took := time.Since(lockNotBefore); took >= lock {
		// Then the lock may have ended during the flood or the checks, and
		// the counts below mean nothing: say so rather than mislead.
		t.Fatalf("the flood and the checks during the lock took %v, not less than the %v lock: the machine is too slow for this test", took, lock)
	}

	log := s.logText()
	if n := strings.Count(log, `event=login_failed user=demo reason="wrong password"`); n != 5 {
		t.Errorf("real password checks in the server's log: %d, want exactly 5", n)
	}
	if n := strings.Count(log, "event=lockout user=demo"); n != 1 {
		t.Errorf("lockouts in the server's log: %d, want 1", n)
	}
	if n, want := strings.Count(log, `reason=locked`), counts[401]-5+2; n != want {
		t.Errorf("attempts refused as locked: %d, want %d (the 401s but the 5 checks, and 2 right passwords)", n, want)
	}
	if n := strings.Count(log, `reason="hashing capacity exhausted"`); n != counts[503] {
		t.Errorf("%d capacity failures in the log for %d answers 503", n, counts[503])
	}
	if strings.Contains(log, "ERROR") {
		t.Errorf("errors in the server's log under a flood:\n%s", log)
	}
	clients := map[string]bool{}
	for line := range strings.Lines(log) {
		if _, ip, ok := strings.Cut(strings.TrimSpace(line), " client="); ok {
			clients[ip] = true
		}
	}
	if len(clients) != clientsSeen {
		t.Errorf("%d client addresses in the log, want %d", len(clients), clientsSeen)
	}

	// The lock is as long as asked: it began between lockNotBefore and
	// now. Then its end is brought forward by that length, as the lock's
	// time passing would (the server compares lockout_until with its own
	// clock at each attempt), rather than waited for: the right password
	// works again at once, on both routes, so nothing but that row held
	// the lock.
	raw := testdb.RawSQLite(t, s.db)
	var until float64
	if err := raw.QueryRow("SELECT lockout_until FROM users WHERE username = 'demo'").Scan(&until); err != nil {
		t.Fatal(err)
	}
	seconds := func(tm time.Time) float64 { return float64(tm.UnixNano()) / 1e9 }
	if earliest, latest := seconds(lockNotBefore.Add(lock)), seconds(time.Now().Add(lock)); until < earliest-0.01 || until > latest+0.01 {
		t.Fatalf("lockout_until %.3f, want between %.3f and %.3f: a lock of %v from the fifth check", until, earliest, latest, lock)
	}
	if _, err := raw.Exec("UPDATE users SET lockout_until = ? WHERE username = 'demo'", until-lock.Seconds()); err != nil {
		t.Fatal(err)
	}
	if st, err := tryBasic(fresh, s.base, "demo", right); err != nil || st != 200 {
		t.Errorf("right password through basic after the lock: %d %v, want 200", st, err)
	}
	if st, _ := tryForm(fresh, s.base, "demo", right); st != 303 {
		t.Errorf("form login after the lock: %d, want 303", st)
	}
}
