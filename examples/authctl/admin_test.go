package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
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

// TestLockDays: "lock" takes days (7d) and "forever", a lock with no end
// that list, list -locked, show and show -json call forever and that
// unlock ends; other durations are usage errors that lock nothing.
func TestLockDays(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "bob's long passphrase\n", "-db", db, "add", "bob").want(t, 0, "created user bob")

	authctl(t, "", "-db", db, "lock", "bob", "7d").want(t, 0, "locked bob until")
	r := authctl(t, "", "-db", db, "show", "-json", "bob")
	var acc struct {
		LockedUntil   time.Time `json:"locked_until"`
		LockedForever bool      `json:"locked_forever"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil {
		t.Fatalf("show -json bob: %v\n%s", err, r.stdout)
	}
	if d := time.Until(acc.LockedUntil); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour || acc.LockedForever {
		t.Errorf("after lock 7d: locked until %v (in %v), forever %v; want in 7 days", acc.LockedUntil, d, acc.LockedForever)
	}

	authctl(t, "", "-db", db, "lock", "bob", "forever").want(t, 0, "locked bob forever")
	r = authctl(t, "", "-db", db, "list")
	if !regexp.MustCompile(`(?m)^bob +0 +forever `).MatchString(r.stdout) {
		t.Errorf("list does not show bob locked forever:\n%s", r.stdout)
	}
	if r := authctl(t, "", "-db", db, "list", "-locked"); !strings.Contains(r.stdout, "bob") {
		t.Errorf("list -locked leaves bob out:\n%s", r.stdout)
	}
	if r := authctl(t, "", "-db", db, "show", "bob"); !strings.Contains(r.stdout, "locked until:    forever\n") {
		t.Errorf("show bob:\n%s%s", r.stdout, r.stderr)
	}
	r = authctl(t, "", "-db", db, "show", "-json", "bob")
	if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil || !acc.LockedForever {
		t.Errorf("show -json bob: %v\n%s", err, r.stdout)
	}
	if err := login(t, db, "bob", "bob's long passphrase"); !errors.Is(err, authn.ErrLocked) {
		t.Errorf("bob locked forever logs in: %v", err)
	}
	authctl(t, "", "-db", db, "unlock", "bob").want(t, 0, "unlocked bob")
	if err := login(t, db, "bob", "bob's long passphrase"); err != nil {
		t.Errorf("bob after unlock: %v", err)
	}

	for _, bad := range []string{"0d", "d", "1.5d", "+0d", "7days", "7D", "106752d", "Forever", "forever2", "0", "0s"} {
		authctl(t, "", "-db", db, "lock", "bob", bad).want(t, 2, fmt.Sprintf("DURATION %q", bad))
	}
	if r := authctl(t, "", "-db", db, "show", "bob"); !strings.Contains(r.stdout, "locked until:    -\n") {
		t.Errorf("a refused DURATION locked bob:\n%s", r.stdout)
	}
}
