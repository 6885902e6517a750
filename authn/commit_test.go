package authn_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// The tests of writes that the database cannot commit (a full disk, an I/O
// error, a quota): testdb.Faults runs a chosen statement and then fails it
// at its commit, after its rows came back, where a driver reports it. Every
// write the library acts on must be known committed before it acts: the
// operation fails with the database's error (503 over HTTP), and nothing of
// it took effect.

// faultSite is an Authenticator over a database whose writes a test can
// fail, served over HTTP as liveServer serves it, with alice registered.
type faultSite struct {
	a      *authn.Authenticator
	db     *testdb.DB
	faults *testdb.Faults
	hasher *countingHasher
	clock  *testdb.Clock
	srv    *httptest.Server
	hash   string // alice's stored hash
	logs   *strings.Builder
}

func newFaultSite(t *testing.T, db *testdb.DB) *faultSite {
	t.Helper()
	s := &faultSite{db: db, hasher: newCountingHasher(nil), clock: newClock(), logs: &strings.Builder{}}
	s.a, s.faults = db.OpenFaulty(t, authn.Config{
		Logger:           newTextLogger(s.logs),
		Hasher:           s.hasher,
		LockoutThreshold: 3,
		Now:              s.clock.Now,
		HTTP:             authn.HTTPConfig{BasicAuthCacheTTL: -1}, // every Basic request claims
	})
	if err := s.a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	s.hash = readUser(t, db.Raw, "alice").Hash
	s.srv = liveServer(t, s.a)
	return s
}

// fail chooses the statements containing substr (see testdb.Faults.Fail).
func (s *faultSite) fail(substr string) { s.faults.Fail(substr) }

// checkInjected fails the test unless a fault was injected since the last
// check: a fault that never fired would make any test pass.
func (s *faultSite) checkInjected(t *testing.T, what string) {
	t.Helper()
	if s.faults.Injected() == 0 {
		t.Fatalf("%s: no fault was injected (the statement chosen did not run)", what)
	}
}

// wantInjected checks that err is the injected fault, as it is, and not a
// client's failure.
func wantInjected(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, testdb.ErrInjected) || errors.Is(err, authn.ErrInvalidCredentials) || errors.Is(err, authn.ErrLocked) {
		t.Fatalf("%s with its write failing at commit: %v, want the database's error", what, err)
	}
}

// wantStatus checks a response's status.
func wantStatus(t *testing.T, what string, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: %d %s, want %d", what, resp.StatusCode, body, want)
	}
}

// TestClaimNotCommitted is the hole of a full disk: a claim whose count
// cannot be committed checks no password. Before, bun's Scan dropped the
// commit's error and every wrong password was checked, uncounted.
func TestClaimNotCommitted(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		ctx := context.Background()
		s.fail("failed_attempts = CASE")
		for i := range 10 { // over the threshold of 3
			wantInjected(t, "a wrong password", s.a.Authenticate(ctx, "alice", "wrong password "+string(rune('a'+i))))
		}
		wantInjected(t, "the right password", s.a.Authenticate(ctx, "alice", goodPassword))
		resp, body := send(t, s.srv, "POST", "/login", credentialsJSON("alice", "a wrong password"), nil)
		wantStatus(t, "JSON login", resp, body, 503)
		if len(resp.Cookies()) != 0 {
			t.Fatalf("a failed login set cookies: %v", resp.Cookies())
		}
		resp, body = send(t, s.srv, "POST", "/login", "username=alice&password=wrong", nil)
		wantStatus(t, "form login", resp, body, 503)
		s.checkInjected(t, "claims")
		if n := s.hasher.Verifies(s.hash); n != 0 {
			t.Fatalf("alice's hash was checked %d times by claims that were not written, want 0", n)
		}
		if log := s.logs.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "claiming a login attempt: the database could not write") {
			t.Errorf("the log does not say that the database could not write the claim:\n%s", log)
		}
		if u := readUser(t, db.Raw, "alice"); u.Failed.Int64 != 0 || u.Until.Valid {
			t.Fatalf("row after failed claims: %+v", u)
		}
		// Once the database writes again, the count starts from nothing
		// lost: three wrong passwords lock, and the lock holds.
		s.faults.Clear()
		for range 3 {
			if err := s.a.Authenticate(ctx, "alice", "wrong"); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatalf("wrong password after the fault: %v", err)
			}
		}
		if err := s.a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("right password after three wrong ones: %v, want locked", err)
		}
	})
}

// TestClaimNotCommittedOverBasicAuth: the same fault under Basic auth, in
// parallel: 503 for every request, the protected handler never runs, the
// real hash is never checked.
func TestClaimNotCommittedOverBasicAuth(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		ran := 0
		srv := httptest.NewServer(s.a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran++ })))
		t.Cleanup(srv.Close)
		s.fail("failed_attempts = CASE")
		statuses := make(chan int, 20)
		for i := range cap(statuses) {
			go func() {
				pw := "wrong"
				if i%4 == 0 {
					pw = goodPassword
				}
				req, _ := http.NewRequest("GET", srv.URL, nil)
				req.SetBasicAuth("alice", pw)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					statuses <- 0
					return
				}
				resp.Body.Close()
				statuses <- resp.StatusCode
			}()
		}
		for range cap(statuses) {
			if st := <-statuses; st != 503 {
				t.Errorf("Basic auth with its claim failing at commit: %d, want 503", st)
			}
		}
		s.checkInjected(t, "claims")
		if ran != 0 || s.hasher.Verifies(s.hash) != 0 {
			t.Fatalf("handler ran %d times, alice's hash checked %d times", ran, s.hasher.Verifies(s.hash))
		}
	})
}

// TestResetNotCommitted: the right password whose reset cannot be written
// is no login: the database's error, no session, and the failure the claim
// counted stays counted.
func TestResetNotCommitted(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		ctx := context.Background()
		s.fail("failed_attempts = 0")
		wantInjected(t, "the right password", s.a.Authenticate(ctx, "alice", goodPassword))
		resp, body := send(t, s.srv, "POST", "/login", credentialsJSON("alice", goodPassword), nil)
		wantStatus(t, "login", resp, body, 503)
		s.checkInjected(t, "resets")
		if len(resp.Cookies()) != 0 || countRows(t, db.Raw, "sessions", "username = ?", "alice") != 0 {
			t.Fatalf("a login whose reset failed left a session: %v", resp.Cookies())
		}
		if u := readUser(t, db.Raw, "alice"); u.Failed.Int64 != 2 {
			t.Fatalf("failed_attempts after two claimed logins whose resets failed: %d, want 2", u.Failed.Int64)
		}
	})
}

// TestSessionNotCommitted: a login whose session cannot be written sets no
// cookie and answers 503.
func TestSessionNotCommitted(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		s.fail("INSERT INTO sessions")
		for _, body := range []string{credentialsJSON("alice", goodPassword), "username=alice&password=" + strings.ReplaceAll(goodPassword, " ", "+")} {
			resp, text := send(t, s.srv, "POST", "/login", body, nil)
			wantStatus(t, "login", resp, text, 503)
			for _, c := range resp.Cookies() {
				if c.Value != "" {
					t.Fatalf("a login whose session was not written set %v", c)
				}
			}
		}
		s.checkInjected(t, "session inserts")
		if n := countRows(t, db.Raw, "sessions", "username = ?", "alice"); n != 0 {
			t.Fatalf("%d sessions stored", n)
		}
	})
}

// TestLogoutNotCommitted: a sign-out whose deletion cannot be written says
// so (503), rather than telling the user the session is over while it
// still works. Before, bun's Scan dropped the error of the DELETE …
// RETURNING, and the logout answered 204.
func TestLogoutNotCommitted(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		cookie := signIn(t, s.srv, credentialsJSON("alice", goodPassword))
		s.fail(`DELETE FROM "sessions"`)
		resp, body := send(t, s.srv, "POST", "/logout", "", []*http.Cookie{cookie}, "Accept", "application/json")
		wantStatus(t, "logout", resp, body, 503)
		s.checkInjected(t, "session deletions")
		// The honest state: the session was not ended, and a retry ends it.
		if st := appStatus(t, s.srv, cookie); st != 200 {
			t.Fatalf("session after a logout that failed: %d", st)
		}
		s.faults.Clear()
		resp, body = send(t, s.srv, "POST", "/logout", "", []*http.Cookie{cookie}, "Accept", "application/json")
		wantStatus(t, "logout again", resp, body, 204)
		if st := appStatus(t, s.srv, cookie); st != 401 {
			t.Fatalf("session after the logout: %d, want 401", st)
		}
	})
}

// TestPasswordChangeNotCommitted: a change of password whose transaction,
// or one statement of it, cannot be written changes nothing: the old
// password and the old session still work, the new password does not.
// The session kept by the change is renamed by an UPDATE … RETURNING,
// whose failure bun's Scan used to drop: the change then committed without
// the session, and answered success.
func TestPasswordChangeNotCommitted(t *testing.T) {
	t.Parallel()
	const next = "the next long passphrase 77"
	for _, c := range []struct{ name, statement string }{
		{"new hash at commit", "password_hash = '"},
		{"session rename at commit", "SET token_hash"},
		{"session rename at its end", "SET token_hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testdb.Each(t, func(t *testing.T, db *testdb.DB) {
				s := newFaultSite(t, db)
				cookie := signIn(t, s.srv, credentialsJSON("alice", goodPassword))
				if strings.HasSuffix(c.name, "its end") {
					s.faults.FailStatement(c.statement)
				} else {
					s.fail(c.statement)
				}
				resp, body := send(t, s.srv, "POST", "/password", changeJSON(goodPassword, next), []*http.Cookie{cookie}, "Accept", "application/json")
				wantStatus(t, "password change", resp, body, 503)
				s.checkInjected(t, c.name)
				s.faults.Clear()
				if st := appStatus(t, s.srv, cookie); st != 200 {
					t.Errorf("the session after a change that failed: %d, want 200", st)
				}
				ctx := context.Background()
				if err := s.a.Authenticate(ctx, "alice", next); !errors.Is(err, authn.ErrInvalidCredentials) {
					t.Errorf("the new password after a change that failed: %v", err)
				}
				if err := s.a.Authenticate(ctx, "alice", goodPassword); err != nil {
					t.Errorf("the old password after a change that failed: %v", err)
				}
			})
		})
	}
	testdb.Each(t, func(t *testing.T, db *testdb.DB) { // the Go API, without a session
		s := newFaultSite(t, db)
		s.fail("password_hash = '")
		wantInjected(t, "ChangePassword", s.a.ChangePassword(context.Background(), "alice", goodPassword, next))
		s.checkInjected(t, "ChangePassword")
		if u := readUser(t, db.Raw, "alice"); u.Hash != s.hash {
			t.Fatal("the hash changed")
		}
	})
}

// TestAccountWritesNotCommitted: each administrator's write fails with the
// database's error and leaves the account as it was.
func TestAccountWritesNotCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		statement string                       // "": every write
		setup     func(*faultSite) error       // before the fault
		op        func(*faultSite) error       // with the fault
		check     func(*testing.T, *faultSite) // after it, with none
	}{
		{"SetPassword", "password_hash = '", nil,
			func(s *faultSite) error { return s.a.SetPassword(ctx, "alice", "another long passphrase 1") },
			func(t *testing.T, s *faultSite) { wantPassword(t, s, goodPassword) }},
		{"Lock, its row", "UPDATE", nil,
			func(s *faultSite) error { return s.a.Lock(ctx, "alice", time.Hour) },
			func(t *testing.T, s *faultSite) { wantPassword(t, s, goodPassword) }},
		{"Lock, its record", `INSERT INTO "admin_locks"`, nil,
			func(s *faultSite) error { return s.a.Lock(ctx, "alice", time.Hour) },
			func(t *testing.T, s *faultSite) {
				wantPassword(t, s, goodPassword)
				if n := countRows(t, s.db.Raw, "admin_locks", "username = ?", "alice"); n != 0 {
					t.Errorf("%d admin lock records", n)
				}
			}},
		{"Unlock", "", func(s *faultSite) error { return s.a.Lock(ctx, "alice", time.Hour) },
			func(s *faultSite) error { return s.a.Unlock(ctx, "alice") },
			func(t *testing.T, s *faultSite) {
				if err := s.a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrLocked) {
					t.Errorf("alice after an Unlock that failed: %v, want locked", err)
				}
			}},
		{"Delete", "", nil,
			func(s *faultSite) error { return s.a.Delete(ctx, "alice") },
			func(t *testing.T, s *faultSite) { wantPassword(t, s, goodPassword) }},
		{"Register", "", nil,
			func(s *faultSite) error { return s.a.Register(ctx, "bob", "bob's long passphrase 12") },
			func(t *testing.T, s *faultSite) { wantNoUser(t, s, "bob") }},
		{"ImportUser, new", "", nil,
			func(s *faultSite) error {
				return s.a.ImportUser(ctx, authn.UserRecord{Username: "bob", PasswordHash: s.hash}, false)
			},
			func(t *testing.T, s *faultSite) { wantNoUser(t, s, "bob") }},
		{"ImportUser, replacing", "", nil,
			func(s *faultSite) error {
				other, err := fastHasher.Hash("another long passphrase 2")
				if err != nil {
					return err
				}
				return s.a.ImportUser(ctx, authn.UserRecord{Username: "alice", PasswordHash: other}, true)
			},
			func(t *testing.T, s *faultSite) { wantPassword(t, s, goodPassword) }},
		{"EndSessions", "", func(s *faultSite) error { return s.a.Authenticate(ctx, "alice", goodPassword) },
			func(s *faultSite) error { _, err := s.a.EndSessions(ctx, "alice"); return err },
			nil},
		{"CreateToken", "", nil,
			func(s *faultSite) error {
				token, err := s.a.CreateToken(ctx, "alice", "ci")
				if token != "" {
					return errors.New("a token was returned with the error")
				}
				return err
			},
			func(t *testing.T, s *faultSite) {
				if n := countRows(t, s.db.Raw, "tokens", "username = ?", "alice"); n != 0 {
					t.Errorf("%d tokens stored", n)
				}
			}},
		{"RevokeToken", "", func(s *faultSite) error { _, err := s.a.CreateToken(ctx, "alice", "ci"); return err },
			func(s *faultSite) error { return s.a.RevokeToken(ctx, "alice", "ci") },
			func(t *testing.T, s *faultSite) {
				if n := countRows(t, s.db.Raw, "tokens", "username = ?", "alice"); n != 1 {
					t.Errorf("%d tokens after a revocation that failed, want 1", n)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testdb.Each(t, func(t *testing.T, db *testdb.DB) {
				s := newFaultSite(t, db)
				if c.setup != nil {
					if err := c.setup(s); err != nil {
						t.Fatal(err)
					}
				}
				s.fail(c.statement)
				wantInjected(t, c.name, c.op(s))
				s.checkInjected(t, c.name)
				s.faults.Clear()
				if c.check != nil {
					c.check(t, s)
				}
			})
		})
	}
}

// TestImportStatementFails: an import whose INSERT fails at its own end,
// inside its transaction, fails, and writes nothing. (Bun adds RETURNING to
// the INSERT of a user row; its Scan into a model reads the rows to their
// end and reports the error, unlike its Scan into values, but the INSERT
// now has no RETURNING at all.)
func TestImportStatementFails(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		ctx := context.Background()
		for _, replace := range []bool{false, true} {
			s.faults.FailStatement(`INSERT INTO "users"`)
			err := s.a.ImportUser(ctx, authn.UserRecord{Username: "bob", PasswordHash: s.hash}, replace)
			wantInjected(t, "ImportUser", err)
			s.checkInjected(t, "ImportUser")
			s.faults.Clear()
			wantNoUser(t, s, "bob")
		}
	})
}

// TestUseNotCommitted: the record of a session's or a token's use, which
// the request waits for, fails the request when it cannot be written.
func TestUseNotCommitted(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newFaultSite(t, db)
		cookie := signIn(t, s.srv, credentialsJSON("alice", goodPassword))
		token, err := s.a.CreateToken(context.Background(), "alice", "ci")
		if err != nil {
			t.Fatal(err)
		}
		api := httptest.NewServer(s.a.BasicAuth(okHandler()))
		t.Cleanup(api.Close)
		s.clock.Advance(5 * time.Minute) // both uses are due to be recorded
		s.fail("UPDATE")
		if st := appStatus(t, s.srv, cookie); st != 503 {
			t.Errorf("a session whose use could not be recorded: %d, want 503", st)
		}
		req, _ := http.NewRequest("GET", api.URL, nil)
		req.Header.Set("Authorization", bearer(token))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("a token whose use could not be recorded: %d, want 503", resp.StatusCode)
		}
		s.checkInjected(t, "uses")
	})
}

// wantPassword checks that pw is alice's password and she is not locked.
func wantPassword(t *testing.T, s *faultSite, pw string) {
	t.Helper()
	if err := s.a.Authenticate(context.Background(), "alice", pw); err != nil {
		t.Errorf("alice after a write that failed: %v", err)
	}
}

// wantNoUser checks that there is no user of that name.
func wantNoUser(t *testing.T, s *faultSite, name string) {
	t.Helper()
	if n := countRows(t, s.db.Raw, "users", "username = ?", name); n != 0 {
		t.Errorf("%s exists after a write that failed", name)
	}
}
