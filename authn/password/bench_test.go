package password

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"testing"
)

// BenchmarkVerify measures one verification per format at the default
// parameters of each Hasher.
func BenchmarkVerify(b *testing.B) {
	const pw = "correct horse battery staple"
	for _, tc := range []struct {
		name string
		h    Hasher
	}{
		{"pbkdf2-sha256-600000", PBKDF2{}},
		{"scrypt-32768-8-1", Scrypt{}},
		{"argon2id-64MiB-t3-p4", Argon2id{}},
		{"bcrypt-12", Bcrypt{}},
	} {
		encoded, err := tc.h.Hash(pw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if ok, err := tc.h.Verify(encoded, pw); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkPBKDF2Direct is crypto/pbkdf2 called directly with the default's
// parameters: the floor that BenchmarkVerify/pbkdf2-sha256-600000 is
// compared with.
func BenchmarkPBKDF2Direct(b *testing.B) {
	salt := []byte("zz6p3MXQkMvwgnl5")
	for b.Loop() {
		if _, err := pbkdf2.Key(sha256.New, "correct horse battery staple", salt, 600_000, 32); err != nil {
			b.Fatal(err)
		}
	}
}
