package password

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id writes PHC strings "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>"
// (unpadded standard base64), the format of the argon2 reference tool and of
// Python's argon2-cffi. The zero value uses RFC 9106's second recommended
// setting: 64 MiB, 3 passes, 4 lanes, a 16-byte salt and a 32-byte key.
type Argon2id struct {
	Memory  uint32 // KiB; 0 means 64*1024
	Time    uint32 // passes; 0 means 3
	Threads uint8  // lanes; 0 means 4
}

func (a Argon2id) params() (m, t uint32, p uint8) {
	m, t, p = a.Memory, a.Time, a.Threads
	if m == 0 {
		m = 64 << 10
	}
	if t == 0 {
		t = 3
	}
	if p == 0 {
		p = 4
	}
	return m, t, p
}

const (
	argon2KeyLen  = 32
	argon2SaltLen = 16
)

// Hash returns the PHC encoding of password.
func (a Argon2id) Hash(password string) (string, error) {
	m, t, p := a.params()
	if err := checkArgon2(m, t, p); err != nil {
		return "", err
	}
	salt := randomBytes(argon2SaltLen)
	key := argon2.IDKey([]byte(password), salt, t, m, p, argon2KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, m, t, p, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches encoded, of any supported format.
func (Argon2id) Verify(encoded, password string) (bool, error) { return Verify(encoded, password) }

// NeedsRehash reports whether encoded is not an argon2id hash with at least
// a's memory, passes and lanes.
func (a Argon2id) NeedsRehash(encoded string) bool {
	m, t, p := a.params()
	h, err := parseArgon2id(encoded)
	return err != nil || h.m < m || h.t < t || h.p < p
}

type argon2Hash struct {
	m, t      uint32
	p         uint8
	salt, sum []byte
}

// parseArgon2id reads a PHC argon2id string of version 19, the only version
// x/crypto implements, with exactly the parameters m, t and p in that order.
func parseArgon2id(encoded string) (argon2Hash, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return argon2Hash{}, fmt.Errorf("%w: argon2id hash is not $argon2id$v=19$m=,t=,p=$<salt>$<hash>", ErrMalformed)
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return argon2Hash{}, fmt.Errorf("%w: argon2id version is not v=%d", ErrUnsupported, argon2.Version)
	}
	var h argon2Hash
	var m, t, p int
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return argon2Hash{}, fmt.Errorf("%w: argon2id parameters are not m=,t=,p=", ErrMalformed)
	}
	for i, want := range []struct {
		key string
		dst *int
		max int
	}{{"m=", &m, MaxArgon2Memory}, {"t=", &t, MaxArgon2Time}, {"p=", &p, MaxArgon2Threads}} {
		value, ok := strings.CutPrefix(params[i], want.key)
		if !ok {
			return argon2Hash{}, fmt.Errorf("%w: argon2id parameters are not m=,t=,p=", ErrMalformed)
		}
		var err error
		if *want.dst, err = parseCount(value, "argon2 "+want.key[:1], want.max); err != nil {
			return argon2Hash{}, err
		}
	}
	h.m, h.t, h.p = uint32(m), uint32(t), uint8(p)
	if err := checkArgon2(h.m, h.t, h.p); err != nil {
		return argon2Hash{}, err
	}
	var err error
	if h.salt, err = decodeB64(parts[4], "salt", 8, 64); err != nil {
		return argon2Hash{}, err
	}
	if h.sum, err = decodeB64(parts[5], "hash", 4, 128); err != nil {
		return argon2Hash{}, err
	}
	return h, nil
}

// checkArgon2 rejects parameters that argon2 refuses or that exceed the caps.
func checkArgon2(m, t uint32, p uint8) error {
	if t < 1 || p < 1 || m < 8*uint32(p) {
		return fmt.Errorf("%w: argon2 m=%d,t=%d,p=%d (need t>=1, p>=1, m>=8p)", ErrMalformed, m, t, p)
	}
	if m > MaxArgon2Memory || t > MaxArgon2Time || p > MaxArgon2Threads || uint64(m)*uint64(t) > MaxArgon2Work {
		return fmt.Errorf("%w: argon2 m=%d,t=%d,p=%d (caps m=%d,t=%d,p=%d,m*t=%d)", ErrTooCostly, m, t, p,
			MaxArgon2Memory, MaxArgon2Time, MaxArgon2Threads, MaxArgon2Work)
	}
	return nil
}

// decodeB64 decodes unpadded standard base64 of min to max bytes.
func decodeB64(s, what string, min, max int) ([]byte, error) {
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: argon2 %s is not unpadded base64", ErrMalformed, what)
	}
	if len(b) < min || len(b) > max {
		return nil, fmt.Errorf("%w: argon2 %s of %d bytes, want %d to %d", ErrMalformed, what, len(b), min, max)
	}
	return b, nil
}

func verifyArgon2id(encoded, password string) (bool, error) {
	h, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), h.salt, h.t, h.m, h.p, uint32(len(h.sum)))
	return subtle.ConstantTimeCompare(key, h.sum) == 1, nil
}
