package password

import (
	"errors"
	"strings"
	"testing"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	argon, err := Argon2id{Memory: 1 << 10, Time: 1, Threads: 1}.Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		encoded string
		want    int64
	}{
		{argon, 1 << 20},
		{"$argon2id$v=19$m=65536,t=3,p=4$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", 64 << 20},
		{"scrypt:32768:8:1$salt$" + strings.Repeat("00", 64), 32<<20 + 1024 + 2048},
		{"pbkdf2:sha256:600000$abcdefgh$" + strings.Repeat("00", 32), 1 << 10},
		{"$2b$04$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e", 4168},
		{"plaintext", 0},
		{"$argon2id$v=19$m=4194304,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", 0}, // refused
	} {
		if got := Memory(tc.encoded); got != tc.want {
			t.Errorf("Memory(%.30q) = %d, want %d", tc.encoded, got, tc.want)
		}
	}
}

// TestCapsLowered: what one login can afford, and no more (issue 11: 256 MiB,
// 16 passes and 16 lanes took 1.6 s and a GB with 8 parallel logins).
func TestCapsLowered(t *testing.T) {
	t.Parallel()
	const s, h = "$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", "$salt$"
	for encoded, ok := range map[string]bool{
		"$argon2id$v=19$m=131072,t=4,p=8" + s: true,
		"$argon2id$v=19$m=65536,t=8,p=4" + s:  true,
		"$argon2id$v=19$m=7168,t=5,p=1" + s:   true, // OWASP's smallest
		"$argon2id$v=19$m=262144,t=1,p=1" + s: false,
		"$argon2id$v=19$m=131072,t=8,p=8" + s: false, // m*t
		"$argon2id$v=19$m=65536,t=3,p=16" + s: false,
		"$argon2id$v=19$m=16384,t=16,p=1" + s: false,
		"scrypt:131072:8:1" + h + hex64:       true,
		"scrypt:131072:8:2" + h + hex64:       true,
		"scrypt:262144:8:1" + h + hex64:       false,
		"scrypt:131072:8:4" + h + hex64:       false,
	} {
		err := Check(encoded)
		if (err == nil) != ok || err != nil && !errors.Is(err, ErrTooCostly) {
			t.Errorf("Check(%.40s…) = %v, want accepted %v", encoded, err, ok)
		}
	}
}

var hex64 = strings.Repeat("00", 64)
