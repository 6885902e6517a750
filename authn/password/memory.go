package password

// Memory returns about how many bytes verifying encoded allocates, read
// from its parameters: for argon2id its memory (m KiB), for scrypt
// 128*N*r plus its smaller buffers, for PBKDF2 and bcrypt a few KiB of
// state. It is 0 for a string of no format this package reads, or one
// Verify would refuse (malformed, over the caps): verifying it allocates
// nothing of note. It lets a caller bound the memory of the verifications
// it runs at once.
func Memory(encoded string) int64 {
	if Check(encoded) != nil {
		return 0
	}
	switch Scheme(encoded) {
	case "argon2id":
		h, _ := parseArgon2id(encoded) // Check read it
		return int64(h.m) << 10
	case "scrypt":
		h, _ := parseScrypt(encoded)
		// V is N blocks of 128*r bytes; B is p of them, XY two.
		return 128*int64(h.n)*int64(h.r) + 128*int64(h.r)*int64(h.p) + 256*int64(h.r)
	case "bcrypt":
		return 4168 // the S-boxes and the P-array
	}
	return 1 << 10 // PBKDF2: a few HMAC states
}
