package authn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// answer is what the tests of this file look at in a response.
type answer struct {
	code   int
	header http.Header
	body   string
}

// call sends one request to url over real HTTP with c, with a body of
// contentType when body is not "", and header pairs (name, value, ...).
func call(t *testing.T, c *http.Client, method, url, contentType, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// browser returns a client from the loopback address ip (see clientFrom)
// with a cookie jar, that follows no redirect.
func browser(ip string) *http.Client {
	c := clientFrom(ip)
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// whoIsThere answers "user=NAME" or "anonymous", and counts its runs.
func whoIsThere(runs *int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*runs++
		if name, ok := authn.Username(r.Context()); ok {
			fmt.Fprintf(w, "user=%s", name)
			return
		}
		fmt.Fprint(w, "anonymous")
	})
}

const (
	htmx     = "HX-Request"
	formType = "application/x-www-form-urlencoded"
)

// TestOptionalSession: over real HTTP, OptionalSession runs its handler for
// every request, with the user of a live session and anonymous for anything
// else (no cookie, garbage, two cookies, a session logged out or idle),
// never redirecting, also for htmx and POST; a request with a session
// cookie that cannot be checked gets 503 and the handler does not run,
// while a request without one still runs it.
func TestOptionalSession(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{InsecureCookies: true}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		var runs int // the requests are sequential
		mux := http.NewServeMux()
		mux.Handle("/", a.Routes())
		mux.Handle("/page", a.OptionalSession(whoIsThere(&runs)))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		page := func(c *http.Client, want string, header ...string) {
			t.Helper()
			before := runs
			for _, method := range []string{"GET", "POST"} {
				got := call(t, c, method, srv.URL+"/page", "", "", header...)
				if got.code != 200 || got.body != want || runs != before+1 {
					t.Fatalf("%s /page %v: %d %q (handler ran %d times), want 200 %q", method, header, got.code, got.body, runs-before, want)
				}
				if got.header.Get("Location") != "" || got.header.Get("HX-Redirect") != "" {
					t.Fatalf("%s /page: a redirect %v", method, got.header)
				}
				before = runs
			}
		}
		c := browser("127.0.0.1")
		page(c, "anonymous")
		page(c, "anonymous", htmx, "true")
		page(c, "anonymous", "Cookie", "session=garbage")
		page(c, "anonymous", "Cookie", "session="+strings.Repeat("A", 43)) // a token's shape, unknown

		if got := call(t, c, "POST", srv.URL+"/login", formType, "username=alice&password="+url.QueryEscape(goodPassword)); got.code != 303 {
			t.Fatalf("login: %d", got.code)
		}
		page(c, "user=alice")
		page(c, "user=alice", htmx, "true")
		token := c.Jar.Cookies(mustURL(t, srv.URL))[0].Value
		// Two cookies of the name: nothing says which is ours.
		page(browser("127.0.0.1"), "anonymous", "Cookie", "session="+token+"; session="+token)

		// Idle past the timeout: anonymous, not refused.
		clk.Advance(31 * time.Minute)
		page(c, "anonymous")
		clk.Advance(-31 * time.Minute)
		page(c, "user=alice")
		if got := call(t, c, "POST", srv.URL+"/logout", "", ""); got.code != 303 {
			t.Fatalf("logout: %d", got.code)
		}
		page(browser("127.0.0.1"), "anonymous", "Cookie", "session="+token)

		// The database fails: a request with a session cookie is refused,
		// one without runs as before.
		c = browser("127.0.0.1")
		if got := call(t, c, "POST", srv.URL+"/login", formType, "username=alice&password="+url.QueryEscape(goodPassword)); got.code != 303 {
			t.Fatalf("login: %d", got.code)
		}
		if _, err := db.Raw.Exec("DROP TABLE sessions"); err != nil {
			t.Fatal(err)
		}
		before := runs
		got := call(t, c, "GET", srv.URL+"/page", "", "")
		if got.code != 503 || runs != before || strings.Contains(got.body, "alice") {
			t.Fatalf("a session that cannot be checked: %d %q (handler ran %d times), want 503 and no run", got.code, got.body, runs-before)
		}
		page(browser("127.0.0.1"), "anonymous")
		if s := a.Stats(); s.Unavailable != 1 {
			t.Fatalf("Stats().Unavailable = %d, want 1 (the request with a cookie)", s.Unavailable)
		}
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestHTMXRedirects: over real HTTP, every redirect of the handlers becomes
// 200 (401 for RequireSession) with HX-Redirect for an htmx request, to
// exactly the Location the 303 has without the header, so that HX-Request
// cannot take a user anywhere a redirect would not; failures and the
// cross-origin refusal are not redirects and stay as they were.
func TestHTMXRedirects(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20})}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		var runs int
		mux := http.NewServeMux()
		mux.Handle("/", a.Routes())
		mux.Handle("/app/", a.RequireSession(whoIsThere(&runs)))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		login := func(next string, header ...string) answer {
			return call(t, browser("127.0.0.1"), "POST", srv.URL+"/login", formType,
				"username=alice&password="+url.QueryEscape(goodPassword)+"&next="+url.QueryEscape(next), header...)
		}
		for _, next := range []string{"/app/x?y=1", "", "//evil.example/", "/\\evil.example", "https://evil.example/",
			"/a/./b/../c", "/a//b", "/%2F%2Fevil.example", "javascript:alert(1)", "/x\r\nSet-Cookie: a=b"} {
			plain := login(next)
			hx := login(next, htmx, "true")
			loc := plain.header.Get("Location")
			if plain.code != 303 || loc == "" || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
				t.Fatalf("login, next %q: %d to %q", next, plain.code, loc)
			}
			if hx.code != 200 || hx.header.Get("HX-Redirect") != loc || hx.header.Get("Location") != "" || hx.body != "" {
				t.Fatalf("htmx login, next %q: %d HX-Redirect %q Location %q %q, want 200 HX-Redirect %q",
					next, hx.code, hx.header.Get("HX-Redirect"), hx.header.Get("Location"), hx.body, loc)
			}
			if len(hx.header.Values("Set-Cookie")) != 1 {
				t.Fatalf("htmx login set no session: %v", hx.header)
			}
		}
		// Only "true" is htmx's.
		if got := login("/app/", htmx, "false"); got.code != 303 {
			t.Fatalf("HX-Request: false: %d, want 303", got.code)
		}
		// A failed login is no redirect.
		bad := call(t, browser("127.0.0.1"), "POST", srv.URL+"/login", formType, "username=alice&password=wrong", htmx, "true")
		if bad.code != 401 || bad.header.Get("HX-Redirect") != "" {
			t.Fatalf("htmx failed login: %d %v", bad.code, bad.header)
		}
		// A cross-origin POST is refused before anything.
		xo := call(t, browser("127.0.0.1"), "POST", srv.URL+"/login", formType, "username=alice&password="+url.QueryEscape(goodPassword),
			htmx, "true", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		if xo.code != 403 || xo.header.Get("HX-Redirect") != "" || len(xo.header.Values("Set-Cookie")) != 0 {
			t.Fatalf("htmx cross-origin login: %d %v", xo.code, xo.header)
		}

		// RequireSession: 401 and the login URL with next, for a page.
		anon := browser("127.0.0.1")
		plain := call(t, anon, "GET", srv.URL+"/app/page?x=1&y=/z", "", "")
		hx := call(t, anon, "GET", srv.URL+"/app/page?x=1&y=/z", "", "", htmx, "true")
		want := "/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D%2Fz"
		if plain.code != 303 || plain.header.Get("Location") != want {
			t.Fatalf("RequireSession: %d to %q, want 303 to %q", plain.code, plain.header.Get("Location"), want)
		}
		if hx.code != 401 || hx.header.Get("HX-Redirect") != want || hx.header.Get("Location") != "" || runs != 0 {
			t.Fatalf("htmx RequireSession: %d HX-Redirect %q (handler ran %d), want 401 %q", hx.code, hx.header.Get("HX-Redirect"), runs, want)
		}
		// hx-post: 401 to the login page; its URL is no page to return to.
		post := call(t, anon, "POST", srv.URL+"/app/do", formType, "a=b", htmx, "true")
		if post.code != 401 || post.header.Get("HX-Redirect") != "/login" || runs != 0 {
			t.Fatalf("htmx POST RequireSession: %d HX-Redirect %q", post.code, post.header.Get("HX-Redirect"))
		}
		// Without htmx a POST is 401 with no redirect, as before.
		if got := call(t, anon, "POST", srv.URL+"/app/do", formType, "a=b"); got.code != 401 || got.header.Get("HX-Redirect") != "" {
			t.Fatalf("POST RequireSession: %d %v", got.code, got.header)
		}

		// Signed in: the handler runs, htmx or not; logout with htmx.
		c := browser("127.0.0.1")
		if got := call(t, c, "POST", srv.URL+"/login", formType, "username=alice&password="+url.QueryEscape(goodPassword), htmx, "true"); got.code != 200 {
			t.Fatalf("htmx login: %d", got.code)
		}
		if got := call(t, c, "GET", srv.URL+"/app/page", "", "", htmx, "true"); got.code != 200 || got.body != "user=alice" {
			t.Fatalf("htmx page signed in: %d %q", got.code, got.body)
		}
		out := call(t, c, "POST", srv.URL+"/logout", "", "", htmx, "true")
		if out.code != 200 || out.header.Get("HX-Redirect") != "/login?notice=signed_out" || out.header.Get("Location") != "" {
			t.Fatalf("htmx logout: %d %v", out.code, out.header)
		}
		if got := call(t, c, "GET", srv.URL+"/app/page", "", "", htmx, "true"); got.code != 401 {
			t.Fatalf("after htmx logout: %d, want 401", got.code)
		}
	})
}

func basicAuthHeader(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// TestStatsSequence: over real HTTP, a known sequence of requests from
// several client addresses leaves exactly the counts it should, every
// counter included.
func TestStatsSequence(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		hasher := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{
			Hasher: hasher, Now: clk.Now, LockoutThreshold: 3, HashConcurrency: 1,
			HTTP: authn.HTTPConfig{
				InsecureCookies: true, HashWait: 200 * time.Millisecond, SessionCleanupInterval: -1, AllowRegistration: true,
				Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 4, Interval: time.Hour, Now: clk.Now}),
			},
		})
		ctx := context.Background()
		const bobPassword, carolPassword = goodPassword + " bob", goodPassword + " carol"
		for name, pw := range map[string]string{"bob": bobPassword, "carol": carolPassword} {
			if err := a.Register(ctx, name, pw); err != nil {
				t.Fatal(err)
			}
		}
		mux := http.NewServeMux()
		mux.Handle("/", a.Routes())
		mux.Handle("/app/", a.RequireSession(okHandler()))
		mux.Handle("/api/", a.BasicAuth(okHandler()))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		attacker, bob, other := browser("127.0.0.2"), browser("127.0.0.3"), browser("127.0.0.4")
		expect := func(what string, got answer, code int) {
			t.Helper()
			if got.code != code {
				t.Fatalf("%s: %d %q, want %d", what, got.code, got.body, code)
			}
		}
		loginJSON := func(c *http.Client, name, pw string, header ...string) answer {
			return call(t, c, "POST", srv.URL+"/login", "application/json", `{"username":"`+name+`","password":"`+pw+`"}`, header...)
		}
		basicGet := func(c *http.Client, auth string) answer {
			return call(t, c, "GET", srv.URL+"/api/", "", "", "Authorization", auth)
		}

		expect("register alice", call(t, other, "POST", srv.URL+"/register", "application/json",
			`{"username":"alice","password":"`+goodPassword+`"}`), 201)
		for i := range 3 { // the third locks alice
			expect(fmt.Sprintf("wrong password %d", i), loginJSON(attacker, "alice", "wrong"), 401)
		}
		expect("locked", loginJSON(attacker, "alice", goodPassword), 401)
		expect("throttled login", loginJSON(attacker, "alice", "wrong"), 429)
		expect("throttled Basic", basicGet(attacker, basicAuthHeader("alice", "x")), 429)

		expect("bob's login", loginJSON(bob, "bob", bobPassword), 200)
		expect("bob's login again", loginJSON(bob, "bob", bobPassword), 200) // replaces the first
		expect("logout", call(t, bob, "POST", srv.URL+"/logout", "", ""), 303)
		expect("bob's third login", loginJSON(bob, "bob", bobPassword), 200)

		for i := range 3 { // checked once, then remembered
			expect(fmt.Sprintf("Basic %d", i), basicGet(other, basicAuthHeader("bob", bobPassword)), 200)
		}
		expect("Basic unknown user", basicGet(other, basicAuthHeader("nobody", "whatever")), 401)
		expect("Basic malformed", basicGet(other, "Basic !!!"), 401)
		if err := a.SetPassword(ctx, "bob", bobPassword+" new"); err != nil { // ends bob's session too
			t.Fatal(err)
		}
		expect("Basic old password", basicGet(other, basicAuthHeader("bob", bobPassword)), 401) // remembered, changed since
		expect("cross-origin", call(t, other, "POST", srv.URL+"/login", formType, "username=bob&password=x",
			"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"), 403)

		// Busy: carol's login holds the one hashing slot while another
		// client's login waits HashWait for it.
		stored := readHash(t, db, "carol")
		entered, release := make(chan struct{}), make(chan struct{})
		onFirstVerify(hasher, stored, func() { close(entered); <-release })
		carol := browser("127.0.0.5")
		done := make(chan answer)
		go func() {
			req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(`{"username":"carol","password":"`+carolPassword+`"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := carol.Do(req)
			if err != nil {
				done <- answer{}
				return
			}
			resp.Body.Close()
			done <- answer{code: resp.StatusCode}
		}()
		<-entered
		expect("login while the slot is held", loginJSON(browser("127.0.0.6"), "bob", bobPassword+" new"), 503)
		close(release)
		expect("carol's login", <-done, 200)

		clk.Advance(31 * time.Minute) // carol's session is idle past the timeout
		if n, err := a.DeleteExpiredSessions(ctx); err != nil || n != 1 {
			t.Fatalf("DeleteExpiredSessions: %d %v, want 1", n, err)
		}
		if _, err := db.Raw.Exec("DROP TABLE sessions"); err != nil {
			t.Fatal(err)
		}
		expect("session read failing", call(t, carol, "GET", srv.URL+"/app/", "", ""), 503)

		want := authn.Stats{
			LoginSucceeded: 5, LoginFailed: 7, Locked: 1, Lockouts: 1, Throttled: 2, Busy: 1, Unavailable: 1,
			BasicCacheHits: 2, BasicCacheMisses: 3, SessionsStarted: 4, SessionsEnded: 2, SessionsExpired: 1,
			Registered: 3, PasswordChanged: 1, CrossOriginRefused: 1,
		}
		if readsFromMemory(db) { // "Basic 2": nothing committed since "Basic 1" read bob's row
			want.ReadsSkipped = 1
		}
		if got := a.Stats(); got != want {
			t.Fatalf("Stats() =\n%+v\nwant\n%+v", got, want)
		}
	})
}

// readHash reads a user's stored hash.
func readHash(t *testing.T, db *testdb.DB, name string) string {
	t.Helper()
	var h string
	if err := db.Raw.QueryRow("SELECT password_hash FROM users WHERE username = ?", name).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestStatsParallel: under parallel requests over real HTTP, the counters
// add up exactly (run it with -race).
func TestStatsParallel(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HashConcurrency: 4, HashSlotsPerClient: -1, HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20}),
		}})
		const users, workers, each = 4, 8, 5
		for i := range users {
			if err := a.Register(context.Background(), fmt.Sprintf("u%d", i), goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		mux := http.NewServeMux()
		mux.Handle("/", a.Routes())
		mux.Handle("/api/", a.BasicAuth(okHandler()))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				c := clientFrom("127.0.0.1") // no jar: every login a new session
				name := fmt.Sprintf("u%d", w%users)
				for range each {
					if got := postJSON(t, c, srv.URL+"/login", `{"username":"`+name+`","password":"`+goodPassword+`"}`); got != 200 {
						t.Errorf("login: %d", got)
					}
					if got := postJSON(t, c, srv.URL+"/login", `{"username":"ghost","password":"wrong"}`); got != 401 {
						t.Errorf("ghost: %d", got)
					}
					req, _ := http.NewRequest("GET", srv.URL+"/api/", nil)
					req.Header.Set("Authorization", basicAuthHeader(name, goodPassword))
					if resp, err := c.Do(req); err != nil || resp.StatusCode != 200 {
						t.Errorf("Basic: %v %v", resp, err)
					} else {
						resp.Body.Close()
					}
				}
			})
		}
		wg.Wait()
		s := a.Stats()
		const n = workers * each
		if s.BasicCacheHits+s.BasicCacheMisses != n || s.BasicCacheMisses < users {
			t.Fatalf("Basic: %d hits + %d misses, want %d with at least %d misses", s.BasicCacheHits, s.BasicCacheMisses, n, users)
		}
		want := authn.Stats{
			LoginSucceeded: n + s.BasicCacheMisses, LoginFailed: n, SessionsStarted: n, Registered: users,
			BasicCacheHits: s.BasicCacheHits, BasicCacheMisses: s.BasicCacheMisses,
		}
		// Logins commit all the time, so how many of the cached Basic
		// requests found nothing committed since their last read varies;
		// none on PostgreSQL, which reads every time.
		if readsFromMemory(db) && s.ReadsSkipped <= s.BasicCacheHits {
			want.ReadsSkipped = s.ReadsSkipped
		}
		if s != want {
			t.Fatalf("Stats() =\n%+v\nwant\n%+v", s, want)
		}
	})
}

// TestStatsJSON: the JSON names of Stats are the field names, those
// DESIGN.md lists included.
func TestStatsJSON(t *testing.T) {
	b, err := json.Marshal(authn.Stats{LoginSucceeded: 1, SessionsEnded: 2})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int64
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"LoginSucceeded", "LoginFailed", "Locked", "Throttled", "Busy", "BasicCacheHits",
		"BasicCacheMisses", "TokenAccepted", "SessionsStarted", "SessionsEnded", "Unavailable", "Registered", "PasswordChanged", "CrossOriginRefused"} {
		if _, ok := m[name]; !ok {
			t.Errorf("no %s in %s", name, b)
		}
	}
	if m["LoginSucceeded"] != 1 || m["SessionsEnded"] != 2 {
		t.Fatalf("values: %s", b)
	}
}
