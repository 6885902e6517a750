package password

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestVectors checks every hash made by werkzeug, the argon2 reference tool
// and htpasswd in testdata/password-vectors.tsv.
func TestVectors(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/password-vectors.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	rows := 0
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 4 {
			t.Fatalf("line %q: %d columns", sc.Text(), len(cols))
		}
		format, pw, encoded, want := cols[0], cols[1], cols[2], cols[3] == "1"
		rows++
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			if err := Check(encoded); err != nil {
				t.Errorf("Check(%q) = %v", encoded, err)
			}
			got, err := Default().Verify(encoded, pw)
			if err != nil || got != want {
				t.Errorf("Verify(%q, %q) = %v, %v; want %v", encoded, pw, got, err, want)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows < 40 {
		t.Fatalf("read %d vectors, the file has more than 40", rows)
	}
}

// TestIndependentVectors checks values computed outside this package: RFC
// 6070's PBKDF2-HMAC-SHA1 and RFC 7914's scrypt vectors, written in werkzeug's
// format (werkzeug uses the salt string's bytes as the salt).
func TestIndependentVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ encoded, password string }{
		{"pbkdf2:sha1:4096$salt$4b007901b765489abead49d926f721d065a429c1", "password"},
		{"pbkdf2:sha1:1$salt$0c60c80f961f0e71f3a9b524af6012062fe037a6", "password"},
		{"scrypt:1024:8:16$NaCl$fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640", "password"},
	} {
		ok, err := Verify(tc.encoded, tc.password)
		if err != nil || !ok {
			t.Errorf("Verify(%q) = %v, %v; want true", tc.encoded, ok, err)
		}
		ok, err = Verify(tc.encoded, tc.password+"x")
		if err != nil || ok {
			t.Errorf("Verify(%q) with a wrong password = %v, %v; want false", tc.encoded, ok, err)
		}
	}
}

var werkzeugDefault = regexp.MustCompile(`^pbkdf2:sha256:600000\$[A-Za-z0-9]{16}\$[0-9a-f]{64}$`)

// TestDefaultFormat checks that the default hash is exactly what werkzeug's
// check_password_hash reads and what werkzeug itself writes.
func TestDefaultFormat(t *testing.T) {
	t.Parallel()
	h := Default()
	a, err := h.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := h.Hash("correct horse battery staple")
	if !werkzeugDefault.MatchString(a) {
		t.Fatalf("Hash = %q, not pbkdf2:sha256:600000$<16 alphanumerics>$<64 lowercase hex>", a)
	}
	if a == b {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if ok, err := h.Verify(a, "correct horse battery staple"); err != nil || !ok {
		t.Fatalf("Verify(own hash) = %v, %v", ok, err)
	}
	if h.NeedsRehash(a) {
		t.Fatal("NeedsRehash(own hash) = true")
	}
}

// TestWerkzeugReadsOurHash asks Python's hashlib, the function werkzeug's
// check_password_hash calls, to recompute a hash written here. It skips when
// python3 is not installed.
func TestWerkzeugReadsOurHash(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: cannot recompute the hash with hashlib")
	}
	pw := "pässwörd with:colons and $dollars$"
	// One python3 process checks every hash: starting one costs more than
	// the default PBKDF2's 600,000 iterations.
	args := []string{"-c", `
import hashlib, sys
pw = sys.argv[1]
for enc in sys.argv[2:]:
    # werkzeug 3's _hash_internal, reduced to what these formats need.
    method, salt, digest = enc.split("$", 2)
    args = method.split(":")
    if args[0] == "pbkdf2":
        out = hashlib.pbkdf2_hmac(args[1], pw.encode(), salt.encode(), int(args[2])).hex()
    else:
        n, r, p = map(int, args[1:])
        out = hashlib.scrypt(pw.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132*n*r*p, dklen=64).hex()
    print(out == digest)
`, pw}
	var encoded []string
	for _, h := range []Hasher{PBKDF2{}, PBKDF2{Digest: "sha512", Iterations: 1000}, Scrypt{N: 1024}} {
		enc, err := h.Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		encoded = append(encoded, enc)
	}
	out, err := exec.Command(py, append(args, encoded...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, out)
	}
	results := strings.Fields(string(out))
	if len(results) != len(encoded) {
		t.Fatalf("python3 printed %q for %d hashes", out, len(encoded))
	}
	for i, enc := range encoded {
		if results[i] != "True" {
			t.Errorf("hashlib does not reproduce %q: %s", enc, results[i])
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, h := range []Hasher{
		PBKDF2{Digest: "sha1", Iterations: 10},
		PBKDF2{Digest: "sha512", Iterations: 10},
		Scrypt{N: 16},
		Argon2id{Memory: 64, Time: 1, Threads: 1},
		Bcrypt{Cost: 4},
	} {
		pw := "ünïcode and spaces and $:"
		encoded, err := h.Hash(pw)
		if err != nil {
			t.Fatalf("%T.Hash: %v", h, err)
		}
		if ok, err := h.Verify(encoded, pw); err != nil || !ok {
			t.Errorf("%T: Verify(%q) = %v, %v", h, encoded, ok, err)
		}
		if ok, err := h.Verify(encoded, pw[:len(pw)-1]); err != nil || ok {
			t.Errorf("%T: Verify(wrong) = %v, %v", h, ok, err)
		}
		if h.NeedsRehash(encoded) {
			t.Errorf("%T: NeedsRehash(own hash %q) = true", h, encoded)
		}
	}
}

func TestNeedsRehash(t *testing.T) {
	t.Parallel()
	const (
		old     = "pbkdf2:sha256:260000$9ixd7z1wPRg8DocJ$52cca4f55370cee0ec122eda3446d1dcb9d68ee90b03e0ae2a6b3ea7ca6a67d8"
		current = "pbkdf2:sha256:600000$zz6p3MXQkMvwgnl5$83a9c1d0ee7ba861a053ba9705209a6627179d0d815be74a68a268c6e29e1278"
		sha512  = "pbkdf2:sha512:1000$19SMPIzvMU536I6f$e6b3513f2e16e6e8fe6b88bea91978c9a95e9691a032929bc7d14573512818191877685d54beb106448c7bfca7d14cf2b4f3c2c7c06f6fd3d8ca7278a266c785"
		argon   = "$argon2id$v=19$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w"
		bcrypt5 = "$2y$05$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e"
	)
	for _, tc := range []struct {
		h       Hasher
		encoded string
		want    bool
	}{
		{Default(), old, true},
		{Default(), current, false},
		{Default(), sha512, true},
		{Default(), argon, true},
		{Default(), bcrypt5, true},
		{Default(), "garbage", true},
		{PBKDF2{Iterations: 100_000}, old, false},
		{Argon2id{}, argon, true},
		{Argon2id{Memory: 4096, Time: 2, Threads: 1}, argon, false},
		{Bcrypt{Cost: 5}, bcrypt5, false},
		{Bcrypt{}, bcrypt5, true},
		{Scrypt{}, current, true},
	} {
		if got := tc.h.NeedsRehash(tc.encoded); got != tc.want {
			t.Errorf("%#v.NeedsRehash(%.30q) = %v, want %v", tc.h, tc.encoded, got, tc.want)
		}
	}
}

// TestMalformed checks that broken, unknown and too costly hash strings give
// the error that names the problem, and never true.
func TestMalformed(t *testing.T) {
	t.Parallel()
	good := "pbkdf2:sha256:1000$abcdefgh$" + strings.Repeat("00", 32)
	for _, tc := range []struct {
		encoded string
		want    error
	}{
		{"", ErrUnsupported},
		{"plaintext", ErrUnsupported},
		{"md5$salt$abcd", ErrUnsupported},
		{"sha256$salt$abcd", ErrUnsupported},
		{"$argon2i$v=19$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrUnsupported},
		{"pbkdf2:md5:1000$salt$" + strings.Repeat("00", 16), ErrUnsupported},
		{good[:len(good)-1], ErrMalformed},                                   // truncated digest
		{good[:20], ErrMalformed},                                            // truncated before the salt
		{strings.Replace(good, "$00", "$zz", 1), ErrMalformed},               // non-hex digest
		{"pbkdf2:sha256$abcdefgh$" + strings.Repeat("00", 32), ErrMalformed}, // no iteration count
		{"pbkdf2:sha256:-5$abcdefgh$" + strings.Repeat("00", 32), ErrMalformed},
		{"pbkdf2:sha256:0$abcdefgh$" + strings.Repeat("00", 32), ErrMalformed},
		{"pbkdf2:sha256:1e6$abcdefgh$" + strings.Repeat("00", 32), ErrMalformed},
		{"pbkdf2:sha256:1000$$" + strings.Repeat("00", 32), ErrMalformed},
		{"pbkdf2:sha256:1000$a$b$" + strings.Repeat("00", 32), ErrMalformed},
		{"pbkdf2:sha256:999999999$abcdefgh$" + strings.Repeat("00", 32), ErrTooCostly},
		{"pbkdf2:sha256:99999999999999999999999$abcdefgh$" + strings.Repeat("00", 32), ErrTooCostly},
		{"scrypt:1048576:8:1$salt$" + strings.Repeat("00", 64), ErrTooCostly},
		{"scrypt:16384:8:64$salt$" + strings.Repeat("00", 64), ErrTooCostly},
		{"scrypt:1000:8:1$salt$" + strings.Repeat("00", 64), ErrMalformed}, // N not a power of two
		{"scrypt:16384:8$salt$" + strings.Repeat("00", 64), ErrMalformed},
		{"scrypt:16384:8:1$salt$" + strings.Repeat("00", 32), ErrMalformed},
		{"$argon2id$v=19$m=4194304,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrTooCostly},
		{"$argon2id$v=19$m=4096,t=1000,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrTooCostly},
		{"$argon2id$v=19$m=4096,t=2,p=255$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrTooCostly},
		{"$argon2id$v=16$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrUnsupported},
		{"$argon2id$v=19$t=2,m=4096,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrMalformed},
		{"$argon2id$v=19$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL8", ErrMalformed},
		{"$argon2id$v=19$m=4096,t=2,p=1$!!$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w", ErrMalformed},
		{"$argon2id$v=19$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ", ErrMalformed},
		{"$2y$05$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3", ErrMalformed},
		{"$2y$31$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e", ErrTooCostly},
		{"$2y$0x$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e", ErrMalformed},
		{"$2y$05$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3!", ErrMalformed},
		{"pbkdf2:sha256:1000$" + strings.Repeat("s", 2000) + "$00", ErrMalformed},
	} {
		ok, err := Verify(tc.encoded, "password")
		if ok || !errors.Is(err, tc.want) {
			t.Errorf("Verify(%.60q) = %v, %v; want false, %v", tc.encoded, ok, err, tc.want)
		}
		if err := Check(tc.encoded); !errors.Is(err, tc.want) {
			t.Errorf("Check(%.60q) = %v, want %v", tc.encoded, err, tc.want)
		}
	}
}

func TestBcryptLongPassword(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 72)
	encoded, err := Bcrypt{Cost: 4}.Hash(long)
	if err != nil {
		t.Fatal(err)
	}
	// bcrypt itself would accept any suffix after 72 bytes.
	if ok, err := Verify(encoded, long+"suffix"); ok || err != nil {
		t.Fatalf("Verify(73+ bytes) = %v, %v; want false, nil", ok, err)
	}
	if _, err := (Bcrypt{Cost: 4}).Hash(long + "x"); err == nil {
		t.Fatal("Hash accepted a password bcrypt would truncate")
	}
}

func TestHashParameterErrors(t *testing.T) {
	t.Parallel()
	for _, h := range []Hasher{
		PBKDF2{Digest: "md5"},
		PBKDF2{Iterations: -1},
		PBKDF2{Iterations: MaxPBKDF2Iterations + 1},
		Scrypt{N: 1000},
		Scrypt{N: 1 << 22},
		Argon2id{Memory: 1 << 30},
		Bcrypt{Cost: 40},
	} {
		if encoded, err := h.Hash("password"); err == nil {
			t.Errorf("%#v.Hash = %q, want an error", h, encoded)
		}
	}
}

func TestScheme(t *testing.T) {
	t.Parallel()
	for encoded, want := range map[string]string{
		"pbkdf2:sha256:1$a$b": "pbkdf2",
		"scrypt:1:1:1$a$b":    "scrypt",
		"$argon2id$v=19$":     "argon2id",
		"$2b$10$":             "bcrypt",
		"$2x$10$":             "",
		"":                    "",
	} {
		if got := Scheme(encoded); got != want {
			t.Errorf("Scheme(%q) = %q, want %q", encoded, got, want)
		}
	}
}
