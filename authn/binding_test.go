package authn_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

// Sessions and app tokens are bound to the password hash they were made
// under (model.Session.UserHash): a hash written outside the library ends
// them, a name deleted and created again outside inherits none of them,
// and the library's own changes carry over what they keep.

// boundSite serves a's Routes and RequireSession (liveServer) and, apart,
// a.BasicAuth, with alice signed in (cookie) and holding a token.
type boundSite struct {
	a      *authn.Authenticator
	db     *testdb.DB
	srv    *httptest.Server
	api    *httptest.Server
	cookie *http.Cookie
	token  string
}

func newBoundSite(t *testing.T, db *testdb.DB, cfg authn.Config) *boundSite {
	t.Helper()
	s := &boundSite{db: db}
	s.a = db.Open(t, cfg)
	if err := s.a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	s.srv = liveServer(t, s.a)
	s.api = httptest.NewServer(s.a.BasicAuth(okHandler()))
	t.Cleanup(s.api.Close)
	s.cookie = signIn(t, s.srv, credentialsJSON("alice", goodPassword))
	s.token = newToken(t, s.a, "alice", "ci")
	s.check(t, "at first", 200)
	return s
}

// check asserts the status of the session, of the token as Bearer and as
// Basic alice:token.
func (s *boundSite) check(t *testing.T, when string, want int) {
	t.Helper()
	if st := appStatus(t, s.srv, s.cookie); st != want {
		t.Errorf("%s: session %d, want %d", when, st, want)
	}
	for _, auth := range []string{bearer(s.token), basicHeader("alice", s.token)} {
		if st := call(t, http.DefaultClient, "GET", s.api.URL, "", "", "Authorization", auth).code; st != want {
			t.Errorf("%s: token (%.6s…) %d, want %d", when, auth, st, want)
		}
	}
}

// outsideHash is a hash of another password, as the Python application
// would write it.
func outsideHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := password.PBKDF2{Iterations: 1000}.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestOutsideHashChangeEndsSessionsAndTokens: the Python application (SQL)
// writes a new hash: every session and token of the old one stops, and
// neither is listed any more.
func TestOutsideHashChangeEndsSessionsAndTokens(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newBoundSite(t, db, authn.Config{})
		if _, err := db.Raw.Exec("UPDATE users SET password_hash = ? WHERE username = 'alice'", outsideHash(t, "changed by python")); err != nil {
			t.Fatal(err)
		}
		s.check(t, "after a hash written outside", 401)
		ctx := context.Background()
		if list, err := s.a.Sessions(ctx, "alice"); err != nil || len(list) != 0 {
			t.Errorf("Sessions after a hash written outside: %+v %v, want none", list, err)
		}
		if list, err := s.a.Tokens(ctx, "alice"); err != nil || len(list) != 0 {
			t.Errorf("Tokens after a hash written outside: %+v %v, want none", list, err)
		}
		// The user signs in with the new password and makes a token of the
		// same name: the dead one is replaced, and the new one works.
		signIn(t, s.srv, credentialsJSON("alice", "changed by python"))
		fresh := newToken(t, s.a, "alice", "ci")
		if st := call(t, http.DefaultClient, "GET", s.api.URL, "", "", "Authorization", bearer(fresh)).code; st != 200 {
			t.Errorf("a new token after the change: %d", st)
		}
		if st := call(t, http.DefaultClient, "GET", s.api.URL, "", "", "Authorization", bearer(s.token)).code; st != 401 {
			t.Errorf("the replaced token: %d, want 401", st)
		}
	})
}

// TestNameRecreatedOutsideInheritsNothing: the Python application deletes
// alice and creates a user of the same name; the new owner gets none of
// the old owner's sessions or tokens, even before the library sees a
// registration.
func TestNameRecreatedOutsideInheritsNothing(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newBoundSite(t, db, authn.Config{})
		for _, q := range []string{
			"DELETE FROM users WHERE username = 'alice'",
			"INSERT INTO users (username, password_hash, failed_attempts) VALUES ('alice', '" + outsideHash(t, "the new owner's password") + "', 0)",
		} {
			if _, err := db.Raw.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		s.check(t, "after the name was created again outside", 401)
	})
}

// TestOwnChangesCarryBindingsOver: the library's own changes of hash keep
// what they promise to keep. ChangePassword keeps the current session
// (under its new cookie) and the tokens; SetPassword and ImportUser keep
// the tokens and end the sessions; a re-hash at login keeps both.
func TestOwnChangesCarryBindingsOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const next = "the next long passphrase 77"
	t.Run("ChangePassword", func(t *testing.T) {
		t.Parallel()
		testdb.Each(t, func(t *testing.T, db *testdb.DB) {
			s := newBoundSite(t, db, authn.Config{})
			resp, body := send(t, s.srv, "POST", "/password", changeJSON(goodPassword, next), []*http.Cookie{s.cookie}, "Accept", "application/json")
			wantStatus(t, "password change", resp, body, 204)
			s.cookie = newCookie(t, resp)
			s.check(t, "after ChangePassword", 200)
		})
	})
	t.Run("SetPassword", func(t *testing.T) {
		t.Parallel()
		testdb.Each(t, func(t *testing.T, db *testdb.DB) {
			s := newBoundSite(t, db, authn.Config{})
			if err := s.a.SetPassword(ctx, "alice", next); err != nil {
				t.Fatal(err)
			}
			wantTokenOnly(t, s, "after SetPassword")
		})
	})
	t.Run("ImportUser replacing", func(t *testing.T) {
		t.Parallel()
		testdb.Each(t, func(t *testing.T, db *testdb.DB) {
			s := newBoundSite(t, db, authn.Config{})
			if err := s.a.ImportUser(ctx, authn.UserRecord{Username: "alice", PasswordHash: outsideHash(t, next)}, true); err != nil {
				t.Fatal(err)
			}
			wantTokenOnly(t, s, "after ImportUser")
		})
	})
	t.Run("re-hash at login", func(t *testing.T) {
		t.Parallel()
		testdb.Each(t, func(t *testing.T, db *testdb.DB) {
			s := newBoundSite(t, db, authn.Config{})
			before := readUser(t, db.Raw, "alice").Hash
			// Another instance with a costlier hasher: its login re-hashes.
			b := db.Open(t, authn.Config{Hasher: password.PBKDF2{Iterations: 2000}})
			if err := b.Authenticate(ctx, "alice", goodPassword); err != nil {
				t.Fatal(err)
			}
			if readUser(t, db.Raw, "alice").Hash == before {
				t.Fatal("the login did not re-hash")
			}
			s.check(t, "after a re-hash at login", 200)
		})
	})
}

// wantTokenOnly checks that the token works and the session was ended.
func wantTokenOnly(t *testing.T, s *boundSite, when string) {
	t.Helper()
	if st := appStatus(t, s.srv, s.cookie); st != 401 {
		t.Errorf("%s: session %d, want 401 (ended)", when, st)
	}
	if st := call(t, http.DefaultClient, "GET", s.api.URL, "", "", "Authorization", bearer(s.token)).code; st != 200 {
		t.Errorf("%s: token %d, want 200", when, st)
	}
}

// TestBindingsOfAnEarlierVersion: sessions and tokens tables made before
// the binding column get it when the library opens them, bound to the
// users' hashes then, and keep working; a hash written outside later ends
// them.
func TestBindingsOfAnEarlierVersion(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newBoundSite(t, db, authn.Config{})
		for _, q := range []string{
			"ALTER TABLE sessions DROP COLUMN user_hash",
			"ALTER TABLE tokens DROP COLUMN user_hash",
		} {
			if _, err := db.Raw.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		s.a = db.Open(t, authn.Config{})
		s.srv = liveServer(t, s.a)
		s.api = httptest.NewServer(s.a.BasicAuth(okHandler()))
		t.Cleanup(s.api.Close)
		s.check(t, "after the upgrade", 200)
		if _, err := db.Raw.Exec("UPDATE users SET password_hash = ? WHERE username = 'alice'", outsideHash(t, "changed by python")); err != nil {
			t.Fatal(err)
		}
		s.check(t, "after a hash written outside", 401)
	})
}
