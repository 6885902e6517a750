package authn_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/uptrace/bun"
)

// eventLog collects the events of an Authenticator as "type user reason".
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(_ context.Context, e authn.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Type, e.Username, e.Reason)))
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, "\n")
}

// onFirstVerify runs f once, inside the first verification of encoded: in
// the middle of a login, after its claim and before its reset.
func onFirstVerify(h *countingHasher, encoded string, f func()) {
	var once sync.Once
	h.SetOnVerify(func(e string) {
		if e == encoded {
			once.Do(f)
		}
	})
}

// TestAdminLockDuringLogin: a Lock (from another process) that lands while a
// login with the right password is being verified is not undone by that
// login: the login is refused as locked and the lock stays. With lockout
// disabled too, though that login has no counter to reset.
func TestAdminLockDuringLogin(t *testing.T) {
	t.Parallel()
	for _, threshold := range []int{5, -1} {
		t.Run(fmt.Sprintf("threshold=%d", threshold), func(t *testing.T) {
			t.Parallel()
			testAdminLockDuringLogin(t, threshold)
		})
	}
}

func testAdminLockDuringLogin(t *testing.T, threshold int) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		clk := newClock()
		a := db.Open(t, authn.Config{Hasher: h, Now: clk.Now, LockoutThreshold: threshold})
		admin := db.Open(t, authn.Config{Now: clk.Now}) // authctl, say
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		onFirstVerify(h, readUser(t, db.Raw, "u").Hash, func() {
			if err := admin.Lock(ctx, "u", 24*time.Hour); err != nil {
				t.Error(err)
			}
		})
		err := a.Authenticate(ctx, "u", goodPassword)
		if !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("login racing an admin lock: %v, want ErrLocked", err)
		}
		row := readUser(t, db.Raw, "u")
		if want := float64(clk.Now().Add(24*time.Hour).UnixMicro()) / 1e6; !row.Until.Valid || row.Until.Float64 != want {
			t.Fatalf("lockout_until after the racing login = %v, want %f (the admin's lock)", row.Until, want)
		}
		h.SetOnVerify(nil)
		if err := a.Authenticate(ctx, "u", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("next login: %v, want ErrLocked", err)
		}
	})
}

// TestLockoutByFailuresDuringLogin: failures that reach the threshold while
// a right password is being verified lock the account, and that login is
// refused as locked rather than clearing their lock.
func TestLockoutByFailuresDuringLogin(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: 3})
		other := db.Open(t, authn.Config{LockoutThreshold: 3})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		onFirstVerify(h, readUser(t, db.Raw, "u").Hash, func() {
			// The login's own claim was the first; two more lock.
			for range 2 {
				other.Authenticate(ctx, "u", "a wrong password")
			}
		})
		if err := a.Authenticate(ctx, "u", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("login while failures locked the account: %v, want ErrLocked", err)
		}
		if row := readUser(t, db.Raw, "u"); !row.Until.Valid {
			t.Fatalf("the failures' lock was cleared: %+v", row)
		}
	})
}

// TestRightPasswordOnTheLockingAttempt: when the attempt whose claim reaches
// the threshold has the right password, it succeeds and clears its own
// lock, and no lockout is reported.
func TestRightPasswordOnTheLockingAttempt(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var events eventLog
		a := db.Open(t, authn.Config{LockoutThreshold: 3, OnEvent: events.add})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			a.Authenticate(ctx, "u", "a wrong password")
		}
		if err := a.Authenticate(ctx, "u", goodPassword); err != nil {
			t.Fatalf("right password on the third attempt: %v", err)
		}
		if row := readUser(t, db.Raw, "u"); row.Failed.Int64 != 0 || row.Until.Valid {
			t.Fatalf("after the success: %+v, want 0 failures and no lock", row)
		}
		want := "registered u\nlogin_failed u wrong password\nlogin_failed u wrong password\nlogin_succeeded u"
		if got := events.String(); got != want {
			t.Fatalf("events:\n%s\nwant:\n%s", got, want)
		}
	})
}

// TestLockEndsSessions: an admin Lock ends the user's sessions; a lockout
// caused by failed passwords does not (else anyone could sign a user out).
func TestLockEndsSessions(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{LockoutThreshold: 3, HTTP: authn.HTTPConfig{InsecureCookies: true}})
		ctx := context.Background()
		for _, name := range []string{"victim", "leaked"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		app := a.RequireSession(okHandler())
		victim, leaked := loginCookie(t, a, "victim"), loginCookie(t, a, "leaked")
		for range 3 {
			a.Authenticate(ctx, "victim", "a wrong password")
		}
		if err := a.Lock(ctx, "leaked", time.Hour); err != nil {
			t.Fatal(err)
		}
		if got := sessionStatus(app, victim); got != 200 {
			t.Errorf("session after a lockout by failed passwords: %d, want 200", got)
		}
		if got := sessionStatus(app, leaked); got != 401 {
			t.Errorf("session after an admin Lock: %d, want 401", got)
		}
	})
}

// TestSessionOfDeletedUser: a session whose user is gone (deleted behind
// the library's back, as the Python application would) is refused.
func TestSessionOfDeletedUser(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
		if err := a.Register(context.Background(), "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		app := a.RequireSession(okHandler())
		cookie := loginCookie(t, a, "u")
		if got := sessionStatus(app, cookie); got != 200 {
			t.Fatalf("session: %d", got)
		}
		if _, err := db.Raw.Exec("DELETE FROM users WHERE username = 'u'"); err != nil {
			t.Fatal(err)
		}
		if got := sessionStatus(app, cookie); got != 401 {
			t.Fatalf("session of a deleted user: %d, want 401", got)
		}
	})
}

// TestNoSessionAfterChangeDuringLogin: a password change, an admin lock or a
// deletion that lands after the password check and before the session is
// stored leaves no session: the login is refused and no row is written.
func TestNoSessionAfterChangeDuringLogin(t *testing.T) {
	t.Parallel()
	changes := map[string]func(ctx context.Context, admin *authn.Authenticator) error{
		"password": func(ctx context.Context, admin *authn.Authenticator) error {
			return admin.SetPassword(ctx, "u", "a brand new passphrase 77")
		},
		"lock":   func(ctx context.Context, admin *authn.Authenticator) error { return admin.Lock(ctx, "u", time.Hour) },
		"delete": func(ctx context.Context, admin *authn.Authenticator) error { return admin.Delete(ctx, "u") },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testdb.Each(t, func(t *testing.T, db *testdb.DB) {
				ctx := context.Background()
				admin := db.Open(t, authn.Config{})
				if err := admin.Register(ctx, "u", goodPassword); err != nil {
					t.Fatal(err)
				}
				// The hook runs the change just before the session's
				// INSERT reaches the database.
				hook := &beforeQuery{match: "INSERT INTO sessions", run: func() {
					if err := change(ctx, admin); err != nil {
						t.Error(err)
					}
				}}
				a := newOnPool(t, db, hook, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
				w := serveJSON(a.LoginHandler(), `{"username":"u","password":"`+goodPassword+`"}`)
				if w.Code != 401 || len(w.Result().Cookies()) != 0 {
					t.Fatalf("login racing a %s change: %d %v, want 401 and no cookie", name, w.Code, w.Result().Cookies())
				}
				if !hook.ran.Load() {
					t.Fatal("the hook never ran")
				}
				if n := countRows(t, db.Raw, "sessions", "username = 'u'"); n != 0 {
					t.Fatalf("%d session rows after a login racing a %s change", n, name)
				}
			})
		})
	}
}

// beforeQuery is a bun hook that runs run once, before the first query
// containing match.
type beforeQuery struct {
	match string
	run   func()
	ran   atomic.Bool
}

func (h *beforeQuery) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if strings.Contains(e.Query, h.match) && h.ran.CompareAndSwap(false, true) {
		h.run()
	}
	return ctx
}

func (h *beforeQuery) AfterQuery(context.Context, *bun.QueryEvent) {}

// newOnPool returns an Authenticator made by New over a pool of its own on
// db, with hook added to it.
func newOnPool(t *testing.T, db *testdb.DB, hook bun.QueryHook, cfg authn.Config) *authn.Authenticator {
	t.Helper()
	var pool *bun.DB
	if db.Name == "postgres" {
		pool = testdb.RawPostgres(t, db.URL)
	} else {
		pool = testdb.RawSQLite(t, db.URL)
	}
	pool = pool.WithQueryHook(hook) // a copy with the hook, over the same sql.DB
	if cfg.Hasher == nil {
		cfg.Hasher = fastHasher
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := authn.New(context.Background(), pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestAtMostThresholdReachTheHash holds every verification of the real hash
// open, so that all attempts are in flight at once: with threshold T and
// T+1 hashing slots, T+1 wrong attempts may check the real hash at most T
// times. An implementation that verified before claiming would let all T+1
// in.
func TestAtMostThresholdReachTheHash(t *testing.T) {
	t.Parallel()
	const T = 4
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: T, HashConcurrency: T + 1})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		stored := readUser(t, db.Raw, "u").Hash
		var inside atomic.Int32
		release := make(chan struct{})
		h.SetOnVerify(func(encoded string) {
			if encoded == stored {
				inside.Add(1)
				<-release
			}
		})
		var done atomic.Int32
		var wg sync.WaitGroup
		for range T + 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer done.Add(1)
				a.Authenticate(ctx, "u", "a wrong password")
			}()
		}
		// Wait until every attempt is either held in the real hash or
		// finished without it.
		deadline := time.Now().Add(30 * time.Second)
		for inside.Load()+done.Load() < T+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		if got := h.Verifies(stored); got > T {
			t.Fatalf("%d of %d parallel attempts checked the real hash, want at most %d", got, T+1, T)
		}
		if got := h.Verifies(stored); got != T {
			t.Fatalf("%d attempts checked the real hash, want exactly %d", got, T)
		}
	})
}

// okHandler answers 200.
func okHandler() http.Handler {
	return http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
}

// serveJSON posts body to h as a JSON API client.
func serveJSON(h http.Handler, body string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// loginCookie signs name in with goodPassword and returns the session
// cookie.
func loginCookie(t *testing.T, a *authn.Authenticator, name string) *http.Cookie {
	t.Helper()
	w := serveJSON(a.LoginHandler(), `{"username":"`+name+`","password":"`+goodPassword+`"}`)
	if w.Code != 200 || len(w.Result().Cookies()) != 1 {
		t.Fatalf("login of %s: %d %v", name, w.Code, w.Result().Cookies())
	}
	return w.Result().Cookies()[0]
}

// sessionStatus is the status of a JSON request to h with the cookies.
func sessionStatus(h http.Handler, cookies ...*http.Cookie) int {
	r := httptest.NewRequest("GET", "/app/", nil)
	r.Header.Set("Accept", "application/json")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestRegisterIgnoresCase: a name that differs from a taken one only in case
// is taken, also when the registrations race; logins match names exactly.
func TestRegisterIgnoresCase(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		names := []string{"root", "Root", "ROOT", "rOOt", "roOT", "RoOt", "rooT", "ROot"}
		h := &barrierHasher{Hasher: fastHasher}
		a := db.Open(t, authn.Config{Hasher: h, HashConcurrency: len(names)})
		ctx := context.Background()
		if err := a.Register(ctx, "admin", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := a.Register(ctx, "Admin", goodPassword); !errors.Is(err, authn.ErrUserExists) {
			t.Fatalf("Register(Admin) with admin taken: %v, want ErrUserExists", err)
		}
		if err := a.Authenticate(ctx, "ADMIN", goodPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("login as ADMIN: %v, want ErrInvalidCredentials (names match exactly)", err)
		}
		// Every registration hashes, then all insert at once.
		h.wait(len(names))
		var wins atomic.Int32
		var wg sync.WaitGroup
		for _, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := a.Register(ctx, name, goodPassword); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, authn.ErrUserExists):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n := countRows(t, db.Raw, "users", "lower(username) = 'root'"); wins.Load() != 1 || n != 1 {
			t.Fatalf("%d registrations of root in different cases won, %d rows; want 1 and 1", wins.Load(), n)
		}
	})
}

// barrierHasher holds each Hash, once wait(n) was called, until n are in
// progress (or a second has passed), so that what follows them runs at
// once.
type barrierHasher struct {
	password.Hasher
	mu      sync.Mutex
	arrived int
	n       int
	all     chan struct{}
}

func (h *barrierHasher) wait(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n, h.arrived, h.all = n, 0, make(chan struct{})
}

func (h *barrierHasher) Hash(pw string) (string, error) {
	h.mu.Lock()
	all := h.all
	if all != nil {
		if h.arrived++; h.arrived == h.n {
			close(all)
		}
	}
	h.mu.Unlock()
	if all != nil {
		select {
		case <-all:
		case <-time.After(time.Second):
		}
	}
	return h.Hasher.Hash(pw)
}

// TestTwoSessionCookies: a request with two cookies of the session's name
// (one tossed in by a sibling subdomain, when the name has no __Host-
// prefix) is refused whichever is valid, and logout ends and clears them
// all.
func TestTwoSessionCookies(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
	ctx := context.Background()
	for _, name := range []string{"victim", "attacker"} {
		if err := a.Register(ctx, name, goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	victim, attacker := loginCookie(t, a, "victim"), loginCookie(t, a, "attacker")
	app := a.RequireSession(okHandler())
	if got := sessionStatus(app, attacker, victim); got != 401 {
		t.Fatalf("two session cookies: %d, want 401", got)
	}

	r := httptest.NewRequest("POST", "http://app.example.com/logout", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(attacker)
	r.AddCookie(victim)
	w := httptest.NewRecorder()
	a.LogoutHandler().ServeHTTP(w, r)
	if w.Code != 204 {
		t.Fatalf("logout: %d", w.Code)
	}
	if n := countRows(t, db.Raw, "sessions", "1 = 1"); n != 0 {
		t.Fatalf("%d sessions left after a logout with both cookies", n)
	}
	cleared := map[string]bool{}
	for _, c := range w.Result().Cookies() {
		if c.Name != "session" || c.MaxAge >= 0 {
			t.Fatalf("logout set %v, want only expired session cookies", c)
		}
		cleared[c.Domain] = true
	}
	for _, domain := range []string{"", "app.example.com", "example.com"} {
		if !cleared[domain] {
			t.Errorf("logout did not clear the cookie for Domain=%q: %v", domain, w.Result().Header["Set-Cookie"])
		}
	}
}
