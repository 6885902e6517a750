package authn_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// The tests here attack the reads answered from memory (see "Reads from
// memory" in the package documentation) from outside: whatever a request
// answers, it must have seen every change committed before it started.
// They run on PostgreSQL too, where every request reads, as a reference.

// credKind is what a credential is sent as.
type credKind int

const (
	basicCred   credKind = iota // username:password, cached after the first success
	sessionCred                 // a session cookie
	tokenCred                   // an app token, as Bearer
)

// cred is a credential a test gave out. dead is the step (see world.seq)
// just after the change that ended it for good committed; 0 while it
// lives.
type cred struct {
	kind   credKind
	user   string
	secret string // the password, the session token or the app token
	dead   atomic.Int64
}

// lockSpan is a Lock of a user: locked is the step after Lock returned,
// unlocking the step before Unlock was called (MaxInt64 until then). A
// password or token request started after locked and answered before
// unlocking must be refused.
type lockSpan struct{ locked, unlocking int64 }

// acceptance is a request answered 200: the credential, and the steps at
// its start and at its end.
type acceptance struct {
	c          *cred
	start, end int64
}

// world is what a test gave out and changed, in the order of seq, the
// steps that order changes and requests.
type world struct {
	seq    atomic.Int64
	mu     sync.Mutex
	creds  map[string][]*cred // by user, in the order given out
	locks  map[string][]*lockSpan
	cookie string // the session cookie's name
	// accepted counts the requests answered 200.
	accepted atomic.Int64
}

func (w *world) add(c *cred) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.creds[c.user] = append(w.creds[c.user], c)
}

// kill marks the user's credentials that match as dead from now: call it
// once the change has committed.
func (w *world) kill(user string, match func(*cred) bool) {
	at := w.seq.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.creds[user] {
		if match(c) && c.dead.Load() == 0 {
			c.dead.Store(at)
		}
	}
}

// recent picks one of the last credentials given out for user: mostly
// live ones, and those just ended.
func (w *world) recent(user string) *cred {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.creds[user]
	if len(list) == 0 {
		return nil
	}
	return list[len(list)-1-rand.IntN(min(len(list), 8))]
}

// stale returns why a answered though it must not have, or "".
func (w *world) stale(a acceptance) string {
	if d := a.c.dead.Load(); d != 0 && a.start > d {
		return fmt.Sprintf("ended at step %d, request started at %d", d, a.start)
	}
	if a.c.kind == sessionCred { // Lock ends sessions: dead covers it
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.locks[a.c.user] {
		if a.start > l.locked && a.end < l.unlocking {
			return fmt.Sprintf("locked from step %d to %d, request from %d to %d", l.locked, l.unlocking, a.start, a.end)
		}
	}
	return ""
}

// TestNoStaleAnswerUnderChanges: parallel cached Basic, session and Bearer
// requests, while each user in turn is locked and unlocked, gets a new
// password, has its sessions ended, a token revoked, and is deleted and
// registered again. No request that started after a change committed is
// answered as if it had not happened. Between changes each mutator waits
// until some requests have been accepted and some reads
// answered from memory (SQLite), so that every change lands on live
// credentials and remembered rows.
func TestNoStaleAnswerUnderChanges(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{
			LockoutThreshold: -1, // refused requests must not lock anyone
			HTTP: authn.HTTPConfig{
				Throttle:           middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 30}),
				MaxSessionsPerUser: -1,
			},
		})
		w := &world{creds: map[string][]*cred{}, locks: map[string][]*lockSpan{}}
		users := []string{"alice", "bob", "carol"}
		ctx := context.Background()
		for _, u := range users {
			pw := fmt.Sprintf("%s passphrase number 0", u)
			if err := a.Register(ctx, u, pw); err != nil {
				t.Fatal(err)
			}
			w.add(&cred{kind: basicCred, user: u, secret: pw})
		}
		first, err := login(a, "alice", "alice passphrase number 0")
		if err != nil {
			t.Fatal(err)
		}
		w.cookie = first.Name

		done := make(chan struct{})
		var requesters sync.WaitGroup
		answers := make([][]acceptance, 4)
		for g := range answers {
			requesters.Add(1)
			go func() {
				defer requesters.Done()
				answers[g] = sendRequests(a, w, users, done)
			}()
		}
		var mutators sync.WaitGroup
		for _, u := range users {
			mutators.Add(1)
			go func() {
				defer mutators.Done()
				mutate(t, a, w, readsFromMemory(db), u, 6)
			}()
		}
		mutators.Wait()
		close(done)
		requesters.Wait()

		accepted := map[credKind]int{}
		for _, list := range answers {
			for _, ans := range list {
				accepted[ans.c.kind]++
				if why := w.stale(ans); why != "" {
					t.Errorf("stale answer to %s's credential of kind %d: %s", ans.c.user, ans.c.kind, why)
				}
			}
		}
		for _, k := range []credKind{basicCred, sessionCred, tokenCred} {
			if accepted[k] == 0 {
				t.Errorf("no request of kind %d accepted: the test checked nothing for it", k)
			}
		}
		skipped := a.Stats().ReadsSkipped
		t.Logf("accepted %v, reads from memory %d", accepted, skipped)
		if readsFromMemory(db) && skipped == 0 {
			t.Error("no read answered from memory: the fast path was not attacked")
		}
	})
}

// sendRequests sends requests with recent credentials of random users until
// done, and returns those answered 200.
func sendRequests(a *authn.Authenticator, w *world, users []string, done <-chan struct{}) []acceptance {
	basic := a.BasicAuth(okHandler())
	withSession := a.RequireSession(okHandler())
	var answered []acceptance
	for {
		select {
		case <-done:
			return answered
		default:
		}
		c := w.recent(users[rand.IntN(len(users))])
		if c == nil {
			continue
		}
		r := httptest.NewRequest("GET", "/app/", nil)
		h := basic
		switch c.kind {
		case basicCred:
			r.SetBasicAuth(c.user, c.secret)
		case sessionCred:
			r.Header.Set("Accept", "application/json")
			r.AddCookie(&http.Cookie{Name: w.cookie, Value: c.secret})
			h = withSession
		case tokenCred:
			r.Header.Set("Authorization", "Bearer "+c.secret)
		}
		start := w.seq.Add(1)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		end := w.seq.Add(1)
		if rec.Code == http.StatusOK {
			w.accepted.Add(1)
			answered = append(answered, acceptance{c: c, start: start, end: end})
		}
	}
}

// mutate changes user in rounds: a new session and token, a Lock and an
// Unlock, a new password, its sessions ended, its token revoked, and
// every third round a deletion and a new registration. It records in w
// when each change committed.
func mutate(t *testing.T, a *authn.Authenticator, w *world, fast bool, user string, rounds int) {
	ctx := context.Background()
	settle := func() { waitForRequests(a, &w.accepted, fast) }
	pw := fmt.Sprintf("%s passphrase number 0", user)
	isSession := func(c *cred) bool { return c.kind == sessionCred }
	newSession := func() bool {
		c, err := login(a, user, pw)
		if err != nil {
			t.Error(err)
			return false
		}
		w.add(&cred{kind: sessionCred, user: user, secret: c.Value})
		return true
	}
	for i := range rounds {
		if !newSession() {
			return
		}
		name := fmt.Sprint("t", i)
		token, err := a.CreateToken(ctx, user, name)
		if err != nil {
			t.Error(err)
			return
		}
		w.add(&cred{kind: tokenCred, user: user, secret: token})
		settle()

		if err := a.Lock(ctx, user, time.Hour); err != nil {
			t.Error(err)
			return
		}
		span := &lockSpan{locked: w.seq.Add(1), unlocking: math.MaxInt64}
		w.mu.Lock()
		w.locks[user] = append(w.locks[user], span)
		w.mu.Unlock()
		w.kill(user, isSession)
		settle()
		w.mu.Lock()
		span.unlocking = w.seq.Add(1)
		w.mu.Unlock()
		if err := a.Unlock(ctx, user); err != nil {
			t.Error(err)
			return
		}

		if !newSession() {
			return
		}
		settle()
		next := fmt.Sprintf("%s passphrase number %d", user, i+1)
		if err := a.SetPassword(ctx, user, next); err != nil {
			t.Error(err)
			return
		}
		old := pw
		w.kill(user, func(c *cred) bool { return isSession(c) || c.kind == basicCred && c.secret == old })
		pw = next
		w.add(&cred{kind: basicCred, user: user, secret: pw})

		if !newSession() {
			return
		}
		settle()
		if _, err := a.EndSessions(ctx, user); err != nil {
			t.Error(err)
			return
		}
		w.kill(user, isSession)
		settle()

		if err := a.RevokeToken(ctx, user, name); err != nil {
			t.Error(err)
			return
		}
		w.kill(user, func(c *cred) bool { return c.secret == token })
		settle()

		if i%3 == 2 {
			if err := a.Delete(ctx, user); err != nil {
				t.Error(err)
				return
			}
			w.kill(user, func(*cred) bool { return true })
			pw = fmt.Sprintf("%s passphrase number %d, again", user, i+1)
			if err := a.Register(ctx, user, pw); err != nil {
				t.Error(err)
				return
			}
			w.add(&cred{kind: basicCred, user: user, secret: pw})
			settle()
		}
	}
}

// login signs user in through the login handler and returns the session
// cookie; unlike loginCookie, it may run outside the test's goroutine.
func login(a *authn.Authenticator, user, pw string) (*http.Cookie, error) {
	w := serveJSON(a.LoginHandler(), fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw))
	if w.Code != http.StatusOK || len(w.Result().Cookies()) != 1 {
		return nil, fmt.Errorf("login of %s: %d %v", user, w.Code, w.Result().Cookies())
	}
	return w.Result().Cookies()[0], nil
}

// waitForRequests waits until a few more requests have been accepted and, when fast, a few more reads answered from memory, or until
// a while has passed (then a change lands anyway: nothing is asserted on
// how long it takes).
func waitForRequests(a *authn.Authenticator, accepted *atomic.Int64, fast bool) {
	skipped, ok := a.Stats().ReadsSkipped, accepted.Load()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if accepted.Load() >= ok+3 && (!fast || a.Stats().ReadsSkipped >= skipped+3) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMemoryHonoursTheClock: a row answered from memory is judged at the
// current time, as a read would be: with nothing committed, a session
// past its idle timeout or its lifetime is refused, and an app token
// works again once its user's Lock has ended in time.
func TestMemoryHonoursTheClock(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clock := testdb.NewClock()
		a := db.Open(t, authn.Config{Now: clock.Now, HTTP: authn.HTTPConfig{
			SessionIdleTimeout: 30 * time.Minute,
			SessionLifetime:    time.Hour,
		}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		withSession := a.RequireSession(okHandler())
		// fromMemory runs one request, and reports its status and whether
		// its read was answered from memory.
		fromMemory := func(h http.Handler, r *http.Request) (int, bool) {
			before := a.Stats().ReadsSkipped
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			return rec.Code, a.Stats().ReadsSkipped > before
		}
		// expect checks a request's status and, on SQLite, that it was
		// answered from memory: the row was not read again.
		expect := func(what string, h http.Handler, r *http.Request, want int) {
			t.Helper()
			code, mem := fromMemory(h, r)
			if code != want {
				t.Fatalf("%s: %d, want %d", what, code, want)
			}
			if readsFromMemory(db) && !mem {
				t.Fatalf("%s: read from the database, not from memory: the test shows nothing", what)
			}
		}
		session := func(c *http.Cookie) *http.Request {
			r := httptest.NewRequest("GET", "/app/", nil)
			r.Header.Set("Accept", "application/json")
			r.AddCookie(c)
			return r
		}

		idle := loginCookie(t, a, "alice")
		sessionStatus(withSession, idle) // read and remembered
		expect("session in use", withSession, session(idle), http.StatusOK)
		clock.Advance(31 * time.Minute)
		expect("session idle for 31 minutes", withSession, session(idle), http.StatusUnauthorized)

		long := loginCookie(t, a, "alice")
		for range 5 { // used every 10 minutes: each use records itself
			clock.Advance(10 * time.Minute)
			if code := sessionStatus(withSession, long); code != http.StatusOK {
				t.Fatalf("session used within its idle timeout: %d", code)
			}
		}
		sessionStatus(withSession, long) // read after the last record
		expect("session at 50 minutes", withSession, session(long), http.StatusOK)
		clock.Advance(11 * time.Minute)
		expect("session past its lifetime", withSession, session(long), http.StatusUnauthorized)

		token, err := a.CreateToken(ctx, "alice", "ci")
		if err != nil {
			t.Fatal(err)
		}
		basic := a.BasicAuth(okHandler())
		bearer := func() *http.Request {
			r := httptest.NewRequest("GET", "/app/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}
		if err := a.Lock(ctx, "alice", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if code := statusOf(basic, bearer()); code != http.StatusUnauthorized { // read and remembered
			t.Fatalf("token of a locked user: %d", code)
		}
		// A refused token spends its client's failure budget, a commit
		// (the budget is in the database, shared by every instance), so
		// the next read cannot come from memory: the statuses are checked
		// here, the memory's clock by the sessions above.
		if code := statusOf(basic, bearer()); code != http.StatusUnauthorized {
			t.Fatalf("token of a locked user, again: %d", code)
		}
		clock.Advance(11 * time.Minute)
		if code := statusOf(basic, bearer()); code != http.StatusOK {
			t.Fatalf("token once the lock has ended: %d", code)
		}
	})
}

// statusOf is the status h answers r with.
func statusOf(h http.Handler, r *http.Request) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Code
}
