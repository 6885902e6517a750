package authn_test

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// liveServer serves a's Routes at the root and, behind RequireSession,
// whoAmI at /app/, over real HTTP; it closes with the test.
func liveServer(t *testing.T, a *authn.Authenticator) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/app/", a.RequireSession(whoAmI()))
	mux.Handle("/", a.Routes())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// send makes a request to srv: a JSON body when body starts with "{", a
// form when it is a url.Values' encoding, none when it is "". It follows
// no redirect, and returns the response with its body read.
func send(t *testing.T, srv *httptest.Server, method, path, body string, cookies []*http.Cookie, header ...string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(body, "{"):
		req.Header.Set("Content-Type", "application/json")
	case body != "":
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for _, c := range cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// signIn logs name in over srv with the JSON body and returns the session
// cookie as set.
func signIn(t *testing.T, srv *httptest.Server, body string) *http.Cookie {
	t.Helper()
	resp, text := send(t, srv, "POST", "/login", body, nil)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("login %s: %d %s %v", body, resp.StatusCode, text, resp.Cookies())
	}
	return resp.Cookies()[0]
}

// credentialsJSON is a login body.
func credentialsJSON(name, pw string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q}`, name, pw)
}

// changeJSON is a password-change body.
func changeJSON(current, next string) string {
	return fmt.Sprintf(`{"current_password":%q,"new_password":%q}`, current, next)
}

// appStatus is the status of a JSON GET of /app/ with the cookie.
func appStatus(t *testing.T, srv *httptest.Server, c *http.Cookie) int {
	t.Helper()
	resp, _ := send(t, srv, "GET", "/app/", "", []*http.Cookie{c}, "Accept", "application/json")
	return resp.StatusCode
}

// newCookie returns the session cookie a response set, or fails.
func newCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Value != "" {
			return c
		}
	}
	t.Fatalf("no session cookie set by the %d: %v", resp.StatusCode, resp.Header["Set-Cookie"])
	return nil
}

const newPassword = "another fine passphrase 77"

// bigThrottle is a budget that the tests that do not test it never reach.
func bigThrottle() *middleware.Throttle {
	return middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1000, Interval: time.Millisecond})
}

// TestChangePasswordHTTP: a change from a session keeps that session under
// a new token (the old cookie is refused, the new one works, no Max-Age
// for a session that was not remembered), ends the user's other session
// and no one else's, stores the new password and reports it once.
func TestChangePasswordHTTP(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var events eventLog
		a := db.Open(t, authn.Config{OnEvent: events.add, HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		ctx := context.Background()
		for _, name := range []string{"alice", "bob"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		srv := liveServer(t, a)
		here, elsewhere := signIn(t, srv, credentialsJSON("alice", goodPassword)), signIn(t, srv, credentialsJSON("alice", goodPassword))
		bob := signIn(t, srv, credentialsJSON("bob", goodPassword))

		resp, body := send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{here})
		if resp.StatusCode != http.StatusNoContent || body != "" {
			t.Fatalf("change: %d %q, want 204", resp.StatusCode, body)
		}
		rotated := newCookie(t, resp)
		if rotated.Value == here.Value || rotated.Name != here.Name || !rotated.HttpOnly || rotated.MaxAge != 0 || !rotated.Expires.IsZero() {
			t.Fatalf("cookie after the change: %+v (before: %+v); want a new token, browser-session", rotated, here)
		}
		for name, want := range map[*http.Cookie]int{here: 401, elsewhere: 401, rotated: 200, bob: 200} {
			if got := appStatus(t, srv, name); got != want {
				t.Errorf("cookie %s…: %d, want %d", name.Value[:6], got, want)
			}
		}
		if n := countSessions(t, db.Raw, "alice"); n != 1 {
			t.Errorf("%d sessions of alice left, want 1", n)
		}
		if err := a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Errorf("old password after the change: %v", err)
		}
		if err := a.Authenticate(ctx, "alice", newPassword); err != nil {
			t.Errorf("new password after the change: %v", err)
		}
		if n := strings.Count(events.String(), "password_changed alice"); n != 1 {
			t.Errorf("%d password_changed events, want 1:\n%s", n, events.String())
		}
		// The kept session changes again, with its new cookie.
		resp, _ = send(t, srv, "POST", "/password", changeJSON(newPassword, goodPassword), []*http.Cookie{rotated})
		if resp.StatusCode != http.StatusNoContent || appStatus(t, srv, newCookie(t, resp)) != 200 {
			t.Fatalf("second change from the rotated session: %d", resp.StatusCode)
		}
	})
}

// TestChangePasswordForm: the form is the signed-in user's, with the
// policy's limits and the autocomplete hints; a form POST answers a page,
// sets the new cookie, and a wrong password shows the form again.
func TestChangePasswordForm(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{
		PasswordPolicy: authn.PasswordPolicy{MinLength: 20, MaxLength: 60},
		HTTP:           authn.HTTPConfig{InsecureCookies: true, Prefix: "/auth", Throttle: bigThrottle()},
	})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/auth/", a.Routes())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	resp, _ := send(t, srv, "POST", "/auth/login", credentialsJSON("alice", goodPassword), nil)
	c := newCookie(t, resp)

	resp, page := send(t, srv, "GET", "/auth/password", "", []*http.Cookie{c})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != authn.DefaultContentSecurityPolicy {
		t.Fatalf("GET: %d CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, want := range []string{
		`action="/auth/password"`, `name="current_password" type="password" autocomplete="current-password"`,
		`name="new_password" type="password" autocomplete="new-password" minlength="20" maxlength="60"`,
		`value="alice" autocomplete="username"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("form lacks %s:\n%s", want, page)
		}
	}
	form := func(current, next string) string {
		return url.Values{"current_password": {current}, "new_password": {next}}.Encode()
	}
	resp, page = send(t, srv, "POST", "/auth/password", form("wrong password here!", newPassword), []*http.Cookie{c})
	if resp.StatusCode != 401 || !strings.Contains(page, "The current password is not right.") || !strings.Contains(page, `name="current_password"`) {
		t.Fatalf("wrong current password: %d\n%s", resp.StatusCode, page)
	}
	resp, page = send(t, srv, "POST", "/auth/password", form(goodPassword, "too short"), []*http.Cookie{c})
	if resp.StatusCode != 400 || !strings.Contains(page, "at least 20 characters") {
		t.Fatalf("short new password: %d\n%s", resp.StatusCode, page)
	}
	resp, page = send(t, srv, "POST", "/auth/password", form(goodPassword, newPassword), []*http.Cookie{c})
	if resp.StatusCode != 200 || !strings.Contains(page, "Password changed") {
		t.Fatalf("change: %d\n%s", resp.StatusCode, page)
	}
	if rotated := newCookie(t, resp); rotated.Value == c.Value {
		t.Fatal("the form's change kept the old token")
	}
	// Without a session: the browser goes to the login form, an API
	// client gets 401, and a POST changes nothing.
	resp, _ = send(t, srv, "GET", "/auth/password", "", nil)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/auth/login?next=%2Fauth%2Fpassword" {
		t.Errorf("GET without a session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = send(t, srv, "POST", "/auth/password", changeJSON(newPassword, goodPassword), []*http.Cookie{c})
	if resp.StatusCode != 401 {
		t.Errorf("POST with the old cookie: %d, want 401", resp.StatusCode)
	}
	if err := a.Authenticate(context.Background(), "alice", newPassword); err != nil {
		t.Errorf("the refused POST changed the password: %v", err)
	}
}

// TestChangePasswordLockout: a wrong current password is a failed login:
// it counts toward the lockout with the failed logins of the account (one
// at /login, two at /password lock it at a threshold of 3), each gets the
// generic answer, and the right password is then refused with the same
// answer. The session stays (failures do not end sessions), so the refusal
// is the change's own.
func TestChangePasswordLockout(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var events eventLog
		a := db.Open(t, authn.Config{LockoutThreshold: 3, OnEvent: events.add, HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		c := signIn(t, srv, credentialsJSON("alice", goodPassword))
		stored := readUser(t, db.Raw, "alice").Hash
		if resp, _ := send(t, srv, "POST", "/login", credentialsJSON("alice", "wrong password 1"), nil); resp.StatusCode != 401 {
			t.Fatalf("failed login: %d", resp.StatusCode)
		}
		var answers []string
		for i := range 2 {
			resp, body := send(t, srv, "POST", "/password", changeJSON(fmt.Sprintf("wrong password %d", i+2), newPassword), []*http.Cookie{c})
			if resp.StatusCode != 401 {
				t.Fatalf("wrong current password %d: %d %s", i+2, resp.StatusCode, body)
			}
			answers = append(answers, body)
		}
		acc, err := a.Account(ctx, "alice")
		if err != nil || acc.LockedUntil.IsZero() {
			t.Fatalf("after 3 failures: %+v %v, want locked", acc, err)
		}
		resp, body := send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{c})
		if resp.StatusCode != 401 || body != answers[0] || answers[0] != answers[1] {
			t.Fatalf("right password on the locked account: %d %q; the wrong ones got %q", resp.StatusCode, body, answers)
		}
		if !strings.Contains(body, `"code":"invalid_credentials"`) {
			t.Errorf("refusal body %s lacks the code", body)
		}
		if got := readUser(t, db.Raw, "alice").Hash; got != stored {
			t.Fatal("a locked account's password changed")
		}
		if got := appStatus(t, srv, c); got != 200 {
			t.Fatalf("session after failures: %d, want 200 (a lockout by failures ends no session)", got)
		}
		log := events.String()
		for _, want := range []string{"login_failed alice wrong password", "lockout alice", "login_failed alice locked"} {
			if !strings.Contains(log, want) {
				t.Errorf("events lack %q:\n%s", want, log)
			}
		}
		if strings.Contains(log, "password_changed") {
			t.Errorf("a refused change was reported:\n%s", log)
		}
		// Once the lock is lifted, the right password changes it; the
		// Go API refuses a locked account too.
		if err := a.Unlock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if resp, _ := send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{c}); resp.StatusCode != 204 {
			t.Fatalf("after Unlock: %d", resp.StatusCode)
		}
		if err := a.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := a.ChangePassword(ctx, "alice", newPassword, goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("ChangePassword of a locked account: %v, want ErrLocked", err)
		}
	})
}

// TestChangePasswordPolicy: a new password that breaks the policy gets 400
// with the rule's code, before any hash or attempt is spent; missing or
// malformed fields get theirs.
func TestChangePasswordPolicy(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h, PasswordPolicy: authn.PasswordPolicy{MinLength: 16, MaxLength: 64},
			HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		ctx := context.Background()
		if err := a.Register(ctx, "carol_the_manager", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		c := signIn(t, srv, credentialsJSON("carol_the_manager", goodPassword))
		verifies, hashes := h.TotalVerifies(), h.Hashes()
		for _, tc := range []struct {
			body, code string
			status     int
		}{
			{changeJSON(goodPassword, "fifteen chars!!"), authn.CodePasswordTooShort, 400},
			{changeJSON(goodPassword, strings.Repeat("Lq9 ", 17)), authn.CodePasswordTooLong, 400},
			{changeJSON(goodPassword, "CAROL_the_manager"), authn.CodePasswordSameAsUsername, 400},
			{changeJSON(goodPassword, "password12345678"), authn.CodePasswordCommon, 400},
			{changeJSON(goodPassword, "abcdabcdabcdabcd"), authn.CodePasswordRepeated, 400},
			{changeJSON(goodPassword, "a long enough\npassphrase"), authn.CodePasswordControlCharacter, 400},
			{changeJSON("", newPassword), authn.CodeCurrentPasswordRequired, 400},
			{changeJSON(goodPassword, ""), authn.CodePasswordRequired, 400},
			{`{"current_password":"x","new_password":"y","username":"carol_the_manager"}`, authn.CodeMalformedBody, 400},
			{`{"current_password":"x","current_password":"y","new_password":"z"}`, authn.CodeMalformedBody, 400},
			{`{"current_password":"x","new_password":true}`, authn.CodeMalformedBody, 400},
			{`{"password":"x"}`, authn.CodeMalformedBody, 400},
			{`{"current_password":"` + strings.Repeat("x", 9000) + `"}`, authn.CodeBodyTooLarge, 413},
		} {
			resp, body := send(t, srv, "POST", "/password", tc.body, []*http.Cookie{c})
			if resp.StatusCode != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
				t.Errorf("%.60s: %d %s, want %d %s", tc.body, resp.StatusCode, body, tc.status, tc.code)
			}
		}
		if h.TotalVerifies() != verifies || h.Hashes() != hashes {
			t.Errorf("refused bodies cost %d verifications and %d hashes, want none", h.TotalVerifies()-verifies, h.Hashes()-hashes)
		}
		if u := readUser(t, db.Raw, "carol_the_manager"); u.Failed.Int64 != 0 {
			t.Errorf("refused bodies counted %d failures", u.Failed.Int64)
		}
		if err := a.ChangePassword(ctx, "carol_the_manager", goodPassword, "short"); !errors.Is(err, authn.ErrInvalidPassword) {
			t.Errorf("ChangePassword with a short password: %v", err)
		}
		var rule *authn.RuleError
		if err := a.ChangePassword(ctx, "carol_the_manager", "wrong", "short"); !errors.As(err, &rule) || rule.Code != authn.CodePasswordTooShort {
			t.Errorf("ChangePassword with a short password and a wrong current one: %v, want the rule first", err)
		}
	})
}

// TestChangePasswordGoAPI: ChangePassword (no session to keep) ends every
// session of the user; unknown users and wrong passwords are
// ErrInvalidCredentials.
func TestChangePasswordGoAPI(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		c1, c2 := signIn(t, srv, credentialsJSON("alice", goodPassword)), signIn(t, srv, credentialsJSON("alice", goodPassword))
		if err := a.ChangePassword(ctx, "alice", "not the password", newPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("wrong current password: %v", err)
		}
		if err := a.ChangePassword(ctx, "nobody", goodPassword, newPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("unknown user: %v", err)
		}
		if err := a.ChangePassword(ctx, "alice", goodPassword, newPassword); err != nil {
			t.Fatal(err)
		}
		if appStatus(t, srv, c1) != 401 || appStatus(t, srv, c2) != 401 || countSessions(t, db.Raw, "alice") != 0 {
			t.Fatal("ChangePassword left a session")
		}
		if err := a.Authenticate(ctx, "alice", newPassword); err != nil {
			t.Fatal(err)
		}
	})
}

// hookHasher runs onHash once, before the first Hash after it is set: in a
// change of password, after the current one was verified and before the
// new hash is stored.
type hookHasher struct {
	password.Hasher
	mu     sync.Mutex
	onHash func()
}

func (h *hookHasher) Hash(pw string) (string, error) {
	h.mu.Lock()
	f := h.onHash
	h.onHash = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Hasher.Hash(pw)
}

// TestChangePasswordLosesToAdmin: a SetPassword, Lock or Delete (from
// another process) that lands between the check of the current password
// and the store wins: the change fails as invalid or locked and writes
// nothing.
func TestChangePasswordLosesToAdmin(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := &hookHasher{Hasher: fastHasher}
		a := db.Open(t, authn.Config{Hasher: h})
		admin := db.Open(t, authn.Config{})
		ctx := context.Background()
		for _, tc := range []struct {
			name   string
			change func(name string) error
			want   error
		}{
			{"setpassword", func(name string) error { return admin.SetPassword(ctx, name, "the admin's passphrase 1") }, authn.ErrInvalidCredentials},
			{"lock", func(name string) error { return admin.Lock(ctx, name, time.Hour) }, authn.ErrLocked},
			{"delete", func(name string) error { return admin.Delete(ctx, name) }, authn.ErrInvalidCredentials},
		} {
			if err := a.Register(ctx, tc.name, goodPassword); err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			h.onHash = func() {
				if err := tc.change(tc.name); err != nil {
					t.Error(err)
				}
			}
			h.mu.Unlock()
			if err := a.ChangePassword(ctx, tc.name, goodPassword, newPassword); !errors.Is(err, tc.want) {
				t.Errorf("%s during the change: %v, want %v", tc.name, err, tc.want)
			}
			if err := a.Authenticate(ctx, tc.name, newPassword); err == nil {
				t.Errorf("%s during the change: the change's password works", tc.name)
			}
		}
		if err := a.Authenticate(ctx, "setpassword", "the admin's passphrase 1"); err != nil {
			t.Errorf("the admin's password: %v", err)
		}
	})
}

// TestChangePasswordRace: of several changes with the right current
// password at once, exactly one wins. Over HTTP, each from its own session
// of the user: the winner's password is stored and its session lives on;
// every other gets 401, its password never works, its session is gone.
// Through the Go API, where no session decides: one nil, the others
// ErrInvalidCredentials. The new passwords are hashed only once every
// change has verified the current one (barrierHasher), so that all of them
// then store at once.
func TestChangePasswordRace(t *testing.T) {
	t.Parallel()
	const n = 6
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := &barrierHasher{Hasher: fastHasher}
		a := db.Open(t, authn.Config{Hasher: h, HashConcurrency: 2 * n, HashSlotsPerClient: -1, LockoutThreshold: 100,
			HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		cookies := make([]*http.Cookie, n)
		for i := range cookies {
			cookies[i] = signIn(t, srv, credentialsJSON("alice", goodPassword))
		}
		pw := func(round, i int) string { return fmt.Sprintf("%s round %d no. %d", newPassword, round, i) }
		codes := make([]int, n)
		kept := make([]*http.Cookie, n)
		h.wait(n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, _ := send(t, srv, "POST", "/password", changeJSON(goodPassword, pw(1, i)), []*http.Cookie{cookies[i]})
				codes[i] = resp.StatusCode
				if resp.StatusCode == 204 {
					kept[i] = newCookie(t, resp)
				}
			}()
		}
		wg.Wait()
		winner := -1
		for i, code := range codes {
			switch {
			case code == 204 && winner < 0:
				winner = i
			case code == 204:
				t.Fatalf("two changes won: %v", codes)
			case code != 401:
				t.Fatalf("a losing change got %d: %v", code, codes)
			}
		}
		if winner < 0 {
			t.Fatalf("no change won: %v", codes)
		}
		for i := range n {
			err := a.Authenticate(ctx, "alice", pw(1, i))
			if (err == nil) != (i == winner) {
				t.Errorf("password of change %d (winner %d): %v", i, winner, err)
			}
			if got := appStatus(t, srv, cookies[i]); got != 401 {
				t.Errorf("old cookie %d: %d, want 401", i, got)
			}
		}
		if got := appStatus(t, srv, kept[winner]); got != 200 {
			t.Errorf("the winner's new cookie: %d", got)
		}
		if got := countSessions(t, db.Raw, "alice"); got != 1 {
			t.Errorf("%d sessions left, want the winner's", got)
		}

		current := pw(1, winner)
		var wins atomic.Int32
		h.wait(n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := a.ChangePassword(ctx, "alice", current, pw(2, i)); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, authn.ErrInvalidCredentials):
					t.Errorf("a losing ChangePassword: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d of %d ChangePassword calls won, want 1", wins.Load(), n)
		}
	})
}

// TestChangePasswordRefusals: a cross-origin POST is refused (403) before
// it reads the session; a client over its failure budget gets 429, its
// right password too. Neither changes the password.
func TestChangePasswordRefusals(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h, HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1, Interval: time.Hour}),
		}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		c := signIn(t, srv, credentialsJSON("alice", goodPassword)) // a success gives its token back
		verifies := h.TotalVerifies()
		for _, header := range [][]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}} {
			resp, body := send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{c}, header...)
			if resp.StatusCode != 403 {
				t.Errorf("cross-origin POST (%s): %d %s, want 403", header[0], resp.StatusCode, body)
			}
		}
		if h.TotalVerifies() != verifies {
			t.Error("a cross-origin POST checked a password")
		}
		if resp, _ := send(t, srv, "POST", "/password", changeJSON("wrong password", newPassword), []*http.Cookie{c}); resp.StatusCode != 401 {
			t.Fatalf("wrong current password: %d", resp.StatusCode)
		}
		resp, body := send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{c})
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, authn.CodeThrottled) {
			t.Fatalf("over budget: %d Retry-After %q %s, want 429", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if err := a.Authenticate(ctx, "alice", goodPassword); err != nil {
			t.Fatalf("a refused change changed the password: %v", err)
		}
	})
}

// TestPasswordTemplate: HTTPConfig.PasswordTemplate replaces the built-in
// form, executed with the FormData of the signed-in user, and is sent with
// the same-origin policy of custom templates.
func TestPasswordTemplate(t *testing.T) {
	t.Parallel()
	tmpl := template.Must(template.New("mine").Parse(`user={{.Username}} min={{.MinLength}} code={{.ErrorCode}} done={{.Done}}`))
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, PasswordTemplate: tmpl, Throttle: bigThrottle()}})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	srv := liveServer(t, a)
	c := signIn(t, srv, credentialsJSON("alice", goodPassword))
	resp, page := send(t, srv, "GET", "/password", "", []*http.Cookie{c})
	if page != "user=alice min=15 code= done=false" || resp.Header.Get("Content-Security-Policy") != authn.CustomContentSecurityPolicy {
		t.Fatalf("custom template: %q, CSP %q", page, resp.Header.Get("Content-Security-Policy"))
	}
	_, page = send(t, srv, "POST", "/password", url.Values{"current_password": {goodPassword}, "new_password": {"short"}}.Encode(), []*http.Cookie{c})
	if page != "user=alice min=15 code=password_too_short done=false" {
		t.Fatalf("custom template after a refusal: %q", page)
	}
	_, page = send(t, srv, "POST", "/password", url.Values{"current_password": {goodPassword}, "new_password": {newPassword}}.Encode(), []*http.Cookie{c})
	if page != "user=alice min=15 code= done=true" {
		t.Fatalf("custom template after the change: %q", page)
	}
}

// TestChangePasswordSignedOutMeanwhile: a session that ends (a logout in
// another tab) after the current password was checked and before the
// change is stored makes the change fail as RequireSession would (401),
// and nothing is changed: the session is the change's authority.
func TestChangePasswordSignedOutMeanwhile(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := &hookHasher{Hasher: fastHasher}
		a := db.Open(t, authn.Config{Hasher: h, HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		c := signIn(t, srv, credentialsJSON("alice", goodPassword))
		h.mu.Lock()
		h.onHash = func() {
			if resp, _ := send(t, srv, "POST", "/logout", "", []*http.Cookie{c}, "Accept", "application/json"); resp.StatusCode != 204 {
				t.Errorf("logout: %d", resp.StatusCode)
			}
		}
		h.mu.Unlock()
		resp, body := send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{c})
		if resp.StatusCode != 401 || !strings.Contains(body, "authentication required") {
			t.Fatalf("change after the logout: %d %s, want 401", resp.StatusCode, body)
		}
		if err := a.Authenticate(context.Background(), "alice", goodPassword); err != nil {
			t.Fatalf("the password changed without its session: %v", err)
		}
	})
}
