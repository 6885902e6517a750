// Package password computes and verifies encoded password hashes in the formats
// that Python's werkzeug, the argon2 reference tool and Apache's htpasswd
// write:
//
//	pbkdf2:sha256:600000$<salt>$<hex>          werkzeug PBKDF2 (sha1, sha224, sha256, sha384, sha512)
//	scrypt:32768:8:1$<salt>$<hex>              werkzeug 3 scrypt
//	$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash> PHC string
//	$2b$12$<salt+hash>                          bcrypt ($2a$, $2b$, $2y$)
//
// Each of the types PBKDF2, Scrypt, Argon2id and Bcrypt is a [Hasher] that
// writes new hashes in its own format with its own parameters, and verifies
// hashes of every format above, so that a stored hash keeps working after the
// configured format changes; NeedsRehash then says which ones to upgrade.
//
// The work factors read from a stored hash are capped (see the Max constants):
// a hostile or corrupted hash string gets an error instead of a verification
// that runs for minutes or allocates gigabytes.
package password

import (
	"errors"
	"fmt"
	"strings"
)

// Hasher hashes and verifies passwords.
//
// Implementations must be safe for concurrent use. Verify compares in
// constant time and answers a malformed encoded string with an error, never a
// panic and never true.
type Hasher interface {
	// Hash returns the encoded hash of password, with a fresh random salt.
	Hash(password string) (encoded string, err error)
	// Verify reports whether password matches encoded.
	Verify(encoded, password string) (ok bool, err error)
	// NeedsRehash reports whether encoded should be replaced by a new Hash:
	// it is of another format than the Hasher writes, weaker than it, or
	// unreadable.
	NeedsRehash(encoded string) bool
}

// ErrPasswordTooLong is wrapped by a Hasher's Hash that refuses a password
// for its length: the password's fault, not the Hasher's, so an application
// answers it as a rejected password (authn does: ErrInvalidPassword), not as
// an outage. A Hasher with such a limit should also implement Limited, so
// that the limit can be checked, and shown, before hashing.
var ErrPasswordTooLong = errors.New("password: too long for the hash format")

// Limited is implemented by a Hasher whose Hash accepts passwords of at most
// MaxPasswordBytes bytes (UTF-8) and refuses longer ones with
// ErrPasswordTooLong. Bcrypt is one: 72 bytes. A Hasher that wraps another
// (for metrics, or a pepper) should forward the method.
type Limited interface {
	MaxPasswordBytes() int
}

// MaxPasswordBytes returns h's limit on the length of a password, in bytes,
// or 0 when h declares none (it does not implement Limited).
func MaxPasswordBytes(h Hasher) int {
	if l, ok := h.(Limited); ok {
		return max(l.MaxPasswordBytes(), 0)
	}
	return 0
}

// Errors returned for encoded strings that cannot be verified. They are
// wrapped with details; match them with errors.Is. No error of this package
// repeats any part of an encoded string, which may be a real hash or a
// plaintext password stored by mistake: the details name the scheme, what is
// wrong, and parameters parsed as numbers, so that an error can be logged.
var (
	// ErrUnsupported means the encoded string is of no format this package
	// reads.
	ErrUnsupported = errors.New("password: unsupported hash format")
	// ErrMalformed means the encoded string names a known format but does
	// not follow it.
	ErrMalformed = errors.New("password: malformed hash")
	// ErrTooCostly means the encoded string's work factors exceed the caps
	// of this package.
	ErrTooCostly = errors.New("password: hash parameters exceed limits")
)

// Caps on the work factors accepted from a stored hash. Each is a few times
// the cost of this package's defaults and about the most that one login can
// afford: a couple of seconds and 128 MiB. On a 2-core machine shared with
// other work, argon2id at the memory and work caps (m=128 MiB, t=4, p=8)
// took 2.1 s, and scrypt at the memory cap (N=2^17, r=8, p=1) 0.62 s,
// measured once with x/crypto. A server bounds how many run at once, and
// their memory, on top of these (authn's HashConcurrency and HashMemory).
const (
	MaxPBKDF2Iterations = 5_000_000 // about 8 x the default 600,000
	MaxScryptMemory     = 128 << 20 // bytes: 128*N*r; the default uses 32 MiB
	MaxScryptWork       = 1 << 21   // N*r*p, 8 x the default 1<<18: p=2 at the memory cap
	MaxArgon2Memory     = 128 << 10 // KiB, i.e. 128 MiB; the default uses 64 MiB
	MaxArgon2Time       = 8         // passes; the default is 3
	MaxArgon2Threads    = 8         // lanes; the default is 4
	// MaxArgon2Work bounds m*t (KiB times passes), which the time of a
	// verification follows: 128 MiB for 4 passes, 64 MiB for 8, about 2.7
	// x the default's 64 MiB for 3.
	MaxArgon2Work = 512 << 10
	MaxBcryptCost = 15 // the default is 12; each step doubles the time

	// MaxEncodedLength bounds the encoded string itself.
	MaxEncodedLength = 1024
)

// Default returns the Hasher used when none is configured: new hashes are
// werkzeug's pbkdf2:sha256:600000 (OWASP's figure for PBKDF2-HMAC-SHA256,
// readable by werkzeug's check_password_hash), and every format verifies.
func Default() Hasher { return PBKDF2{} }

// Verify reports whether password matches encoded, whatever the format of
// encoded. It is what every Hasher of this package does in its Verify method.
func Verify(encoded, password string) (bool, error) {
	if len(encoded) > MaxEncodedLength {
		return false, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(encoded), MaxEncodedLength)
	}
	switch Scheme(encoded) {
	case "pbkdf2":
		return verifyPBKDF2(encoded, password)
	case "scrypt":
		return verifyScrypt(encoded, password)
	case "argon2id":
		return verifyArgon2id(encoded, password)
	case "bcrypt":
		return verifyBcrypt(encoded, password)
	}
	return false, ErrUnsupported
}

// Scheme names the format of encoded: "pbkdf2", "scrypt", "argon2id",
// "bcrypt", or "" when it is none of these. It looks only at the prefix and
// does not check the rest.
func Scheme(encoded string) string {
	switch {
	case strings.HasPrefix(encoded, "pbkdf2:"):
		return "pbkdf2"
	case strings.HasPrefix(encoded, "scrypt:") || strings.HasPrefix(encoded, "scrypt$"):
		return "scrypt"
	case strings.HasPrefix(encoded, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		return "bcrypt"
	}
	return ""
}

// Check reports whether Verify could read encoded, without computing a hash:
// nil, or an error wrapping ErrUnsupported, ErrMalformed or ErrTooCostly.
// It is for accepting hashes from elsewhere, such as an htpasswd file.
func Check(encoded string) error {
	if len(encoded) > MaxEncodedLength {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(encoded), MaxEncodedLength)
	}
	var err error
	switch Scheme(encoded) {
	case "pbkdf2":
		_, err = parsePBKDF2(encoded)
	case "scrypt":
		_, err = parseScrypt(encoded)
	case "argon2id":
		_, err = parseArgon2id(encoded)
	case "bcrypt":
		_, err = bcryptCost(encoded)
	default:
		err = ErrUnsupported
	}
	return err
}
