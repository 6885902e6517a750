package authn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// rememberJSON is a login body asking for a remembered session.
func rememberJSON(name, pw string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q,"remember":true}`, name, pw)
}

// wantBrowserSession checks that c has neither Max-Age nor Expires.
func wantBrowserSession(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	c := newCookie(t, resp)
	if c.MaxAge != 0 || !c.Expires.IsZero() || c.RawExpires != "" {
		t.Errorf("%s: cookie %v, want a browser-session cookie", what, resp.Header["Set-Cookie"])
	}
}

// wantKept checks that c lasts at least min and at most max.
func wantKept(t *testing.T, what string, resp *http.Response, least, most time.Duration) {
	t.Helper()
	c := newCookie(t, resp)
	if age := time.Duration(c.MaxAge) * time.Second; age < least || age > most || c.Expires.IsZero() {
		t.Errorf("%s: cookie %v, want a Max-Age between %v and %v, and Expires", what, resp.Header["Set-Cookie"], least, most)
	}
}

// TestRememberMeCookie: a login with remember (a JSON true, a ticked
// checkbox, "true" or "1", urlencoded or multipart) gets a cookie with a
// Max-Age of RememberFor (30 days by default) and Expires; every other
// login a browser-session cookie. A value that is no flag is refused as
// malformed. A change of password from a remembered session keeps its
// cookie lasting.
func TestRememberMeCookie(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		const month = 30 * 24 * time.Hour
		login := func(body string) *http.Response {
			t.Helper()
			resp, text := send(t, srv, "POST", "/login", body, nil)
			if resp.StatusCode != 200 && resp.StatusCode != 303 {
				t.Fatalf("login %s: %d %s", body, resp.StatusCode, text)
			}
			return resp
		}
		form := func(remember ...string) string {
			v := url.Values{"username": {"alice"}, "password": {goodPassword}}
			if len(remember) > 0 {
				v["remember"] = remember
			}
			return v.Encode()
		}
		resp := login(rememberJSON("alice", goodPassword))
		wantKept(t, "JSON remember", resp, 7*24*time.Hour, month)
		wantKept(t, "JSON remember", resp, month-time.Minute, month)
		if appStatus(t, srv, newCookie(t, resp)) != 200 {
			t.Fatal("the remembered session does not work")
		}
		for _, v := range []string{"on", "true", "1"} {
			wantKept(t, "form remember="+v, login(form(v)), month-time.Minute, month)
		}
		wantBrowserSession(t, "JSON", login(credentialsJSON("alice", goodPassword)))
		wantBrowserSession(t, "JSON remember false", login(`{"username":"alice","password":"`+goodPassword+`","remember":false}`))
		wantBrowserSession(t, "form", login(form()))
		for _, v := range []string{"off", "false", "0", ""} {
			wantBrowserSession(t, "form remember="+v, login(form(v)))
		}

		var mp bytes.Buffer
		w := multipart.NewWriter(&mp)
		for _, f := range [][2]string{{"username", "alice"}, {"password", goodPassword}, {"remember", "on"}} {
			w.WriteField(f[0], f[1])
		}
		w.Close()
		resp, _ = send(t, srv, "POST", "/login", mp.String(), nil, "Content-Type", w.FormDataContentType())
		wantKept(t, "multipart remember", resp, month-time.Minute, month)

		for _, body := range []string{
			`{"username":"alice","password":"` + goodPassword + `","remember":"true"}`,
			`{"username":"alice","password":"` + goodPassword + `","remember":1}`,
			`{"username":"alice","password":"` + goodPassword + `","remember":null}`,
			`{"username":"alice","password":"` + goodPassword + `","remember":true,"remember":true}`,
			`{"username":"alice","password":"` + goodPassword + `","remember":{}}`,
			`{"username":"alice","password":true}`,
			form("yes"), form("on", "on"), form("ON"),
		} {
			if resp, text := send(t, srv, "POST", "/login", body, nil); resp.StatusCode != 400 || len(resp.Cookies()) != 0 {
				t.Errorf("login %s: %d %s, want 400 and no cookie", body, resp.StatusCode, text)
			}
		}

		// A change of password from a remembered session: the new
		// cookie lasts as long as the session still does.
		c := newCookie(t, login(rememberJSON("alice", goodPassword)))
		resp, _ = send(t, srv, "POST", "/password", changeJSON(goodPassword, newPassword), []*http.Cookie{c})
		if resp.StatusCode != 204 {
			t.Fatalf("change from a remembered session: %d", resp.StatusCode)
		}
		wantKept(t, "rotated remembered session", resp, month-time.Minute, month)
	})
}

// regexpCheckbox finds the remember box of the built-in login form.
var regexpCheckbox = regexp.MustCompile(`<input name="remember" type="checkbox"[^>]*>`)

// TestRememberMeForm: the built-in login form offers the checkbox, keeps it
// ticked when the form is shown again, and offers none when remember-me is
// disabled (RememberFor < 0), which also ignores the field.
func TestRememberMeForm(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
	off, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, RememberFor: -1}})
	for _, x := range []*authn.Authenticator{a, off} {
		if err := x.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	srv, srvOff := liveServer(t, a), liveServer(t, off)
	box := regexpCheckbox
	if _, page := send(t, srv, "GET", "/login", "", nil); !box.MatchString(page) || strings.Contains(page, "checked") {
		t.Errorf("login form without an unticked remember box:\n%s", page)
	}
	_, page := send(t, srv, "POST", "/login", url.Values{"username": {"alice"}, "password": {"wrong"}, "remember": {"on"}}.Encode(), nil)
	if m := box.FindString(page); !strings.Contains(m, "checked") {
		t.Errorf("form shown again after a failure: box %q, want it ticked", m)
	}
	if _, page := send(t, srvOff, "GET", "/login", "", nil); box.MatchString(page) {
		t.Errorf("remember-me disabled, yet the form offers it:\n%s", page)
	}
	resp, _ := send(t, srvOff, "POST", "/login", rememberJSON("alice", goodPassword), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("login with remember, remember-me disabled: %d", resp.StatusCode)
	}
	wantBrowserSession(t, "remember-me disabled", resp)
}

// TestRememberMeLifetime: a remembered session outlives SessionLifetime
// while a normal one ends there, both kept in use; the idle timeout still
// ends a remembered one by default; DeleteExpiredSessions deletes each at
// its own end.
func TestRememberMeLifetime(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
			InsecureCookies: true, Throttle: bigThrottle(), SessionLifetime: 2 * time.Hour, SessionCleanupInterval: -1,
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		normal, kept := signIn(t, srv, credentialsJSON("alice", goodPassword)), signIn(t, srv, rememberJSON("alice", goodPassword))
		// Both in use every 20 minutes (the idle timeout is 30) for 5 hours.
		for elapsed := 20 * time.Minute; elapsed <= 5*time.Hour; elapsed += 20 * time.Minute {
			clk.Advance(20 * time.Minute)
			wantNormal := 200
			if elapsed >= 2*time.Hour {
				wantNormal = 401
			}
			if got := appStatus(t, srv, normal); got != wantNormal {
				t.Fatalf("normal session after %v: %d, want %d", elapsed, got, wantNormal)
			}
			if got := appStatus(t, srv, kept); got != 200 {
				t.Fatalf("remembered session after %v: %d, want 200", elapsed, got)
			}
		}
		n, err := a.DeleteExpiredSessions(context.Background())
		if err != nil || n != 1 || countSessions(t, db.Raw, "alice") != 1 {
			t.Fatalf("DeleteExpiredSessions after 5 hours: %d %v, want the normal session only", n, err)
		}
		// Remember me means it: no idle timeout shorter than the cookie's
		// life ends a remembered session by default; RememberFor does.
		clk.Advance(3 * 24 * time.Hour)
		if n, err := a.DeleteExpiredSessions(context.Background()); err != nil || n != 0 {
			t.Fatalf("DeleteExpiredSessions after 3 idle days: %d %v, want none (a remembered session has no idle timeout)", n, err)
		}
		if got := appStatus(t, srv, kept); got != 200 {
			t.Fatalf("remembered session idle for 3 days: %d, want 200 (no idle timeout by default)", got)
		}
		clk.Advance(30 * 24 * time.Hour)
		if got := appStatus(t, srv, kept); got != 401 {
			t.Fatalf("remembered session after 30 days: %d, want 401 (RememberFor)", got)
		}
		if n, err := a.DeleteExpiredSessions(context.Background()); err != nil || n != 1 {
			t.Fatalf("DeleteExpiredSessions of the remembered session past RememberFor: %d %v", n, err)
		}
	})
}

// TestRememberIdleTimeout: RememberIdleTimeout gives remembered sessions
// an idle timeout of their own (normal ones keep SessionIdleTimeout), or
// none when negative (as when 0), so that only RememberFor ends them.
func TestRememberIdleTimeout(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		open := func(idle time.Duration) *authn.Authenticator {
			return db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
				InsecureCookies: true, Throttle: bigThrottle(), SessionCleanupInterval: -1,
				RememberFor: 10 * 24 * time.Hour, RememberIdleTimeout: idle,
			}})
		}
		a, none := open(48*time.Hour), open(-1)
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv, srvNone := liveServer(t, a), liveServer(t, none)
		normal, kept := signIn(t, srv, credentialsJSON("alice", goodPassword)), signIn(t, srv, rememberJSON("alice", goodPassword))
		resp, _ := send(t, srvNone, "POST", "/login", rememberJSON("alice", goodPassword), nil)
		wantKept(t, "RememberFor 10 days", resp, 10*24*time.Hour-time.Minute, 10*24*time.Hour)
		forever := newCookie(t, resp)

		clk.Advance(24 * time.Hour)
		if appStatus(t, srv, normal) != 401 || appStatus(t, srv, kept) != 200 {
			t.Fatal("after a day idle: want the normal session ended and the remembered one (idle 48h) alive")
		}
		clk.Advance(49 * time.Hour)
		if got := appStatus(t, srv, kept); got != 401 {
			t.Fatalf("remembered session idle for 49 hours: %d, want 401", got)
		}
		if got := appStatus(t, srvNone, forever); got != 200 {
			t.Fatalf("remembered session without idle timeout after 73 hours: %d, want 200", got)
		}
		// Under the settings of none, only the normal session has ended.
		if n, err := none.DeleteExpiredSessions(context.Background()); err != nil || n != 1 || countRows(t, db.Raw, "sessions", "remembered") != 2 {
			t.Fatalf("DeleteExpiredSessions with no remembered idle timeout: %d %v, want the normal session only", n, err)
		}
		clk.Advance(7 * 24 * time.Hour)
		if got := appStatus(t, srvNone, forever); got != 401 {
			t.Fatalf("remembered session after 10 days: %d, want 401 (RememberFor)", got)
		}
	})
}

// oldSession is model.Session as the first release created it, without
// the columns added since.
type oldSession struct {
	bun.BaseModel `bun:"table:sessions"`

	TokenHash string  `bun:"token_hash,pk,type:text"`
	Username  string  `bun:"username,notnull,type:text"`
	CreatedAt float64 `bun:"created_at,notnull"`
	LastSeen  float64 `bun:"last_seen,notnull"`
	ExpiresAt float64 `bun:"expires_at,notnull"`
}

// TestSessionsTableUpgrade: a database made by the previous schema opens,
// gains the remembered column, and keeps its sessions working (as normal
// ones); remembered sessions then work; opening again changes nothing.
func TestSessionsTableUpgrade(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		for _, m := range []any{(*model.User)(nil), (*oldSession)(nil)} {
			if _, err := db.Raw.NewCreateTable().Model(m).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		stored, err := fastHasher.Hash(goodPassword)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Raw.NewInsert().Model(&model.User{Username: "alice", PasswordHash: stored}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 32)
		rand.Read(b)
		token := base64.RawURLEncoding.EncodeToString(b)
		sum := sha256.Sum256([]byte(token))
		now := float64(time.Now().UnixMicro()) / 1e6
		old := oldSession{TokenHash: hex.EncodeToString(sum[:]), Username: "alice", CreatedAt: now, LastSeen: now, ExpiresAt: now + 3600}
		if _, err := db.Raw.NewInsert().Model(&old).Exec(ctx); err != nil {
			t.Fatal(err)
		}

		for range 2 {
			a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
			srv := liveServer(t, a)
			if got := appStatus(t, srv, &http.Cookie{Name: "session", Value: token}); got != 200 {
				t.Fatalf("the session of the old table after Open: %d, want 200", got)
			}
			resp, _ := send(t, srv, "POST", "/login", rememberJSON("alice", goodPassword), nil)
			if resp.StatusCode != 200 || appStatus(t, srv, newCookie(t, resp)) != 200 {
				t.Fatalf("remembered login on the upgraded table: %d", resp.StatusCode)
			}
			a.Close()
		}
		if n := countRows(t, db.Raw, "sessions", "token_hash = ? AND NOT remembered", old.TokenHash); n != 1 {
			t.Fatalf("the old session: %d rows not remembered, want 1", n)
		}
		if n := countRows(t, db.Raw, "sessions", "remembered"); n != 2 {
			t.Fatalf("%d remembered sessions, want 2", n)
		}
	})
}
