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

// Codes name, in registration's answers (FormData.ErrorCode, and "code"
// next to "error" in JSON), why a request was refused, so that an
// application can show its own words, in its own language. They are stable:
// a code keeps its meaning, and a new rule gets a new code. The built-in
// answers give each in English words that say what to do (for a rule:
// RuleError.Message).
//
// The rules of a username (CheckUsername) and of a password
// (PasswordPolicy.Check), whose errors are a *RuleError with one of these
// Codes:
//
//   - CodeUsernameRequired: no username.
//   - CodeUsernameTooLong: longer than MaxUsernameLength.
//   - CodeUsernameInvalidCharacters: a character other than A-Z, a-z, 0-9,
//     '_' and '-'.
//   - CodePasswordRequired: no password.
//   - CodePasswordTooShort: fewer characters than PasswordPolicy.MinLength.
//   - CodePasswordTooLong: more characters than PasswordPolicy.MaxLength.
//   - CodePasswordTooManyBytes: more bytes than PasswordPolicy.MaxBytes or
//     the Hasher accepts (bcrypt: 72).
//   - CodePasswordControlCharacter: a tab, a line break or another control
//     character.
//   - CodePasswordInvalidUTF8: not valid UTF-8.
//   - CodePasswordSameAsUsername: the username, ignoring case.
//   - CodePasswordCommon: on the list of common passwords, or one with
//     digits or symbols around it, or digits and symbols only.
//   - CodePasswordRepeated: a short pattern repeated ("abcabcabc...").
//   - CodePasswordRejected: a refusal of the password not listed above.
//
// The other answers of registration and of the change of password, and of
// login where they leak nothing about an account:
//
//   - CodeUsernameTaken: registration: an account has that name (409).
//   - CodeInvalidCredentials: login: every failed login, whatever the
//     reason (unknown user, wrong password, locked account); change of
//     password: a wrong current password or a locked account (401).
//   - CodeCurrentPasswordRequired: change of password: no current
//     password (400). A missing new password is CodePasswordRequired.
//   - CodeMalformedBody: the body could not be read (400).
//   - CodeBodyTooLarge: the body is over HTTPConfig.MaxBodyBytes (413).
//   - CodeUnsupportedMediaType: the body is not a form or JSON (415).
//   - CodeThrottled: the client is over its failure budget (429).
//   - CodeTooManyRegistrations: the client is over its registration budget
//     (HTTPConfig.RegisterThrottle) (429).
//   - CodeUnavailable: the database or the hashing capacity is not
//     available (503).
//   - CodeCrossOrigin: a cross-origin POST, refused against CSRF (403).
const (
	CodeUsernameRequired          = "username_required"
	CodeUsernameTooLong           = "username_too_long"
	CodeUsernameInvalidCharacters = "username_invalid_characters"
	CodePasswordRequired          = "password_required"
	CodePasswordTooShort          = "password_too_short"
	CodePasswordTooLong           = "password_too_long"
	CodePasswordTooManyBytes      = "password_too_many_bytes"
	CodePasswordControlCharacter  = "password_control_character"
	CodePasswordInvalidUTF8       = "password_invalid_utf8"
	CodePasswordSameAsUsername    = "password_same_as_username"
	CodePasswordCommon            = "password_common"
	CodePasswordRepeated          = "password_repeated"
	CodePasswordRejected          = "password_rejected"

	CodeUsernameTaken        = "username_taken"
	CodeInvalidCredentials   = "invalid_credentials"
	CodeMalformedBody        = "malformed_body"
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeThrottled            = "throttled"
	CodeTooManyRegistrations = "too_many_registrations"
	CodeUnavailable          = "unavailable"
	CodeCrossOrigin          = "cross_origin"

	CodeCurrentPasswordRequired = "current_password_required"

	// Codes of account recovery.
	CodeEmailInvalid         = "email_invalid"           // not one plain address
	CodeEmailTaken           = "email_taken"             // another account verified it first
	CodeIdentifierRequired   = "identifier_required"     // a reset request without a name or address
	CodeInvalidLink          = "invalid_link"            // unknown, used or expired link
	CodeSecondFactorRequired = "second_factor_required"  // a reset of an account with a second factor, without its code
	CodeAccountLocked        = "account_locked"          // an administrator's lock holds
	CodeTooManyResetRequests = "too_many_reset_requests" // the client's bound on reset requests, or the account's on verification mails (429)
)

// RuleError is the error of a username or a password that breaks a rule:
// CheckUsername, PasswordPolicy.Check, and through them Register and
// SetPassword, return one. It wraps ErrInvalidUsername (for the
// CodeUsername… codes) or ErrInvalidPassword (for the others); match it
// with errors.As to read the rule.
type RuleError struct {
	// Code names the rule broken: one of the CodeUsername… and
	// CodePassword… constants.
	Code string
	// Limit is the bound of a rule about length (characters, or bytes for
	// CodePasswordTooManyBytes); 0 for the others.
	Limit int

	detail string // what is wrong, for Error
}

func ruleError(code string, limit int, detail string) *RuleError {
	return &RuleError{Code: code, Limit: limit, detail: detail}
}

// Error says which rule was broken, after the text of the error it wraps:
// "authn: password rejected: shorter than 15 characters".
func (e *RuleError) Error() string {
	detail := e.detail
	if detail == "" {
		detail = e.Code
	}
	return e.Unwrap().Error() + ": " + detail
}

// Unwrap returns ErrInvalidUsername or ErrInvalidPassword.
func (e *RuleError) Unwrap() error {
	if strings.HasPrefix(e.Code, "username_") {
		return ErrInvalidUsername
	}
	return ErrInvalidPassword
}

// Message says to a user, in plain words, what to do about the broken
// rule: the text registration answers with.
func (e *RuleError) Message() string { return ruleMessage(e.Code, e.Limit) }

// ruleMessage says in plain words what to do about the rule of code, whose
// bound is limit (0: none to give).
func ruleMessage(code string, limit int) string {
	switch code {
	case CodeUsernameRequired:
		return "Enter a username."
	case CodeUsernameTooLong:
		return fmt.Sprintf("Choose a username of at most %d characters.", MaxUsernameLength)
	case CodeUsernameInvalidCharacters:
		return "A username may contain only the letters A to Z, in upper or lower case, the digits 0 to 9, '_' and '-'. Choose another."
	case CodePasswordRequired:
		return "Enter a password."
	case CodePasswordTooShort:
		return fmt.Sprintf("Choose a longer password: at least %d characters. A few unrelated words make a good one.", limit)
	case CodePasswordTooLong:
		return fmt.Sprintf("Choose a shorter password: at most %d characters.", limit)
	case CodePasswordTooManyBytes:
		if limit <= 0 { // a Hasher's refusal, whose limit is not known
			return "Choose a shorter password."
		}
		return fmt.Sprintf("Choose a shorter password: at most %d bytes. A letter outside A to Z, such as é, takes 2 to 4 bytes.", limit)
	case CodePasswordControlCharacter:
		return "Remove the tabs, line breaks and other control characters from the password."
	case CodePasswordInvalidUTF8:
		return "The password is not valid text (UTF-8). Type it again."
	case CodePasswordSameAsUsername:
		return "Choose a password that is not your username."
	case CodePasswordCommon:
		return "That password is too easy to guess: it is a common one, or one with digits or symbols added. Choose another: a few unrelated words make a good one."
	case CodePasswordRepeated:
		return "Choose a password that is not a short pattern repeated."
	}
	return "Choose another password."
}

// CheckUsername reports whether username matches [A-Za-z0-9_-]{1,32}, the
// rule of the Python application. The error is a *RuleError: it wraps
// ErrInvalidUsername and says what is wrong.
func CheckUsername(username string) error {
	if username == "" {
		return ruleError(CodeUsernameRequired, 0, "empty")
	}
	if len(username) > MaxUsernameLength {
		return ruleError(CodeUsernameTooLong, MaxUsernameLength,
			fmt.Sprintf("longer than %d characters", MaxUsernameLength))
	}
	for i := 0; i < len(username); i++ {
		if !isUsernameByte(username[i]) {
			return ruleError(CodeUsernameInvalidCharacters, 0,
				"only letters A-Z and a-z, digits, '_' and '-' are allowed")
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

// Check returns nil if password may be set for username, or a *RuleError
// that wraps ErrInvalidPassword and names the rule broken.
func (p PasswordPolicy) Check(username, password string) error {
	if !utf8.ValidString(password) {
		return ruleError(CodePasswordInvalidUTF8, 0, "not valid UTF-8")
	}
	// A control character could be typed in a form but never sent over
	// Basic auth (RFC 7617 forbids them; BasicAuth refuses them), and is
	// usually a paste accident. unicode.IsControl is C0, DEL and C1;
	// format characters such as ZWJ are kept: scripts and emoji need them.
	if strings.ContainsFunc(password, unicode.IsControl) {
		return ruleError(CodePasswordControlCharacter, 0,
			"contains a control character (such as a tab or a line break)")
	}
	n := utf8.RuneCountInString(password)
	if least := p.minLength(); n < least {
		return ruleError(CodePasswordTooShort, least, fmt.Sprintf("shorter than %d characters", least))
	}
	if most := p.maxLength(); n > most {
		return ruleError(CodePasswordTooLong, most, fmt.Sprintf("longer than %d characters", most))
	}
	if p.MaxBytes > 0 && len(password) > p.MaxBytes {
		return ruleError(CodePasswordTooManyBytes, p.MaxBytes,
			fmt.Sprintf("longer than %d bytes (UTF-8: a character outside ASCII takes 2 to 4)", p.MaxBytes))
	}
	if !p.AllowUsername && strings.EqualFold(password, username) {
		return ruleError(CodePasswordSameAsUsername, 0, "same as the username")
	}
	if !p.AllowCommon {
		if code, rule := commonRule(password); rule != "" {
			return ruleError(code, 0, rule)
		}
	}
	return nil
}

// commonRule names the way password is predictable, with its code, or
// returns "". The embedded list has no entry of 15 characters or more, so at
// the default length the list alone would catch nothing; what it does catch
// is the usual ways of lengthening a common password: repeating it, or
// padding it with digits and symbols.
func commonRule(password string) (code, rule string) {
	switch {
	case isCommonPassword(password):
		return CodePasswordCommon, "on the list of common passwords"
	case isRepetition(password):
		return CodePasswordRepeated, "a short pattern repeated"
	}
	core := strings.TrimFunc(password, func(r rune) bool { return !unicode.IsLetter(r) })
	if core == "" || isCommonPassword(core) || isRepetition(core) {
		return CodePasswordCommon, "a common password with digits or symbols around it"
	}
	return "", ""
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
