package password

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"unicode"
)

// TestErrorsQuoteNoHashContent: the errors of Verify and Check name the
// scheme and what is wrong, and parsed numbers, but never repeat the encoded
// string. A "hash" column holding a plaintext password, or a real hash, must
// not reach a log or a terminal through an error message.
func TestErrorsQuoteNoHashContent(t *testing.T) {
	t.Parallel()
	for _, encoded := range malformedHashes(t) {
		if costly(encoded) {
			continue
		}
		_, verr := Verify(encoded, "x")
		cerr := Check(encoded)
		for _, err := range []error{verr, cerr} {
			if err == nil {
				continue
			}
			if leak := leakedPart(encoded, err.Error()); leak != "" {
				t.Errorf("error for %q repeats %q of it: %v", encoded, leak, err)
			}
		}
	}
}

// malformedHashes derives broken hashes from every test vector: the
// password itself stored as a "hash", truncations, a foreign character at
// each position, and each separator dropped or doubled; plus a few shapes
// of each scheme with wrong parameters.
func malformedHashes(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("testdata/password-vectors.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := []string{
		"Tr0ub4dor&3-Xq9zKvPlain", "hunter2hunter2hunter2", "$1$saltsalt$Kq9zXvWlmNbPqRsTuVwXyZ",
		"pbkdf2:md5:1000$Kq9zXvWl$" + strings.Repeat("ab", 16),
		"pbkdf2:sha256:1000:7$Kq9zXvWl$" + strings.Repeat("ab", 32),
		"pbkdf2:sha256:12x4$Kq9zXvWl$" + strings.Repeat("ab", 32),
		"pbkdf2:sha256:99999999999999999999999999$Kq9zXvWl$" + strings.Repeat("ab", 32),
		"scrypt:Kq9z:8:1$Kq9zXvWl$" + strings.Repeat("ab", 64),
		"scrypt:16384:8$Kq9zXvWl$" + strings.Repeat("ab", 64),
		"$argon2id$v=18$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w",
		"$argon2id$v=19$m=4096,q=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w",
		"$argon2id$v=19$m=4096,t=2$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w",
		"$argon2id$v=19$m=Kq9zXv,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w",
		"$2y$Kq$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e",
	}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 4 {
			continue
		}
		pw, enc := cols[1], cols[2]
		out = append(out, pw, enc+"$extra", enc[:len(enc)-1], enc[:len(enc)/2], enc[:len(enc)*3/4])
		for i := 1; i < len(enc); i += 3 {
			out = append(out, enc[:i]+"!"+enc[i+1:])
		}
		for i, c := range enc {
			if c == '$' || c == ':' || c == ',' || c == '=' {
				out = append(out, enc[:i]+enc[i+1:], enc[:i+1]+enc[i:])
			}
		}
	}
	return out
}

// leakedPart returns the longest part of encoded, of 4 bytes or more, that
// msg repeats and that is not a scheme word, a digest name, a parameter key
// or a number: "" when there is none.
func leakedPart(encoded, msg string) string {
	longest := ""
	for i := range len(encoded) {
		for j := len(encoded); j-i >= 4 && j-i > len(longest); j-- {
			if s := encoded[i:j]; strings.Contains(msg, s) && !harmless(s) {
				longest = s
				break
			}
		}
	}
	return longest
}

// harmless reports whether s, its digits left out (a parameter parsed as a
// number is printed as a number), is part of the fixed text of a format:
// what an error may say to name the scheme and its parameters.
func harmless(s string) bool {
	noDigits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if unicode.IsDigit(r) {
				return -1
			}
			return r
		}, s)
	}
	for _, format := range []string{
		"$argon2id$v=19$m=,t=,p=$", "pbkdf2:sha1:$", "pbkdf2:sha224:$", "pbkdf2:sha256:$", "pbkdf2:sha384:$",
		"pbkdf2:sha512:$", "scrypt:::$", "scrypt$", "$2a$$", "$2b$$", "$2y$$",
	} {
		if strings.Contains(noDigits(format), noDigits(s)) {
			return true
		}
	}
	return false
}
