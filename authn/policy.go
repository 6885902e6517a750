package authn

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxUsernameLength is the longest username, in bytes (usernames are ASCII).
const MaxUsernameLength = 32

// CheckUsername reports whether username matches [A-Za-z0-9_-]{1,32}, the
// rule of the Python application. The error wraps ErrInvalidUsername and
// says what is wrong.
func CheckUsername(username string) error {
	if username == "" {
		return fmt.Errorf("%w: empty", ErrInvalidUsername)
	}
	if len(username) > MaxUsernameLength {
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidUsername, MaxUsernameLength)
	}
	for i := 0; i < len(username); i++ {
		if !isUsernameByte(username[i]) {
			return fmt.Errorf("%w: only letters A-Z and a-z, digits, '_' and '-' are allowed", ErrInvalidUsername)
		}
	}
	return nil
}

// quoteName returns a username for an error message or a log line: as it
// is when it passes CheckUsername, which leaves nothing a terminal would
// interpret, else quoted with Go's escapes (%q), so that a name made of
// terminal escapes or fake text cannot pass for anything else.
func quoteName(username string) string {
	if CheckUsername(username) == nil {
		return username
	}
	return strconv.Quote(username)
}

func isUsernameByte(c byte) bool {
	return c == '_' || c == '-' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// PasswordPolicy is checked when a password is set (Register, SetPassword),
// never when one is verified, so a policy change does not lock anyone out.
// Whatever the settings, a password must be valid UTF-8 without control
// characters (C0, DEL, C1), which Basic auth could not carry.
// Lengths count Unicode code points; passwords are neither normalised nor
// truncated (werkzeug does neither). The zero value is the default policy.
type PasswordPolicy struct {
	// MinLength is the least number of characters. 0 means 15.
	MinLength int
	// MaxLength is the greatest number of characters. 0 means 128.
	MaxLength int
	// MaxBytes is the greatest length in bytes (UTF-8); 0 means no limit
	// but MaxLength's. An Authenticator lowers it to its Hasher's limit
	// when the Hasher declares one (password.Limited: bcrypt reads 72
	// bytes), so that a password the Hasher would refuse is refused here,
	// with the rule named, before any hashing.
	MaxBytes int
	// AllowCommon accepts passwords on the embedded list of common
	// passwords (Openwall's password.lst, compared ignoring case).
	AllowCommon bool
	// AllowUsername accepts a password equal to the username.
	AllowUsername bool
}

func (p PasswordPolicy) minLength() int {
	if p.MinLength <= 0 {
		return 15
	}
	return p.MinLength
}

func (p PasswordPolicy) maxLength() int {
	if p.MaxLength <= 0 {
		return 128
	}
	return p.MaxLength
}

// Check returns nil if password may be set for username, or an error that
// wraps ErrInvalidPassword and names the rule broken.
func (p PasswordPolicy) Check(username, password string) error {
	if !utf8.ValidString(password) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPassword)
	}
	// A control character could be typed in a form but never sent over
	// Basic auth (RFC 7617 forbids them; BasicAuth refuses them), and is
	// usually a paste accident. unicode.IsControl is C0, DEL and C1;
	// format characters such as ZWJ are kept: scripts and emoji need them.
	if strings.ContainsFunc(password, unicode.IsControl) {
		return fmt.Errorf("%w: contains a control character (such as a tab or a line break)", ErrInvalidPassword)
	}
	n := utf8.RuneCountInString(password)
	if n < p.minLength() {
		return fmt.Errorf("%w: shorter than %d characters", ErrInvalidPassword, p.minLength())
	}
	if n > p.maxLength() {
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidPassword, p.maxLength())
	}
	if p.MaxBytes > 0 && len(password) > p.MaxBytes {
		return fmt.Errorf("%w: longer than %d bytes (UTF-8: a character outside ASCII takes 2 to 4)", ErrInvalidPassword, p.MaxBytes)
	}
	if !p.AllowUsername && strings.EqualFold(password, username) {
		return fmt.Errorf("%w: same as the username", ErrInvalidPassword)
	}
	if !p.AllowCommon {
		if rule := commonRule(password); rule != "" {
			return fmt.Errorf("%w: %s", ErrInvalidPassword, rule)
		}
	}
	return nil
}

// commonRule names the way password is predictable, or returns "". The
// embedded list has no entry of 15 characters or more, so at the default
// length the list alone would catch nothing; what it does catch is the
// usual ways of lengthening a common password: repeating it, or padding it
// with digits and symbols.
func commonRule(password string) string {
	switch {
	case isCommonPassword(password):
		return "on the list of common passwords"
	case isRepetition(password):
		return "a short pattern repeated"
	}
	core := strings.TrimFunc(password, func(r rune) bool { return !unicode.IsLetter(r) })
	if core == "" || isCommonPassword(core) || isRepetition(core) {
		return "a common password with digits or symbols around it"
	}
	return ""
}

// isRepetition reports whether s is one substring repeated two or more
// times, as in "passwordpassword" or "aaaaaaaaaaaaaaa", ignoring case.
func isRepetition(s string) bool {
	s = strings.ToLower(s)
	for n := 1; n <= len(s)/2; n++ {
		if len(s)%n == 0 && strings.Repeat(s[:n], len(s)/n) == s {
			return true
		}
	}
	return false
}

// commonPasswords is Openwall's password.lst as Debian's john-data ships it,
// public domain; its header lines start with "#!comment:".
//
//go:embed common-passwords.txt
var commonPasswords string

// isCommonPassword reports whether password is on the list, ignoring case.
// A scan of 3,500 short lines costs microseconds, less than keeping a set.
func isCommonPassword(password string) bool {
	for line := range strings.Lines(commonPasswords) {
		line = strings.TrimRight(line, "\r\n")
		if !strings.HasPrefix(line, "#!comment:") && strings.EqualFold(line, password) {
			return true
		}
	}
	return false
}
