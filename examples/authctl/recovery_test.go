package main

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestRecoveryCommands: email shows, sets and removes an address;
// reset-link prints a link under -base-url that resets the password once.
func TestRecoveryCommands(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "alice's long passphrase\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	authctl(t, "bob's long passphrase\n", "-db", db, "add", "bob").want(t, 0, "created user bob")
	if r := authctl(t, "", "-db", db, "email", "alice"); r.code != 0 || r.stdout != "-\n" {
		t.Fatalf("email of a user without one: %+v", r)
	}
	authctl(t, "", "-db", db, "email", "alice", "alice@example.com").want(t, 0, "the address of alice is alice@example.com")
	if r := authctl(t, "", "-db", db, "email", "alice"); r.stdout != "alice@example.com\n" {
		t.Fatalf("email alice: %+v", r)
	}
	authctl(t, "", "-db", db, "email", "bob", "ALICE@example.com").want(t, 1, "belongs to another account")
	authctl(t, "", "-db", db, "email", "bob", "not an address").want(t, 1, "invalid email address")
	authctl(t, "", "-db", db, "email", "nobody").want(t, 1, "no such user")
	authctl(t, "", "-db", db, "email", "-remove", "alice").want(t, 0, "removed the address of alice")
	if r := authctl(t, "", "-db", db, "email", "alice"); r.stdout != "-\n" {
		t.Fatalf("email alice after -remove: %+v", r)
	}

	authctl(t, "", "-db", db, "reset-link", "alice").want(t, 2, "needs -base-url")
	authctl(t, "", "-db", db, "reset-link", "-base-url", "http://example.com", "alice").want(t, 1, "BaseURL")
	r := authctl(t, "", "-db", db, "reset-link", "-base-url", "https://example.com/auth", "alice")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "https://example.com/auth/reset/confirm?token=") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("reset-link: %+v", r)
	}
	u, err := url.Parse(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	a := (&testdb.DB{Name: "sqlite", URL: db}).Open(t, authn.Config{HTTP: authn.HTTPConfig{BaseURL: "https://example.com"}})
	ctx := context.Background()
	if _, err := a.Recovery().Reset(ctx, u.Query().Get("token"), "alice's new passphrase"); err != nil {
		t.Fatalf("the printed link: %v", err)
	}
	if err := a.Authenticate(ctx, "alice", "alice's new passphrase"); err != nil {
		t.Fatal(err)
	}
	authctl(t, "", "-db", db, "reset-link", "-base-url", "https://example.com", "nobody").want(t, 1, "no such user")
}
