package authn_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// forwardAuthServer serves a's Routes at the root and its
// ForwardAuthHandler at /auth over real HTTP; it closes with the test.
func forwardAuthServer(t *testing.T, a *authn.Authenticator) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/auth", a.ForwardAuthHandler())
	mux.Handle("/", a.Routes())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// forwardAuthConfig is a config whose proxy is this machine (the tests'
// client), with a failure budget no test exhausts unless it means to.
func forwardAuthConfig() authn.Config {
	return authn.Config{HTTP: authn.HTTPConfig{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Throttle:       middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20}),
	}}
}

func basicHeader(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// pageLoad is the headers of a browser's page load as nginx forwards it:
// the method and URI it asked for, and an Accept that lists HTML.
func pageLoad(uri string) []string {
	return []string{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8", "X-Forwarded-Method", "GET", "X-Original-URI", uri}
}

// checkAllowed checks a 200 with user in the Remote-User header.
func checkAllowed(t *testing.T, resp *http.Response, header, user string) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Values(header) == nil || resp.Header.Get(header) != user || len(resp.Header.Values(header)) != 1 {
		t.Fatalf("got %d %s=%q, want 200 %s=%q", resp.StatusCode, header, resp.Header.Values(header), header, user)
	}
}

// checkChallenged checks a 401 with the Basic challenge, no user and no
// login URL: the answer API clients get.
func checkChallenged(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") ||
		resp.Header.Get("Remote-User") != "" || resp.Header.Get("Location") != "" {
		t.Fatalf("got %d WWW-Authenticate=%q Remote-User=%q Location=%q, want 401 with the challenge only",
			resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Remote-User"), resp.Header.Get("Location"))
	}
}

// TestForwardAuthCredentials: Basic credentials and a session cookie get
// 200 with the user's name; wrong, malformed, unknown or locked ones, a
// logged-out cookie, and nothing at all get 401 with the challenge, on
// both databases over real HTTP.
func TestForwardAuthCredentials(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, forwardAuthConfig())
		ctx := context.Background()
		for _, name := range []string{"alice", "bob"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		srv := forwardAuthServer(t, a)
		get := func(header ...string) *http.Response {
			resp, _ := send(t, srv, "GET", "/auth", "", nil, header...)
			return resp
		}
		checkAllowed(t, get("Authorization", basicHeader("alice", goodPassword)), "Remote-User", "alice")
		// Again: from the credential cache, the same answer.
		checkAllowed(t, get("Authorization", basicHeader("alice", goodPassword)), "Remote-User", "alice")
		// A header the client sent about itself changes nothing.
		checkAllowed(t, get("Authorization", basicHeader("bob", goodPassword), "Remote-User", "alice"), "Remote-User", "bob")

		cookie := signIn(t, srv, `{"username":"bob","password":"`+goodPassword+`"}`)
		resp, _ := send(t, srv, "GET", "/auth", "", []*http.Cookie{cookie})
		checkAllowed(t, resp, "Remote-User", "bob")
		// A browser's page load with the cookie too.
		resp, _ = send(t, srv, "GET", "/auth", "", []*http.Cookie{cookie}, pageLoad("/app/")...)
		checkAllowed(t, resp, "Remote-User", "bob")
		// The Authorization header decides over the cookie: a wrong one
		// is refused even with bob's live session.
		resp, _ = send(t, srv, "GET", "/auth", "", []*http.Cookie{cookie}, "Authorization", basicHeader("bob", "wrong password"))
		checkChallenged(t, resp)

		checkChallenged(t, get())
		checkChallenged(t, get("Authorization", basicHeader("alice", "wrong password")))
		checkChallenged(t, get("Authorization", basicHeader("nobody", goodPassword)))
		checkChallenged(t, get("Authorization", "Basic !!!"))
		checkChallenged(t, get("Authorization", "Bearer something"))
		checkChallenged(t, get("Authorization", ""))
		resp, _ = send(t, srv, "GET", "/auth", "", []*http.Cookie{{Name: cookie.Name, Value: "not-a-session"}})
		checkChallenged(t, resp)

		// An admin lock stops the cached credential and the session on the
		// next request; so does a logout for the session.
		if err := a.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		checkChallenged(t, get("Authorization", basicHeader("alice", goodPassword)))
		resp, _ = send(t, srv, "POST", "/logout", "", []*http.Cookie{cookie}, "Accept", "application/json")
		if resp.StatusCode != 204 {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		resp, _ = send(t, srv, "GET", "/auth", "", []*http.Cookie{cookie})
		checkChallenged(t, resp)
		if err := a.Delete(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		checkChallenged(t, get("Authorization", basicHeader("bob", goodPassword)))
	})
}

// TestForwardAuthSharesBasicAuthBudget: wrong passwords through the proxy
// and through BasicAuth spend one failure budget and one lockout count, so
// forward auth is no faster way to guess.
func TestForwardAuthSharesBasicAuthBudget(t *testing.T) {
	cfg := forwardAuthConfig()
	cfg.LockoutThreshold = 100 // the budget, not the lockout, stops the guesses here
	cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Hour})
	a, _ := openTest(t, cfg)
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/auth", a.ForwardAuthHandler())
	mux.Handle("/api/", a.BasicAuth(okHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	wrong := []string{"Authorization", basicHeader("alice", "wrong password")}
	for _, path := range []string{"/auth", "/api/", "/auth"} {
		if resp, _ := send(t, srv, "GET", path, "", nil, wrong...); resp.StatusCode != 401 {
			t.Fatalf("failure at %s: %d, want 401", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/auth", "/api/"} {
		resp, _ := send(t, srv, "GET", path, "", nil, "Authorization", basicHeader("alice", goodPassword))
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Remote-User") != "" {
			t.Fatalf("%s after the budget: %d Retry-After=%q Remote-User=%q, want 429 without a user",
				path, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Remote-User"))
		}
	}

	// The lockout counts forward-auth failures as BasicAuth's.
	cfg = forwardAuthConfig()
	cfg.LockoutThreshold = 2
	b, _ := openTest(t, cfg)
	if err := b.Register(context.Background(), "carol", goodPassword); err != nil {
		t.Fatal(err)
	}
	srv2 := forwardAuthServer(t, b)
	for range 2 {
		send(t, srv2, "GET", "/auth", "", nil, "Authorization", basicHeader("carol", "wrong password"))
	}
	if acct, err := b.Account(context.Background(), "carol"); err != nil || acct.LockedUntil.IsZero() {
		t.Fatalf("after 2 failures through forward auth: %+v %v, want locked", acct, err)
	}
	resp, _ := send(t, srv2, "GET", "/auth", "", nil, "Authorization", basicHeader("carol", goodPassword))
	checkChallenged(t, resp)
}

// TestForwardAuthBrowser: a browser's page load without a session gets 401
// without a challenge (no password dialog) and the login URL with next,
// the path and query it asked for, in Location; with ?redirect, a 303 to
// the same URL. A login with that next comes back to it.
func TestForwardAuthBrowser(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, forwardAuthConfig())
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := forwardAuthServer(t, a)
		const uri = "/app/page?x=1&y=%2F"
		want := "/login?" + url.Values{"next": {uri}}.Encode()

		resp, body := send(t, srv, "GET", "/auth", "", nil, pageLoad(uri)...)
		if resp.StatusCode != 401 || resp.Header.Get("Location") != want || resp.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("browser: %d Location=%q WWW-Authenticate=%q, want 401 Location=%q and no challenge",
				resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("WWW-Authenticate"), want)
		}
		if !strings.Contains(body, `href="/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D%252F"`) {
			t.Errorf("browser: the body links no login URL: %s", body)
		}
		resp, _ = send(t, srv, "GET", "/auth?redirect=1", "", nil, pageLoad(uri)...)
		if resp.StatusCode != 303 || resp.Header.Get("Location") != want {
			t.Fatalf("browser, ?redirect: %d Location=%q, want 303 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		// Caddy and Traefik say X-Forwarded-Uri.
		resp, _ = send(t, srv, "GET", "/auth", "", nil, "Accept", "text/html", "X-Forwarded-Method", "HEAD", "X-Forwarded-Uri", uri)
		if resp.StatusCode != 401 || resp.Header.Get("Location") != want {
			t.Fatalf("X-Forwarded-Uri: %d Location=%q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		// Not a page load: a POST, a JSON client, a page load with
		// (wrong) credentials. The challenge, no login URL, even with
		// ?redirect.
		for _, h := range [][]string{
			{"Accept", "text/html", "X-Forwarded-Method", "POST", "X-Original-URI", uri},
			{"Accept", "application/json", "X-Original-URI", uri},
			append(pageLoad(uri), "Authorization", basicHeader("alice", "wrong password")),
		} {
			for _, path := range []string{"/auth", "/auth?redirect=1"} {
				resp, _ := send(t, srv, "GET", path, "", nil, h...)
				checkChallenged(t, resp)
			}
		}

		// The login page the browser is sent to, and the login it posts,
		// come back to the page asked for.
		loc, _ := url.Parse(want)
		resp, page := send(t, srv, "GET", loc.String(), "", nil, "Accept", "text/html")
		if resp.StatusCode != 200 || !strings.Contains(page, `value="/app/page?x=1&amp;y=%2F"`) {
			t.Fatalf("login page: %d, no next field for %q:\n%s", resp.StatusCode, uri, page)
		}
		form := url.Values{"username": {"alice"}, "password": {goodPassword}, "next": {loc.Query().Get("next")}}
		resp, _ = send(t, srv, "POST", "/login", form.Encode(), nil)
		if resp.StatusCode != 303 || resp.Header.Get("Location") != uri || len(resp.Cookies()) != 1 {
			t.Fatalf("login: %d Location=%q, want 303 to %q with a cookie", resp.StatusCode, resp.Header.Get("Location"), uri)
		}
		resp, _ = send(t, srv, "GET", "/auth", "", resp.Cookies(), pageLoad(uri)...)
		checkAllowed(t, resp, "Remote-User", "alice")
	})
}

// TestForwardAuthNextIsLocal: whatever a proxy or a client says the URI
// was, the login URL's next is a path on the site, and the login redirects
// to nothing else; from a client that is not a trusted proxy, the headers
// are not read at all.
func TestForwardAuthNextIsLocal(t *testing.T) {
	a, _ := openTest(t, forwardAuthConfig())
	srv := forwardAuthServer(t, a)
	for _, tc := range []struct{ uri, next string }{
		{"//evil.example/x", "/evil.example/x"},
		{"///evil.example", "/evil.example"},
		{"/\\evil.example", "/%5Cevil.example"},
		{"http://evil.example/x", "/"},
		{"evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"", "/"},
		{"/" + strings.Repeat("a", 3000), "/"},
		// Short enough as sent (1,002 bytes), but 3,002 once its spaces
		// are escaped: past the 2,048 bytes a next may have.
		{"/" + strings.Repeat(" ", 1000) + "x", "/"},
		{"/" + strings.Repeat(" ", 300) + "x", "/" + strings.Repeat("%20", 300) + "x"},
		{"/a\tb", "/"},
	} {
		resp, _ := send(t, srv, "GET", "/auth", "", nil, pageLoad(tc.uri)...)
		want := "/login?" + url.Values{"next": {tc.next}}.Encode()
		if resp.StatusCode != 401 || resp.Header.Get("Location") != want {
			loc := resp.Header.Get("Location")
			t.Errorf("X-Original-URI %.80q (%d bytes): %d Location=%.80q (%d bytes), want %.80q", tc.uri, len(tc.uri), resp.StatusCode, loc, len(loc), want)
		}
	}

	// Two URIs: nothing says which is the browser's.
	req, _ := http.NewRequest("GET", srv.URL+"/auth", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Add("X-Forwarded-Uri", "/one")
	req.Header.Add("X-Forwarded-Uri", "/two")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Location"); got != "/login?next=%2F" {
		t.Errorf("two X-Forwarded-Uri: Location %q, want next=/", got)
	}

	// From a client outside TrustedProxies: neither the URI nor the
	// method is believed.
	cfg := forwardAuthConfig()
	cfg.HTTP.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	b, _ := openTest(t, cfg)
	srv2 := forwardAuthServer(t, b)
	resp, _ = send(t, srv2, "GET", "/auth", "", nil, pageLoad("/app/secret")...)
	if resp.StatusCode != 401 || resp.Header.Get("Location") != "/login?next=%2F" {
		t.Errorf("untrusted client: %d Location=%q, want next=/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = send(t, srv2, "GET", "/auth", "", nil, "Accept", "text/html", "X-Forwarded-Method", "POST")
	if resp.StatusCode != 401 || resp.Header.Get("Location") == "" {
		t.Errorf("untrusted client's X-Forwarded-Method was believed: %d Location=%q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The login route redirects only to a local path, whatever next says.
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		form := url.Values{"username": {"alice"}, "password": {goodPassword}, "next": {next}}
		resp, _ := send(t, srv, "POST", "/login", form.Encode(), nil)
		if resp.StatusCode != 303 || resp.Header.Get("Location") != "/" {
			t.Errorf("login with next %q: %d Location=%q, want 303 to /", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestForwardAuthUserHeader: HTTPConfig.ForwardAuthUserHeader names the
// header; New refuses a name that is no header name or one HTTP uses.
func TestForwardAuthUserHeader(t *testing.T) {
	cfg := forwardAuthConfig()
	cfg.HTTP.ForwardAuthUserHeader = "x-auth-user"
	a, _ := openTest(t, cfg)
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	srv := forwardAuthServer(t, a)
	resp, _ := send(t, srv, "GET", "/auth", "", nil, "Authorization", basicHeader("alice", goodPassword))
	checkAllowed(t, resp, "X-Auth-User", "alice")
	if resp.Header.Get("Remote-User") != "" {
		t.Errorf("Remote-User set too: %q", resp.Header.Get("Remote-User"))
	}

	for _, bad := range []string{"Remote User", "X-User\r\nX-Evil: 1", "X-Üser", "Location", "set-cookie", "WWW-Authenticate", "Content-Length", strings.Repeat("X", 65)} {
		cfg := forwardAuthConfig()
		cfg.HTTP.ForwardAuthUserHeader = bad
		cfg.Hasher = testdb.FastHasher
		_, err := authn.Open(context.Background(), t.TempDir()+"/auth.db", cfg)
		if err == nil || !strings.Contains(err.Error(), "ForwardAuthUserHeader") {
			t.Errorf("ForwardAuthUserHeader %q: New gave %v, want an error naming the field", bad, err)
		}
	}
}

// TestForwardAuthTokens: an app token, as demo's password and alone as a
// Bearer token, gets 200 with demo in the user header, also with another
// user's session cookie or a browser's headers (the Authorization header
// decides). A wrong or revoked token gets exactly the 401 of a wrong
// password and is a failure like one: as demo:TOKEN it counts toward
// demo's lockout. The token keeps working during a lockout by failed
// passwords (or tokens), and is refused after an administrator's Lock, on
// the next request, until Unlock; RevokeToken stops it at once. Both
// databases, over real HTTP.
func TestForwardAuthTokens(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const threshold = 3
		clk := newClock()
		events := &eventLog{}
		cfg := forwardAuthConfig()
		cfg.Now, cfg.LockoutThreshold, cfg.OnEvent = clk.Now, threshold, events.add
		a := db.Open(t, cfg)
		admin := db.Open(t, authn.Config{Now: clk.Now}) // authctl, say: another process
		ctx := context.Background()
		for _, name := range []string{"demo", "bob"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		token := newToken(t, admin, "demo", "ci")
		revoked := newToken(t, admin, "demo", "old")
		if err := admin.RevokeToken(ctx, "demo", "old"); err != nil {
			t.Fatal(err)
		}
		srv := forwardAuthServer(t, a)
		get := func(header ...string) *http.Response {
			t.Helper()
			resp, _ := send(t, srv, "GET", "/auth", "", nil, header...)
			return resp
		}
		works := func(what string) {
			t.Helper()
			for _, auth := range []string{basicHeader("demo", token), bearer(token)} {
				resp := get("Authorization", auth)
				if resp.StatusCode != 200 {
					t.Fatalf("%s, %.6s: %d, want 200", what, auth, resp.StatusCode)
				}
				checkAllowed(t, resp, "Remote-User", "demo")
			}
		}
		refused := func(what, token string) {
			t.Helper()
			for _, auth := range []string{basicHeader("demo", token), bearer(token)} {
				resp := get("Authorization", auth)
				if resp.StatusCode != 401 {
					t.Fatalf("%s, %.6s: %d, want 401", what, auth, resp.StatusCode)
				}
				checkChallenged(t, resp)
			}
		}

		works("token")
		checkAllowed(t, get("Authorization", "bearer  "+token), "Remote-User", "demo")
		// With bob's session, or as a browser's page load: the token's user.
		bobs := signIn(t, srv, credentialsJSON("bob", goodPassword))
		resp, _ := send(t, srv, "GET", "/auth", "", []*http.Cookie{bobs}, "Authorization", bearer(token))
		checkAllowed(t, resp, "Remote-User", "demo")
		checkAllowed(t, get(append(pageLoad("/app/"), "Authorization", basicHeader("demo", token))...), "Remote-User", "demo")
		// demo's token is no one else's password.
		checkChallenged(t, get("Authorization", basicHeader("bob", token)))
		if got := a.Stats().TokenAccepted; got != 5 {
			t.Errorf("TokenAccepted = %d, want 5", got)
		}
		refused("revoked", revoked)

		// A wrong token: the very answer of a wrong password, and a
		// failure like one.
		clk.Advance(time.Hour) // the failures above are forgotten
		if err := admin.Unlock(ctx, "demo"); err != nil {
			t.Fatal(err)
		}
		c := clientFrom("127.0.0.2")
		auth := func(h string) answer {
			t.Helper()
			return call(t, c, "GET", srv.URL+"/auth", "", "", "Authorization", h)
		}
		wrongPassword := auth(basicHeader("demo", "not the password"))
		failedBefore := a.Stats().LoginFailed
		unknown := "mmt_" + strings.Repeat("A", 43)
		sameRefusal(t, "unknown demo:token", auth(basicHeader("demo", unknown)), wrongPassword)
		sameRefusal(t, "unknown Bearer", auth(bearer(unknown)), wrongPassword)
		sameRefusal(t, "malformed Bearer", auth(bearer("not-a-token")), wrongPassword)
		if got := a.Stats().LoginFailed - failedBefore; got != 3 {
			t.Errorf("LoginFailed grew by %d for three wrong tokens, want 3", got)
		}
		if got := readUser(t, db.Raw, "demo").Failed.Int64; got != 2 {
			t.Fatalf("failed_attempts = %d, want 2 (a wrong password, a wrong demo:token)", got)
		}
		if !strings.Contains(events.String(), "login_failed  unknown app token") {
			t.Errorf("no unknown-token failure in the events:\n%s", events)
		}
		// The third failure, a revoked token, locks demo out; the
		// right password is refused, the token is not.
		sameRefusal(t, "revoked demo:token", auth(basicHeader("demo", revoked)), wrongPassword)
		if acc, err := a.Account(ctx, "demo"); err != nil || acc.LockedUntil.IsZero() {
			t.Fatalf("after %d failures, two of them tokens: %+v %v, want locked out", threshold, acc, err)
		}
		checkChallenged(t, get("Authorization", basicHeader("demo", goodPassword)))
		works("during a lockout by wrong tokens")

		// A lockout by T wrong passwords leaves the token working too.
		clk.Advance(time.Hour)
		for i := range threshold {
			checkChallenged(t, get("Authorization", basicHeader("demo", fmt.Sprintf("guess %d", i))))
		}
		if acc, err := a.Account(ctx, "demo"); err != nil || acc.LockedUntil.IsZero() {
			t.Fatalf("after %d wrong passwords: %+v %v, want locked out", threshold, acc, err)
		}
		checkChallenged(t, get("Authorization", basicHeader("demo", goodPassword)))
		works("during a lockout by wrong passwords")

		// An administrator's Lock stops it on the next request, with the
		// answer of a wrong password; Unlock lets it through again.
		if err := admin.Lock(ctx, "demo", time.Hour); err != nil {
			t.Fatal(err)
		}
		refused("after Lock", token)
		sameRefusal(t, "Bearer after Lock", auth(bearer(token)), wrongPassword)
		if err := admin.Unlock(ctx, "demo"); err != nil {
			t.Fatal(err)
		}
		works("after Unlock")

		if err := admin.RevokeToken(ctx, "demo", "ci"); err != nil {
			t.Fatal(err)
		}
		refused("revoked after use", token)
	})
}

// TestForwardAuthTokenBudget: wrong tokens through forward auth and through
// BasicAuth spend one failure budget of the client, after which even a good
// token gets 429 and no user; another client's token still works.
func TestForwardAuthTokenBudget(t *testing.T) {
	cfg := forwardAuthConfig()
	cfg.LockoutThreshold = 100
	cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Hour})
	a, _ := openTest(t, cfg)
	if err := a.Register(context.Background(), "demo", goodPassword); err != nil {
		t.Fatal(err)
	}
	token := newToken(t, a, "demo", "ci")
	mux := http.NewServeMux()
	mux.Handle("/auth", a.ForwardAuthHandler())
	mux.Handle("/api/", a.BasicAuth(okHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := clientFrom("127.0.0.2")
	unknown := "mmt_" + strings.Repeat("B", 43)
	for i, step := range []struct{ path, auth string }{
		{"/auth", bearer(unknown)},
		{"/api/", basicHeader("demo", unknown)},
		{"/auth", basicHeader("demo", unknown)},
	} {
		if got := call(t, c, "GET", srv.URL+step.path, "", "", "Authorization", step.auth); got.code != 401 {
			t.Fatalf("failure %d at %s: %d, want 401", i, step.path, got.code)
		}
	}
	for _, path := range []string{"/auth", "/api/"} {
		got := call(t, c, "GET", srv.URL+path, "", "", "Authorization", bearer(token))
		if got.code != 429 || got.header.Get("Retry-After") == "" || got.header.Get("Remote-User") != "" {
			t.Fatalf("good token at %s after the budget: %d Retry-After=%q Remote-User=%q, want 429 and no user",
				path, got.code, got.header.Get("Retry-After"), got.header.Get("Remote-User"))
		}
	}
	got := call(t, clientFrom("127.0.0.3"), "GET", srv.URL+"/auth", "", "", "Authorization", bearer(token))
	if got.code != 200 || got.header.Get("Remote-User") != "demo" {
		t.Fatalf("the token from another client: %d Remote-User=%q, want 200 demo", got.code, got.header.Get("Remote-User"))
	}
}
