//go:build linux

package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/model"
)

// attackPassword passes the default PasswordPolicy.
const attackPassword = "a long enough passphrase 42"

// attackConfig is quick to hash with and never locks an account on
// failures, so that a test's refused requests do not change what it
// checks.
func attackConfig() Config {
	return Config{Hasher: password.PBKDF2{Iterations: 1000}, LockoutThreshold: -1}
}

// openAt opens the SQLite file at path with the fast path on (built for
// Linux only, as this file).
func openAt(t *testing.T, path string) *Authenticator {
	t.Helper()
	a, err := Open(context.Background(), path, attackConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if a.store.fast == nil {
		t.Fatal("Open on a SQLite file made no fast reads")
	}
	return a
}

// startSession makes a session of username, as a login does, and returns
// its token.
func startSession(t *testing.T, a *Authenticator, username string) string {
	t.Helper()
	ctx := context.Background()
	row, err := a.store.userHash(ctx, username)
	stored := row.stored
	if err != nil {
		t.Fatal(err)
	}
	token, err := a.createSession(ctx, username, stored, false, sessionClient{})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// tearWALIndexHeader changes the first copy of the WAL-index header of the
// -shm file at shm, through a writable mapping of SQLite's own descriptor
// (closing one of ours would drop SQLite's locks): the state a writer
// that died between writing the two copies leaves. The next read of any
// connection then rebuilds the WAL-index (a recovery).
func tearWALIndexHeader(t *testing.T, shm string) {
	t.Helper()
	fi, err := os.Stat(shm)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := descriptorOf(fi.Sys().(*syscall.Stat_t))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(fd, 0, os.Getpagesize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	mem[8] ^= 0x55 // a byte of iChange, first copy
}

// TestNoMemoryAcrossARecovery: a recovery over an empty -wal writes the
// header every process start finds, iChange 0 and all, whatever was
// committed in between. A session read under the header of the start,
// then ended, must not be answered from memory once a recovery has
// written that header again (here: a checkpoint that empties the -wal,
// then a torn header).
func TestNoMemoryAcrossARecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auth.db")
	first := openAt(t, path)
	if err := first.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	token := startSession(t, first, "alice")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	a := openAt(t, path) // the first to open it again: SQLite recovers
	start, ok := a.store.fast.index.header()
	if !ok || !start.fromRecovery() {
		t.Fatalf("header after a new start %v (valid %v), want one written by a recovery", start, ok)
	}
	for range 2 {
		if user, err := a.sessionUser(ctx, token); err != nil || user != "alice" {
			t.Fatalf("live session: %q, %v", user, err)
		}
	}
	if n, err := a.EndSessions(ctx, "alice"); n != 1 || err != nil {
		t.Fatalf("EndSessions: %d, %v", n, err)
	}
	raw := rawSQLite(t, path)
	if _, err := raw.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	tearWALIndexHeader(t, path+"-shm")
	if h, ok := a.store.fast.index.header(); ok {
		t.Fatalf("torn header %v taken as valid", h)
	}
	if _, err := raw.Exec("SELECT count(*) FROM users"); err != nil { // recovers
		t.Fatal(err)
	}
	if again, _ := a.store.fast.index.header(); again != start {
		t.Fatalf("the recovery wrote %v, not the header of the start %v: the test shows nothing", again, start)
	}
	if user, err := a.sessionUser(ctx, token); !errors.Is(err, errNoSession) {
		t.Fatalf("ended session answered after a recovery: %q, %v", user, err)
	}
	// The first commit after a recovery makes the memory usable again.
	if err := a.Register(ctx, "bob", attackPassword); err != nil {
		t.Fatal(err)
	}
	bob := startSession(t, a, "bob")
	before := a.Stats().ReadsSkipped
	for range 2 {
		if _, err := a.sessionUser(ctx, bob); err != nil {
			t.Fatal(err)
		}
	}
	if a.Stats().ReadsSkipped == before {
		t.Error("no read answered from memory after a commit")
	}
}

// basicRequest is a GET with username:pw as Basic credentials.
func basicRequest(username, pw string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(username, pw)
	return r
}

// cookieRequest is a JSON GET with a session cookie.
func cookieRequest(a *Authenticator, token string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(&http.Cookie{Name: a.handlers.cookieName, Value: token})
	return r
}

// bearerRequest is a GET with an app token as Bearer credential.
func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// status serves r with h and returns the status.
func status(h http.Handler, r *http.Request) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestCloseWithRequestsInFlight: Close, twice and at once, while cached
// Basic, session and Bearer requests run in parallel, crashes nothing
// (the mapping is removed under requests reading it), and no request
// started after Close is answered from memory.
func TestCloseWithRequestsInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := openAt(t, filepath.Join(t.TempDir(), "auth.db"))
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	session := startSession(t, a, "alice")
	token, err := a.CreateToken(ctx, "alice", "ci")
	if err != nil {
		t.Fatal(err)
	}
	basic := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	withSession := a.RequireSession(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	requests := []func() int{
		func() int { return status(basic, basicRequest("alice", attackPassword)) },
		func() int { return status(withSession, cookieRequest(a, session)) },
		func() int { return status(basic, bearerRequest(token)) },
	}
	// The first round logs in and records the token's use (commits), the
	// second reads, the third reads from memory.
	for range 3 {
		for i, req := range requests {
			if code := req(); code != http.StatusOK {
				t.Fatalf("request %d before Close: %d", i, code)
			}
		}
	}
	if a.Stats().ReadsSkipped < int64(len(requests)) {
		t.Fatalf("%d reads from memory before Close, want at least %d", a.Stats().ReadsSkipped, len(requests))
	}

	var skippedAtClose atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				requests[g%len(requests)]()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them run; no assertion depends on it
	var closers sync.WaitGroup
	for range 2 {
		closers.Add(1)
		go func() {
			defer closers.Done()
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	closers.Wait()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	// Counted once every request in flight at Close has ended: one that
	// took the header before Close may count its answer after it.
	skippedAtClose.Store(a.Stats().ReadsSkipped)
	for i, req := range requests { // Close closed Open's database
		if code := req(); code == http.StatusOK {
			t.Errorf("request %d after Close answered %d", i, code)
		}
	}
	if got := a.Stats().ReadsSkipped; got != skippedAtClose.Load() {
		t.Errorf("%d reads answered from memory after Close", got-skippedAtClose.Load())
	}
	if _, ok := a.store.fast.index.header(); ok {
		t.Error("a header read after Close")
	}
}

// randomToken is a token of the shape of a session's, or of an app
// token's, that no one was given.
func randomToken(app bool) string {
	if app {
		b := make([]byte, appTokenBytes)
		rand.Read(b)
		return appTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	}
	return newSessionToken()
}

// TestGarbageFillsNoMemory: requests with well-formed session cookies,
// Bearer tokens and user:token credentials that match nothing, and Basic
// credentials of unknown users, remember nothing: their keys are the
// client's to choose.
func TestGarbageFillsNoMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := openAt(t, filepath.Join(t.TempDir(), "auth.db"))
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	basic := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	withSession := a.RequireSession(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for i := range 300 {
		if code := status(withSession, cookieRequest(a, randomToken(false))); code == http.StatusOK {
			t.Fatal("a random session cookie was accepted")
		}
		if code := status(basic, bearerRequest(randomToken(true))); code == http.StatusOK {
			t.Fatal("a random Bearer token was accepted")
		}
		if code := status(basic, basicRequest("alice", randomToken(true))); code == http.StatusOK {
			t.Fatal("a random user:token was accepted")
		}
		if i%30 == 0 { // each checks a password: a few suffice
			if code := status(basic, basicRequest(fmt.Sprint("nobody", i), attackPassword)); code == http.StatusOK {
				t.Fatal("an unknown user was accepted")
			}
		}
	}
	f := a.store
	if n := len(f.sessions.rows) + len(f.tokens.rows) + len(f.users.rows); n != 0 {
		t.Fatalf("%d rows remembered for garbage (sessions %d, tokens %d, users %d)",
			n, len(f.sessions.rows), len(f.tokens.rows), len(f.users.rows))
	}
}

// TestManyLiveSessionsStayBounded: more live sessions than a memo holds
// leave at most memoEntries remembered, every one answered right, and the
// last ones used are answered from memory.
func TestManyLiveSessionsStayBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := openAt(t, filepath.Join(t.TempDir(), "auth.db"))
	if err := a.Register(ctx, "alice", attackPassword); err != nil {
		t.Fatal(err)
	}
	u, err := a.store.user(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	n := memoEntries + memoEntries/10
	tokens := make([]string, n)
	now := unixSeconds(time.Now())
	rows := make([]model.Session, n)
	for i := range tokens {
		tokens[i] = newSessionToken()
		rows[i] = model.Session{TokenHash: tokenHash(tokens[i]), Username: "alice", CreatedAt: now, LastSeen: now, ExpiresAt: now + 3600, UserHash: u.PasswordHash}
	}
	// Inserted in one statement, as another process could: a login each
	// would take long for nothing.
	for start := 0; start < n; start += 1000 {
		batch := rows[start:min(start+1000, n)]
		if _, err := a.store.db.NewInsert().Model(&batch).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, tok := range tokens {
		if user, err := a.sessionUser(ctx, tok); err != nil || user != "alice" {
			t.Fatalf("session %d: %q, %v", i, user, err)
		}
	}
	for i, tok := range tokens[n-100:] {
		if user, err := a.sessionUser(ctx, tok); err != nil || user != "alice" {
			t.Fatalf("session %d, again: %q, %v", n-100+i, user, err)
		}
	}
	if got := len(a.store.sessions.rows); got > memoEntries {
		t.Fatalf("%d sessions remembered, at most %d allowed", got, memoEntries)
	}
	if a.Stats().ReadsSkipped == 0 {
		t.Error("no session answered from memory")
	}
}

// TestMemoHeaderTakenBeforeTheRead: a commit that lands after a read has
// seen its rows, before the read returns, must not be paired with them: the
// next read of the key reads again and sees the commit.
func TestMemoHeaderTakenBeforeTheRead(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	a := openAt(t, path)
	raw := rawSQLite(t, path)
	m := newMemo[string](a.store.fast.index, new(atomic.Int64))
	value := "before"
	slowRead := func() (string, error) {
		seen := value // the row as the read saw it
		if _, err := raw.Exec("INSERT INTO users (username, password_hash) VALUES ('x', 'y')"); err != nil {
			return "", err
		}
		value = "after" // committed while the read was returning
		return seen, nil
	}
	if got, err := m.read("k", slowRead); got != "before" || err != nil {
		t.Fatalf("first read: %q, %v", got, err)
	}
	got, err := m.read("k", func() (string, error) { return value, nil })
	if got != "after" || err != nil {
		t.Fatalf("read after the commit: %q, %v; want after", got, err)
	}
}
