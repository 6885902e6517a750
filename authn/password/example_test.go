package password_test

import (
	"fmt"

	"github.com/minimost/minimost/authn/password"
)

func ExampleVerify() {
	// A hash written by werkzeug's generate_password_hash.
	const stored = "pbkdf2:sha256:260000$Fig87degkzlff2AP$f7f1692fe9d73de0e32fb105819bc4d138c80fb81fa2b97aac6d67f8c2a5e82f"
	ok, err := password.Verify(stored, "correct horse battery staple")
	fmt.Println(ok, err)
	fmt.Println(password.Default().NeedsRehash(stored)) // 260,000 iterations < 600,000
	_, err = password.Verify("md5$salt$00", "x")
	fmt.Println(err)
	// Output:
	// true <nil>
	// true
	// password: unsupported hash format
}

func ExampleArgon2id() {
	h := password.Argon2id{Memory: 19 << 10, Time: 2, Threads: 1} // OWASP's minimum
	encoded, err := h.Hash("correct horse battery staple")
	if err != nil {
		panic(err)
	}
	ok, _ := h.Verify(encoded, "correct horse battery staple")
	fmt.Println(password.Scheme(encoded), ok, h.NeedsRehash(encoded))
	// Output: argon2id true false
}
