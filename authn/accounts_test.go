package authn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/uptrace/bun"
)

func TestAccountOperations(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now})
		ctx := context.Background()
		raw := db.Raw

		for _, name := range []string{"carol", "alice", "bob"} {
			if err := a.Register(ctx, name, goodPassword+" "+name); err != nil {
				t.Fatalf("Register(%s): %v", name, err)
			}
		}
		if err := a.Register(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrUserExists) {
			t.Fatalf("Register taken name: %v, want ErrUserExists", err)
		}

		// Lock, Account, ListAccounts.
		if err := a.Lock(ctx, "bob", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		acc, err := a.Account(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if want := clk.Now().Add(10 * time.Minute); !acc.LockedUntil.Equal(want) || acc.Scheme != "pbkdf2" {
			t.Fatalf("Account(bob) = %+v, want locked until %v, scheme pbkdf2", acc, want)
		}
		names := func(opts authn.ListOptions) string {
			t.Helper()
			list, err := a.ListAccounts(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, acc := range list {
				s = append(s, acc.Username)
			}
			return strings.Join(s, ",")
		}
		for _, tc := range []struct {
			opts authn.ListOptions
			want string
		}{
			{authn.ListOptions{}, "alice,bob,carol"},
			{authn.ListOptions{Limit: 2}, "alice,bob"},
			{authn.ListOptions{After: "bob"}, "carol"},
			{authn.ListOptions{LockedOnly: true}, "bob"},
		} {
			if got := names(tc.opts); got != tc.want {
				t.Errorf("ListAccounts(%+v) = %s, want %s", tc.opts, got, tc.want)
			}
		}
		clk.Advance(10 * time.Minute)
		if got := names(authn.ListOptions{LockedOnly: true}); got != "" {
			t.Errorf("locked after the lock ended: %s", got)
		}

		// Unlock clears a lock and the counter.
		if err := a.Lock(ctx, "bob", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := a.Unlock(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "bob", goodPassword+" bob"); err != nil {
			t.Fatalf("login after Unlock: %v", err)
		}

		// SetPassword replaces the hash, clears a lock, ends the sessions.
		if _, err := raw.Exec("INSERT INTO sessions (token_hash, username, created_at, last_seen, expires_at) VALUES ('x', 'carol', 0, 0, 0), ('y', 'alice', 0, 0, 0)"); err != nil {
			t.Fatal(err)
		}
		if err := a.Lock(ctx, "carol", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := a.SetPassword(ctx, "carol", "carol's new long passphrase"); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "carol", goodPassword+" carol"); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("old password after SetPassword: %v", err)
		}
		if err := a.Authenticate(ctx, "carol", "carol's new long passphrase"); err != nil {
			t.Fatalf("new password after SetPassword: %v", err)
		}
		if n := countSessions(t, db.Raw, "carol"); n != 0 {
			t.Fatalf("carol has %d sessions after SetPassword", n)
		}
		if n := countSessions(t, db.Raw, "alice"); n != 1 {
			t.Fatalf("alice has %d sessions, want her 1 untouched", n)
		}

		// Delete removes the user and the user's sessions.
		if err := a.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if n := countSessions(t, db.Raw, "alice"); n != 0 {
			t.Fatalf("alice has %d sessions after Delete", n)
		}
		if err := a.Authenticate(ctx, "alice", goodPassword+" alice"); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("login after Delete: %v", err)
		}

		// Unknown users.
		for name, err := range map[string]error{
			"Account":     func() error { _, err := a.Account(ctx, "alice"); return err }(),
			"Unlock":      a.Unlock(ctx, "alice"),
			"Lock":        a.Lock(ctx, "alice", 0),
			"Delete":      a.Delete(ctx, "alice"),
			"SetPassword": a.SetPassword(ctx, "alice", goodPassword),
		} {
			if !errors.Is(err, authn.ErrNotFound) {
				t.Errorf("%s(unknown user) = %v, want ErrNotFound", name, err)
			}
		}
	})
}

func countSessions(t *testing.T, db *bun.DB, name string) int {
	t.Helper()
	return countRows(t, db, "sessions", "username = ?", name)
}

// TestRegisterRace: of 20 registrations of one name at once, one wins.
func TestRegisterRace(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{})
		var wins, taken atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := a.Register(context.Background(), "same", fmt.Sprintf("%s number %d", goodPassword, i))
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, authn.ErrUserExists):
					taken.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || taken.Load() != 19 {
			t.Fatalf("%d registrations won, %d were told the name is taken; want 1 and 19", wins.Load(), taken.Load())
		}
		if n := len(allUsers(t, db.Raw)); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
	})
}

// TestBadInput: malformed usernames and passwords get the error that names
// the problem and write nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{})
		ctx := context.Background()
		badNames := []string{
			"", "with\x00nul", strings.Repeat("a", 33), "ünïcode", "Robert'); DROP TABLE users;--",
			"a b", "tab\tname", "new\nline", "dot.name", "émile", "\xff\xfe",
		}
		for _, name := range badNames {
			if err := a.Register(ctx, name, goodPassword); !errors.Is(err, authn.ErrInvalidUsername) {
				t.Errorf("Register(%q) = %v, want ErrInvalidUsername", name, err)
			}
			if err := a.Authenticate(ctx, name, goodPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Errorf("Authenticate(%q) = %v, want ErrInvalidCredentials", name, err)
			}
		}
		if err := authn.CheckUsername(strings.Repeat("a", 32)); err != nil {
			t.Errorf("32 characters: %v", err)
		}
		for _, tc := range []struct{ pw, rule string }{
			{"", "shorter than 15"},
			{"short", "shorter than 15"},
			{strings.Repeat("x", 129), "longer than 128"},
			{strings.Repeat("x", 1<<20), "longer than 128"},
			{"bad utf-8 \xff\xfe padding padding", "UTF-8"},
			{"passwordpasswordpassword", "repeated"},
			{"aaaaaaaaaaaaaaaaaaaa", "repeated"},
			{"Password123456789!", "common password with digits"},
			{"1234567890123456789", "common password with digits"},
			{"!!!qwertyqwerty2024", "common password with digits"},
			{"Tr0ub4dor&3 horse battery", ""}, // accepted, then deleted below
			{"the-user-name-is-long", "username"},
		} {
			err := a.Register(ctx, "the-user-name-is-long", tc.pw)
			if tc.rule == "" {
				if err != nil {
					t.Errorf("Register with %.20q: %v", tc.pw, err)
				}
				if err := a.Delete(ctx, "the-user-name-is-long"); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if !errors.Is(err, authn.ErrInvalidPassword) || !strings.Contains(err.Error(), tc.rule) {
				t.Errorf("Register with %.20q = %v, want ErrInvalidPassword naming %q", tc.pw, err, tc.rule)
			}
		}
		// Passwords checked at login: empty and absurdly long are refused
		// before any row is touched.
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{"", strings.Repeat("p", 1<<20)} {
			if err := a.Authenticate(ctx, "u", pw); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Errorf("Authenticate with a %d-byte password = %v", len(pw), err)
			}
		}
		if users := allUsers(t, db.Raw); len(users) != 1 || users[0].Failed.Int64 != 0 {
			t.Fatalf("rows after bad input: %+v, want only u, with no failure counted", users)
		}
	})
}

// TestUnusableStoredHash: a corrupt or hostile hash in the database fails
// closed with an error that says so, and never panics.
func TestUnusableStoredHash(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{})
		ctx := context.Background()
		raw := db.Raw
		for i, stored := range []string{
			"", "plaintext-password", "pbkdf2:sha256:600000$salt$zz",
			"pbkdf2:sha256:999999999$abcdefgh$" + strings.Repeat("00", 32),
			"$argon2id$v=19$m=4194304,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w",
		} {
			name := fmt.Sprintf("u%d", i)
			if _, err := raw.Exec("INSERT INTO users (username, password_hash) VALUES (?, ?)", name, stored); err != nil {
				t.Fatal(err)
			}
			err := a.Authenticate(ctx, name, "plaintext-password")
			if !errors.Is(err, authn.ErrInvalidCredentials) || !strings.Contains(err.Error(), "stored hash") {
				t.Errorf("stored %.30q: %v, want ErrInvalidCredentials naming the stored hash", stored, err)
			}
		}
	})
}

// TestEvents: every operation is reported, failures with their reason, and
// no password reaches the log.
func TestEvents(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var mu sync.Mutex
		var got []string
		var log strings.Builder
		cfg := authn.Config{
			OnEvent: func(_ context.Context, e authn.Event) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, fmt.Sprintf("%s %s %s", e.Type, e.Username, e.Reason))
			},
			LockoutThreshold: 2,
			Logger:           newTextLogger(&log),
		}
		a := db.Open(t, cfg)
		ctx := context.Background()
		const secret = "a secret passphrase nobody may log"
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(a.Register(ctx, "u", secret))
		must(a.Authenticate(ctx, "u", secret))
		a.Authenticate(ctx, "nobody", secret)
		a.Authenticate(ctx, secret, secret) // a password typed as the username
		a.Authenticate(ctx, "u", secret+"x")
		a.Authenticate(ctx, "u", secret+"y")
		a.Authenticate(ctx, "u", secret)
		must(a.Unlock(ctx, "u"))
		must(a.SetPassword(ctx, "u", secret+" changed"))
		must(a.Delete(ctx, "u"))
		want := []string{
			"registered u ",
			"login_succeeded u ",
			"login_failed nobody unknown user",
			"login_failed  malformed username",
			"login_failed u wrong password",
			"lockout u ",
			"login_failed u wrong password",
			"login_failed u locked",
			"unlock u ",
			"password_changed u ",
			"deleted u ",
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if strings.Contains(log.String(), "secret") {
			t.Errorf("the log holds a password:\n%s", log.String())
		}
		if n := strings.Count(log.String(), "event=login_failed"); n != 5 {
			t.Errorf("%d login_failed log lines, want 5:\n%s", n, log.String())
		}
	})
}

// TestCheckNewUsername: what Register would say of a name, without a
// password: taken (in any case), invalid, or free; and no hash is spent.
func TestCheckNewUsername(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a := db.Open(t, authn.Config{})
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]error{
			"alice": authn.ErrUserExists, "ALICE": authn.ErrUserExists,
			"bob": nil, "bob!": authn.ErrInvalidUsername, "": authn.ErrInvalidUsername,
		} {
			if err := a.CheckNewUsername(ctx, name); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Errorf("CheckNewUsername(%q) = %v, want %v", name, err, want)
			}
		}
		if _, err := a.Account(ctx, "bob"); !errors.Is(err, authn.ErrNotFound) {
			t.Errorf("CheckNewUsername created bob: %v", err)
		}
	})
}
