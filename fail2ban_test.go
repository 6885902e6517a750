package minimost_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
	"github.com/pquerna/otp/totp"
)

// fail2banRegex returns the path of fail2ban-regex, or skips the test when
// it is not installed (fails it under CI, where .ci/run installs it).
func fail2banRegex(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("fail2ban-regex is not installed under CI (apt-get install fail2ban): %v", err)
		}
		t.Skip("fail2ban-regex not installed (apt-get install fail2ban); the test of examples/fail2ban skipped")
	}
	return bin
}

// TestFail2banFilter runs Debian's fail2ban-regex with
// examples/fail2ban/filter.d/minimost.conf over the log of examples/login
// after a known set of requests, over IPv4 and IPv6: every failed login is
// matched, with its client's address, and nothing else: no success,
// registration, logout, lockout or cross-origin refusal, and no address a
// client wrote into its username or Origin header.
func TestFail2banFilter(t *testing.T) {
	t.Parallel()
	bin := fail2banRegex(t)
	const pw = "the demo account's passphrase"
	s := startExample(t, "login", "-demo-password", pw)
	login := func(c *http.Client, user, password string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", s.base+"/login", strings.NewReader(url.Values{"username": {user}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return status(t, c, req)
	}
	basicGet := func(c *http.Client, auth string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", s.base+"/api/", nil)
		req.Header.Set("Authorization", auth)
		return status(t, c, req)
	}
	want := func(what string, got, code int) {
		t.Helper()
		if got != code {
			t.Fatalf("%s: %d, want %d", what, got, code)
		}
	}

	// Not matched: a success, a logout, a registration.
	ok := clientFrom("127.0.0.5")
	ok.Jar, _ = cookiejar.New(nil)
	want("login", login(ok, "demo", pw), 303)
	want("logout", status(t, ok, mustRequest(t, "POST", s.base+"/logout")), 303)
	reg, _ := http.NewRequest("POST", s.base+"/register", strings.NewReader(`{"username":"newbie","password":"a new user's long passphrase"}`))
	reg.Header.Set("Content-Type", "application/json")
	want("register", status(t, ok, reg), 201)
	// Not matched: a cross-origin refusal, whose Origin names another address.
	want("cross-origin", login(clientFrom("127.0.0.4"), "demo", "x", "Origin", "https://evil.example client=1.2.3.4"), 403)

	// Matched: wrong passwords, unknown users, malformed names (that try
	// to name another client), a missing password, a locked account,
	// malformed Basic headers and the throttled refusal past the budget.
	for range 2 {
		want("wrong password", login(clientFrom("127.0.0.2"), "demo", "wrong"), 401)
	}
	c3 := clientFrom("127.0.0.3")
	want("username with a client", login(c3, "x client=1.2.3.4", "wrong"), 401)
	js, _ := http.NewRequest("POST", s.base+"/login", strings.NewReader(`{"username":"demo\" client=9.9.9.9","password":"x"}`))
	js.Header.Set("Content-Type", "application/json")
	want("JSON username with a client", status(t, c3, js), 401)
	want("unknown user", basicGet(c3, basic("nobody", "whatever")), 401)
	c7 := clientFrom("127.0.0.7")
	for range 3 { // with 127.0.0.2's two, the fifth locks demo
		want("wrong password", login(c7, "demo", "wrong"), 401)
	}
	want("locked", login(c7, "demo", pw), 401)
	want("no password", login(clientFrom("127.0.0.8"), "demo", ""), 400)
	c6 := clientFrom("127.0.0.6")
	for range 20 { // the default budget: no hash each
		want("malformed Basic", basicGet(c6, "Basic !!!"), 401)
	}
	for range 4 { // one line for the window, the others counted
		want("throttled", basicGet(c6, "Basic !!!"), 429)
	}
	c9 := clientFrom("127.0.0.9")
	for i := range 3 { // a token guesser: well-formed app tokens of no one
		want("unknown app token", basicGet(c9, "Bearer "+guessedToken(i)), 401)
	}

	// IPv6: another run of the example, on ::1.
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	addr6 := l.Addr().String()
	l.Close()
	p := runExample(t, "login", t.TempDir(), "-addr", addr6, "-demo-password", pw)
	p.waitHealthy(t, "http://"+addr6)
	for _, password := range []string{"wrong", "also wrong", pw} {
		req, _ := http.NewRequest("POST", "http://"+addr6+"/login", strings.NewReader(url.Values{"username": {"demo"}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		status(t, clientFrom("::1"), req)
	}

	logText := s.logText() + p.stderr.String()
	for _, line := range []string{"INFO authn: login_succeeded", "INFO authn: logout", "INFO authn: registered event=registered user=newbie",
		"WARN authn: lockout", "WARN authn: cross-origin request refused", "client=::1", "reason=throttled client=127.0.0.6",
		`reason="unknown app token" client=127.0.0.9`} {
		if !strings.Contains(logText, line) {
			t.Fatalf("the log has no %q line to test the filter with:\n%s", line, logText)
		}
	}
	logFile := filepath.Join(t.TempDir(), "minimost.log")
	if err := os.WriteFile(logFile, []byte(logText), 0o600); err != nil {
		t.Fatal(err)
	}
	filter, err := filepath.Abs("examples/fail2ban/filter.d/minimost.conf")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-o", "ip", logFile, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	got := map[string]int{}
	for ip := range strings.FieldsSeq(string(out)) {
		got[ip]++
	}
	wantHosts := map[string]int{"127.0.0.2": 2, "127.0.0.3": 3, "127.0.0.6": 21, "127.0.0.7": 4, "127.0.0.8": 1, "127.0.0.9": 3, "::1": 2}
	if !maps.Equal(got, wantHosts) {
		t.Fatalf("fail2ban-regex matched %v, want %v\nlog:\n%s", got, wantHosts, logText)
	}
}

// enrolTOTPUser registers username with alicePassword and turns TOTP on,
// at the real time: it returns the secret, whose current step is used.
func enrolTOTPUser(t *testing.T, a *authn.Authenticator, username string) string {
	t.Helper()
	ctx := context.Background()
	if err := a.Register(ctx, username, alicePassword); err != nil {
		t.Fatal(err)
	}
	e, err := a.TOTP().Enroll(ctx, username, alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	// Confirmed with the code of the step before, so that the current
	// step's code is free for a login.
	prev, err := totp.GenerateCode(e.Secret, time.Now().Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.TOTP().Confirm(ctx, username, prev); err != nil {
		t.Fatal(err)
	}
	return e.Secret
}

// totpCodeNow is the current code of a secret.
func totpCodeNow(t *testing.T, secret string) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// wrongCode is a code that is none of the accepted ones of secret now.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	accepted := map[string]bool{}
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
		c, err := totp.GenerateCode(secret, time.Now().Add(d))
		if err != nil {
			t.Fatal(err)
		}
		accepted[c] = true
	}
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%06d", i); !accepted[c] {
			return c
		}
	}
}

// postStatus posts body as JSON with c and returns the status.
func postStatus(t *testing.T, c *http.Client, url, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return status(t, c, req)
}

// guessedToken returns the i-th of a token guesser's app tokens: the
// shape of a real one ("mmt_" and 43 base64url characters), of no one.
func guessedToken(i int) string {
	return "mmt_" + base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%032d", i))
}

func status(t *testing.T, c *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestFail2banFilterHandlers: the filter reads the lines of slog's
// TextHandler and JSONHandler too, as the library writes them: the failed
// logins and the throttled refusal of one client, not another's success.
func TestFail2banFilterHandlers(t *testing.T) {
	t.Parallel()
	bin := fail2banRegex(t)
	filter, err := filepath.Abs("examples/fail2ban/filter.d/minimost.conf")
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]func(io.Writer) slog.Handler{
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	}
	for name, newHandler := range handlers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			a := testdb.SQLite(t).Open(t, authn.Config{Logger: slog.New(newHandler(logs)), HTTP: authn.HTTPConfig{
				InsecureCookies: true, Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 2, Interval: time.Hour}),
			}})
			if err := a.Register(context.Background(), "alice", alicePassword); err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.Handle("/", a.Routes())
			mux.Handle("/api/", a.BasicAuth(http.NotFoundHandler()))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			try := func(ip, pw string, code int) {
				t.Helper()
				req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"username": {"alice"}, "password": {pw}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if got := status(t, clientFrom(ip), req); got != code {
					t.Fatalf("login from %s: %d, want %d", ip, got, code)
				}
			}
			try("127.0.0.3", alicePassword, 303)
			try("127.0.0.2", "wrong", 401)
			try("127.0.0.2", "wrong again", 401)
			try("127.0.0.2", "a third", 429)
			bearer, _ := http.NewRequest("GET", srv.URL+"/api/", nil)
			bearer.Header.Set("Authorization", "Bearer "+guessedToken(0))
			if got := status(t, clientFrom("127.0.0.4"), bearer); got != 401 {
				t.Fatalf("a guessed token from 127.0.0.4: %d, want 401", got)
			}
			// The second step: bob has TOTP. 127.0.0.5 has his password
			// and sends a wrong code; 127.0.0.6 sends his password alone
			// to BasicAuth; 127.0.0.7, the right code (not matched).
			secret := enrolTOTPUser(t, a, "bob")
			c5 := clientFrom("127.0.0.5")
			c5.Jar, _ = cookiejar.New(nil)
			if got := postStatus(t, c5, srv.URL+"/login", `{"username":"bob","password":"`+alicePassword+`"}`); got != 200 {
				t.Fatalf("bob's password step: %d", got)
			}
			if got := postStatus(t, c5, srv.URL+"/login/verify", `{"code":"`+wrongCode(t, secret)+`"}`); got != 401 {
				t.Fatalf("a wrong code from 127.0.0.5: %d, want 401", got)
			}
			basicBob, _ := http.NewRequest("GET", srv.URL+"/api/", nil)
			basicBob.SetBasicAuth("bob", alicePassword)
			if got := status(t, clientFrom("127.0.0.6"), basicBob); got != 401 {
				t.Fatalf("bob's password alone from 127.0.0.6: %d, want 401", got)
			}
			c7 := clientFrom("127.0.0.7")
			c7.Jar, _ = cookiejar.New(nil)
			postStatus(t, c7, srv.URL+"/login", `{"username":"bob","password":"`+alicePassword+`"}`)
			if got := postStatus(t, c7, srv.URL+"/login/verify", `{"code":"`+totpCodeNow(t, secret)+`"}`); got != 200 {
				t.Fatalf("the right code from 127.0.0.7: %d, want 200", got)
			}
			logFile := filepath.Join(t.TempDir(), "minimost.log")
			if err := os.WriteFile(logFile, []byte(logs.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-o", "ip", logFile, filter).CombinedOutput()
			if err != nil {
				t.Fatalf("fail2ban-regex: %v\n%s", err, out)
			}
			if got := strings.Fields(string(out)); !slices.Equal(got, []string{"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6"}) {
				t.Fatalf("matched %q, want 127.0.0.2 three times, then 127.0.0.4, 127.0.0.5 and 127.0.0.6\nlog:\n%s", got, logs)
			}
		})
	}
}
