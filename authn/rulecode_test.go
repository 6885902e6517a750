package authn_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestRuleCodes: every username and password rule has its code, read with
// errors.As from CheckUsername, PasswordPolicy.Check and Register alike;
// the error still wraps ErrInvalidUsername or ErrInvalidPassword and keeps
// its text; each code's message says what to do, with the limit.
func TestRuleCodes(t *testing.T) {
	t.Parallel()
	policy := authn.PasswordPolicy{MinLength: 16, MaxLength: 40, MaxBytes: 30}
	for _, tc := range []struct {
		username, password string
		code               string
		limit              int
		kind               error
		text, words        string
	}{
		{"", "a long enough passphrase", authn.CodeUsernameRequired, 0, authn.ErrInvalidUsername, "invalid username: empty", "Enter a username."},
		{strings.Repeat("u", 33), "a long enough passphrase", authn.CodeUsernameTooLong, 32, authn.ErrInvalidUsername, "longer than 32 characters", "at most 32 characters"},
		{"bad name", "a long enough passphrase", authn.CodeUsernameInvalidCharacters, 0, authn.ErrInvalidUsername, "only letters", "only the letters A to Z"},
		{"carol", "\xffa long enough passphrase", authn.CodePasswordInvalidUTF8, 0, authn.ErrInvalidPassword, "not valid UTF-8", "not valid text"},
		{"carol", "a long enough\npassphrase", authn.CodePasswordControlCharacter, 0, authn.ErrInvalidPassword, "control character", "Remove the tabs"},
		{"carol", "fifteen chars!!", authn.CodePasswordTooShort, 16, authn.ErrInvalidPassword, "shorter than 16 characters", "at least 16 characters"},
		{"carol", strings.Repeat("Lq9 ", 11), authn.CodePasswordTooLong, 40, authn.ErrInvalidPassword, "longer than 40 characters", "at most 40 characters"},
		{"carol", strings.Repeat("ü", 16), authn.CodePasswordTooManyBytes, 30, authn.ErrInvalidPassword, "longer than 30 bytes", "at most 30 bytes"},
		{"carol_the_manager", "CAROL_the_manager", authn.CodePasswordSameAsUsername, 0, authn.ErrInvalidPassword, "same as the username", "not your username"},
		{"carol", "password12345678", authn.CodePasswordCommon, 0, authn.ErrInvalidPassword, "common password with digits", "too easy to guess"},
		{"carol", "1234567890123456", authn.CodePasswordCommon, 0, authn.ErrInvalidPassword, "common password with digits", "too easy to guess"},
		{"carol", "abcdabcdabcdabcd", authn.CodePasswordRepeated, 0, authn.ErrInvalidPassword, "a short pattern repeated", "short pattern repeated"},
	} {
		check := func(where string, err error) {
			t.Helper()
			var rule *authn.RuleError
			if !errors.As(err, &rule) || rule.Code != tc.code || rule.Limit != tc.limit || !errors.Is(err, tc.kind) ||
				!strings.Contains(err.Error(), tc.text) || !strings.Contains(rule.Message(), tc.words) {
				t.Errorf("%s(%q, %q) = %v (%#v), want code %q, limit %d, wrapping %v, text %q, words %q",
					where, tc.username, tc.password, err, rule, tc.code, tc.limit, tc.kind, tc.text, tc.words)
			}
		}
		if tc.kind == authn.ErrInvalidUsername {
			check("CheckUsername", authn.CheckUsername(tc.username))
		} else {
			check("Check", policy.Check(tc.username, tc.password))
		}
		a, _ := openTest(t, authn.Config{PasswordPolicy: policy})
		check("Register", a.Register(context.Background(), tc.username, tc.password))
	}
	// A RuleError made by an application: its kind follows its code.
	if err := (&authn.RuleError{Code: authn.CodeUsernameTooLong}); !errors.Is(err, authn.ErrInvalidUsername) || err.Error() != "authn: invalid username: username_too_long" {
		t.Errorf("a RuleError of a username rule: %v", err)
	}
	if err := (&authn.RuleError{Code: authn.CodePasswordRejected}); !errors.Is(err, authn.ErrInvalidPassword) || err.Message() != "Choose another password." {
		t.Errorf("a RuleError of a password rule: %v", err)
	}
}
