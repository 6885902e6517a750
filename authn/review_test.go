package authn_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

// TestPaddingCannotBePoisoned: with bcrypt configured, a password over 72
// bytes returns from bcrypt at once. Sent for unknown users, such passwords
// must not drag the padding of failures down, which would let a wrong
// password for a user with a cheaper stored hash answer sooner again.
func TestPaddingCannotBePoisoned(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	const delay = 40 * time.Millisecond
	h := sleepyBcrypt{delay: delay}
	a := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: -1})
	legacy, err := password.PBKDF2{Iterations: 1000}.Hash(goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Raw.Exec("INSERT INTO users (username, password_hash) VALUES ('legacy', ?)", legacy); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 100)
	for range 40 {
		a.Authenticate(context.Background(), "nobody", long)
	}
	var legacyTimes []time.Duration
	for range 5 {
		legacyTimes = append(legacyTimes, timeFailure(t, a, "legacy"))
	}
	if got := median(legacyTimes); got < delay*8/10 {
		t.Fatalf("after 40 unknown-user logins with 100-byte passwords, a wrong password for a legacy hash took %v, want about %v", got, delay)
	}
}

// sleepyBcrypt stands for bcrypt at a cost that takes delay: hashing and
// verifying a bcrypt hash sleep, except for passwords over 72 bytes, which
// bcrypt rejects at once. Other formats verify as usual.
type sleepyBcrypt struct{ delay time.Duration }

func (h sleepyBcrypt) Hash(pw string) (string, error) {
	time.Sleep(h.delay)
	return password.Bcrypt{Cost: 4}.Hash(pw)
}

func (h sleepyBcrypt) Verify(encoded, pw string) (bool, error) {
	if password.Scheme(encoded) == "bcrypt" && len(pw) <= 72 {
		time.Sleep(h.delay)
	}
	return password.Verify(encoded, pw)
}

func (h sleepyBcrypt) NeedsRehash(encoded string) bool { return password.Scheme(encoded) != "bcrypt" }

// TestPanicReleasesHashingSlot: a panic while a hashing slot is held (here
// in an OnEvent hook) gives the slot back, so later logins still run.
func TestPanicReleasesHashingSlot(t *testing.T) {
	t.Parallel()
	var once sync.Once
	a, _ := openTest(t, authn.Config{
		HashConcurrency: 1,
		OnEvent: func(_ context.Context, e authn.Event) {
			if e.Type == authn.EventLoginFailed {
				once.Do(func() { panic("a bug in the application's hook") })
			}
		},
	})
	ctx := context.Background()
	if err := a.Register(ctx, "u", goodPassword); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		a.Authenticate(ctx, "u", "a wrong password")
	}()
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.Authenticate(short, "u", goodPassword); err != nil {
		t.Fatalf("login after a panic in a hook: %v", err)
	}
}

// TestSessionRefusedWhenLockedWithNoEnd: a lock with no end written by the
// Python application's administrator (1e300) ends the user's sessions; an
// ordinary lock in the future (what failed passwords write) does not.
func TestSessionRefusedWhenLockedWithNoEnd(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		app := a.RequireSession(okHandler())
		cookie := loginCookie(t, a, "u")
		until := float64(time.Now().Add(time.Hour).Unix())
		if _, err := db.Raw.Exec("UPDATE users SET lockout_until = ? WHERE username = 'u'", until); err != nil {
			t.Fatal(err)
		}
		if got := sessionStatus(app, cookie); got != 200 {
			t.Fatalf("session while locked for an hour: %d, want 200", got)
		}
		if _, err := db.Raw.Exec("UPDATE users SET lockout_until = ? WHERE username = 'u'", 1e300); err != nil {
			t.Fatal(err)
		}
		if got := sessionStatus(app, cookie); got != 401 {
			t.Fatalf("session while locked with no end: %d, want 401", got)
		}
	})
}

// TestNewOwnerOfANameGetsNoOldSession: sessions left behind by a user
// deleted outside the library (by the Python application) do not pass to
// whoever registers or is imported under that name next.
func TestNewOwnerOfANameGetsNoOldSession(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
		ctx := context.Background()
		app := a.RequireSession(okHandler())
		for _, add := range []func() error{
			func() error { return a.Register(ctx, "u", "someone else's passphrase 9") },
			func() error {
				encoded, err := fastHasher.Hash("someone else's passphrase 9")
				if err != nil {
					return err
				}
				return a.ImportUser(ctx, authn.UserRecord{Username: "u", PasswordHash: encoded}, false)
			},
		} {
			if err := a.Register(ctx, "u", goodPassword); err != nil {
				t.Fatal(err)
			}
			cookie := loginCookie(t, a, "u")
			if _, err := db.Raw.Exec("DELETE FROM users WHERE username = 'u'"); err != nil {
				t.Fatal(err)
			}
			if err := add(); err != nil {
				t.Fatal(err)
			}
			if got := sessionStatus(app, cookie); got != 401 {
				t.Fatalf("the old owner's session after the name was taken again: %d, want 401", got)
			}
			if err := a.Delete(ctx, "u"); err != nil {
				t.Fatal(err)
			}
		}
	})
}
