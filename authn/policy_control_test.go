package authn_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestPolicyRefusesControlCharacters: a password with a control character
// (TAB, any C0, DEL, C1) cannot be set: it would work in the form but never
// over Basic auth, which refuses control characters. Verifying a password
// already stored with one is unchanged.
func TestPolicyRefusesControlCharacters(t *testing.T) {
	t.Parallel()
	base := "a long enough passphrase"
	for _, c := range []string{"\t", "\x00", "\x01", "\n", "\r", "\x1b", "\x7f", "\u0085", "\u009b"} {
		err := authn.PasswordPolicy{}.Check("alice", base+c+"x")
		if !errors.Is(err, authn.ErrInvalidPassword) || !strings.Contains(err.Error(), "control character") {
			t.Errorf("password with %q: %v, want ErrInvalidPassword naming control characters", c, err)
		}
	}
	for _, ok := range []string{base + " x", base + "\u200d\u00e9", base + "\u2028"} {
		if err := (authn.PasswordPolicy{}).Check("alice", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}

	// A password stored with a TAB (by the Python app) still verifies.
	a, _ := openTest(t, authn.Config{PasswordPolicy: authn.PasswordPolicy{}})
	ctx := context.Background()
	if err := a.Register(ctx, "alice", base+"\tx"); !errors.Is(err, authn.ErrInvalidPassword) {
		t.Fatalf("Register with a TAB: %v", err)
	}
	if err := a.ImportUser(ctx, authn.UserRecord{Username: "bob", PasswordHash: mustHash(t, base+"\tx")}, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate(ctx, "bob", base+"\tx"); err != nil {
		t.Errorf("login with a stored TAB password: %v", err)
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := fastHasher.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
