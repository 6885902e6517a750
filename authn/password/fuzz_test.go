package password

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary hash strings to the parsers. None may panic, and
// none may report a match for a string that does not parse.
func FuzzVerify(f *testing.F) {
	if file, err := os.Open("testdata/password-vectors.tsv"); err == nil {
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			if cols := strings.Split(sc.Text(), "\t"); len(cols) == 4 {
				f.Add(cols[2], cols[1])
			}
		}
		file.Close()
	}
	f.Add("pbkdf2:sha256:1$$", "")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAA", "x")
	f.Add("scrypt$s$00", "x")
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		if costly(encoded) {
			return
		}
		ok, err := Verify(encoded, pw)
		if ok && err != nil {
			t.Fatalf("Verify(%q) = true with error %v", encoded, err)
		}
		_ = Default().NeedsRehash(encoded)
		_ = Scheme(encoded)
	})
}

// costly reports whether encoded may ask for a slow (if capped) computation:
// a number of five digits or more, or a bcrypt cost above 9. The fuzzer is
// here to explore parsing; TestMalformed covers the caps.
func costly(encoded string) bool {
	digits := 0
	for _, c := range []byte(encoded) {
		if c >= '0' && c <= '9' {
			digits++
			if digits >= 5 {
				return true
			}
		} else {
			digits = 0
		}
	}
	return Scheme(encoded) == "bcrypt" && len(encoded) > 5 && encoded[4] != '0'
}
