package authn_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
)

// schemaOf returns the CREATE statements stored in a SQLite file.
func schemaOf(t *testing.T, path string) map[string]string {
	t.Helper()
	rows, err := rawDB(t, path).Query("SELECT name, COALESCE(sql, '') FROM sqlite_master")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, sql string
		if err := rows.Scan(&name, &sql); err != nil {
			t.Fatal(err)
		}
		out[name] = sql
	}
	return out
}

// TestPythonDatabaseOpensUnchanged: Open on the Python application's auth.db
// (and again) keeps its users table and every row as they were.
func TestPythonDatabaseOpensUnchanged(t *testing.T) {
	t.Parallel()
	path := loadPythonDB(t)
	before, schema := allUsers(t, rawDB(t, path)), schemaOf(t, path)["users"]
	for range 2 {
		a := openPath(t, path, authn.Config{Hasher: password.Default()})
		a.Close()
	}
	after := allUsers(t, rawDB(t, path))
	if len(after) != 4 || len(after) != len(before) {
		t.Fatalf("%d users before, %d after; want 4", len(before), len(after))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("row changed by Open: %+v -> %+v", before[i], after[i])
		}
	}
	got := schemaOf(t, path)
	if got["users"] != schema {
		t.Errorf("users table altered:\n%s\n->\n%s", schema, got["users"])
	}
	if got["sessions"] == "" {
		t.Error("sessions table not created beside users")
	}
	var mode string
	if err := rawDB(t, path).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

var pbkdf2Current = regexp.MustCompile(`^pbkdf2:sha256:600000\$[A-Za-z0-9]{16}\$[0-9a-f]{64}$`)

// TestPythonDatabaseUsers logs in the Python application's users with the
// default Hasher, as the application would after switching to this library.
func TestPythonDatabaseUsers(t *testing.T) {
	t.Parallel()
	path := loadPythonDB(t)
	a := openPath(t, path, authn.Config{Hasher: password.Default()}) // T=5 by default
	ctx := context.Background()
	db := rawDB(t, path)

	t.Run("alice logs in and her hash is upgraded", func(t *testing.T) {
		old := readUser(t, db, "alice").Hash
		if err := a.Authenticate(ctx, "alice", "alice's long passphrase"); err != nil {
			t.Fatal(err)
		}
		now := readUser(t, db, "alice").Hash
		if now == old || !pbkdf2Current.MatchString(now) {
			t.Fatalf("hash after login = %q, want a new pbkdf2:sha256:600000 hash", now)
		}
		if err := a.Authenticate(ctx, "alice", "alice's long passphrase"); err != nil {
			t.Fatalf("login with the upgraded hash: %v", err)
		}
		if again := readUser(t, db, "alice").Hash; again != now {
			t.Fatal("a current hash was re-hashed again")
		}
	})
	t.Run("bob_2's 3 failures count toward the threshold", func(t *testing.T) {
		for i := range 2 { // 3 + 2 = 5
			if err := a.Authenticate(ctx, "bob_2", "not bob's password"); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatalf("failure %d: %v", i+4, err)
			}
		}
		if err := a.Authenticate(ctx, "bob_2", "bob password here"); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("bob_2 after 5 failures in all: %v, want ErrLocked", err)
		}
	})
	t.Run("carol-locked is refused with the right password", func(t *testing.T) {
		err := a.Authenticate(ctx, "carol-locked", "carol password here")
		var locked *authn.LockedError
		if !errors.As(err, &locked) {
			t.Fatalf("carol-locked: %v, want a *LockedError", err)
		}
		if want := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC); !locked.Until.Equal(want) {
			t.Fatalf("locked until %v, want %v", locked.Until, want)
		}
	})
	t.Run("dave_nulls with a NULL counter logs in", func(t *testing.T) {
		if err := a.Authenticate(ctx, "dave_nulls", "dave password here"); err != nil {
			t.Fatal(err)
		}
		if row := readUser(t, db, "dave_nulls"); !row.Failed.Valid || row.Failed.Int64 != 0 {
			t.Fatalf("failed_attempts = %v, want 0", row.Failed)
		}
	})
	t.Run("a NULL counter counts from zero", func(t *testing.T) {
		if _, err := db.Exec("UPDATE users SET failed_attempts = NULL WHERE username = 'dave_nulls'"); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "dave_nulls", "wrong"); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatal(err)
		}
		if row := readUser(t, db, "dave_nulls"); row.Failed.Int64 != 1 {
			t.Fatalf("failed_attempts = %v, want 1", row.Failed)
		}
	})
}
