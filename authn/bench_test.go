package authn_test

import (
	"context"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
)

// BenchmarkAuthenticate is a full successful login with the default Hasher
// (pbkdf2:sha256:600000): claim, one verification, reset. Compare with
// BenchmarkPBKDF2Direct in package password.
func BenchmarkAuthenticate(b *testing.B) {
	for _, tc := range []struct {
		name string
		pw   string
	}{{"success", goodPassword}, {"wrong-password", "not the password"}} {
		b.Run(tc.name, func(b *testing.B) {
			a, _ := openTest(b, authn.Config{Hasher: password.Default(), LockoutThreshold: -1})
			ctx := context.Background()
			if err := a.Register(ctx, "u", goodPassword); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				err := a.Authenticate(ctx, "u", tc.pw)
				if (err == nil) != (tc.pw == goodPassword) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClaim is the database part of a login alone, with a trivial
// Hasher: the claim and the reset statements on SQLite.
func BenchmarkClaim(b *testing.B) {
	a, _ := openTest(b, authn.Config{Hasher: password.PBKDF2{Iterations: 1}})
	ctx := context.Background()
	if err := a.Register(ctx, "u", goodPassword); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := a.Authenticate(ctx, "u", goodPassword); err != nil {
			b.Fatal(err)
		}
	}
}
