package authn_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// tokenSite serves a.BasicAuth(whoIsThere) over real HTTP at /api/.
type tokenSite struct {
	a   *authn.Authenticator
	url string
}

// newTokenSite opens an Authenticator on db with cfg (lockout threshold 3
// unless set; a test clock should be in cfg.Now) and serves it; alice is
// registered with goodPassword.
func newTokenSite(t *testing.T, db *testdb.DB, cfg authn.Config) *tokenSite {
	t.Helper()
	if cfg.LockoutThreshold == 0 {
		cfg.LockoutThreshold = 3
	}
	return serveTokenSite(t, db.Open(t, cfg))
}

// serveTokenSite is newTokenSite over an Authenticator the caller opened.
func serveTokenSite(t *testing.T, a *authn.Authenticator) *tokenSite {
	t.Helper()
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := 0
	h := a.BasicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		whoIsThere(&runs).ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &tokenSite{a: a, url: srv.URL + "/api/"}
}

// get sends GET /api/ from c with the Authorization header auth.
func (s *tokenSite) get(t *testing.T, c *http.Client, auth string) answer {
	t.Helper()
	return call(t, c, "GET", s.url, "", "", "Authorization", auth)
}

func bearer(token string) string { return "Bearer " + token }

// newToken creates a token of username called name, or fails the test.
func newToken(t *testing.T, a *authn.Authenticator, username, name string) string {
	t.Helper()
	token, err := a.CreateToken(context.Background(), username, name)
	if err != nil {
		t.Fatalf("CreateToken(%s, %s): %v", username, name, err)
	}
	return token
}

// wantUser fails unless got let alice (or who) through.
func wantUser(t *testing.T, what string, got answer, who string) {
	t.Helper()
	if got.code != 200 || got.body != "user="+who {
		t.Fatalf("%s: %d %q, want 200 user=%s", what, got.code, got.body, who)
	}
}

// sameRefusal fails unless got is exactly the answer want was: a 401 with
// the same body and headers (Date aside).
func sameRefusal(t *testing.T, what string, got, want answer) {
	t.Helper()
	if got.code != 401 || want.code != 401 || got.body != want.body {
		t.Fatalf("%s: %d %q, want 401 %q", what, got.code, got.body, want.body)
	}
	g, w := got.header.Clone(), want.header.Clone()
	g.Del("Date")
	w.Del("Date")
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("%s: headers %v, want %v", what, g, w)
	}
}

// TestTokenBasicAndBearer: over real HTTP, a token works as alice's
// password and alone as a Bearer token (the scheme in any case), names
// alice in the context, and works for no other user; it is 47 characters
// with the mmt_ prefix, different each time, and the database holds only
// its SHA-256.
func TestTokenBasicAndBearer(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newTokenSite(t, db, authn.Config{})
		ctx := context.Background()
		if err := s.a.Register(ctx, "bob", goodPassword+" bob"); err != nil {
			t.Fatal(err)
		}
		token := newToken(t, s.a, "alice", "ci")
		other := newToken(t, s.a, "alice", "laptop")
		if !strings.HasPrefix(token, "mmt_") || len(token) != 47 || token == other {
			t.Fatalf("tokens %q, %q", token, other)
		}
		c := clientFrom("127.0.0.2")
		wantUser(t, "user:token", s.get(t, c, basicAuthHeader("alice", token)), "alice")
		wantUser(t, "Bearer", s.get(t, c, bearer(token)), "alice")
		wantUser(t, "bearer", s.get(t, c, "bearer  "+other), "alice")
		if got := s.get(t, c, basicAuthHeader("bob", token)); got.code != 401 {
			t.Fatalf("alice's token as bob's: %d", got.code)
		}
		if got := s.a.Stats().TokenAccepted; got != 3 {
			t.Fatalf("TokenAccepted = %d, want 3", got)
		}
		var hashes []string
		if err := db.Raw.NewSelect().Table("tokens").Column("token_hash").OrderExpr("name").Scan(ctx, &hashes); err != nil {
			t.Fatal(err)
		}
		if len(hashes) != 2 || hashes[0] != sha256Hex(token) {
			t.Fatalf("stored hashes %q", hashes)
		}
		var n int
		if err := db.Raw.NewSelect().Table("tokens").ColumnExpr("count(*)").
			Where("token_hash = ? OR name = ? OR username = ?", token, token, token).Scan(ctx, &n); err != nil || n != 0 {
			t.Fatalf("the token itself is stored: %d %v", n, err)
		}
	})
}

// TestTokenStopsAtOnce: a new password leaves tokens working; RevokeToken,
// an administrator's Lock and Delete each refuse the token on the very next
// request, in both forms, on an Authenticator other than the one that made
// the change (another process); Unlock lets it work again, and a new user
// of a deleted name does not inherit the old user's tokens.
func TestTokenStopsAtOnce(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newTokenSite(t, db, authn.Config{})
		admin := db.Open(t, authn.Config{}) // authctl, say
		ctx := context.Background()
		c := clientFrom("127.0.0.2")
		refused := func(what, token string) {
			t.Helper()
			for _, auth := range []string{basicAuthHeader("alice", token), bearer(token)} {
				if got := s.get(t, c, auth); got.code != 401 {
					t.Fatalf("%s: %d %q, want 401", what, got.code, got.body)
				}
			}
		}
		works := func(what, token string) {
			t.Helper()
			wantUser(t, what, s.get(t, c, basicAuthHeader("alice", token)), "alice")
			wantUser(t, what+" (Bearer)", s.get(t, c, bearer(token)), "alice")
		}

		revoked, kept := newToken(t, s.a, "alice", "revoked"), newToken(t, s.a, "alice", "kept")
		if err := admin.SetPassword(ctx, "alice", goodPassword+" new"); err != nil {
			t.Fatal(err)
		}
		works("after a new password", revoked)
		if err := admin.RevokeToken(ctx, "alice", "revoked"); err != nil {
			t.Fatal(err)
		}
		refused("revoked", revoked)
		works("the other token", kept)

		if err := admin.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		refused("locked by Lock", kept)
		if err := admin.Unlock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		works("after Unlock", kept)

		if err := admin.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		refused("user deleted", kept)
		var n int
		if err := db.Raw.NewSelect().Table("tokens").ColumnExpr("count(*)").Scan(ctx, &n); err != nil || n != 0 {
			t.Fatalf("tokens left after Delete: %d %v", n, err)
		}
		if err := admin.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		refused("old token, new alice", kept)
		if list, err := admin.Tokens(ctx, "alice"); err != nil || len(list) != 0 {
			t.Fatalf("new alice's tokens: %v %v", list, err)
		}
	})
}

// TestTokenDuringFailureLockout: an attacker's wrong passwords lock alice
// out (her right password is refused), but her token keeps working in
// both forms; an administrator's Lock then stops it until it expires.
func TestTokenDuringFailureLockout(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		s := newTokenSite(t, db, authn.Config{Now: clk.Now})
		token := newToken(t, s.a, "alice", "ci")
		attacker, ci := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
		for i := 0; i < 3; i++ {
			if got := s.get(t, attacker, basicAuthHeader("alice", fmt.Sprintf("guess %d", i))); got.code != 401 {
				t.Fatalf("guess %d: %d", i, got.code)
			}
		}
		if got := s.get(t, ci, basicAuthHeader("alice", goodPassword)); got.code != 401 {
			t.Fatalf("right password during the lockout: %d, want 401", got.code)
		}
		if acc, err := s.a.Account(context.Background(), "alice"); err != nil || acc.LockedUntil.IsZero() {
			t.Fatalf("alice not locked out: %+v %v", acc, err)
		}
		wantUser(t, "user:token during the lockout", s.get(t, ci, basicAuthHeader("alice", token)), "alice")
		wantUser(t, "Bearer during the lockout", s.get(t, ci, bearer(token)), "alice")

		clk.Advance(time.Hour) // the lockout ends
		if err := s.a.Lock(context.Background(), "alice", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if got := s.get(t, ci, bearer(token)); got.code != 401 {
			t.Fatalf("Bearer after Lock: %d, want 401", got.code)
		}
		if got := s.get(t, ci, basicAuthHeader("alice", token)); got.code != 401 {
			t.Fatalf("user:token after Lock: %d, want 401", got.code)
		}
		clk.Advance(11 * time.Minute) // Lock's lock ends
		wantUser(t, "after the Lock ended", s.get(t, ci, bearer(token)), "alice")

		// A new lockout by failures, after Lock's record: still not the
		// administrator's lock.
		for i := 0; i < 3; i++ {
			s.get(t, clientFrom("127.0.0.4"), basicAuthHeader("alice", fmt.Sprintf("again %d", i)))
		}
		if got := readUser(t, db.Raw, "alice"); !got.Until.Valid {
			t.Fatal("alice not locked out again")
		}
		wantUser(t, "during the second lockout", s.get(t, ci, basicAuthHeader("alice", token)), "alice")
	})
}

// TestWrongTokenIsAFailure: a wrong token, as alice's password or as a
// Bearer token, gets exactly the answer of a wrong password; as alice's
// password it counts toward her lockout, and every kind spends the
// client's failure budget, after which the client gets 429 even with a
// good token.
func TestWrongTokenIsAFailure(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		events := &eventLog{}
		s := newTokenSite(t, db, authn.Config{Now: clk.Now, LockoutThreshold: 10, OnEvent: events.add, HTTP: authn.HTTPConfig{
			Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 5, Interval: time.Hour, Now: clk.Now}),
		}})
		token := newToken(t, s.a, "alice", "ci")
		revoked := newToken(t, s.a, "alice", "old")
		if err := s.a.RevokeToken(context.Background(), "alice", "old"); err != nil {
			t.Fatal(err)
		}
		unknown := "mmt_" + strings.Repeat("A", 43)
		c := clientFrom("127.0.0.2")
		wrongPassword := s.get(t, c, basicAuthHeader("alice", "not the password"))
		sameRefusal(t, "unknown user:token", s.get(t, c, basicAuthHeader("alice", unknown)), wrongPassword)
		sameRefusal(t, "revoked user:token", s.get(t, c, basicAuthHeader("alice", revoked)), wrongPassword)
		sameRefusal(t, "unknown Bearer", s.get(t, c, bearer(unknown)), wrongPassword)
		sameRefusal(t, "malformed Bearer", s.get(t, c, bearer("not-a-token")), wrongPassword)
		if got := readUser(t, db.Raw, "alice").Failed.Int64; got != 3 {
			t.Fatalf("failed_attempts = %d, want 3 (the wrong password and two wrong user:token)", got)
		}
		if got := s.a.Stats().LoginFailed; got != 5 {
			t.Fatalf("LoginFailed = %d, want 5", got)
		}
		for _, want := range []string{"login_failed alice wrong password", "login_failed  unknown app token", "login_failed  malformed credentials"} {
			if !strings.Contains(events.String(), want) {
				t.Fatalf("no %q in the events:\n%s", want, events)
			}
		}
		// Five failures: the budget is spent.
		if got := s.get(t, c, bearer(token)); got.code != 429 {
			t.Fatalf("a good token from a client over its budget: %d, want 429", got.code)
		}
		wantUser(t, "the token from another client", s.get(t, clientFrom("127.0.0.3"), bearer(token)), "alice")
	})
}

// TestTokenShapedPassword: a password that happens to look like a token is
// still checked as the password.
func TestTokenShapedPassword(t *testing.T) {
	t.Parallel()
	s := newTokenSite(t, testdb.SQLite(t), authn.Config{})
	pw := "mmt_" + strings.Repeat("xY7-", 10) + "abc"
	if err := s.a.Register(context.Background(), "carol", pw); err != nil {
		t.Fatal(err)
	}
	wantUser(t, "carol", s.get(t, clientFrom("127.0.0.2"), basicAuthHeader("carol", pw)), "carol")
}

// TestTokenNeverLogged: no log line and no event holds a token or its
// hash, through its creation, uses (good, wrong, revoked) and revocation;
// the token's name is reported with its creation and revocation.
func TestTokenNeverLogged(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var logs strings.Builder
		var mu sync.Mutex
		var events []string
		s := newTokenSite(t, db, authn.Config{Logger: newTextLogger(&logs), OnEvent: func(_ context.Context, e authn.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf("%+v", e))
		}})
		token := newToken(t, s.a, "alice", "ci")
		c := clientFrom("127.0.0.2")
		wantUser(t, "user:token", s.get(t, c, basicAuthHeader("alice", token)), "alice")
		wantUser(t, "Bearer", s.get(t, c, bearer(token)), "alice")
		wrong := token[:len(token)-2] + "AA"
		s.get(t, c, basicAuthHeader("alice", wrong))
		s.get(t, c, bearer(wrong))
		if err := s.a.RevokeToken(context.Background(), "alice", "ci"); err != nil {
			t.Fatal(err)
		}
		s.get(t, c, basicAuthHeader("alice", token))
		s.get(t, c, bearer(token))

		mu.Lock()
		all := logs.String() + strings.Join(events, "\n")
		mu.Unlock()
		for _, secret := range []string{token, wrong, token[4:], wrong[4:], sha256Hex(token), sha256Hex(wrong)} {
			if strings.Contains(all, secret) {
				t.Fatalf("a token is in the logs or events:\n%s", all)
			}
		}
		for _, want := range []string{"event=token_created user=alice token_name=ci", "event=token_revoked user=alice token_name=ci", "TokenName:ci"} {
			if !strings.Contains(all, want) {
				t.Fatalf("no %q in:\n%s", want, all)
			}
		}
	})
}

// TestTokenParallel: many requests with one token at once, in both forms,
// all get through (run with -race), and record the use once.
func TestTokenParallel(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newTokenSite(t, db, authn.Config{})
		token := newToken(t, s.a, "alice", "ci")
		c := clientFrom("127.0.0.2")
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 10; j++ {
					auth := bearer(token)
					if j%2 == 0 {
						auth = basicAuthHeader("alice", token)
					}
					req, _ := http.NewRequest("GET", s.url, nil)
					req.Header.Set("Authorization", auth)
					resp, err := c.Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := s.a.Stats().TokenAccepted; got != 200 {
			t.Fatalf("TokenAccepted = %d, want 200", got)
		}
	})
}

// TestTokenLastUsed: a use is written at most once a minute: a second use
// 30 seconds later leaves the recorded time, one 61 seconds after the
// first writes it.
func TestTokenLastUsed(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		s := newTokenSite(t, db, authn.Config{Now: clk.Now})
		ctx := context.Background()
		created := clk.Now()
		token := newToken(t, s.a, "alice", "ci")
		lastUsed := func() time.Time {
			t.Helper()
			list, err := s.a.Tokens(ctx, "alice")
			if err != nil || len(list) != 1 || list[0].Name != "ci" || !list[0].Created.Equal(created) {
				t.Fatalf("Tokens: %+v %v", list, err)
			}
			return list[0].LastUsed
		}
		if got := lastUsed(); !got.IsZero() {
			t.Fatalf("LastUsed before any use: %v", got)
		}
		c := clientFrom("127.0.0.2")
		use := func() { t.Helper(); wantUser(t, "use", s.get(t, c, bearer(token)), "alice") }
		clk.Advance(10 * time.Second)
		first := clk.Now()
		use()
		if got := lastUsed(); !got.Equal(first) {
			t.Fatalf("LastUsed = %v, want %v", got, first)
		}
		clk.Advance(30 * time.Second)
		use()
		use()
		if got := lastUsed(); !got.Equal(first) {
			t.Fatalf("LastUsed after 30s = %v, want %v still", got, first)
		}
		clk.Advance(31 * time.Second)
		use()
		if got := lastUsed(); !got.Equal(clk.Now()) {
			t.Fatalf("LastUsed after 61s = %v, want %v", got, clk.Now())
		}
	})
}

// TestTokenOperationsErrors: the errors of CreateToken, Tokens and
// RevokeToken for bad names, duplicates and unknown users and tokens.
func TestTokenOperationsErrors(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"", " ci", "ci ", "a\nb", "a\x00", "\u202eci", strings.Repeat("x", 65), "\xff", "tab\there"} {
			if _, err := a.CreateToken(ctx, "alice", name); !errors.Is(err, authn.ErrInvalidTokenName) {
				t.Errorf("CreateToken(%q): %v, want ErrInvalidTokenName", name, err)
			}
		}
		for _, name := range []string{"ci", "laptop git", strings.Repeat("é", 64), "日本"} {
			newToken(t, a, "alice", name)
		}
		if _, err := a.CreateToken(ctx, "alice", "ci"); !errors.Is(err, authn.ErrTokenExists) {
			t.Errorf("duplicate name: %v, want ErrTokenExists", err)
		}
		for _, user := range []string{"bob", "Alice", "bad name", ""} {
			if _, err := a.CreateToken(ctx, user, "ci"); !errors.Is(err, authn.ErrNotFound) {
				t.Errorf("CreateToken for %q: %v, want ErrNotFound", user, err)
			}
			if _, err := a.Tokens(ctx, user); !errors.Is(err, authn.ErrNotFound) {
				t.Errorf("Tokens of %q: %v, want ErrNotFound", user, err)
			}
			if err := a.RevokeToken(ctx, user, "ci"); !errors.Is(err, authn.ErrNotFound) || errors.Is(err, authn.ErrTokenNotFound) {
				t.Errorf("RevokeToken for %q: %v, want ErrNotFound", user, err)
			}
		}
		err := a.RevokeToken(ctx, "alice", "nope")
		if !errors.Is(err, authn.ErrTokenNotFound) || !errors.Is(err, authn.ErrNotFound) || !strings.Contains(err.Error(), "no such token") {
			t.Errorf("RevokeToken of no token: %v", err)
		}
		list, err := a.Tokens(ctx, "alice")
		if err != nil || len(list) != 4 {
			t.Fatalf("Tokens: %v %v", list, err)
		}
		if err := a.Register(ctx, "bob", goodPassword); err != nil {
			t.Fatal(err)
		}
		if list, err := a.Tokens(ctx, "bob"); err != nil || len(list) != 0 {
			t.Fatalf("bob's tokens: %v %v", list, err)
		}
		newToken(t, a, "bob", "ci") // names are per user
	})
}

// TestTokensOnPythonDB: the Python application's auth.db gains the tables
// of tokens without a change to its users table, and its users can have
// tokens.
func TestTokensOnPythonDB(t *testing.T) {
	t.Parallel()
	path := loadPythonDB(t)
	raw := rawDB(t, path)
	before := allUsers(t, raw)
	a := openPath(t, path, authn.Config{})
	token := newToken(t, a, before[0].Username, "ci")
	srv := httptest.NewServer(a.BasicAuth(okHandler()))
	defer srv.Close()
	if got := call(t, http.DefaultClient, "GET", srv.URL, "", "", "Authorization", bearer(token)); got.code != 200 {
		t.Fatalf("token of a Python user: %d", got.code)
	}
	if after := allUsers(t, raw); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("users changed:\n%v\n%v", before, after)
	}
}

// TestAdminLockRecordCleared: Unlock and SetPassword forget the record of
// an administrator's Lock in the same transaction, so that no later
// failure lockout can match a stale record and stop the user's tokens.
func TestAdminLockRecordCleared(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a := db.Open(t, authn.Config{Hasher: testdb.NewCountingHasher(nil)})
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		records := func() int {
			t.Helper()
			var n int
			if err := db.Raw.NewSelect().Table("admin_locks").ColumnExpr("count(*)").Where("username = 'alice'").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for name, end := range map[string]func() error{
			"Unlock":      func() error { return a.Unlock(ctx, "alice") },
			"SetPassword": func() error { return a.SetPassword(ctx, "alice", "alice's other long passphrase") },
		} {
			if err := a.Lock(ctx, "alice", time.Hour); err != nil {
				t.Fatal(err)
			}
			if n := records(); n != 1 {
				t.Fatalf("after Lock: %d records, want 1", n)
			}
			if err := end(); err != nil {
				t.Fatal(err)
			}
			if n := records(); n != 0 {
				t.Errorf("after %s: %d records of the admin lock, want 0", name, n)
			}
		}
	})
}

// TestTokenRefusedWhenLockedWithNoEnd: a lockout_until that is no time in
// range (1e300, +Inf, ...: how an administrator of the Python application
// disables an account, written by SQL) stops the user's tokens in both
// forms, also a token answered from memory before the write; a lock in
// the future that failed passwords could have written does not.
func TestTokenRefusedWhenLockedWithNoEnd(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newTokenSite(t, db, authn.Config{HTTP: authn.HTTPConfig{Throttle: bigThrottle()}})
		token := newToken(t, s.a, "alice", "ci")
		c := clientFrom("127.0.0.2")
		for label, v := range foreverValues(db) {
			setLockout(t, db, "alice", float64(time.Now().Add(time.Hour).Unix()))
			wantUser(t, label+": Bearer while locked for an hour", s.get(t, c, bearer(token)), "alice")
			wantUser(t, label+": user:token while locked for an hour", s.get(t, c, basicAuthHeader("alice", token)), "alice")
			setLockout(t, db, "alice", v)
			for form, auth := range map[string]string{"Bearer": bearer(token), "user:token": basicAuthHeader("alice", token)} {
				if got := s.get(t, c, auth); got.code != 401 {
					t.Errorf("%s: %s while locked with no end: %d %q, want 401", label, form, got.code, got.body)
				}
			}
		}
	})
}

// TestCreateTokenRacingDelete: CreateToken and Delete of the same user at
// once, over and over, on two Authenticators (two processes), never leave a
// token whose user is gone: either the token is made first and Delete
// removes it with its user, or the user is gone first and CreateToken
// fails with ErrNotFound. PostgreSQL has no foreign key from tokens to
// users to see to it (the users table is the Python application's, as it
// was), so the statements must.
func TestCreateTokenRacingDelete(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		creator, deleter := db.Open(t, authn.Config{}), db.Open(t, authn.Config{})
		ctx := context.Background()
		const rounds, pairs = 10, 4
		made := 0
		for round := range rounds {
			var wg sync.WaitGroup
			start := make(chan struct{})
			var mu sync.Mutex
			for p := range pairs {
				name := fmt.Sprintf("u%d_%d", round, p)
				if err := deleter.Register(ctx, name, goodPassword); err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					<-start
					_, err := creator.CreateToken(ctx, name, "ci")
					switch {
					case err == nil:
						mu.Lock()
						made++
						mu.Unlock()
					case !errors.Is(err, authn.ErrNotFound):
						t.Errorf("CreateToken(%s) racing Delete: %v", name, err)
					}
				})
				wg.Go(func() {
					<-start
					if err := deleter.Delete(ctx, name); err != nil {
						t.Errorf("Delete(%s) racing CreateToken: %v", name, err)
					}
				})
			}
			close(start)
			wg.Wait()
		}
		var orphans []string
		err := db.Raw.NewSelect().Table("tokens").Column("username").
			Where("NOT EXISTS (SELECT 1 FROM users WHERE users.username = tokens.username)").Scan(ctx, &orphans)
		if err != nil {
			t.Fatal(err)
		}
		if len(orphans) > 0 {
			t.Fatalf("%d tokens outlived their user (of %d made before a Delete): %v", len(orphans), made, orphans)
		}
		t.Logf("%d of %d tokens made before their user's deletion", made, rounds*pairs)
	})
}
