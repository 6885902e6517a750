// Tests that what an Authenticator made by authn.Open answers from memory
// (the WAL-index fast path: the reads of a cached Basic credential's user,
// of a session and of an app token skipped while nothing was committed
// since, counted in Stats.ReadsSkipped) never outlives a change made by
// another process: authctl, the Python application's sqlite3 module, the
// sqlite3 command-line tool, or an operator deleting and restoring the file.
// Each test first proves that the fast path was in use (requireFastPath),
// then has the other process change the database, and then requires the
// very next request, started after that process exited, to see the change.

package minimost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// The credentials a request carries, in the order expect checks them. A
// bug that lets the first real read after a change refresh what other
// kinds remember shows in the kinds checked after the first.
const (
	kindBasic     = "alice's Basic password"
	kindSession   = "alice's session cookie"
	kindBearer    = "alice's Bearer token"
	kindUserToken = "alice's token as Basic password"
	kindBobBasic  = "bob's Basic password"
)

// aliceKinds are the four ways alice's requests are let in.
var aliceKinds = []string{kindBasic, kindSession, kindBearer, kindUserToken}

// lockedForever is how the Python application disables an account: a
// lockout_until no date reaches.
const lockedForever = 1e300

// crossSite is a site over a SQLite file opened by authn.Open, with alice
// signed in through the login route and holding an app token, for another
// process to change the file under it.
type crossSite struct {
	*site
	path   string       // the database file
	cookie string       // alice's session, as a Cookie header
	token  string       // alice's app token, named "ci"
	hc     *http.Client // safe for concurrent use; never fails the test itself
}

func newCrossSite(t *testing.T) *crossSite {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	x := &crossSite{site: newSite(t, &testdb.DB{Name: "sqlite", URL: path}, authn.Config{}), path: path}
	c := x.client()
	if r := x.loginForm(c, "alice", alicePassword, ""); r.status != 303 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	cookies := c.Jar.Cookies(mustURL(t, x.srv.URL))
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies, want 1", len(cookies))
	}
	x.cookie = cookies[0].Name + "=" + cookies[0].Value
	token, err := x.a.CreateToken(context.Background(), "alice", "ci")
	if err != nil {
		t.Fatal(err)
	}
	x.token = token
	// Enough idle connections for the parallel requests of the load test,
	// so that they do not open a TLS connection each.
	tr := x.srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	t.Cleanup(tr.CloseIdleConnections)
	x.hc = &http.Client{Transport: tr}
	return x
}

// request is a GET that carries the credential of kind.
func (x *crossSite) request(kind string) *http.Request {
	req, err := http.NewRequest("GET", x.srv.URL+"/basic/x", nil)
	if err != nil {
		panic(err) // a fixed, valid URL
	}
	switch kind {
	case kindBasic:
		req.Header.Set("Authorization", basic("alice", alicePassword))
	case kindSession:
		req.URL.Path = "/app/"
		req.Header.Set("Cookie", x.cookie)
		req.Header.Set("Accept", "application/json") // 401 when refused, not a redirect
	case kindBearer:
		req.Header.Set("Authorization", "Bearer "+x.token)
	case kindUserToken:
		req.Header.Set("Authorization", basic("alice", x.token))
	case kindBobBasic:
		req.Header.Set("Authorization", basic("bob", bobPassword))
	default:
		panic("unknown kind " + kind)
	}
	return req
}

// send makes one request of kind and returns its status. A 200 must come
// from the protected handler with the right user: an error otherwise.
func (x *crossSite) send(kind string) (int, error) {
	resp, err := x.hc.Do(x.request(kind))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	user := "alice"
	if kind == kindBobBasic {
		user = "bob"
	}
	if resp.StatusCode == 200 && string(body) != "hello "+user {
		return 0, fmt.Errorf("200 with the body %q, want %q", body, "hello "+user)
	}
	return resp.StatusCode, nil
}

// status is send for the test's own goroutine.
func (x *crossSite) status(t *testing.T, kind string) int {
	t.Helper()
	st, err := x.send(kind)
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return st
}

// expect sends one request of each kind in kinds, in that order, and fails
// the test unless each gets want[kind].
func (x *crossSite) expect(t *testing.T, when string, kinds []string, want map[string]int) {
	t.Helper()
	for _, kind := range kinds {
		if st := x.status(t, kind); st != want[kind] {
			t.Errorf("%s: %s answered %d, want %d", when, kind, st, want[kind])
		}
	}
}

// every is a want of expect: the same status for each of kinds.
func every(status int, kinds ...string) map[string]int {
	want := map[string]int{}
	for _, k := range kinds {
		want[k] = status
	}
	return want
}

// warmRounds is how many rounds warmUp sends: the first may write (a full
// password check, a token's first use), the second reads what is committed
// then, and the last two can be answered from memory.
const warmRounds = 4

// warmUp sends rounds of requests of every kind in kinds, each of which
// must succeed, and requires that requests of each kind were answered from
// memory in the last two rounds: what the test does next would otherwise
// prove nothing about the fast path. (Two rounds, not one, so that a fast
// path with reasons of its own to read again now and then still passes.)
func (x *crossSite) warmUp(t *testing.T, kinds ...string) {
	t.Helper()
	skipped := map[string]int64{}
	for round := 1; round <= warmRounds; round++ {
		for _, kind := range kinds {
			before := x.a.Stats().ReadsSkipped
			if st := x.status(t, kind); st != 200 {
				t.Fatalf("warm-up round %d: %s answered %d, want 200", round, kind, st)
			}
			if round > warmRounds-2 {
				skipped[kind] += x.a.Stats().ReadsSkipped - before
			}
		}
	}
	for _, kind := range kinds {
		requireFastPath(t, "warm-up, "+kind, skipped[kind])
	}
}

// requireFastPath fails the test unless skipped, the growth of
// Stats().ReadsSkipped during requests with nothing committed since the
// same requests were last made, is positive: the WAL-index fast path was in
// use, so the refusals the test then requires are refusals of remembered
// answers. It is an Errorf, not a Fatalf, so that the rest of the test
// still runs (and passes on the slow path) where the fast path is missing.
func requireFastPath(t *testing.T, what string, skipped int64) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return // the fast path is built for Linux only; the changes must be seen all the same
	}
	if skipped <= 0 {
		t.Errorf("%s: Stats().ReadsSkipped did not grow: every read was made, none answered from memory, so the fast path was not in use and this test proves nothing about it", what)
	}
}

// runOther runs cmd, another process changing the database, to its end and
// fails the test unless it succeeded. It returns when cmd has exited, and
// its output.
func runOther(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return string(out)
}

// authctlCmd is examples/authctl on db with args; stdin, when not "", is
// its standard input (a password for passwd).
func authctlCmd(t *testing.T, db, stdin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(buildExample(t, "authctl"), append([]string{"-db", db}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	return cmd
}

// needTool returns the path of an external program, or skips the test
// without it: the tests of the other SQLite libraries need them, the
// library does not.
func needTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is missing (%s): the test of its changes to the database is skipped", name, install)
	}
	return p
}

// pythonWriter is what the Python application does to its auth.db, with the
// standard library alone: one statement, its parameters given as JSON, in
// a transaction, committed. A parameter {"hash": PASSWORD} becomes that
// password's hash as werkzeug's generate_password_hash writes it
// (pbkdf2:sha256:600000, a 16-character salt used as its UTF-8 bytes). It
// prints the number of rows changed and fails when there is none.
const pythonWriter = `
import hashlib, json, secrets, sqlite3, string, sys

def werkzeug_hash(password):
    alphabet = string.ascii_letters + string.digits
    salt = "".join(secrets.choice(alphabet) for _ in range(16))
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 600000)
    return "pbkdf2:sha256:600000$%s$%s" % (salt, key.hex())

path, sql, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
params = [werkzeug_hash(p["hash"]) if isinstance(p, dict) else p for p in params]
con = sqlite3.connect(path, timeout=10)
with con:
    changed = con.execute(sql, params).rowcount
con.close()
if changed < 1:
    sys.exit("no row changed: " + sql)
print(changed)
`

// python is the interpreter python3 runs, found once: python3 on the PATH
// may be a wrapper (pyenv's shim) that costs more than the script.
var python struct {
	once sync.Once
	path string
	err  error
}

// pythonPath returns the python3 interpreter, or skips the test without a
// python3 that has its sqlite3 module.
func pythonPath(t *testing.T) string {
	t.Helper()
	py := needTool(t, "python3", "apt-get install python3")
	python.once.Do(func() {
		out, err := exec.Command(py, "-I", "-c", "import sqlite3, sys; print(sys.executable)").Output()
		python.path, python.err = strings.TrimSpace(string(out)), err
	})
	if python.err != nil || python.path == "" {
		t.Skipf("python3 has no usable sqlite3 module (%v): the test of its changes is skipped", python.err)
	}
	return python.path
}

// pythonCmd is python3 running pythonWriter on db, isolated from the
// environment (-I). It skips the test without python3 (see pythonPath).
func pythonCmd(t *testing.T, db, sql string, params ...any) *exec.Cmd {
	t.Helper()
	py := pythonPath(t)
	if params == nil {
		params = []any{}
	}
	js, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(py, "-I", "-c", pythonWriter, db, sql, string(js))
}

// sqliteCmd is the sqlite3 command-line tool running sql on db, waiting up
// to 10 s for a lock. It skips the test without the tool.
func sqliteCmd(t *testing.T, db, sql string) *exec.Cmd {
	t.Helper()
	bin := needTool(t, "sqlite3", "apt-get install sqlite3")
	return exec.Command(bin, "-bail", "-cmd", ".timeout 10000", db, sql)
}

// TestCrossProcessAuthctl: each of authctl's changes to a user, made while
// alice's Basic credential, session and app token are served from memory,
// is seen by the very next request of each.
func TestCrossProcessAuthctl(t *testing.T) {
	t.Parallel()
	const newPassword = "alice's passphrase set by authctl"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  map[string]int
		then  func(t *testing.T, x *crossSite) // more checks, after want's
	}{
		{name: "lock", args: []string{"lock", "alice"}, want: every(401, aliceKinds...)},
		{
			// A new password ends the sessions; app tokens outlive it.
			name: "passwd", stdin: newPassword + "\n", args: []string{"passwd", "alice"},
			want: map[string]int{kindBasic: 401, kindSession: 401, kindBearer: 200, kindUserToken: 200},
			then: func(t *testing.T, x *crossSite) {
				if r := x.basicGet("alice", newPassword); r.status != 200 {
					t.Errorf("the new password: %d, want 200", r.status)
				}
			},
		},
		{name: "delete", args: []string{"delete", "-y", "alice"}, want: every(401, aliceKinds...)},
		{
			name: "logout", args: []string{"logout", "alice"},
			want: map[string]int{kindBasic: 200, kindSession: 401, kindBearer: 200, kindUserToken: 200},
		},
		{
			name: "token revoke", args: []string{"token", "revoke", "alice", "ci"},
			want: map[string]int{kindBasic: 200, kindSession: 200, kindBearer: 401, kindUserToken: 401},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newCrossSite(t)
			x.warmUp(t, aliceKinds...)
			runOther(t, authctlCmd(t, x.path, tc.stdin, tc.args...))
			x.expect(t, "after authctl "+tc.name, aliceKinds, tc.want)
			if tc.then != nil {
				tc.then(t, x)
			}
			// Answered from memory again, the change still holds.
			x.expect(t, "again after authctl "+tc.name, aliceKinds, tc.want)
		})
	}
}

// TestCrossProcessPython: the Python application, writing its auth.db with
// its own SQLite library in its own process, is seen by the very next
// request: a lockout it records, an account it disables and enables again,
// a password hash it writes, the sessions and the user it deletes.
func TestCrossProcessPython(t *testing.T) {
	t.Parallel()
	pythonPath(t) // skips before any warm-up: its failure would stay
	const newPassword = "alice's passphrase set by python"
	t.Run("lockout by failed passwords", func(t *testing.T) {
		t.Parallel()
		x := newCrossSite(t)
		x.warmUp(t, aliceKinds...)
		until := float64(time.Now().Add(time.Hour).Unix())
		runOther(t, pythonCmd(t, x.path, "UPDATE users SET failed_attempts = ?, lockout_until = ? WHERE username = ?", 5, until, "alice"))
		// Failed passwords stop passwords, not sessions nor app tokens
		// (nobody can end another's sessions by guessing): see CreateToken.
		want := map[string]int{kindBasic: 401, kindSession: 200, kindBearer: 200, kindUserToken: 200}
		x.expect(t, "after a lockout written by python", aliceKinds, want)
		x.expect(t, "again after a lockout written by python", aliceKinds, want)
	})
	t.Run("account disabled, then enabled", func(t *testing.T) {
		t.Parallel()
		x := newCrossSite(t)
		x.warmUp(t, aliceKinds...)
		runOther(t, pythonCmd(t, x.path, "UPDATE users SET lockout_until = ? WHERE username = ?", lockedForever, "alice"))
		x.expect(t, "after python disabled alice", aliceKinds, every(401, aliceKinds...))
		x.expect(t, "again after python disabled alice", aliceKinds, every(401, aliceKinds...))
		runOther(t, pythonCmd(t, x.path, "UPDATE users SET lockout_until = NULL, failed_attempts = 0 WHERE username = ?", "alice"))
		x.expect(t, "after python enabled alice again", aliceKinds, every(200, aliceKinds...))
	})
	t.Run("new password hash", func(t *testing.T) {
		t.Parallel()
		x := newCrossSite(t)
		x.warmUp(t, aliceKinds...)
		runOther(t, pythonCmd(t, x.path, "UPDATE users SET password_hash = ? WHERE username = ?", map[string]string{"hash": newPassword}, "alice"))
		// Sessions and tokens are bound to the hash they were made under:
		// a hash written behind the library's back ends them all.
		x.expect(t, "after python set a new hash", aliceKinds, every(401, aliceKinds...))
		if r := x.basicGet("alice", newPassword); r.status != 200 {
			t.Errorf("the password of the hash python wrote: %d, want 200", r.status)
		}
		if st := x.status(t, kindBasic); st != 401 {
			t.Errorf("the old password again: %d, want 401", st)
		}
	})
	t.Run("sessions deleted", func(t *testing.T) {
		t.Parallel()
		x := newCrossSite(t)
		x.warmUp(t, aliceKinds...)
		runOther(t, pythonCmd(t, x.path, "DELETE FROM sessions WHERE username = ?", "alice"))
		want := map[string]int{kindBasic: 200, kindSession: 401, kindBearer: 200, kindUserToken: 200}
		x.expect(t, "after python deleted the sessions", []string{kindSession, kindBasic, kindBearer, kindUserToken}, want)
		x.expect(t, "again after python deleted the sessions", aliceKinds, want)
	})
	t.Run("user deleted", func(t *testing.T) {
		t.Parallel()
		x := newCrossSite(t)
		x.warmUp(t, aliceKinds...)
		// The Python application knows no tokens table: its rows stay,
		// and name a user who is gone.
		runOther(t, pythonCmd(t, x.path, "DELETE FROM users WHERE username = ?", "alice"))
		x.expect(t, "after python deleted alice", aliceKinds, every(401, aliceKinds...))
		x.expect(t, "again after python deleted alice", aliceKinds, every(401, aliceKinds...))
	})
}

// TestCrossProcessCheckpoint: the sqlite3 tool checkpoints the database and
// restarts its WAL (wal_checkpoint(TRUNCATE)) between requests, alone and
// right after a change of its own, so that the change's frames are gone
// from the WAL before the next request: requests go on succeeding, the
// fast path takes up again after the restart, and every change is seen by
// the very next request.
func TestCrossProcessCheckpoint(t *testing.T) {
	t.Parallel()
	sqliteCmd(t, "", "") // skips before any warm-up: its failure would stay
	x := newCrossSite(t)
	truncate := func(when string, sql string) {
		t.Helper()
		out := strings.Fields(runOther(t, sqliteCmd(t, x.path, sql+"PRAGMA wal_checkpoint(TRUNCATE);")))
		// busy|WAL frames|checkpointed: 0 busy means the WAL restarted.
		if len(out) == 0 || !strings.HasPrefix(out[len(out)-1], "0|") {
			t.Fatalf("%s: the checkpoint answered %q: it could not restart the WAL", when, out)
		}
		if fi, err := os.Stat(x.path + "-wal"); err != nil || fi.Size() != 0 {
			t.Fatalf("%s: the WAL after TRUNCATE: %v, %v; want an empty file", when, fi, err)
		}
	}
	x.warmUp(t, aliceKinds...)
	truncate("checkpoint", "")
	x.expect(t, "after a checkpoint", aliceKinds, every(200, aliceKinds...))
	x.warmUp(t, aliceKinds...)

	disable := fmt.Sprintf("UPDATE users SET lockout_until = %g WHERE username = 'alice';", lockedForever)
	truncate("alice disabled, then a checkpoint", disable)
	x.expect(t, "after alice was disabled and the WAL restarted", aliceKinds, every(401, aliceKinds...))
	truncate("checkpoint with alice disabled", "")
	x.expect(t, "after another checkpoint", aliceKinds, every(401, aliceKinds...))

	runOther(t, sqliteCmd(t, x.path, "UPDATE users SET lockout_until = NULL WHERE username = 'alice';"))
	x.expect(t, "after alice was enabled again", aliceKinds, every(200, aliceKinds...))
	x.warmUp(t, aliceKinds...)
	runOther(t, sqliteCmd(t, x.path, disable))
	x.expect(t, "after alice was disabled, WAL not restarted", aliceKinds, every(401, aliceKinds...))
}

// outcome is one request of the load test.
type outcome struct {
	kind       string
	start, end time.Time
	status     int
	err        error
}

// postChangeRequests is how many requests each client of the load test
// starts after the other process has exited.
const postChangeRequests = 20

// hammer runs one client per kind, each sending requests of its kind one
// after another, has change run the other process once every client has
// sent a few, and goes on until each has started postChangeRequests after
// change returned. It returns when change started and returned, and every
// request made.
func (x *crossSite) hammer(t *testing.T, kinds []string, change func()) (started, exited time.Time, all []outcome) {
	t.Helper()
	var ready, done sync.WaitGroup
	changed := make(chan struct{}) // closed once exited is set
	quit := make(chan struct{})    // closed when hammer returns, or fails
	defer func() {
		close(quit)
		done.Wait()
	}()
	results := make([][]outcome, len(kinds))
	deadline := time.Now().Add(60 * time.Second)
	for i, kind := range kinds {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			var once sync.Once
			markReady := func() { once.Do(ready.Done) }
			defer markReady()
			after := 0
			for n := 1; after < postChangeRequests && time.Now().Before(deadline); n++ {
				o := outcome{kind: kind, start: time.Now()}
				o.status, o.err = x.send(kind)
				o.end = time.Now()
				results[i] = append(results[i], o)
				if n == 5 {
					markReady()
				}
				select {
				case <-quit:
					return
				case <-changed:
					if o.start.After(exited) {
						after++
					}
				default:
				}
			}
			if after < postChangeRequests {
				results[i] = append(results[i], outcome{kind: kind, err: errors.New("too few requests after the change within 60 s")})
			}
		}()
	}
	ready.Wait()
	started = time.Now()
	change()
	exited = time.Now()
	close(changed)
	done.Wait()
	for _, r := range results {
		all = append(all, r...)
	}
	return started, exited, all
}

// TestCrossProcessUnderLoad: while clients send alice's Basic, session and
// token requests without pause, each answered from memory, another process
// disables alice; every request started after that process exited is
// refused (those in flight while it ran may go either way).
func TestCrossProcessUnderLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, x *crossSite) *exec.Cmd
	}{
		{"authctl lock", func(t *testing.T, x *crossSite) *exec.Cmd {
			return authctlCmd(t, x.path, "", "lock", "alice")
		}},
		{"python disables", func(t *testing.T, x *crossSite) *exec.Cmd {
			return pythonCmd(t, x.path, "UPDATE users SET lockout_until = ? WHERE username = ?", lockedForever, "alice")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newCrossSite(t)
			cmd := tc.change(t, x) // skips before the warm-up without python3
			x.warmUp(t, aliceKinds...)
			started, exited, all := x.hammer(t, aliceKinds, func() { runOther(t, cmd) })
			checkLoad(t, started, exited, all)
		})
	}
}

// checkLoad checks the requests of the load test: each answered 200 or
// 401, 200 for all that ended before the change started, 401 for all that
// started after it exited, and some of each. It reports the first few
// wrong answers of each kind, and how many there were.
func checkLoad(t *testing.T, started, exited time.Time, all []outcome) {
	t.Helper()
	before, after, wrong := map[string]int{}, map[string]int{}, map[string]int{}
	report := func(kind, format string, args ...any) {
		if wrong[kind]++; wrong[kind] <= 3 {
			t.Errorf(kind+": "+format, args...)
		}
	}
	for _, o := range all {
		switch {
		case o.err != nil:
			report(o.kind, "%v", o.err)
		case o.status != 200 && o.status != 401:
			report(o.kind, "%d at %s, want 200 or 401", o.status, o.start.Format(time.StampMicro))
		case o.end.Before(started):
			if before[o.kind]++; o.status != 200 {
				report(o.kind, "%d, want 200: ended %s before the change started", o.status, started.Sub(o.end))
			}
		case o.start.After(exited):
			if after[o.kind]++; o.status != 401 {
				report(o.kind, "%d, want 401: started %s after the other process exited", o.status, o.start.Sub(exited))
			}
		}
	}
	for _, kind := range aliceKinds {
		if wrong[kind] > 3 {
			t.Errorf("%s: %d wrong answers in all", kind, wrong[kind])
		}
		if before[kind] == 0 || after[kind] < postChangeRequests {
			t.Errorf("%s: %d requests ended before the change, %d started after it; want some, and %d", kind, before[kind], after[kind], postChangeRequests)
		}
	}
	t.Logf("%d requests, %d of them started after the other process exited", len(all), sumOf(after))
}

func sumOf(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// restoreCopy makes, with VACUUM INTO, a copy of the database at path in
// which alice is disabled and bob has the password bobNew, and returns its
// path. The copy is whole in one file: no -wal beside it.
func restoreCopy(t *testing.T, path, bobNew string) string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "backup.db")
	raw := testdb.RawSQLite(t, path)
	if _, err := raw.Exec("VACUUM INTO ?", cp); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	hash, err := testdb.FastHasher.Hash(bobNew)
	if err != nil {
		t.Fatal(err)
	}
	edit := testdb.RawSQLite(t, cp)
	for _, stmt := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE users SET lockout_until = ? WHERE username = 'alice'", []any{lockedForever}},
		{"UPDATE users SET password_hash = ? WHERE username = 'bob'", []any{hash}},
	} {
		if res, err := edit.Exec(stmt.sql, stmt.args...); err != nil {
			t.Fatal(err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("%s: %d rows in the copy, want 1", stmt.sql, n)
		}
	}
	if err := edit.Close(); err != nil { // the last connection: checkpoints
		t.Fatal(err)
	}
	if _, err := os.Stat(cp + "-wal"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the copy has a -wal beside it (%v): it would not restore whole", err)
	}
	return cp
}

// removeDatabase deletes the database file with its -wal and -shm, as an
// operator's mistake (or a restore's first step) would.
func removeDatabase(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// fileWatchDeadline bounds the waits for the file watch, which looks each
// second: generous for a loaded machine.
const fileWatchDeadline = 20 * time.Second

// TestCrossProcessFileRestored: the database file (with its -wal and -shm)
// is deleted under an Authenticator that answers alice's and bob's requests
// from memory; once the file watch notices, every request fails closed
// (503), none is let through from memory. A copy taken earlier, in which
// alice is disabled and bob has another password, is then put in its
// place; from then on no request is let through on what was remembered of
// the deleted file, and once the watch notices, the answers are those of
// the copy.
func TestCrossProcessFileRestored(t *testing.T) {
	t.Parallel()
	const bobNew = "bob's password in the backup"
	kinds := append(append([]string{}, aliceKinds...), kindBobBasic)
	x := newCrossSite(t)
	x.warmUp(t, kinds...)
	cp := restoreCopy(t, x.path, bobNew)
	x.warmUp(t, kinds...) // remembered again after the copy's read

	removeDatabase(t, x.path)
	waitStatus(t, x, "after the file was deleted", kinds, func(kind string, st int) (bool, error) {
		if st == 503 {
			return true, nil
		}
		return false, nil // still served from the deleted inode until the watch looks
	})
	x.expect(t, "file deleted, watch noticed", kinds, every(503, kinds...))
	x.expect(t, "file deleted, watch noticed, again", kinds, every(503, kinds...))

	removeDatabase(t, x.path) // whatever a connection may have made meanwhile
	if err := os.Rename(cp, x.path); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, x, "after the copy was restored", kinds, func(kind string, st int) (bool, error) {
		switch {
		case st == 503:
			return false, nil
		case st == 200:
			return false, fmt.Errorf("%s let through: the copy refuses it (alice disabled, bob's password changed)", kind)
		}
		return true, nil
	})
	want := every(401, kinds...)
	x.expect(t, "copy restored, watch noticed", kinds, want)
	if r := x.basicGet("bob", bobNew); r.status != 200 {
		t.Errorf("bob's password in the copy: %d, want 200", r.status)
	}
	x.expect(t, "copy restored, again", kinds, want)
}

// waitStatus sends a request of each kind in kinds, in rounds, until done
// reports true for all of one round, failing the test on an error of done
// or after fileWatchDeadline.
func waitStatus(t *testing.T, x *crossSite, when string, kinds []string, done func(kind string, status int) (bool, error)) {
	t.Helper()
	for deadline := time.Now().Add(fileWatchDeadline); ; time.Sleep(100 * time.Millisecond) {
		all, seen := true, []string{}
		for _, kind := range kinds {
			st := x.status(t, kind)
			seen = append(seen, kind+": "+strconv.Itoa(st))
			ok, err := done(kind, st)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			all = all && ok
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %s", when, strings.Join(seen, ", "), fileWatchDeadline)
		}
	}
}

// TestCrossProcessSecondOpen: a second Open of the same file in the same
// process (another Authenticator, as an application with two could have)
// leaves SQLite's locks of the first in place. Were they dropped, the next
// process to close the file would take it for unused, checkpoint it and
// remove its -wal and -shm under the first Authenticator's connections,
// and a change made after that would be lost to it.
func TestCrossProcessSecondOpen(t *testing.T) {
	t.Parallel()
	x := newCrossSite(t)
	x.warmUp(t, aliceKinds...)
	second, err := authn.Open(context.Background(), x.path, authn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	runOther(t, sqliteCmd(t, x.path, "SELECT count(*) FROM users"))
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(x.path + suffix); err != nil {
			t.Errorf("after another process closed the file: %v (it took the file for unused)", err)
		}
	}
	x.expect(t, "before the lock", aliceKinds, every(200, aliceKinds...))
	runOther(t, authctlCmd(t, x.path, "", "lock", "alice"))
	x.expect(t, "after authctl lock", aliceKinds, every(401, aliceKinds...))
}
