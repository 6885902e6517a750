package authn_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

func TestReadAndImportUsers(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		db.Open(t, authn.Config{}) // creates the tables
		ctx := context.Background()
		// More users than one page of ReadUsers.
		const n = 1234
		for i := range n {
			failed := i % 3
			if _, err := db.Raw.Exec("INSERT INTO users (username, password_hash, failed_attempts, lockout_until) VALUES (?, ?, ?, ?)",
				fmt.Sprintf("user%04d", i), "pbkdf2:sha256:1000$salt$"+fmt.Sprintf("%064x", i), failed, 4102444800.25); err != nil {
				t.Fatal(err)
			}
		}
		var got []authn.UserRecord
		if err := authn.ReadUsers(ctx, db.Raw, func(r authn.UserRecord) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != n || got[0].Username != "user0000" || got[n-1].Username != fmt.Sprintf("user%04d", n-1) {
			t.Fatalf("ReadUsers returned %d users, first %q", len(got), got[0].Username)
		}
		if r := got[5]; r.FailedAttempts != 2 || !r.LockedUntil.Equal(time.Unix(4102444800, 250_000_000)) {
			t.Fatalf("record %+v: state not read", r)
		}
		stop := errors.New("stop")
		calls := 0
		if err := authn.ReadUsers(ctx, db.Raw, func(authn.UserRecord) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("ReadUsers did not stop at fn's error: %v after %d calls", err, calls)
		}

		dst := testdb.SQLite(t).Open(t, authn.Config{})
		for _, r := range got[:3] {
			if err := dst.ImportUser(ctx, r, false); err != nil {
				t.Fatal(err)
			}
		}
		acc, err := dst.Account(ctx, "user0002")
		if err != nil || acc.FailedAttempts != 2 || acc.LockedUntil.IsZero() {
			t.Fatalf("imported account %+v, %v", acc, err)
		}
		if err := dst.ImportUser(ctx, got[0], false); !errors.Is(err, authn.ErrUserExists) {
			t.Fatalf("importing a present name: %v", err)
		}
		replaced := got[0]
		replaced.FailedAttempts, replaced.LockedUntil = 0, time.Time{}
		if err := dst.ImportUser(ctx, replaced, true); err != nil {
			t.Fatal(err)
		}
		if acc, _ := dst.Account(ctx, "user0000"); !acc.LockedUntil.IsZero() {
			t.Fatalf("replace did not replace: %+v", acc)
		}
		for name, rec := range map[string]authn.UserRecord{
			"unsupported hash": {Username: "x", PasswordHash: "$apr1$abc$def"},
			"malformed hash":   {Username: "x", PasswordHash: "pbkdf2:sha256:1000$salt$zz"},
			"bad name":         {Username: "x y", PasswordHash: got[0].PasswordHash},
			"negative count":   {Username: "x", PasswordHash: got[0].PasswordHash, FailedAttempts: -1},
		} {
			if err := dst.ImportUser(ctx, rec, false); err == nil {
				t.Errorf("%s imported", name)
			}
		}
		if err := dst.ImportUser(ctx, authn.UserRecord{Username: "x", PasswordHash: "$apr1$abc$def"}, false); !errors.Is(err, password.ErrUnsupported) {
			t.Errorf("unsupported hash: %v, want password.ErrUnsupported", err)
		}
	})
}
