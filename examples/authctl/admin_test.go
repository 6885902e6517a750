package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minimost/minimost/internal/testdb"
)

// untouchedStdin is a standard input that notes whether anything read it.
type untouchedStdin struct{ read bool }

func (r *untouchedStdin) Read([]byte) (int, error) {
	r.read = true
	return 0, io.EOF
}

// TestAddChecksNameFirst: "add" refuses an invalid name, or one taken (also
// in another case), before it reads a password: nobody types one twice for
// nothing.
func TestAddChecksNameFirst(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "alice's long passphrase\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	for _, tc := range []struct{ name, msg string }{
		{"alice", "username already taken: alice"},
		{"Alice", "username already taken: Alice"},
		{"carol!", "invalid username"},
		{strings.Repeat("c", 33), "invalid username"},
	} {
		stdin := &untouchedStdin{}
		var out, errOut strings.Builder
		code := run(context.Background(), []string{"-db", db, "add", tc.name},
			env{stdin: stdin, stdout: &out, stderr: &errOut, hasher: testdb.FastHasher})
		r := result{code, out.String(), errOut.String()}
		r.want(t, 1, tc.msg)
		if stdin.read {
			t.Errorf("add %s: standard input was read before the name was refused", tc.name)
		}
	}
}
