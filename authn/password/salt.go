package password

import "crypto/rand"

const (
	saltChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	// saltLength is werkzeug's default salt length.
	saltLength = 16
)

// newSalt returns n characters drawn uniformly from saltChars, as werkzeug's
// gen_salt does. Bytes of 248 and above are dropped so that every character
// is equally likely (248 = 4*62).
func newSalt(n int) string {
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		rand.Read(buf[:]) // never fails; it crashes the program instead
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, saltChars[b%62])
			}
		}
	}
	return string(out)
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
