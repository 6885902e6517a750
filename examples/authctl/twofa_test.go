package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/pquerna/otp/totp"
)

// Test2FACommands: "2fa NAME" shows the state of NAME's second factor;
// "2fa reset NAME" removes it and ends NAME's sessions, so that the
// password alone signs in again.
func Test2FACommands(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const pw = "alice's long passphrase"
		ctx := context.Background()
		authctl(t, pw+"\n", "-db", db.URL, "add", "alice").want(t, 0, "created user alice")
		r := authctl(t, "", "-db", db.URL, "2fa", "alice")
		if r.code != 0 || !strings.Contains(r.stdout, "second factor:       off") {
			t.Fatalf("2fa before enrolment: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
		a := db.Open(t, authn.Config{})
		e, err := a.TOTP().Enroll(ctx, "alice", pw)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := totp.GenerateCode(e.Secret, time.Now())
		if _, err := a.TOTP().Confirm(ctx, "alice", code); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateToken(ctx, "alice", "ci"); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "alice", pw); !errors.Is(err, authn.ErrSecondFactorRequired) {
			t.Fatalf("Authenticate with TOTP on: %v", err)
		}
		r = authctl(t, "", "-db", db.URL, "2fa", "alice")
		if r.code != 0 || !strings.Contains(r.stdout, "second factor:       on (TOTP)") || !strings.Contains(r.stdout, "recovery codes left: 10") {
			t.Fatalf("2fa after enrolment: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
		r = authctl(t, "", "-db", db.URL, "2fa", "-json", "alice")
		if r.code != 0 || !strings.Contains(r.stdout, `"enabled": true`) {
			t.Fatalf("2fa -json: exit %d, %q", r.code, r.stdout)
		}
		authctl(t, "", "-db", db.URL, "2fa", "reset", "alice").want(t, 0, "removed the second factor of alice")
		if err := a.Authenticate(ctx, "alice", pw); err != nil {
			t.Fatalf("Authenticate after 2fa reset: %v", err)
		}
		if acc, _ := a.Account(ctx, "alice"); acc.SecondFactor() {
			t.Error("Account still has a second factor after 2fa reset")
		}
		authctl(t, "", "-db", db.URL, "2fa", "reset", "nobody").want(t, 1, "no such user: nobody")
		authctl(t, "", "-db", db.URL, "2fa", "nobody").want(t, 1, "no such user: nobody")
		authctl(t, "", "-db", db.URL, "2fa", "remove", "alice").want(t, 2, "unknown 2fa command")
	})
}
