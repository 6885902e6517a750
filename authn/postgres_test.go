package authn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestLockTimeRoundTrip: a lockout time reads back to within a millisecond
// (PostgreSQL's 4-byte real would be off by about a minute).
func TestLockTimeRoundTrip(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		clk.Advance(123456789 * time.Microsecond) // a time with sub-second digits
		a := db.Open(t, authn.Config{Now: clk.Now})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := a.Lock(ctx, "u", 90*time.Second); err != nil {
			t.Fatal(err)
		}
		want := clk.Now().Add(90 * time.Second)
		acc, err := a.Account(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		if d := acc.LockedUntil.Sub(want).Abs(); d > time.Millisecond {
			t.Fatalf("locked until %v, want %v (off by %v)", acc.LockedUntil, want, d)
		}
		var typ string
		q := "SELECT data_type FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'lockout_until' AND table_schema = current_schema()"
		if db.Name == "sqlite" {
			q = "SELECT type FROM pragma_table_info('users') WHERE name = 'lockout_until'"
		}
		if err := db.Raw.QueryRow(q).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		if typ != "double precision" && typ != "DOUBLE PRECISION" && typ != "REAL" {
			t.Fatalf("lockout_until is %q, want a double precision type", typ)
		}
	})
}

// TestExistingTablesUnchanged: New on a database whose tables exist (made
// as the Python application made them, plus sessions from an earlier run)
// changes no table and no row.
func TestExistingTablesUnchanged(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		real := "REAL"
		if db.Name == "postgres" {
			real = "DOUBLE PRECISION"
		}
		for _, stmt := range []string{
			"CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, failed_attempts INTEGER DEFAULT 0, lockout_until " + real + ")",
			"INSERT INTO users VALUES ('alice', 'pbkdf2:sha256:260000$9ixd7z1wPRg8DocJ$52cca4f55370cee0ec122eda3446d1dcb9d68ee90b03e0ae2a6b3ea7ca6a67d8', 0, NULL)",
			"INSERT INTO users VALUES ('carol', 'x', NULL, 4102444800.0)",
		} {
			if _, err := db.Raw.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
		before := allUsers(t, db.Raw)
		for range 2 {
			a := db.Open(t, authn.Config{})
			a.Close()
		}
		after := allUsers(t, db.Raw)
		if len(after) != len(before) {
			t.Fatalf("%d rows before, %d after", len(before), len(after))
		}
		for i := range before {
			if before[i] != after[i] {
				t.Errorf("row changed: %+v -> %+v", before[i], after[i])
			}
		}
		a := db.Open(t, authn.Config{Hasher: fastHasher})
		if err := a.Authenticate(context.Background(), "carol", "x"); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("carol, locked until 2100: %v", err)
		}
	})
}

// TestDatabaseClosed: with the database gone, every operation fails with an
// error, and a login is never a success.
func TestDatabaseClosed(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		err := a.Authenticate(ctx, "u", goodPassword)
		if err == nil || errors.Is(err, authn.ErrInvalidCredentials) || errors.Is(err, authn.ErrLocked) {
			t.Fatalf("login on a closed database: %v, want a database error", err)
		}
		if err := a.Register(ctx, "v", goodPassword); err == nil {
			t.Fatal("Register on a closed database succeeded")
		}
	})
}
