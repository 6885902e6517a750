package authn_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// The tests of a database lock held by another program: a row of users on
// PostgreSQL (SELECT … FOR UPDATE in a long admin transaction), SQLite's
// write lock (BEGIN IMMEDIATE). Both hold it for lockHold while 32
// connections, more than the hashing slots and the pooled connections,
// send wrong passwords for demo.
const (
	lockHold    = 12 * time.Second
	floodConns  = 32
	lockedLimit = 5 // LockoutThreshold
	// defaultHashWait is HTTPConfig.HashWait's default, which these tests
	// keep: the bound of a claim's wait under test.
	defaultHashWait = 5 * time.Second
)

// loginResult is one login request of a test: when it started, relative
// to the start of the lock, how long it took and its status.
type loginResult struct {
	start, took time.Duration
	status      int
}

// loginFlood sends wrong passwords for username to url from conns
// connections, each of a client address of its own (127.0.1.x: one
// address would hold one hashing slot at most, HashSlotsPerClient), from
// when it is called until stop is closed; wait returns what every request
// got.
func loginFlood(t *testing.T, url, username string, conns int, since time.Time, stop <-chan struct{}) (wait func() []loginResult) {
	t.Helper()
	var mu sync.Mutex
	var results []loginResult
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			client := clientFrom(fmt.Sprintf("127.0.1.%d", 1+c))
			defer client.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"username":%q,"password":"wrong guess %d-%d"}`, username, c, i)
				start := time.Now()
				st := postJSON(t, client, url, body)
				mu.Lock()
				results = append(results, loginResult{start: start.Sub(since), took: time.Since(start), status: st})
				mu.Unlock()
			}
		})
	}
	return func() []loginResult {
		wg.Wait()
		return results
	}
}

// timedLogin logs username in with goodPassword through url from client.
func timedLogin(t *testing.T, client *http.Client, url, username string, since time.Time) loginResult {
	start := time.Now()
	st := postJSON(t, client, url, fmt.Sprintf(`{"username":%q,"password":%q}`, username, goodPassword))
	return loginResult{start: start.Sub(since), took: time.Since(start), status: st}
}

// withQueryParam returns the URL u with the query parameter name set.
func withQueryParam(t *testing.T, u, name, value string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(name, value)
	p.RawQuery = q.Encode()
	return p.String()
}

// TestLockedRowDelaysOnlyItsAccount: on PostgreSQL, another program's
// transaction holds demo's row (SELECT … FOR UPDATE) for 12 s while 32
// connections send wrong passwords for demo. Demo's claims wait for the
// lock within HashWait, one at a time in the database (the others without
// a pooled connection), each giving its hashing slot back meanwhile, so
// that bob, whose row is free, logs in as usual: each of his logins, one a
// second during the lock, succeeds within 3 s. Demo's requests end 503 within HashWait and a
// margin (or 401, once the lock is gone), never 200. At most one of the
// Authenticator's connections waits for the lock at any time: a claim
// whose wait ended was cancelled in the server too, and left no backend
// waiting behind its request. Demo's real hash is checked at most
// LockoutThreshold times, and the account is locked once the row is free.
//
// Before, every waiting claim held a hashing slot (there are GOMAXPROCS)
// and bob got 503 within 5 s.
func TestLockedRowDelaysOnlyItsAccount(t *testing.T) {
	t.Parallel()
	db := testdb.Postgres(t)
	// The Authenticator's connections carry a name of their own, by which
	// pg_stat_activity tells them from other tests'.
	app := "authn_lockedrow_" + strings.ToLower(rand.Text()[:10])
	own := *db
	own.URL = withQueryParam(t, db.URL, "application_name", app)
	h := newCountingHasher(fastHasher)
	clk := newClock() // frozen: the lockout reached after the lock lasts
	a := own.Open(t, authn.Config{
		Hasher:           h,
		LockoutThreshold: lockedLimit,
		Now:              clk.Now,
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20}),
		},
	})
	ctx := context.Background()
	for _, name := range []string{"demo", "bob"} {
		if err := a.Register(ctx, name, goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	demoHash := readUser(t, db.Raw, "demo").Hash
	srv := httptest.NewServer(a.LoginHandler())
	defer srv.Close()

	unlock := holdLock(t, db, "demo") // another program's long transaction
	held := time.Now()

	stop := make(chan struct{})
	flood := loginFlood(t, srv.URL, "demo", floodConns, held, stop)

	// The Authenticator's connections waiting for a lock, every 100 ms.
	var maxWaiting atomic.Int64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for time.Since(held) < lockHold-500*time.Millisecond {
			var n int64
			err := db.Raw.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = ? AND wait_event_type = 'Lock'", app).Scan(&n)
			if err != nil {
				t.Error(err)
				return
			}
			if n > maxWaiting.Load() {
				maxWaiting.Store(n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// Bob logs in once a second while the row is held.
	bob := clientFrom("127.0.0.3")
	defer bob.CloseIdleConnections()
	var bobs []loginResult
	for i := 1; time.Since(held) < lockHold-3*time.Second; i++ {
		time.Sleep(time.Until(held.Add(time.Duration(i) * time.Second)))
		bobs = append(bobs, timedLogin(t, bob, srv.URL, "bob", held))
	}
	<-sampling
	time.Sleep(time.Until(held.Add(lockHold)))
	// The lock ends during unlock, and a waiting claim may get the row
	// and answer before unlock returns (seen once under CI's load): the
	// lock surely held until releasing.
	releasing := time.Since(held)
	unlock()
	// Demo's claims go through again: the flood reaches the lockout.
	time.Sleep(2 * time.Second)
	close(stop)
	results := flood()

	for _, r := range bobs {
		if r.status != http.StatusOK || r.took > 3*time.Second {
			t.Errorf("bob's login at %v, while demo's row was held: %d after %v, want 200 within 3s", r.start.Round(time.Millisecond), r.status, r.took)
		}
	}
	checkFlood(t, results, releasing, defaultHashWait+4*time.Second)
	// One claim at a time waits; at the hand-over the claim whose wait
	// ended may still show as waiting while its cancellation reaches the
	// server and the next one starts (seen once under load). Without
	// turns, every pooled connection (4) waits.
	if n := maxWaiting.Load(); n > 2 {
		t.Errorf("%d of the Authenticator's connections waited for demo's row at once, want at most 2 (a claim at a time, and the one whose wait is being cancelled)", n)
	}
	if n := h.Verifies(demoHash); n > lockedLimit {
		t.Errorf("demo's real hash checked %d times, want at most %d", n, lockedLimit)
	}
	if u := readUser(t, db.Raw, "demo"); !u.Until.Valid {
		t.Errorf("demo not locked after the flood went on past the lock: %+v", u)
	}
	t.Logf("%d logins of demo, bob's took %v; at most %d connection(s) waited for the row", len(results), tookOf(bobs), maxWaiting.Load())
}

// checkFlood checks the answers to a flood of wrong passwords through a
// lock that held until released (when its release began): none 200, those
// that began while it held ended 503 within bound (401 once it ended: a
// claim that got the row then), at least one 503.
func checkFlood(t *testing.T, results []loginResult, released, bound time.Duration) {
	t.Helper()
	counts := map[int]int{}
	for _, r := range results {
		counts[r.status]++
		switch {
		case r.status == http.StatusOK:
			t.Errorf("a wrong password for demo got 200 (at %v)", r.start)
		case r.start < released && r.took > bound:
			t.Errorf("a login of demo at %v waited %v, want at most %v", r.start.Round(time.Millisecond), r.took.Round(time.Millisecond), bound)
		case r.status != http.StatusServiceUnavailable && r.status != http.StatusUnauthorized:
			t.Errorf("a login of demo at %v: %d, want 503 (or 401)", r.start.Round(time.Millisecond), r.status)
		case r.status == http.StatusUnauthorized && r.start+r.took < released:
			t.Errorf("a login of demo at %v answered 401 while the lock held", r.start.Round(time.Millisecond))
		}
	}
	if counts[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no login of demo got 503 while the lock held: %v", counts)
	}
	t.Logf("demo's logins: %v", counts)
}

func tookOf(rs []loginResult) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.took.Round(time.Millisecond))
	}
	return out
}

// TestWriteLockBoundedWait: on SQLite, another connection holds the
// write lock (BEGIN IMMEDIATE) for 12 s. SQLite has one writer, so every
// claim waits for it, whichever the account: logins of demo (32
// connections) and of bob end 503 after a bounded wait (HashWait, or the
// busy timeout for the one claim that waits in SQLite), never 200 for
// demo. Meanwhile requests that only read, an existing session and a
// remembered Basic credential (read on every request), keep working
// within 3 s each: the waiting claims hold one pooled connection, not all
// of them. Once the lock ends, demo's account locks with at most
// LockoutThreshold real checks.
func TestWriteLockBoundedWait(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	h := newCountingHasher(fastHasher)
	clk := newClock() // frozen: no session is touched, the lockout lasts
	a := db.Open(t, authn.Config{
		Hasher:           h,
		LockoutThreshold: lockedLimit,
		Now:              clk.Now,
		ReadEveryRequest: true, // no read answered from memory: each takes a connection
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20}),
		},
	})
	ctx := context.Background()
	for _, name := range []string{"demo", "bob"} {
		if err := a.Register(ctx, name, goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	demoHash := readUser(t, db.Raw, "demo").Hash
	mux := http.NewServeMux()
	mux.Handle("/login", a.LoginHandler())
	mux.Handle("/app/", a.RequireSession(okHandler()))
	mux.Handle("/basic/", a.BasicAuth(okHandler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	reader := clientFrom("127.0.0.4")
	defer reader.CloseIdleConnections()
	cookie := loginCookie(t, a, "bob")
	session := func() (int, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/app/", nil)
		req.Header.Set("Accept", "application/json")
		req.AddCookie(cookie)
		return sendStatus(reader, req)
	}
	basic := func() (int, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/basic/", nil)
		req.SetBasicAuth("bob", goodPassword)
		return sendStatus(reader, req)
	}
	for name, read := range map[string]func() (int, error){"session": session, "basic": basic} {
		if st, err := read(); err != nil || st != http.StatusOK {
			t.Fatalf("%s before the lock: %d %v", name, st, err)
		}
	}

	unlock := holdLock(t, db, "demo") // the write lock, from another connection
	held := time.Now()
	stop := make(chan struct{})
	flood := loginFlood(t, srv.URL+"/login", "demo", floodConns, held, stop)

	// Bob's logins, every 2 s, in goroutines of their own: they wait.
	bob := clientFrom("127.0.0.3")
	defer bob.CloseIdleConnections()
	var bobWG sync.WaitGroup
	var bobMu sync.Mutex
	var bobs []loginResult
	// Reads, every 500 ms.
	type read struct {
		name   string
		at     time.Duration
		took   time.Duration
		status int
		err    error
	}
	var reads []read
	for i := 1; time.Since(held) < lockHold-3*time.Second; i++ {
		time.Sleep(time.Until(held.Add(time.Duration(i) * 500 * time.Millisecond)))
		if i%4 == 0 {
			bobWG.Go(func() {
				r := timedLogin(t, bob, srv.URL+"/login", "bob", held)
				bobMu.Lock()
				bobs = append(bobs, r)
				bobMu.Unlock()
			})
		}
		for name, f := range map[string]func() (int, error){"session": session, "basic": basic} {
			start := time.Now()
			st, err := f()
			reads = append(reads, read{name, start.Sub(held), time.Since(start), st, err})
		}
	}
	time.Sleep(time.Until(held.Add(lockHold)))
	releasing := time.Since(held) // the lock surely held until then (see above)
	unlock()
	released := time.Since(held)
	time.Sleep(2 * time.Second)
	close(stop)
	results := flood()
	bobWG.Wait()

	for _, r := range reads {
		if r.err != nil || r.status != http.StatusOK || r.took > 3*time.Second {
			t.Errorf("%s request at %v, while the write lock was held: %d %v after %v, want 200 within 3s", r.name, r.at.Round(time.Millisecond), r.status, r.err, r.took)
		}
	}
	// A claim waits for its turn within HashWait, then for SQLite's lock
	// within its busy timeout (10 s), which a context cannot cut short.
	bound := defaultHashWait + 10*time.Second + 3*time.Second
	for _, r := range bobs {
		switch {
		case r.status == http.StatusOK && r.start+r.took >= releasing:
			// It waited on the lock, and got its turn once it ended.
		case r.status != http.StatusServiceUnavailable:
			t.Errorf("bob's login at %v, while the write lock was held: %d, want 503", r.start.Round(time.Millisecond), r.status)
		case r.took > bound:
			t.Errorf("bob's login at %v took %v, want at most %v", r.start.Round(time.Millisecond), r.took, bound)
		}
	}
	checkFlood(t, results, releasing, bound)
	for _, r := range results {
		if r.start < 2*time.Second && r.start+r.took >= released {
			t.Errorf("a login of demo at %v waited until the lock ended (%v): its wait was not bounded", r.start.Round(time.Millisecond), r.took.Round(time.Millisecond))
		}
	}
	if n := h.Verifies(demoHash); n > lockedLimit {
		t.Errorf("demo's real hash checked %d times, want at most %d", n, lockedLimit)
	}
	if u := readUser(t, db.Raw, "demo"); !u.Until.Valid {
		t.Errorf("demo not locked after the flood went on past the lock: %+v", u)
	}
	t.Logf("%d logins of demo; bob's took %v; %d reads", len(results), tookOf(bobs), len(reads))
}

// sendStatus sends req with client and returns the status.
func sendStatus(client *http.Client, req *http.Request) (int, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// holdLock takes, from a connection of its own, the lock that username's
// claims wait for: its row, FOR UPDATE, on PostgreSQL; the write lock on
// SQLite. The returned function releases it.
func holdLock(t *testing.T, db *testdb.DB, username string) (release func()) {
	t.Helper()
	ctx := context.Background()
	if db.Name == "postgres" {
		tx, err := db.Raw.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback() })
		if _, err := tx.ExecContext(ctx, "SELECT username FROM users WHERE username = ? FOR UPDATE", username); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := tx.Rollback(); err != nil {
				t.Error(err)
			}
		}
	}
	conn, err := db.Raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Error(err)
		}
	}
}

// holdingHasher is a countingHasher whose Hash can be held.
type holdingHasher struct {
	*countingHasher
	mu     sync.Mutex
	onHash func()
}

func (h *holdingHasher) Hash(pw string) (string, error) {
	h.mu.Lock()
	f := h.onHash
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.countingHasher.Hash(pw)
}

// holdNextHash makes the next Hash wait, inside, until the returned leave
// is called; entered is closed once it is inside.
func (h *holdingHasher) holdNextHash() (entered <-chan struct{}, leave func()) {
	in, out := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.mu.Lock()
	h.onHash = func() { once.Do(func() { close(in); <-out }) }
	h.mu.Unlock()
	return in, func() { close(out) }
}

// newClaimSignal opens an Authenticator on db, and returns a channel
// closed when its first claim starts, holding the login's hashing slot:
// when the claim reads the clock for its statement. (The claim's UPDATE
// runs on database/sql, where no bun hook sees it.)
func newClaimSignal(t *testing.T, db *testdb.DB, cfg authn.Config) (*authn.Authenticator, <-chan struct{}) {
	t.Helper()
	claiming := make(chan struct{})
	var once sync.Once
	cfg.Now = func() time.Time {
		if calledFrom("authn.(*Authenticator).claim") {
			once.Do(func() { close(claiming) })
		}
		return time.Now()
	}
	return db.Open(t, cfg), claiming
}

// calledFrom reports whether the function named function (package-qualified,
// as runtime names it) is on the caller's stack.
func calledFrom(function string) bool {
	pc := make([]uintptr, 16)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "/"+function) {
			return true
		}
		if !more {
			return false
		}
	}
}

// takeLentSlot registers username (through the Go API, which waits for a
// hashing slot as long as it takes) once claiming is closed, with its
// hash held inside its slot, the only one: it gets it only if the login
// whose claim waits gave its slot back. The returned function lets the
// registration finish.
func takeLentSlot(t *testing.T, a *authn.Authenticator, h *holdingHasher, claiming <-chan struct{}, username string) (leave func()) {
	t.Helper()
	select {
	case <-claiming:
	case <-time.After(10 * time.Second):
		t.Fatal("the login's claim did not start")
	}
	entered, out := h.holdNextHash()
	done := make(chan error, 1)
	go func() { done <- a.Register(context.Background(), username, goodPassword) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		out()
		t.Fatal("no hashing slot came free while a login's claim waited for a lock: the claim kept its slot")
	}
	return func() {
		out()
		if err := <-done; err != nil {
			t.Errorf("the registration that held the slot: %v", err)
		}
	}
}

// waitLocked waits until username's row is locked (its lockout_until set).
func waitLocked(t *testing.T, db *testdb.DB, username string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !readUser(t, db.Raw, username).Until.Valid; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s's claim did not lock the account", username)
		}
	}
}

// TestClaimedAttemptWithoutSlot: a login whose claim waits for a lock
// gives its hashing slot back meanwhile (the only one: a registration
// takes it), and when the claim is done it must take a slot again. If none
// comes free before its context ends, the attempt, counted, fails closed
// with ErrBusy and checks no hash; its claim reached the threshold (1
// here), so the account stays locked, the lockout is reported, and the
// right password is refused as locked after. Unknown users and malformed
// names with no slot free get ErrBusy with no verification at all, not
// even the dummy one.
func TestClaimedAttemptWithoutSlot(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := &holdingHasher{countingHasher: newCountingHasher(fastHasher)}
		var events eventLog
		a, claiming := newClaimSignal(t, db, authn.Config{Hasher: h, LockoutThreshold: 1, HashConcurrency: 1, OnEvent: events.add})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		stored := readUser(t, db.Raw, "u").Hash

		unlock := holdLock(t, db, "u")
		uctx, cancelU := context.WithCancel(ctx)
		defer cancelU()
		done := make(chan error, 1)
		go func() { done <- a.Authenticate(uctx, "u", goodPassword) }()
		leave := takeLentSlot(t, a, h, claiming, "w")
		verifies := h.TotalVerifies()
		for _, name := range []string{"nobody", "bad name"} {
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			err := a.Authenticate(short, name, goodPassword)
			cancel()
			if !errors.Is(err, authn.ErrBusy) {
				t.Errorf("login of %q with no slot free: %v, want ErrBusy", name, err)
			}
		}
		if n := h.TotalVerifies(); n != verifies {
			t.Errorf("%d verifications ran with no slot free", n-verifies)
		}
		unlock()
		waitLocked(t, db, "u") // the claim is committed, and counted
		// Its context ends once the claim has surely returned too (its
		// commit is seen before its answer is read: ended then, the claim
		// would fail as not known written), while it waits for a slot.
		time.AfterFunc(2*time.Second, cancelU)
		err := <-done
		if !errors.Is(err, authn.ErrBusy) {
			t.Fatalf("the right password whose claim waited, with no slot free after: %v, want ErrBusy", err)
		}
		checkErrorText(t, "claimed, no slot", err, authn.ErrBusy)
		leave()
		if err := a.Authenticate(ctx, "u", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Errorf("the right password after the counted attempt locked the account: %v, want ErrLocked", err)
		}
		if n := h.Verifies(stored); n != 0 {
			t.Errorf("u's hash checked %d times, want 0", n)
		}
		log := events.String()
		for _, want := range []string{"login_failed u hashing capacity exhausted", "lockout u", "login_failed u locked"} {
			if !strings.Contains(log, want) {
				t.Errorf("events lack %q:\n%s", want, log)
			}
		}
	})
}

// TestCountedBusySpendsBudget: a login answered 503 for lack of a hashing
// slot after its claim waited and counted its attempt spends its client's
// failure budget (1 here), as a 401 does: a client must not count more
// attempts on accounts than its budget. A 503 that counted nothing, for a
// login that found no slot before its claim, spends none.
func TestCountedBusySpendsBudget(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	h := &holdingHasher{countingHasher: newCountingHasher(fastHasher)}
	a, claiming := newClaimSignal(t, db, authn.Config{
		Hasher:          h,
		HashConcurrency: 1,
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			HashWait:        2 * time.Second, // the claim's wait: the lock ends within it
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1, Interval: time.Hour}),
		},
	})
	ctx := context.Background()
	if err := a.Register(ctx, "u", goodPassword); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.LoginHandler())
	defer srv.Close()
	client := clientFrom("127.0.0.5")
	defer client.CloseIdleConnections()

	unlock := holdLock(t, db, "u")
	first := make(chan int, 1)
	go func() { first <- postJSON(t, client, srv.URL, `{"username":"u","password":"a first guess"}`) }()
	leave := takeLentSlot(t, a, h, claiming, "w")
	defer leave()
	unlock()
	if st := <-first; st != http.StatusServiceUnavailable {
		t.Fatalf("a guess whose claim waited, with no slot free after: %d, want 503", st)
	}
	if u := readUser(t, db.Raw, "u"); u.Failed.Int64 != 1 {
		t.Fatalf("u's failed attempts: %+v, want 1 (the guess answered 503)", u.Failed)
	}
	if st := postJSON(t, client, srv.URL, `{"username":"u","password":"a second guess"}`); st != http.StatusTooManyRequests {
		t.Errorf("the next guess of the client: %d, want 429 (its budget spent by the counted 503)", st)
	}
	other := clientFrom("127.0.0.6")
	defer other.CloseIdleConnections()
	var got []int
	for i := range 2 {
		got = append(got, postJSON(t, other, srv.URL, fmt.Sprintf(`{"username":"u","password":"guess %d"}`, i)))
	}
	if want := []int{503, 503}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("guesses with no slot free, before any claim: %v, want %v (nothing counted, no budget spent)", got, want)
	}
	if u := readUser(t, db.Raw, "u"); u.Failed.Int64 != 1 {
		t.Errorf("u's failed attempts after guesses with no slot: %+v, want still 1", u.Failed)
	}
}

// TestClaimWaitCancelled: on PostgreSQL, a login whose context ends while
// its claim waits for a row another transaction holds fails with ErrBusy
// (an error text as the package writes them, a "database busy" event), and
// its statement ends in the server too: no backend of the Authenticator is
// left waiting for the row, to count the attempt when the lock ends and to
// pile up with every request that gave up (pgx sends a cancel request as
// it closes the connection). Once the row is free, the account logs in.
func TestClaimWaitCancelled(t *testing.T) {
	t.Parallel()
	db := testdb.Postgres(t)
	app := "authn_claimwait_" + strings.ToLower(rand.Text()[:10])
	own := *db
	own.URL = withQueryParam(t, db.URL, "application_name", app)
	var events eventLog
	a := own.Open(t, authn.Config{OnEvent: events.add})
	ctx := context.Background()
	if err := a.Register(ctx, "u", goodPassword); err != nil {
		t.Fatal(err)
	}
	unlock := holdLock(t, db, "u")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.Authenticate(short, "u", goodPassword)
	took := time.Since(start)
	if !errors.Is(err, authn.ErrBusy) {
		t.Fatalf("a login whose claim waited past its context: %v, want ErrBusy", err)
	}
	checkErrorText(t, "claim wait", err, authn.ErrBusy)
	if took > 3*time.Second {
		t.Errorf("the login took %v after its context ended at 300ms", took)
	}
	// pgx cancels a statement by a cancel request that PostgreSQL serves
	// on a connection of its own, a moment after the call returned: the
	// backend must stop waiting soon, while the row is still held.
	var waiting int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := db.Raw.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = ? AND wait_event_type = 'Lock'", app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 0 || time.Now().After(deadline) {
			break
		}
	}
	if waiting != 0 {
		t.Errorf("%d backends of the Authenticator still wait for the row 5 s after the login ended", waiting)
	}
	if log := events.String(); !strings.Contains(log, "login_failed u database busy") {
		t.Errorf("events: %s, want a login_failed for u, database busy", log)
	}
	unlock()
	if err := a.Authenticate(ctx, "u", goodPassword); err != nil {
		t.Errorf("login once the row is free: %v", err)
	}
}
