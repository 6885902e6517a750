package password

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// PBKDF2 writes werkzeug's "pbkdf2:<digest>:<iterations>$<salt>$<hex>"
// hashes: PBKDF2-HMAC of the UTF-8 password with the salt's characters as the
// salt, a key as long as the digest, hex-encoded. The zero value is the
// default: SHA-256 and 600,000 iterations.
type PBKDF2 struct {
	// Digest is "sha1", "sha224", "sha256", "sha384" or "sha512";
	// "" means "sha256".
	Digest string
	// Iterations is the iteration count; 0 means 600,000.
	Iterations int
}

func (p PBKDF2) params() (string, int) {
	digest, iter := p.Digest, p.Iterations
	if digest == "" {
		digest = "sha256"
	}
	if iter == 0 {
		iter = 600_000
	}
	return digest, iter
}

// Hash returns the werkzeug encoding of password.
func (p PBKDF2) Hash(password string) (string, error) {
	digest, iter := p.params()
	h, ok := pbkdf2Digests[digest]
	if !ok {
		return "", fmt.Errorf("password: PBKDF2 digest %q is not one of sha1, sha224, sha256, sha384, sha512", digest)
	}
	if iter < 1 || iter > MaxPBKDF2Iterations {
		return "", fmt.Errorf("password: PBKDF2 iterations %d outside 1..%d", iter, MaxPBKDF2Iterations)
	}
	salt := newSalt(saltLength)
	key, err := pbkdf2.Key(h, password, []byte(salt), iter, h().Size())
	if err != nil {
		return "", fmt.Errorf("password: pbkdf2: %w", err)
	}
	return fmt.Sprintf("pbkdf2:%s:%d$%s$%x", digest, iter, salt, key), nil
}

// Verify reports whether password matches encoded, of any supported format.
func (PBKDF2) Verify(encoded, password string) (bool, error) { return Verify(encoded, password) }

// NeedsRehash reports whether encoded is not a PBKDF2 hash with p's digest
// and at least p's iterations.
func (p PBKDF2) NeedsRehash(encoded string) bool {
	digest, iter := p.params()
	h, err := parsePBKDF2(encoded)
	return err != nil || h.digest != digest || h.iterations < iter
}

var pbkdf2Digests = map[string]func() hash.Hash{
	"sha1":   sha1.New,
	"sha224": sha256.New224,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

type pbkdf2Hash struct {
	digest     string
	iterations int
	salt       string
	sum        []byte
}

// parsePBKDF2 reads "pbkdf2:<digest>:<iterations>$<salt>$<hex>". Werkzeug also
// accepts "pbkdf2:<digest>" with the iteration count left out, but it always
// writes the count, and the default it would use has changed between
// versions, so a missing count is an error rather than a guess.
func parsePBKDF2(encoded string) (pbkdf2Hash, error) {
	method, salt, hexSum, err := splitWerkzeug(encoded)
	if err != nil {
		return pbkdf2Hash{}, err
	}
	parts := strings.Split(method, ":")
	if len(parts) != 3 || parts[0] != "pbkdf2" {
		return pbkdf2Hash{}, fmt.Errorf("%w: pbkdf2 method is not pbkdf2:<digest>:<iterations>", ErrMalformed)
	}
	h, ok := pbkdf2Digests[parts[1]]
	if !ok {
		return pbkdf2Hash{}, fmt.Errorf("%w: pbkdf2 digest is not one of sha1, sha224, sha256, sha384, sha512", ErrUnsupported)
	}
	iter, err := parseCount(parts[2], "PBKDF2 iterations", MaxPBKDF2Iterations)
	if err != nil {
		return pbkdf2Hash{}, err
	}
	sum, err := decodeHex(hexSum, h().Size())
	if err != nil {
		return pbkdf2Hash{}, err
	}
	return pbkdf2Hash{digest: parts[1], iterations: iter, salt: salt, sum: sum}, nil
}

func verifyPBKDF2(encoded, password string) (bool, error) {
	h, err := parsePBKDF2(encoded)
	if err != nil {
		return false, err
	}
	key, err := pbkdf2.Key(pbkdf2Digests[h.digest], password, []byte(h.salt), h.iterations, len(h.sum))
	if err != nil {
		return false, fmt.Errorf("password: pbkdf2: %w", err)
	}
	return subtle.ConstantTimeCompare(key, h.sum) == 1, nil
}

// Scrypt writes werkzeug 3's "scrypt:<N>:<r>:<p>$<salt>$<hex>" hashes: a
// 64-byte scrypt key of the UTF-8 password with the salt's characters as the
// salt, hex-encoded. The zero value is werkzeug's default: N=32768, r=8, p=1.
type Scrypt struct {
	N, R, P int // 0 means 32768, 8 and 1
}

func (s Scrypt) params() (n, r, p int) {
	n, r, p = s.N, s.R, s.P
	if n == 0 {
		n = 1 << 15
	}
	if r == 0 {
		r = 8
	}
	if p == 0 {
		p = 1
	}
	return n, r, p
}

// scryptKeyLen is the key length werkzeug uses.
const scryptKeyLen = 64

// Hash returns the werkzeug encoding of password.
func (s Scrypt) Hash(password string) (string, error) {
	n, r, p := s.params()
	if err := checkScrypt(n, r, p); err != nil {
		return "", err
	}
	salt := newSalt(saltLength)
	key, err := scrypt.Key([]byte(password), []byte(salt), n, r, p, scryptKeyLen)
	if err != nil {
		return "", fmt.Errorf("password: scrypt: %w", err)
	}
	return fmt.Sprintf("scrypt:%d:%d:%d$%s$%x", n, r, p, salt, key), nil
}

// Verify reports whether password matches encoded, of any supported format.
func (Scrypt) Verify(encoded, password string) (bool, error) { return Verify(encoded, password) }

// NeedsRehash reports whether encoded is not a scrypt hash with at least s's
// parameters.
func (s Scrypt) NeedsRehash(encoded string) bool {
	n, r, p := s.params()
	h, err := parseScrypt(encoded)
	return err != nil || h.n < n || h.r < r || h.p < p
}

type scryptHash struct {
	n, r, p int
	salt    string
	sum     []byte
}

// parseScrypt reads "scrypt:<N>:<r>:<p>$<salt>$<hex>"; a bare "scrypt" method
// means werkzeug's defaults, which have not changed since scrypt was added.
func parseScrypt(encoded string) (scryptHash, error) {
	method, salt, hexSum, err := splitWerkzeug(encoded)
	if err != nil {
		return scryptHash{}, err
	}
	h := scryptHash{n: 1 << 15, r: 8, p: 1, salt: salt}
	if method != "scrypt" {
		parts := strings.Split(method, ":")
		if len(parts) != 4 || parts[0] != "scrypt" {
			return scryptHash{}, fmt.Errorf("%w: scrypt method is not scrypt:<N>:<r>:<p>", ErrMalformed)
		}
		for i, dst := range []*int{&h.n, &h.r, &h.p} {
			if *dst, err = parseCount(parts[i+1], "scrypt parameter", MaxScryptWork); err != nil {
				return scryptHash{}, err
			}
		}
	}
	if err := checkScrypt(h.n, h.r, h.p); err != nil {
		return scryptHash{}, err
	}
	if h.sum, err = decodeHex(hexSum, scryptKeyLen); err != nil {
		return scryptHash{}, err
	}
	return h, nil
}

// checkScrypt rejects parameters that scrypt refuses or that exceed the caps.
func checkScrypt(n, r, p int) error {
	if n < 2 || n&(n-1) != 0 {
		return fmt.Errorf("%w: scrypt N=%d is not a power of two above 1", ErrMalformed, n)
	}
	if r < 1 || p < 1 {
		return fmt.Errorf("%w: scrypt r=%d, p=%d", ErrMalformed, r, p)
	}
	// The products are computed from values capped at MaxScryptWork (2^22)
	// by the parser, so they cannot overflow an int64.
	if mem := 128 * n * r; mem > MaxScryptMemory {
		return fmt.Errorf("%w: scrypt N=%d r=%d needs %d MiB, more than %d", ErrTooCostly, n, r, mem>>20, MaxScryptMemory>>20)
	}
	if work := n * r * p; work > MaxScryptWork {
		return fmt.Errorf("%w: scrypt N*r*p=%d, more than %d", ErrTooCostly, work, MaxScryptWork)
	}
	return nil
}

func verifyScrypt(encoded, password string) (bool, error) {
	h, err := parseScrypt(encoded)
	if err != nil {
		return false, err
	}
	key, err := scrypt.Key([]byte(password), []byte(h.salt), h.n, h.r, h.p, len(h.sum))
	if err != nil {
		return false, fmt.Errorf("password: scrypt: %w", err)
	}
	return subtle.ConstantTimeCompare(key, h.sum) == 1, nil
}

// splitWerkzeug splits "<method>$<salt>$<hex>".
func splitWerkzeug(encoded string) (method, salt, hexSum string, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("%w: %s hash is not <method>$<salt>$<hash>", ErrMalformed, Scheme(encoded))
	}
	if parts[1] == "" {
		return "", "", "", fmt.Errorf("%w: empty salt", ErrMalformed)
	}
	return parts[0], parts[1], parts[2], nil
}

// parseCount reads a positive decimal parameter of at most max, digits only.
// Its errors print the value only once it is parsed as a number.
func parseCount(s, what string, max int) (int, error) {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %s is not a decimal number", ErrMalformed, what)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil && len(s) > 0 {
		return 0, fmt.Errorf("%w: %s is out of range", ErrTooCostly, what)
	}
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %s is not a positive number", ErrMalformed, what)
	}
	if n > max {
		return 0, fmt.Errorf("%w: %s %d, more than %d", ErrTooCostly, what, n, max)
	}
	return n, nil
}

// decodeHex decodes a hex digest that must be exactly size bytes long.
func decodeHex(s string, size int) ([]byte, error) {
	if len(s) != 2*size {
		return nil, fmt.Errorf("%w: digest has %d hex digits, want %d", ErrMalformed, len(s), 2*size)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: digest is not hex", ErrMalformed)
	}
	return b, nil
}
