package authn_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// budgetInstances opens n Authenticators on db, standing for n servers on
// one database, each with a Throttle of its own (as separate processes
// have) of burst failures and a frozen clock (nothing comes back), and
// serves the login of each.
func budgetInstances(t *testing.T, db *testdb.DB, n, burst int, hasher *countingHasher) []*httptest.Server {
	t.Helper()
	clk := testdb.NewClock()
	var servers []*httptest.Server
	for range n {
		a := db.Open(t, authn.Config{
			Hasher:          hasher,
			HashConcurrency: 32,
			HTTP: authn.HTTPConfig{
				InsecureCookies: true,
				Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: burst, Interval: time.Hour, Now: clk.Now}),
			},
		})
		srv := httptest.NewServer(a.LoginHandler())
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	return servers
}

// TestBudgetOneForInstances: one address spraying wrong passwords and
// unknown names over 32 connections at once, each request to the next of
// three servers on one database, gets the failure budget of one server,
// not three: the budget is taken in the database, atomically, in each
// claim's own commit. Before, each process kept its own: 3 × burst. A
// budget read and then written in two statements lets the requests in
// flight pass the same stale "under budget" and fails this too. Another
// address still has its own budget.
func TestBudgetOneForInstances(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const burst, conns, perConn = 6, 32, 3
		hasher := newCountingHasher(nil)
		servers := budgetInstances(t, db, 3, burst, hasher)
		admin := db.Open(t, authn.Config{})
		ctx := context.Background()
		for i := range conns * perConn / 2 {
			if err := admin.Register(ctx, fmt.Sprintf("user%d", i), goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		// Hold every verification open a little, so that the requests overlap.
		hasher.SetOnVerify(func(string) { time.Sleep(20 * time.Millisecond) })
		before := hasher.TotalVerifies()
		var checked, throttled atomic.Int64
		var wg sync.WaitGroup
		client := clientFrom("127.0.0.7")
		defer client.CloseIdleConnections()
		for c := range conns {
			wg.Go(func() {
				for i := range perConn {
					n := c*perConn + i // even: an account; odd: no such user
					body := fmt.Sprintf(`{"username":"user%d","password":"Winter2026!Winter2026"}`, n)
					if n%2 == 1 {
						body = fmt.Sprintf(`{"username":"nobody%d","password":"Winter2026!Winter2026"}`, n)
					}
					switch st := postJSON(t, client, servers[n%len(servers)].URL, body); st {
					case http.StatusUnauthorized:
						checked.Add(1)
					case http.StatusTooManyRequests:
						throttled.Add(1)
					default:
						t.Errorf("status %d", st)
					}
				}
			})
		}
		wg.Wait()
		verifies := hasher.TotalVerifies() - before
		t.Logf("%d checked, %d throttled, %d verifications", checked.Load(), throttled.Load(), verifies)
		if checked.Load() > burst || verifies > burst {
			t.Fatalf("%d passwords checked (%d verifications) from one address on 3 servers, budget %d", checked.Load(), verifies, burst)
		}
		if checked.Load() != burst {
			t.Errorf("%d passwords checked, want the whole budget, %d", checked.Load(), burst)
		}
		other := clientFrom("127.0.0.8")
		defer other.CloseIdleConnections()
		for i, srv := range servers {
			if st := postJSON(t, other, srv.URL, `{"username":"user0","password":"Winter2026!Winter2026"}`); st != http.StatusUnauthorized {
				t.Errorf("another address at server %d: %d, want 401", i, st)
			}
		}
	})
}

// TestBudgetRefundShared: a success gives its token back on every
// instance, and the failures of one instance count at the other: a client
// with a budget of 3 that alternates a success on one server and a
// failure on the other is refused only after its third failure, at both.
func TestBudgetRefundShared(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		servers := budgetInstances(t, db, 2, 3, newCountingHasher(nil))
		admin := db.Open(t, authn.Config{})
		if err := admin.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		c := clientFrom("127.0.0.9")
		defer c.CloseIdleConnections()
		good := `{"username":"alice","password":"` + goodPassword + `"}`
		var got []int
		for i := range 8 {
			body := good
			if i%2 == 1 {
				body = fmt.Sprintf(`{"username":"nobody%d","password":"not the password at all"}`, i)
			}
			got = append(got, postJSON(t, c, servers[i%2].URL, body))
		}
		if want := "[200 401 200 401 200 401 429 429]"; fmt.Sprint(got) != want {
			t.Errorf("success at one server, failure at the other, budget 3: %v, want %v", got, want)
		}
	})
}

// TestBudgetTokensAndRegistrationsShared: the statements of their own
// (wrong Bearer tokens, registrations) count one budget across instances
// as the claims do.
func TestBudgetTokensAndRegistrationsShared(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var sites []*httptest.Server
		for range 2 {
			a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{
				InsecureCookies:  true,
				Throttle:         middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Hour}),
				RegisterThrottle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 2, Interval: time.Hour}),
			}})
			mux := http.NewServeMux()
			mux.Handle("/api/", a.BasicAuth(okHandler()))
			mux.Handle("/register", a.RegisterHandler())
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			sites = append(sites, srv)
		}
		c := clientFrom("127.0.0.10")
		defer c.CloseIdleConnections()
		unknown := bearer("mmt_" + strings.Repeat("C", 43))
		var got []int
		for i := range 5 {
			got = append(got, call(t, c, "GET", sites[i%2].URL+"/api/", "", "", "Authorization", unknown).code)
		}
		if want := "[401 401 401 429 429]"; fmt.Sprint(got) != want {
			t.Errorf("wrong tokens at two servers, budget 3: %v, want %v", got, want)
		}
		r := clientFrom("127.0.0.11")
		defer r.CloseIdleConnections()
		got = nil
		for i := range 4 {
			body := fmt.Sprintf(`{"username":"new%d","password":"%s"}`, i, goodPassword)
			got = append(got, call(t, r, "POST", sites[i%2].URL+"/register", "application/json", body).code)
		}
		if want := "[201 201 429 429]"; fmt.Sprint(got) != want {
			t.Errorf("registrations at two servers, budget 2: %v, want %v", got, want)
		}
	})
}

// TestBudgetFailsClosed: a budget that cannot be counted (its write fails
// at commit, as on a full disk) fails the request closed, 503, without
// checking the password, and the claim of its transaction is not kept
// either; a refund that cannot be written leaves the success a success.
func TestBudgetFailsClosed(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		hasher := newCountingHasher(nil)
		a, faults := db.OpenFaulty(t, authn.Config{Hasher: hasher, HTTP: authn.HTTPConfig{InsecureCookies: true}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		token := newToken(t, a, "alice", "ci")
		mux := http.NewServeMux()
		mux.Handle("/login", a.LoginHandler())
		mux.Handle("/api/", a.BasicAuth(okHandler()))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		c := clientFrom("127.0.0.12")
		defer c.CloseIdleConnections()

		faults.Fail("client_budgets")
		before := hasher.TotalVerifies()
		for name, do := range map[string]func() int{
			"login": func() int {
				return postJSON(t, c, srv.URL+"/login", `{"username":"alice","password":"a wrong password here"}`)
			},
			"Basic": func() int {
				return call(t, c, "GET", srv.URL+"/api/", "", "", "Authorization", basicHeader("alice", "wrong")).code
			},
			"wrong Bearer": func() int {
				return call(t, c, "GET", srv.URL+"/api/", "", "", "Authorization", bearer("mmt_"+strings.Repeat("D", 43))).code
			},
		} {
			if st := do(); st != http.StatusServiceUnavailable {
				t.Errorf("%s with the budget unwritable: %d, want 503", name, st)
			}
		}
		if n := hasher.TotalVerifies() - before; n != 0 {
			t.Errorf("%d passwords checked with the budget unwritable, want 0", n)
		}
		if u := readUser(t, db.Raw, "alice"); u.Failed.Int64 != 0 {
			t.Errorf("alice's failed attempts: %d, want 0 (the claim shares the budget's commit)", u.Failed.Int64)
		}
		if got := call(t, c, "GET", srv.URL+"/api/", "", "", "Authorization", bearer(token)); got.code != http.StatusOK {
			t.Errorf("a good token with the budget unwritable: %d, want 200 (it spends none)", got.code)
		}
		faults.Clear()
		faults.Fail("UPDATE client_budgets") // the refund only
		if st := postJSON(t, c, srv.URL+"/login", `{"username":"alice","password":"`+goodPassword+`"}`); st != http.StatusOK {
			t.Errorf("a good login whose refund fails: %d, want 200", st)
		}
	})
}

// TestBudgetKnownOverCostsNothing: a client this instance saw spend its
// last token is refused from memory, without a statement, and a
// remembered Basic credential costs what it did.
func TestBudgetKnownOverCostsNothing(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a, log := db.OpenCounting(t, authn.Config{HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1, Interval: time.Hour}),
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		login := a.LoginHandler()
		post := func(pw string) int {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"alice","password":"`+pw+`"}`))
			r.Header.Set("Content-Type", "application/json")
			login.ServeHTTP(w, r)
			return w.Code
		}
		if st := post("a wrong password here"); st != http.StatusUnauthorized {
			t.Fatalf("the one failure: %d", st)
		}
		log.Take()
		if st := post("another wrong password"); st != http.StatusTooManyRequests {
			t.Fatalf("over budget: %d, want 429", st)
		}
		if got := log.Take(); got != "" {
			t.Errorf("a client known over budget cost %q, want no statement", got)
		}
	})
}

// TestBudgetTableBounded: rows whose bucket has refilled are deleted, and a
// spray from more addresses than MaxClients leaves at most MaxClients rows
// after a sweep (evicted down to 7/8 of it), the fullest buckets first:
// the address that spent most keeps its row.
func TestBudgetTableBounded(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const maxClients = 16
		clk := testdb.NewClock()
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Minute, MaxClients: maxClients, Now: clk.Now}),
		}})
		srv := httptest.NewServer(a.LoginHandler())
		defer srv.Close()
		bad := `{"username":"nobody","password":"not the password at all"}`
		spender := clientFrom("127.0.1.1")
		defer spender.CloseIdleConnections()
		for range 3 {
			postJSON(t, spender, srv.URL, bad)
		}
		for i := range 40 {
			c := clientFrom(fmt.Sprintf("127.0.2.%d", i+1))
			postJSON(t, c, srv.URL, bad)
			c.CloseIdleConnections()
		}
		rows := func() map[string]bool {
			got := map[string]bool{}
			r, err := db.Raw.Query("SELECT client FROM client_budgets WHERE budget = 'failures'")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for r.Next() {
				var c string
				if err := r.Scan(&c); err != nil {
					t.Fatal(err)
				}
				got[c] = true
			}
			return got
		}
		a.SweepBudgets(context.Background())
		got := rows()
		// At most MaxClients: a sweep that finds more evicts down to 7/8
		// of it, and the sweeps the reservations asked for in the
		// background may have run before this one.
		if len(got) > maxClients {
			t.Errorf("%d rows after a sweep, want at most %d", len(got), maxClients)
		}
		if !got["127.0.1.1/32"] {
			t.Errorf("the address that spent its whole budget was evicted: %v", got)
		}
		clk.Advance(3 * time.Minute) // every bucket refilled
		a.SweepBudgets(context.Background())
		if got := rows(); len(got) != 0 {
			t.Errorf("%d rows left once every bucket refilled, want 0: %v", len(got), got)
		}
	})
}

// TestBudgetAtomicBehindHeldLock: requests of one client that all reach
// the budget while its row (PostgreSQL) or the database (SQLite) is held
// by another transaction, on three servers, and all go on at once when it
// ends, still get one budget: each takes its token in the statement that
// writes it, seeing the others' (a budget read, then written, lets every
// request that read before the lock ended through).
func TestBudgetAtomicBehindHeldLock(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const burst, n = 4, 12
		hasher := newCountingHasher(nil)
		servers := budgetInstances(t, db, 3, burst+1, hasher)
		c := clientFrom("127.0.0.13")
		defer c.CloseIdleConnections()
		bad := func(i int) string {
			return fmt.Sprintf(`{"username":"nobody%d","password":"not the password at all"}`, i)
		}
		// The first failure makes the client's row, which the lock holds.
		if st := postJSON(t, c, servers[0].URL, bad(0)); st != http.StatusUnauthorized {
			t.Fatalf("the first failure: %d", st)
		}
		release := holdBudgetRows(t, db)
		before := hasher.TotalVerifies()
		var checked atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if postJSON(t, c, servers[i%len(servers)].URL, bad(i+1)) == http.StatusUnauthorized {
					checked.Add(1)
				}
			})
		}
		time.Sleep(500 * time.Millisecond) // every request waits at the lock
		release()
		wg.Wait()
		if got := checked.Load(); got > burst || hasher.TotalVerifies()-before > burst {
			t.Fatalf("%d checked (%d verifications) behind the held lock, %d tokens left", got, hasher.TotalVerifies()-before, burst)
		}
	})
}

// holdBudgetRows holds, until release, the rows of client_budgets
// (PostgreSQL) or the database's write lock (SQLite).
func holdBudgetRows(t *testing.T, db *testdb.DB) (release func()) {
	t.Helper()
	ctx := context.Background()
	if db.Name == "postgres" {
		tx, err := db.Raw.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback() })
		if _, err := tx.ExecContext(ctx, "SELECT client FROM client_budgets FOR UPDATE"); err != nil {
			t.Fatal(err)
		}
		return func() { tx.Rollback() }
	}
	return holdLock(t, db, "")
}

// TestBudgetIPv6NetworkShared: the addresses of one IPv6 /64 spend one
// budget on every instance, as on one: a client cannot get a fresh budget
// per address or per server. Another /64 has its own.
func TestBudgetIPv6NetworkShared(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var logins []http.Handler
		for range 2 {
			a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{
				InsecureCookies: true,
				Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 2, Interval: time.Hour}),
			}})
			logins = append(logins, a.LoginHandler())
		}
		post := func(h http.Handler, addr string) int {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"nobody","password":"not the password at all"}`))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr = addr
			h.ServeHTTP(w, r)
			return w.Code
		}
		got := []int{
			post(logins[0], "[2001:db8:0:1::1]:1000"),
			post(logins[1], "[2001:db8:0:1::2]:1000"),
			post(logins[0], "[2001:db8:0:1::3]:1000"),
			post(logins[1], "[2001:db8:0:1:ffff::4]:1000"),
			post(logins[1], "[2001:db8:0:2::1]:1000"),
		}
		if want := "[401 401 429 429 401]"; fmt.Sprint(got) != want {
			t.Errorf("one /64 at two servers, budget 2, then another /64: %v, want %v", got, want)
		}
	})
}

// TestBudgetCodeStepsShared: wrong codes of a login's second step, each
// sent to the other of two servers, spend one budget of the client (3
// here): the code's claim takes the token in its commit, on whichever
// instance checks it. A request that checks a password and a code (turning
// TOTP off) spends one token, not one per claim.
func TestBudgetCodeStepsShared(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		var sites []*totpSite
		for range 2 {
			cfg := totpConfig(clk, nil)
			cfg.LockoutThreshold = 100
			cfg.SecretKey = []byte(strings.Repeat("k", 32))
			cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Hour, Now: clk.Now})
			sites = append(sites, newTOTPSite(t, db, cfg))
		}
		secret, _ := enrolTOTP(t, sites[0].a, clk, "alice")
		c := newBrowser(t)
		passwordStep(t, c, sites[0], "alice")
		var got []int
		for i := range 4 {
			st, _ := post(t, c, sites[(i+1)%2].srv.URL+"/login/verify", `{"code":"`+wrongCodeOf(t, secret, clk.Now())+`"}`)
			got = append(got, st)
		}
		if want := "[401 401 401 429]"; fmt.Sprint(got) != want {
			t.Errorf("wrong codes at two servers, budget 3: %v, want %v", got, want)
		}

		// A signed-in browser from another address: its wrong codes
		// while turning TOTP off, with the right password, spend one
		// token a request.
		b := newBrowser(t)
		b.Transport = clientFrom("127.0.0.14").Transport
		passwordStep(t, b, sites[1], "alice")
		if st, body := post(t, b, sites[0].srv.URL+"/login/verify", `{"code":"`+codeAt(t, secret, clk.Now())+`"}`); st != http.StatusOK {
			t.Fatalf("the right code: %d %s", st, body)
		}
		got = nil
		for i := range 4 {
			st, _ := post(t, b, sites[i%2].srv.URL+"/totp/disable", `{"password":"`+goodPassword+`","code":"`+wrongCodeOf(t, secret, clk.Now())+`"}`)
			got = append(got, st)
		}
		if want := "[401 401 401 429]"; fmt.Sprint(got) != want {
			t.Errorf("turning TOTP off with a wrong code at two servers, budget 3: %v, want %v", got, want)
		}
	})
}
