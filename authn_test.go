// End-to-end tests of the module through its public API and real HTTP
// (httptest servers over TLS, so cookies are the production ones), on every
// backend that internal/testdb provides.
package minimost_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

const (
	alicePassword = "alice's long passphrase"
	bobPassword   = "bob's long passphrase here"
)

// site is one running server: an Authenticator behind every route.
type site struct {
	t      *testing.T
	a      *authn.Authenticator
	db     *testdb.DB // the database a is open on
	srv    *httptest.Server
	hasher *testdb.CountingHasher
	// calls counts how often the protected handlers ran.
	mu    sync.Mutex
	calls int
}

// generous is a throttle that never gets in the way of tests that are not
// about throttling.
func generous() *middleware.Throttle {
	return middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20})
}

// newSite starts a TLS server over db with alice and bob registered.
func newSite(t *testing.T, db *testdb.DB, cfg authn.Config) *site {
	t.Helper()
	return newSiteOn(t, db, cfg, func(cfg authn.Config) *authn.Authenticator { return db.Open(t, cfg) })
}

// newSiteOn is newSite with the Authenticator made by open, from the
// Config newSite would give db.Open.
func newSiteOn(t *testing.T, db *testdb.DB, cfg authn.Config, open func(authn.Config) *authn.Authenticator) *site {
	t.Helper()
	s := &site{t: t, db: db}
	if cfg.Hasher == nil {
		s.hasher = testdb.NewCountingHasher(nil)
		cfg.Hasher = s.hasher
	}
	if cfg.LockoutThreshold == 0 {
		cfg.LockoutThreshold = 5
	}
	if cfg.HTTP.Throttle == nil {
		cfg.HTTP.Throttle = generous()
	}
	cfg.HTTP.RegisterPath = "/register"
	s.a = open(cfg)
	ctx := context.Background()
	for name, pw := range map[string]string{"alice": alicePassword, "bob": bobPassword} {
		if err := s.a.Register(ctx, name, pw); err != nil && !errors.Is(err, authn.ErrUserExists) {
			t.Fatal(err)
		}
	}
	s.srv = httptest.NewUnstartedServer(s.mux())
	s.srv.Config.MaxHeaderBytes = 16 << 10 // as the examples and README advise
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *site) mux() http.Handler {
	protected := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls++
		s.mu.Unlock()
		name, ok := authn.Username(r.Context())
		if !ok {
			http.Error(w, "no user in context", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "hello %s", name)
	})
	mux := http.NewServeMux()
	mux.Handle("/basic/", s.a.BasicAuth(protected))
	mux.Handle("/app/", s.a.RequireSession(protected))
	mux.Handle("/login", s.a.LoginHandler())
	mux.Handle("/logout", s.a.LogoutHandler())
	mux.Handle("/register", s.a.RegisterHandler())
	return mux
}

func (s *site) protectedCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// client returns an HTTP client with a cookie jar that does not follow
// redirects, so tests see the 303s.
func (s *site) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *s.srv.Client() // a copy: srv.Client returns one shared client
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// response is what a test compares of an answer.
type response struct {
	status int
	header http.Header
	body   string
}

func (s *site) do(c *http.Client, method, path, contentType, body string, header ...string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	if c == nil {
		c = s.client()
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func (s *site) basicGet(user, pw string) response {
	return s.do(nil, "GET", "/basic/x", "", "", "Authorization", basic(user, pw))
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

const formType = "application/x-www-form-urlencoded"

func (s *site) loginForm(c *http.Client, user, pw, next string) response {
	return s.do(c, "POST", "/login", formType, form("username", user, "password", pw, "next", next))
}

func (s *site) loginJSON(c *http.Client, user, pw string) response {
	b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	return s.do(c, "POST", "/login", "application/json", string(b))
}

// lock makes bob locked, as an attacker would.
func (s *site) lockBob() {
	s.t.Helper()
	if err := s.a.Lock(context.Background(), "bob", time.Hour); err != nil {
		s.t.Fatal(err)
	}
}

// acrossAccountStates sends the same login request, by send, for the
// account name with the password pw, in each state the account can be in
// when the login fails: no such user, another password, locked by an
// administrator, and locked forever (lockout_until far beyond year 9999, as
// an administrator disables an account in the database). It returns the
// answers by state, and leaves no account of that name behind.
func (s *site) acrossAccountStates(name, pw string, send func() response) map[string]response {
	s.t.Helper()
	ctx := context.Background()
	answers := map[string]response{"unknown user": send()}
	if err := s.a.Register(ctx, name, "another passphrase, not the one sent"); err != nil {
		s.t.Fatal(err)
	}
	answers["wrong password"] = send()
	if err := s.a.SetPassword(ctx, name, pw); err != nil {
		s.t.Fatal(err)
	}
	if err := s.a.Lock(ctx, name, time.Hour); err != nil {
		s.t.Fatal(err)
	}
	answers["locked, right password"] = send()
	if err := s.a.Unlock(ctx, name); err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.db.Raw.Exec("UPDATE users SET lockout_until = ? WHERE username = ?", 1e300, name); err != nil {
		s.t.Fatal(err)
	}
	answers["locked forever, right password"] = send()
	if err := s.a.Delete(ctx, name); err != nil {
		s.t.Fatal(err)
	}
	return answers
}

// sameAnswer fails unless the responses are byte-identical but for Date.
func sameAnswer(t *testing.T, what string, rs map[string]response) {
	t.Helper()
	var first string
	var want response
	for name, r := range rs {
		if first == "" {
			first, want = name, r
			continue
		}
		h1, h2 := want.header.Clone(), r.header.Clone()
		h1.Del("Date")
		h2.Del("Date")
		if r.status != want.status || r.body != want.body || fmt.Sprint(h1) != fmt.Sprint(h2) {
			t.Errorf("%s: %s and %s answer differently:\n%d %v\n%s\n---\n%d %v\n%s",
				what, first, name, want.status, h1, want.body, r.status, h2, r.body)
		}
	}
}

const challenge = `Basic realm="restricted", charset="UTF-8"`

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		if r := s.basicGet("alice", alicePassword); r.status != 200 || r.body != "hello alice" {
			t.Fatalf("right credentials: %d %q", r.status, r.body)
		}
		if r := s.do(nil, "GET", "/basic/x", "", ""); r.status != 401 || r.header.Get("WWW-Authenticate") != challenge {
			t.Fatalf("no credentials: %d %v", r.status, r.header)
		}
		s.lockBob()
		failures := map[string]response{
			"wrong password":   s.basicGet("alice", "not her password"),
			"unknown user":     s.basicGet("nobody", alicePassword),
			"malformed name":   s.basicGet("bad name!", alicePassword),
			"locked account":   s.basicGet("bob", bobPassword),
			"no colon":         s.do(nil, "GET", "/basic/x", "", "", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice"))),
			"bad base64":       s.do(nil, "GET", "/basic/x", "", "", "Authorization", "Basic %%%"),
			"control char":     s.basicGet("alice", alicePassword+"\x01"),
			"other scheme":     s.do(nil, "GET", "/basic/x", "", "", "Authorization", "Bearer abc"),
			"invalid UTF-8":    s.do(nil, "GET", "/basic/x", "", "", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:\xff\xfe"))),
			"two headers":      s.do(nil, "GET", "/basic/x", "", "", "Authorization", basic("alice", alicePassword), "Authorization", basic("alice", alicePassword)),
			"huge header":      s.do(nil, "GET", "/basic/x", "", "", "Authorization", basic("alice", strings.Repeat("p", 4096))),
			"empty password":   s.basicGet("alice", ""),
			"lower-case basic": s.do(nil, "GET", "/basic/x", "", "", "Authorization", "basic "+base64.StdEncoding.EncodeToString([]byte("alice:wrong"))),
		}
		sameAnswer(t, "Basic auth failures", failures)
		for name, r := range failures {
			if r.status != 401 || r.header.Get("WWW-Authenticate") != challenge || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %d %v", name, r.status, r.header)
			}
		}
		if r := s.do(nil, "GET", "/basic/x", "", "", "Authorization", "BASIC "+base64.StdEncoding.EncodeToString([]byte("alice:"+alicePassword))); r.status != 200 {
			t.Errorf("scheme in upper case: %d, want 200 (the scheme is case-insensitive)", r.status)
		}
		if n := s.protectedCalls(); n != 2 {
			t.Fatalf("protected handler ran %d times, want 2", n)
		}
	})
}

// TestBasicAuthFastPath: after the first request, the right credentials are
// served without a hash; a lockout caused by another client, a password
// change or a deletion is seen on the very next request.
func TestBasicAuthFastPath(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		ctx := context.Background()
		ok := func(what string) {
			t.Helper()
			if r := s.basicGet("alice", alicePassword); r.status != 200 {
				t.Fatalf("%s: %d, want 200", what, r.status)
			}
		}
		refused := func(what string) {
			t.Helper()
			if r := s.basicGet("alice", alicePassword); r.status != 401 {
				t.Fatalf("%s: %d, want 401", what, r.status)
			}
		}
		ok("first request")
		verifies := s.hasher.TotalVerifies()
		for range 20 {
			ok("cached request")
		}
		if got := s.hasher.TotalVerifies(); got != verifies {
			t.Fatalf("20 cached requests ran %d verifications, want 0", got-verifies)
		}

		// Another client locks alice out through the login form.
		other := s.client()
		for range 5 {
			s.loginJSON(other, "alice", "a wrong guess here")
		}
		refused("after a lockout by another client")
		if err := s.a.Unlock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		ok("after Unlock")

		if err := s.a.SetPassword(ctx, "alice", "alice's brand new passphrase"); err != nil {
			t.Fatal(err)
		}
		refused("after SetPassword")
		if r := s.basicGet("alice", "alice's brand new passphrase"); r.status != 200 {
			t.Fatalf("new password: %d", r.status)
		}

		if err := s.a.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if r := s.basicGet("alice", "alice's brand new passphrase"); r.status != 401 {
			t.Fatalf("after Delete: %d, want 401", r.status)
		}
	})
}

// TestParallelBasicAuthLockout: 200 parallel wrong Basic-auth requests
// cause exactly T real password checks. They come from one address, which
// hashes one at a time, so they wait up to a minute for it: on a loaded
// machine the default 5 s HashWait would answer some 503, which is right
// but not what this test is about.
func TestParallelBasicAuthLockout(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{HTTP: authn.HTTPConfig{HashWait: time.Minute}})
		var stored string
		if err := db.Raw.QueryRow("SELECT password_hash FROM users WHERE username = 'bob'").Scan(&stored); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		statuses := make(chan int, 200)
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses <- s.basicGet("bob", fmt.Sprintf("guess number %d", i)).status
			}()
		}
		close(start)
		wg.Wait()
		close(statuses)
		for st := range statuses {
			if st != 401 {
				t.Errorf("a wrong guess got %d, want 401", st)
			}
		}
		if got := s.hasher.Verifies(stored); got != 5 {
			t.Fatalf("real password checks = %d, want exactly 5", got)
		}
		if r := s.basicGet("bob", bobPassword); r.status != 401 {
			t.Fatalf("right password after the attack: %d, want 401 (locked)", r.status)
		}
		if s.protectedCalls() != 0 {
			t.Fatal("the protected handler ran")
		}
	})
}

func TestLoginForm(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		r := s.do(nil, "GET", "/login?next=/app/page", "", "")
		if r.status != 200 || !strings.Contains(r.body, `<label for="password">`) || !strings.Contains(r.body, `value="/app/page"`) {
			t.Fatalf("GET /login: %d\n%s", r.status, r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" || !strings.Contains(r.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("GET /login headers: %v", r.header)
		}
		if r := s.do(nil, "POST", "/login", formType, form("username", "alice")); r.status != 400 ||
			!strings.Contains(r.body, "Enter your username and password.") || !strings.Contains(r.body, `value="alice"`) {
			t.Errorf("missing password: %d\n%s", r.status, r.body)
		}

		// The name typed is kept: the page depends on the request, never
		// on the account's state.
		const carolPassword = "carol's long passphrase"
		failures := s.acrossAccountStates("carol", carolPassword, func() response {
			return s.loginForm(nil, "carol", carolPassword, "/app/")
		})
		sameAnswer(t, "login form failures of one request", failures)
		for state, r := range failures {
			if r.status != 401 || !strings.Contains(r.body, "Invalid username or password.") || !strings.Contains(r.body, `value="carol"`) {
				t.Errorf("%s: %d\n%s", state, r.status, r.body)
			}
		}
		// A name that is not a valid username is not shown again: it may be
		// a password typed in the wrong field.
		for _, name := range []string{"bad name!", "correct horse battery staple", strings.Repeat("n", 33), `"><script>`} {
			r := s.loginForm(nil, name, alicePassword, "/app/")
			if r.status != 401 || !strings.Contains(r.body, `value=""`) || strings.Contains(r.body, "horse") || strings.Contains(r.body, "nnnnnnnnnn") {
				t.Errorf("malformed name %q: %d\n%s", name, r.status, r.body)
			}
		}
		sameAnswer(t, "malformed names", map[string]response{
			"bad name":  s.loginForm(nil, "bad name!", alicePassword, "/app/"),
			"other one": s.loginForm(nil, "another bad one?", alicePassword, "/app/"),
		})

		c := s.client()
		r = s.loginForm(c, "alice", alicePassword, "/app/page?x=1")
		if r.status != 303 || r.header.Get("Location") != "/app/page?x=1" {
			t.Fatalf("login: %d Location=%q", r.status, r.header.Get("Location"))
		}
		if r := s.do(c, "GET", "/app/page", "", ""); r.status != 200 || r.body != "hello alice" {
			t.Fatalf("page after login: %d %q", r.status, r.body)
		}
	})
}

func TestLoginJSON(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		const carolPassword = "carol's long passphrase"
		sameAnswer(t, "JSON login failures of one request", s.acrossAccountStates("carol", carolPassword, func() response {
			return s.loginJSON(nil, "carol", carolPassword)
		}))
		s.lockBob()
		failures := map[string]response{
			"wrong password": s.loginJSON(nil, "alice", "not her password"),
			"unknown user":   s.loginJSON(nil, "nobody", alicePassword),
			"malformed name": s.loginJSON(nil, "bad name!", alicePassword),
			"locked account": s.loginJSON(nil, "bob", bobPassword),
		}
		sameAnswer(t, "JSON login failures", failures)
		if r := failures["unknown user"]; r.status != 401 || strings.TrimSpace(r.body) != `{"error":"invalid username or password"}` {
			t.Fatalf("JSON failure: %d %s", r.status, r.body)
		}
		c := s.client()
		r := s.loginJSON(c, "alice", alicePassword)
		if r.status != 200 || strings.TrimSpace(r.body) != `{"username":"alice"}` {
			t.Fatalf("JSON login: %d %s", r.status, r.body)
		}
		for name, r := range map[string]response{
			"malformed JSON":   s.do(nil, "POST", "/login", "application/json", `{"username":`),
			"two objects":      s.do(nil, "POST", "/login", "application/json", `{"username":"a","password":"b"}{}`),
			"missing password": s.do(nil, "POST", "/login", "application/json", `{"username":"alice"}`),
		} {
			if r.status != 400 {
				t.Errorf("%s: %d, want 400", name, r.status)
			}
		}
	})
}

// TestRequestLimits: body size, content type and method.
func TestRequestLimits(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	big := form("username", "alice", "password", strings.Repeat("p", 10<<10))
	for name, tc := range map[string]struct {
		r      response
		status int
		allow  string
	}{
		"body too large":         {s.do(nil, "POST", "/login", formType, big), 413, ""},
		"JSON too large":         {s.do(nil, "POST", "/login", "application/json", `{"password":"`+strings.Repeat("p", 10<<10)+`"}`), 413, ""},
		"register too large":     {s.do(nil, "POST", "/register", formType, big), 413, ""},
		"wrong content type":     {s.do(nil, "POST", "/login", "text/plain", "username=alice"), 415, ""},
		"no content type":        {s.do(nil, "POST", "/login", "", "username=alice"), 415, ""},
		"multipart, no field":    {s.do(nil, "POST", "/login", "multipart/form-data; boundary=x", "--x--"), 400, ""},
		"multipart too large":    {s.do(nil, "POST", "/login", multipartType, multipartBody(t, "username", "alice", "password", strings.Repeat("p", 10<<10))), 413, ""},
		"PUT login":              {s.do(nil, "PUT", "/login", formType, ""), 405, "GET, HEAD, POST"},
		"GET logout":             {s.do(nil, "GET", "/logout", "", ""), 405, "POST"},
		"DELETE register":        {s.do(nil, "DELETE", "/register", "", ""), 405, "GET, HEAD, POST"},
		"repeated field":         {s.do(nil, "POST", "/login", formType, "username=alice&username=bob&password=x"), 400, ""},
		"password in query only": {s.do(nil, "POST", "/login?username=alice&password=x", formType, ""), 400, ""},
	} {
		if tc.r.status != tc.status || tc.r.header.Get("Allow") != tc.allow || tc.r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d Allow=%q Cache-Control=%q; want %d Allow=%q no-store", name, tc.r.status,
				tc.r.header.Get("Allow"), tc.r.header.Get("Cache-Control"), tc.status, tc.allow)
		}
	}
}

func TestSessionCookie(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	r := s.loginForm(nil, "alice", alicePassword, "")
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", r.header.Values("Set-Cookie"))
	}
	c := cookies[0]
	if c.Name != "__Host-session" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie %q: want __Host-session, HttpOnly, Secure, SameSite=Lax, Path=/, no Domain", r.header.Get("Set-Cookie"))
	}
	if raw, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 random bytes in base64url", c.Value)
	}
	// Only the token's hash is stored.
	var stored string
	if err := testdb.RawSQLite(t, s.dbPath()).QueryRow("SELECT token_hash FROM sessions").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == c.Value || strings.Contains(stored, c.Value) || len(stored) != 64 {
		t.Fatalf("stored %q for token %q, want its SHA-256", stored, c.Value)
	}
}

// dbPath returns the SQLite file of a site made on testdb.SQLite.
func (s *site) dbPath() string {
	if s.db.Name != "sqlite" {
		s.t.Fatalf("dbPath of a %s site", s.db.Name)
	}
	return s.db.URL
}

func TestLogoutEndsSessionServerSide(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		c := s.client()
		r := s.loginForm(c, "alice", alicePassword, "")
		old := (&http.Response{Header: r.header}).Cookies()[0]
		if r := s.do(c, "GET", "/app/", "", ""); r.status != 200 {
			t.Fatalf("before logout: %d", r.status)
		}
		r = s.do(c, "POST", "/logout", "", "")
		if r.status != 303 || r.header.Get("Location") != "/login?notice=signed_out" {
			t.Fatalf("logout: %d %v", r.status, r.header)
		}
		if cleared := (&http.Response{Header: r.header}).Cookies(); len(cleared) != 1 || cleared[0].MaxAge >= 0 {
			t.Fatalf("logout did not clear the cookie: %v", r.header.Values("Set-Cookie"))
		}
		// The old cookie, replayed by hand, no longer works.
		r = s.do(nil, "GET", "/app/", "", "", "Cookie", old.Name+"="+old.Value, "Accept", "application/json")
		if r.status != 401 {
			t.Fatalf("old cookie after logout: %d, want 401", r.status)
		}
		var n int
		if err := db.Raw.QueryRow("SELECT count(*) FROM sessions").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d session rows after logout (%v)", n, err)
		}
	})
}

func TestPasswordChangeEndsSessions(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		laptop, phone, bobs := s.client(), s.client(), s.client()
		s.loginForm(laptop, "alice", alicePassword, "")
		s.loginForm(phone, "alice", alicePassword, "")
		s.loginForm(bobs, "bob", bobPassword, "")
		if err := s.a.SetPassword(context.Background(), "alice", "alice's brand new passphrase"); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]*http.Client{"laptop": laptop, "phone": phone} {
			if r := s.do(c, "GET", "/app/", "", "", "Accept", "application/json"); r.status != 401 {
				t.Errorf("alice's %s session after a password change: %d, want 401", name, r.status)
			}
		}
		if r := s.do(bobs, "GET", "/app/", "", ""); r.status != 200 {
			t.Errorf("bob's session after alice's password change: %d, want 200", r.status)
		}
	})
}

func TestSessionRotationAndExpiry(t *testing.T) {
	t.Parallel()
	clk := testdb.NewClock()
	s := newSite(t, testdb.SQLite(t), authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
		SessionIdleTimeout: 10 * time.Minute, SessionLifetime: time.Hour, SessionCleanupInterval: -1,
	}})
	c := s.client()
	first := (&http.Response{Header: s.loginForm(c, "alice", alicePassword, "").header}).Cookies()[0]
	second := (&http.Response{Header: s.loginForm(c, "alice", alicePassword, "").header}).Cookies()[0]
	if first.Value == second.Value {
		t.Fatal("a second login kept the session token")
	}
	if r := s.do(nil, "GET", "/app/", "", "", "Cookie", first.Name+"="+first.Value, "Accept", "application/json"); r.status != 401 {
		t.Fatalf("the token replaced at login still works: %d", r.status)
	}
	get := func() int { return s.do(c, "GET", "/app/", "", "", "Accept", "application/json").status }
	// Used every 9 minutes, the session lives until its absolute end.
	for i := range 6 {
		clk.Advance(9 * time.Minute)
		if st := get(); st != 200 {
			t.Fatalf("after %d min of use: %d", 9*(i+1), st)
		}
	}
	clk.Advance(7 * time.Minute) // 61 minutes after login
	if st := get(); st != 401 {
		t.Fatalf("past the absolute lifetime: %d, want 401", st)
	}
	// Idle timeout, and the cleanup. This login deletes the expired
	// session whose cookie it came with; the new one idles out.
	s.loginForm(c, "alice", alicePassword, "")
	clk.Advance(11 * time.Minute)
	if st := get(); st != 401 {
		t.Fatalf("idle for 11 minutes: %d, want 401", st)
	}
	n, err := s.a.DeleteExpiredSessions(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredSessions = %d, %v; want the 1 idle session", n, err)
	}
	var left int
	if err := testdb.RawSQLite(t, s.dbPath()).QueryRow("SELECT count(*) FROM sessions").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d sessions left (%v), want 0", left, err)
	}
}

func TestRequireSession(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	r := s.do(nil, "GET", "/app/page?x=1", "", "", "Accept", "text/html")
	if r.status != 303 || r.header.Get("Location") != "/login?next=%2Fapp%2Fpage%3Fx%3D1" {
		t.Fatalf("browser without session: %d Location=%q", r.status, r.header.Get("Location"))
	}
	r = s.do(nil, "GET", "/app/page", "", "", "Accept", "application/json")
	if r.status != 401 || strings.TrimSpace(r.body) != `{"error":"authentication required"}` {
		t.Fatalf("API client without session: %d %s", r.status, r.body)
	}
	r = s.do(nil, "GET", "/app/page", "", "", "Cookie", "__Host-session=garbage", "Accept", "text/html")
	if r.status != 303 {
		t.Fatalf("garbage cookie: %d", r.status)
	}
	if s.protectedCalls() != 0 {
		t.Fatal("the protected handler ran")
	}
}

// TestOpenRedirect: next is followed only when it is a local path.
func TestOpenRedirect(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	for next, want := range map[string]string{
		"":                      "/",
		"/app/page?q=1#frag":    "/app/page?q=1#frag",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"\\\\evil.example":      "/",
		"https://evil.example/": "/",
		"javascript:alert(1)":   "/",
		"/\t/evil.example":      "/",
		"/\n/evil.example":      "/",
		"evil.example":          "/",
		"http:/evil.example":    "/",
		"/%2F%2Fevil.example":   "/%2F%2Fevil.example", // a path on this site
		"///evil.example":       "/",
	} {
		r := s.loginForm(nil, "alice", alicePassword, next)
		if r.status != 303 || r.header.Get("Location") != want {
			t.Errorf("next=%q: %d Location=%q, want %q", next, r.status, r.header.Get("Location"), want)
		}
	}
}

func TestCrossOriginPOSTRefused(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	for _, path := range []string{"/login", "/logout", "/register"} {
		r := s.do(nil, "POST", path, formType, form("username", "alice", "password", alicePassword),
			"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
		if r.status != 403 {
			t.Errorf("cross-origin POST %s: %d, want 403", path, r.status)
		}
		if cookies := (&http.Response{Header: r.header}).Cookies(); len(cookies) != 0 {
			t.Errorf("cross-origin POST %s set a cookie", path)
		}
	}
	r := s.do(nil, "POST", "/login", formType, form("username", "alice", "password", alicePassword),
		"Sec-Fetch-Site", "same-origin")
	if r.status != 303 {
		t.Errorf("same-origin POST: %d, want 303", r.status)
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		r := s.do(nil, "GET", "/register", "", "")
		if r.status != 200 || !strings.Contains(r.body, `autocomplete="new-password"`) {
			t.Fatalf("GET /register: %d", r.status)
		}
		r = s.do(nil, "POST", "/register", formType, form("username", "carol", "password", "carol's long passphrase"))
		if r.status != 201 || !strings.Contains(r.body, "Account created") {
			t.Fatalf("form registration: %d\n%s", r.status, r.body)
		}
		r = s.do(nil, "POST", "/register", "application/json", `{"username":"dave","password":"dave's long passphrase"}`)
		if r.status != 201 || strings.TrimSpace(r.body) != `{"username":"dave"}` {
			t.Fatalf("JSON registration: %d %s", r.status, r.body)
		}
		for name, tc := range map[string]struct {
			body   string
			status int
			code   string
			msg    string
		}{
			"taken":        {`{"username":"carol","password":"another long passphrase"}`, 409, authn.CodeUsernameTaken, "That username is taken. Choose another."},
			"short":        {`{"username":"erin","password":"short"}`, 400, authn.CodePasswordTooShort, "Choose a longer password: at least 15 characters."},
			"common":       {`{"username":"erin","password":"password123456789"}`, 400, authn.CodePasswordCommon, "too easy to guess"},
			"bad name":     {`{"username":"erin!","password":"erin's long passphrase"}`, 400, authn.CodeUsernameInvalidCharacters, "may contain only the letters A to Z"},
			"long name":    {`{"username":"` + strings.Repeat("e", 33) + `","password":"erin's long passphrase"}`, 400, authn.CodeUsernameTooLong, "at most 32 characters"},
			"missing name": {`{"password":"erin's long passphrase"}`, 400, authn.CodeUsernameRequired, "Enter a username."},
		} {
			r := s.do(nil, "POST", "/register", "application/json", tc.body)
			var got struct{ Error, Code string }
			if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != tc.status || got.Code != tc.code || !strings.Contains(got.Error, tc.msg) {
				t.Errorf("%s: %d %s; want %d, code %q, naming %q", name, r.status, r.body, tc.status, tc.code, tc.msg)
			}
		}
		if r := s.loginJSON(nil, "carol", "carol's long passphrase"); r.status != 200 {
			t.Fatalf("login of a registered user: %d", r.status)
		}
	})
}

// TestThrottle: one budget per client address across Basic auth and the
// login routes, answered 429 with Retry-After.
func TestThrottle(t *testing.T) {
	t.Parallel()
	clk := testdb.NewClock()
	th := middleware.NewThrottle(middleware.ThrottleConfig{Burst: 4, Interval: time.Minute, Now: clk.Now})
	s := newSite(t, testdb.SQLite(t), authn.Config{LockoutThreshold: -1, HTTP: authn.HTTPConfig{Throttle: th}})
	s.basicGet("alice", "wrong 1")
	s.loginForm(nil, "alice", "wrong 2", "")
	s.loginJSON(nil, "alice", "wrong 3")
	s.basicGet("alice", "wrong 4")
	for name, r := range map[string]response{
		"basic": s.basicGet("alice", alicePassword),
		"form":  s.loginForm(nil, "alice", alicePassword, ""),
		"json":  s.loginJSON(nil, "alice", alicePassword),
	} {
		if r.status != 429 || r.header.Get("Retry-After") != "60" {
			t.Errorf("%s over budget: %d Retry-After=%q, want 429 and 60", name, r.status, r.header.Get("Retry-After"))
		}
	}
	clk.Advance(time.Minute)
	if r := s.basicGet("alice", alicePassword); r.status != 200 {
		t.Fatalf("after a token came back: %d", r.status)
	}
}

// TestDatabaseDown: with the users table gone (as good as the database), every
// route fails closed with 503 and Retry-After, and recovers when it is back.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newSite(t, db, authn.Config{})
		c := s.client()
		s.loginForm(c, "alice", alicePassword, "")
		s.basicGet("alice", alicePassword) // cached from now on
		for _, stmt := range []string{"ALTER TABLE users RENAME TO users_away", "ALTER TABLE sessions RENAME TO sessions_away"} {
			if _, err := db.Raw.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
		calls := s.protectedCalls()
		for name, r := range map[string]response{
			"basic cached": s.basicGet("alice", alicePassword),
			"basic":        s.basicGet("bob", bobPassword),
			"session":      s.do(c, "GET", "/app/", "", ""),
			"login":        s.loginForm(nil, "bob", bobPassword, ""),
			"login json":   s.loginJSON(nil, "bob", bobPassword),
			"register":     s.do(nil, "POST", "/register", "application/json", `{"username":"erin","password":"erin's long passphrase"}`),
			"logout":       s.do(c, "POST", "/logout", "", ""),
		} {
			if r.status != 503 || r.header.Get("Retry-After") == "" {
				t.Errorf("%s with the database down: %d Retry-After=%q, want 503", name, r.status, r.header.Get("Retry-After"))
			}
		}
		if s.protectedCalls() != calls {
			t.Fatal("a protected handler ran with the database down")
		}
		for _, stmt := range []string{"ALTER TABLE users_away RENAME TO users", "ALTER TABLE sessions_away RENAME TO sessions"} {
			if _, err := db.Raw.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
		if r := s.basicGet("bob", bobPassword); r.status != 200 {
			t.Fatalf("basic auth after recovery: %d", r.status)
		}
		if r := s.do(c, "GET", "/app/", "", ""); r.status != 200 {
			t.Fatalf("session after recovery: %d", r.status)
		}
	})
}

// TestEventsOverHTTP: one greppable line per failure, with the client
// address and the reason, and no secret.
func TestEventsOverHTTP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var log strings.Builder
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return log.Write(p)
	}), nil))
	s := newSite(t, testdb.SQLite(t), authn.Config{Logger: logger})
	s.basicGet("alice", "wrong-secret-1")
	s.loginForm(nil, "nobody", "wrong-secret-2", "")
	c := s.client()
	s.loginJSON(c, "alice", alicePassword)
	s.do(c, "POST", "/logout", "", "")
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	var failures []string
	for _, l := range lines {
		if strings.Contains(l, "event=login_failed") {
			failures = append(failures, l)
		}
	}
	if len(failures) != 2 || !strings.Contains(failures[0], `reason="wrong password" client=127.0.0.1`) ||
		!strings.Contains(failures[1], `user=nobody reason="unknown user" client=127.0.0.1`) {
		t.Errorf("failure lines:\n%s", strings.Join(failures, "\n"))
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "event=logout user=alice") }) {
		t.Errorf("no logout line:\n%s", log.String())
	}
	if strings.Contains(log.String(), "secret") || strings.Contains(log.String(), alicePassword) {
		t.Errorf("a password reached the log:\n%s", log.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestTwoInstances: two Authenticators on two connection pools over one
// database, as two application instances behind a load balancer, behave as
// one: a password change through one is seen by the other's next Basic-auth
// request, and a session made through one is valid on the other and ends on
// both at logout.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		one, two := newSite(t, db, authn.Config{}), newSite(t, db, authn.Config{})
		for _, s := range []*site{one, two} {
			if r := s.basicGet("alice", alicePassword); r.status != 200 {
				t.Fatalf("Basic auth: %d", r.status)
			}
		}
		if err := one.a.SetPassword(context.Background(), "alice", "alice's brand new passphrase"); err != nil {
			t.Fatal(err)
		}
		if r := two.basicGet("alice", alicePassword); r.status != 401 {
			t.Fatalf("old password on the other instance after a change: %d, want 401", r.status)
		}
		if r := two.basicGet("alice", "alice's brand new passphrase"); r.status != 200 {
			t.Fatalf("new password on the other instance: %d", r.status)
		}

		// One browser, its requests spread over both instances: the same
		// cookie jar works against either server's URL.
		c := one.client()
		if r := one.loginForm(c, "bob", bobPassword, ""); r.status != 303 {
			t.Fatalf("login: %d", r.status)
		}
		cookie := c.Jar.Cookies(mustURL(t, one.srv.URL))[0]
		onTwo := func() int {
			return two.do(nil, "GET", "/app/", "", "", "Cookie", cookie.Name+"="+cookie.Value, "Accept", "application/json").status
		}
		if st := onTwo(); st != 200 {
			t.Fatalf("session from instance one on instance two: %d", st)
		}
		if r := one.do(c, "POST", "/logout", "", ""); r.status != 303 {
			t.Fatalf("logout: %d", r.status)
		}
		if st := onTwo(); st != 401 {
			t.Fatalf("session on instance two after logout on one: %d, want 401", st)
		}
		if r := one.do(nil, "GET", "/app/", "", "", "Cookie", cookie.Name+"="+cookie.Value, "Accept", "application/json"); r.status != 401 {
			t.Fatalf("session on instance one after its logout: %d, want 401", r.status)
		}

		// The premise: two pools, as two processes have, not one shared.
		// Instance two goes on when instance one closes.
		if err := one.a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := two.a.Authenticate(context.Background(), "alice", "alice's brand new passphrase"); err != nil {
			t.Fatalf("instance two after instance one closed: %v (do they share a pool?)", err)
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

// TestPostgresRefusesConnections: PostgreSQL stops accepting connections and
// drops the open ones mid-run; every request fails closed with 503, and the
// service recovers when connections are allowed again. It uses a database of
// its own, since it shuts everyone out of it.
func TestPostgresRefusesConnections(t *testing.T) {
	t.Parallel()
	base := testdb.PostgresURL(t)
	admin := testdb.RawPostgres(t, base)
	name := "authn_down_" + strings.ToLower(randomSuffix())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true")
		admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'")
		if _, err := admin.Exec("DROP DATABASE " + name); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u := mustURL(t, base)
	u.Path = "/" + name
	s := newSite(t, &testdb.DB{Name: "postgres", URL: u.String()}, authn.Config{})
	c := s.client()
	if r := s.loginForm(c, "alice", alicePassword, ""); r.status != 303 {
		t.Fatalf("login: %d", r.status)
	}
	s.basicGet("bob", bobPassword) // cached

	for _, stmt := range []string{
		"ALTER DATABASE " + name + " ALLOW_CONNECTIONS false",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'",
	} {
		if _, err := admin.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	calls := s.protectedCalls()
	for name, get := range map[string]func() response{
		"basic cached": func() response { return s.basicGet("bob", bobPassword) },
		"basic":        func() response { return s.basicGet("alice", alicePassword) },
		"session":      func() response { return s.do(c, "GET", "/app/", "", "") },
		"login":        func() response { return s.loginJSON(nil, "bob", bobPassword) },
	} {
		// The first request on a dropped connection may be retried by
		// database/sql on a new one, which is refused: either way, 503.
		for range 2 {
			if r := get(); r.status != 503 {
				t.Errorf("%s with connections refused: %d, want 503", name, r.status)
			}
		}
	}
	if s.protectedCalls() != calls {
		t.Fatal("a protected handler ran with the database unreachable")
	}
	if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	if r := s.basicGet("bob", bobPassword); r.status != 200 {
		t.Fatalf("Basic auth after recovery: %d", r.status)
	}
	if r := s.do(c, "GET", "/app/", "", ""); r.status != 200 {
		t.Fatalf("session after recovery: %d", r.status)
	}
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
