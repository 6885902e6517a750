package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/postgres"
	"github.com/minimost/minimost/internal/testdb"
)

// TestOpen: Open gives a working Authenticator whose Close closes the pool
// Open made.
func TestOpen(t *testing.T) {
	t.Parallel()
	db := testdb.Postgres(t)
	ctx := context.Background()
	a, err := postgres.Open(ctx, db.URL, authn.Config{Hasher: testdb.FastHasher})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Register(ctx, "alice", "alice's long passphrase"); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate(ctx, "alice", "alice's long passphrase"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Account(ctx, "alice"); err == nil {
		t.Fatal("the Authenticator still reads after Close: its pool is open")
	}
	var users int
	if err := db.Raw.QueryRow("SELECT count(*) FROM users").Scan(&users); err != nil || users != 1 {
		t.Fatalf("users in the database: %d, %v; want 1", users, err)
	}
}

// TestOpenUnreachable: a database that cannot be reached fails Open, not
// the first request.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on the loopback: nothing listens there.
	a, err := postgres.Open(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", authn.Config{})
	if err == nil {
		a.Close()
		t.Fatal("Open of an unreachable database succeeded")
	}
}
