package demo

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestOpenDispatch: a PostgreSQL URL goes to the program's opener, and is
// refused, never taken for a file name, by a program without one.
func TestOpenDispatch(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ctx := context.Background()
	const url = "postgres://u@127.0.0.1:1/db"
	var got string
	fake := func(_ context.Context, u string, _ authn.Config) (*authn.Authenticator, error) {
		got = u
		return nil, os.ErrNotExist
	}
	if _, err := Open(ctx, url, authn.Config{}, fake); err != os.ErrNotExist || got != url {
		t.Fatalf("Open(%q) with an opener: %v, opener saw %q", url, err, got)
	}
	if a, err := Open(ctx, url, authn.Config{}, nil); err == nil {
		a.Close()
		t.Fatalf("Open(%q) without an opener succeeded", url)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Open of a URL created %v", entries)
	}
	a, err := Open(ctx, filepath.Join(dir, "auth.db"), authn.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	for _, s := range []string{"postgresql://h/db", url} {
		if !IsPostgresURL(s) {
			t.Errorf("IsPostgresURL(%q) = false", s)
		}
	}
	for _, s := range []string{"auth.db", "/srv/postgres://x", "file:auth.db"} {
		if IsPostgresURL(s) {
			t.Errorf("IsPostgresURL(%q) = true", s)
		}
	}
}
