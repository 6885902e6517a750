package authn_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestErrorTexts walks the error paths that are cheap to reach and checks
// that every error says "authn: " once: an error of this package wrapped in
// another must not read "authn: authn: ...". It also checks that each is
// still the error errors.Is looks for.
func TestErrorTexts(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{Hasher: fastHasher})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		for _, tc := range []struct {
			name string
			err  error
			is   error
		}{
			{"SetPassword, unknown user", a.SetPassword(ctx, "nobody", goodPassword), authn.ErrNotFound},
			{"SetPassword, bad username", a.SetPassword(ctx, "bad name", goodPassword), authn.ErrNotFound},
			{"SetPassword, bad password", a.SetPassword(ctx, "alice", "short"), authn.ErrInvalidPassword},
			{"Lock, unknown user", a.Lock(ctx, "nobody", time.Minute), authn.ErrNotFound},
			{"Unlock, unknown user", a.Unlock(ctx, "nobody"), authn.ErrNotFound},
			{"Delete, unknown user", a.Delete(ctx, "nobody"), authn.ErrNotFound},
			{"Account, unknown user", accountErr(a.Account(ctx, "nobody")), authn.ErrNotFound},
			{"Account, bad username", accountErr(a.Account(ctx, "bad\nname")), authn.ErrNotFound},
			{"Register, taken name", a.Register(ctx, "alice", goodPassword), authn.ErrUserExists},
			{"Register, taken in another case", a.Register(ctx, "Alice", goodPassword), authn.ErrUserExists},
			{"Register, bad username", a.Register(ctx, "bad name", goodPassword), authn.ErrInvalidUsername},
			{"Register, bad password", a.Register(ctx, "bob", "short"), authn.ErrInvalidPassword},
			{"Authenticate, busy", a.Authenticate(cancelled, "alice", goodPassword), authn.ErrBusy},
			{"Authenticate, wrong password", a.Authenticate(ctx, "alice", "wrong password!"), authn.ErrInvalidCredentials},
			{"ImportUser, taken name", a.ImportUser(ctx, authn.UserRecord{Username: "alice", PasswordHash: fastHash(t)}, false), authn.ErrUserExists},
			{"ImportUser, bad hash", a.ImportUser(ctx, authn.UserRecord{Username: "carol", PasswordHash: "garbage"}, false), nil},
		} {
			checkErrorText(t, tc.name, tc.err, tc.is)
		}
		if err := a.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		checkErrorText(t, "Authenticate, locked", a.Authenticate(ctx, "alice", goodPassword), authn.ErrLocked)
	})
	t.Run("Open", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		_, err := authn.Open(context.Background(), dir, authn.Config{Hasher: fastHasher})
		checkErrorText(t, "Open, a directory", err, nil)
		// New's error inside Open's: a users table of another shape.
		path := filepath.Join(dir, "other.db")
		if _, err := rawDB(t, path).Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"); err != nil {
			t.Fatal(err)
		}
		_, err = authn.Open(context.Background(), path, authn.Config{Hasher: fastHasher})
		checkErrorText(t, "Open, a foreign users table", err, nil)
	})
}

func accountErr(_ authn.Account, err error) error { return err }

func fastHash(t *testing.T) string {
	t.Helper()
	h, err := fastHasher.Hash(goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkErrorText fails unless err is an error of this package, matches
// is (when not nil) and says "authn: " exactly once.
func checkErrorText(t *testing.T, name string, err, is error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", name)
	case is != nil && !errors.Is(err, is):
		t.Errorf("%s: %v, want %v", name, err, is)
	case !strings.HasPrefix(err.Error(), "authn: ") || strings.Count(err.Error(), "authn: ") != 1:
		t.Errorf("%s: error text %q does not say \"authn: \" exactly once", name, err)
	}
}
