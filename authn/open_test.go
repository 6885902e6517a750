package authn_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestOpenBadPaths: every path that cannot hold the database gives an error
// that names the path and the problem, and no panic.
func TestOpenBadPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not a database\n", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{"", "empty database path"},
		{dir, "is a directory"},
		{"/dev/null", "not a regular file"},
		{filepath.Join(dir, "missing", "auth.db"), "no such file or directory"},
		{filepath.Join(aFile, "auth.db"), "not a directory"},
		{garbage, "not a database"},
		{"nul\x00byte.db", "NUL byte"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ path, want string }{filepath.Join(ro, "auth.db"), "permission denied"})
	} else {
		t.Log("running as root: the unwritable-directory case is left out, root may write anywhere")
	}
	for _, tc := range cases {
		a, err := authn.Open(context.Background(), tc.path, authn.Config{Hasher: fastHasher})
		if err == nil {
			a.Close()
			t.Errorf("Open(%q) succeeded", tc.path)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error saying %q", tc.path, err, tc.want)
		}
	}
	// The garbage file is left as it was.
	if b, _ := os.ReadFile(garbage); !strings.HasPrefix(string(b), "this is not a database") {
		t.Error("Open wrote into a file that is not a database")
	}
}

// TestOpenOddPathCharacters: a file name with URI characters is a file name.
func TestOpenOddPathCharacters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a?b#c%20d:memory:.db")
	a := openPath(t, path, authn.Config{})
	if err := a.Register(context.Background(), "u", goodPassword); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the database is not at the path given: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	if _, err := authn.New(context.Background(), nil, authn.Config{}); err == nil {
		t.Fatal("New(nil db) succeeded")
	}
	// A users table of another shape is refused with a clear error.
	path := filepath.Join(t.TempDir(), "other.db")
	db := rawDB(t, path)
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"); err != nil {
		t.Fatal(err)
	}
	_, err := authn.New(context.Background(), db, authn.Config{Hasher: fastHasher})
	if err == nil || !strings.Contains(err.Error(), "users table") {
		t.Fatalf("New on a foreign users table: %v", err)
	}
}

// TestOpenRefusesFileURI: Open takes a path and builds its own URI; a
// "file:" URI given as the path is refused with an error that says so, and
// creates nothing (SQLite would never see it: it would be the name of a
// file in the working directory). "./file:…" still names such a file.
func TestOpenRefusesFileURI(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // a relative "file:…" would land here
	for _, path := range []string{"file:auth.db", "file:auth.db?mode=ro", "FILE:auth.db", "file:" + filepath.Join(dir, "auth.db"), "file::memory:"} {
		a, err := authn.Open(context.Background(), path, authn.Config{Hasher: fastHasher})
		if err == nil {
			a.Close()
			t.Errorf("Open(%q) succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), "a file: URI is not a path") {
			t.Errorf("Open(%q) = %v, want an error saying it is a URI, not a path", path, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Open of file: URIs created %v", entries)
	}
	a, err := authn.Open(context.Background(), "./file:auth.db", authn.Config{Hasher: fastHasher})
	if err != nil {
		t.Fatalf(`Open("./file:auth.db"): %v`, err)
	}
	a.Close()
	if _, err := os.Stat(filepath.Join(dir, "file:auth.db")); err != nil {
		t.Fatalf(`Open("./file:auth.db") made no such file: %v`, err)
	}
}

// TestOpenCloseAgain: an existing database opened and closed with nothing
// written in between closes cleanly, every time, with no ERROR line. The
// -wal watch's check at Close once read the -wal through a descriptor of
// a pooled connection closed just before, took that for a damaged -wal,
// and left a connection open for the life of the process.
func TestOpenCloseAgain(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	for i := range 3 {
		var logs strings.Builder
		a, err := authn.Open(context.Background(), path, authn.Config{Hasher: fastHasher, Logger: newTextLogger(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(); err != nil {
			t.Errorf("Close %d: %v", i, err)
		}
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("Open and Close %d logged an error:\n%s", i, logs.String())
		}
	}
}
