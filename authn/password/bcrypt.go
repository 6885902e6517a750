package password

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Bcrypt writes "$2a$" bcrypt hashes (the prefix x/crypto writes; "$2b$" and
// "$2y$" verify too). The zero value uses cost 12.
//
// bcrypt reads only the first 72 bytes of a password. Rather than let two
// passwords that share those bytes match each other, Hash refuses a longer
// password with ErrPasswordTooLong (MaxPasswordBytes says so up front) and
// Verify reports it as not matching.
type Bcrypt struct {
	Cost int // 0 means 12
}

// bcryptMaxPassword is the number of password bytes bcrypt reads.
const bcryptMaxPassword = 72

func (b Bcrypt) cost() int {
	if b.Cost == 0 {
		return 12
	}
	return b.Cost
}

// Hash returns the bcrypt encoding of password.
func (b Bcrypt) Hash(password string) (string, error) {
	cost := b.cost()
	if cost < bcrypt.MinCost || cost > MaxBcryptCost {
		return "", fmt.Errorf("password: bcrypt cost %d outside %d..%d", cost, bcrypt.MinCost, MaxBcryptCost)
	}
	if len(password) > bcryptMaxPassword {
		return "", fmt.Errorf("%w: bcrypt reads at most %d bytes, this one has %d", ErrPasswordTooLong, bcryptMaxPassword, len(password))
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("password: bcrypt: %w", err)
	}
	return string(h), nil
}

// MaxPasswordBytes returns 72, the number of password bytes bcrypt reads:
// Bcrypt implements Limited.
func (Bcrypt) MaxPasswordBytes() int { return bcryptMaxPassword }

// Verify reports whether password matches encoded, of any supported format.
func (Bcrypt) Verify(encoded, password string) (bool, error) { return Verify(encoded, password) }

// NeedsRehash reports whether encoded is not a bcrypt hash of at least b's
// cost.
func (b Bcrypt) NeedsRehash(encoded string) bool {
	cost, err := bcryptCost(encoded)
	return err != nil || cost < b.cost()
}

// bcryptCost checks the shape of a bcrypt string ($2x$NN$ and 53 characters
// of salt and hash) and returns its cost.
func bcryptCost(encoded string) (int, error) {
	if len(encoded) != 60 || encoded[3] != '$' || encoded[6] != '$' {
		return 0, fmt.Errorf("%w: bcrypt hash is not $2x$NN$ and 53 characters", ErrMalformed)
	}
	for _, c := range []byte(encoded[7:]) {
		if !isBcryptBase64(c) {
			return 0, fmt.Errorf("%w: bcrypt hash has a character outside its base64 alphabet", ErrMalformed)
		}
	}
	cost, err := parseCount(encoded[4:6], "bcrypt cost", MaxBcryptCost)
	if err != nil {
		return 0, err
	}
	if cost < bcrypt.MinCost {
		return 0, fmt.Errorf("%w: bcrypt cost %d, less than %d", ErrMalformed, cost, bcrypt.MinCost)
	}
	return cost, nil
}

func isBcryptBase64(c byte) bool {
	return c == '.' || c == '/' || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
}

func verifyBcrypt(encoded, password string) (bool, error) {
	if _, err := bcryptCost(encoded); err != nil {
		return false, err
	}
	if len(password) > bcryptMaxPassword {
		return false, nil
	}
	// x/crypto keeps the minor version letter it reads, so "$2y$" (PHP's
	// and htpasswd's name for the fixed algorithm) verifies as it is.
	err := bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	// x/crypto's errors may quote a byte of the hash: not wrapped.
	return false, fmt.Errorf("%w: bcrypt hash refused by x/crypto/bcrypt", ErrMalformed)
}
