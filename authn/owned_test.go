package authn_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestNewOwned: Close closes a db given to NewOwned, and a failing
// NewOwned closes it too; a db given to New stays open after Close.
func TestNewOwned(t *testing.T) {
	t.Parallel()
	cfg := authn.Config{Hasher: fastHasher}
	path := filepath.Join(t.TempDir(), "auth.db")

	borrowed := testdb.RawSQLite(t, path)
	a, err := authn.New(context.Background(), borrowed, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := borrowed.Ping(); err != nil {
		t.Fatalf("New's db after Close: %v, want it open", err)
	}

	owned := testdb.RawSQLite(t, path)
	a, err = authn.NewOwned(context.Background(), owned, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := owned.Ping(); err == nil {
		t.Fatal("NewOwned's db is still open after Close")
	}

	failed := testdb.RawSQLite(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a, err := authn.NewOwned(ctx, failed, cfg); err == nil {
		a.Close()
		t.Fatal("NewOwned with a cancelled context succeeded")
	}
	if err := failed.Ping(); err == nil {
		t.Fatal("a failed NewOwned left its db open")
	}
}
