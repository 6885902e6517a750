package authn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/minimost/minimost/authn/internal/seal"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP is the TOTP second factor (RFC 6238, what authenticator apps
// show) of an Authenticator's accounts, with its recovery codes: see
// [Authenticator.TOTP]. Its methods are the Go API of what the routes
// {Prefix}/totp, /totp/confirm and /totp/disable do.
//
// An account with a confirmed TOTP secret (Account.SecondFactor) signs in
// with its password and then a code, or one of its recovery codes, at
// {Prefix}/login/verify; its password alone is refused everywhere
// (ErrSecondFactorRequired; 401 from BasicAuth and ForwardAuthHandler), and
// its app tokens keep working. Every code checked is counted toward the
// lockout before it is checked, as a password is (same counter and
// threshold); a time step's code is accepted once per account, on every
// instance; codes of the previous and next steps are accepted for clock
// skew. Secrets are stored sealed (AES-256-GCM) under Config.SecretKey,
// recovery codes as their SHA-256, each used once.
type TOTP struct{ a *Authenticator }

// TOTP returns the TOTP second factor's API.
func (a *Authenticator) TOTP() *TOTP { return &TOTP{a} }

// ErrNoSecretKey is the error of a TOTP enrolment, and of a code check,
// by an Authenticator that has no key to seal secrets with: one made by
// New without Config.SecretKey. Open keeps a key in a file beside the
// database.
var ErrNoSecretKey = errors.New("authn: no Config.SecretKey to seal TOTP secrets with")

// ErrTOTPEnabled is the error of an enrolment for an account whose TOTP
// secret is confirmed already: it must be disabled (or reset) first.
var ErrTOTPEnabled = errors.New("authn: the account has a TOTP second factor already")

// ErrInvalidCode is the error of a wrong, used or malformed code given to
// confirm an enrolment. (A code refused at a login's second step, or to
// disable the factor, is ErrInvalidCredentials, as a wrong password.)
var ErrInvalidCode = errors.New("authn: invalid code")

// TOTP parameters: those every authenticator app supports.
const (
	totpPeriod     = 30 // seconds
	totpDigits     = 6
	totpSecretSize = 20 // bytes: 160 bits, RFC 4226's recommendation
	// totpSkew is the number of steps before and after the current one
	// whose codes are accepted, for clocks that differ.
	totpSkew = 1
	// recoveryCodeCount recovery codes are made at each confirmation.
	recoveryCodeCount = 10
	// recoveryCodeBytes is the randomness of a recovery code: 80 bits, 16
	// base32 characters.
	recoveryCodeBytes = 10
)

// TOTPEnrolment is a new TOTP secret waiting for its first code: see
// TOTP.Enroll.
type TOTPEnrolment struct {
	// Secret is the secret in base32, for typing into an app.
	Secret string `json:"secret"`
	// URI is the otpauth:// URI of the secret, what a QR code carries.
	URI string `json:"uri"`
	// QR is a PNG image of a QR code of URI, as a data: URL that an <img>
	// may show under a strict Content-Security-Policy (img-src data:).
	QR string `json:"-"`
}

// Enroll starts an enrolment for username, who confirms their current
// password (checked and counted as a login's: it can fail with
// ErrInvalidCredentials or a *LockedError): it stores a new secret, sealed,
// which becomes active only once Confirm gets a code from it. An
// unconfirmed secret of an earlier Enroll is replaced. It fails with
// ErrTOTPEnabled when the account has a confirmed secret, and with
// ErrNoSecretKey when the Authenticator has no key.
func (t *TOTP) Enroll(ctx context.Context, username, password string) (TOTPEnrolment, error) {
	return t.enroll(ctx, username, password, noWait)
}

func (t *TOTP) enroll(ctx context.Context, username, password string, wait hashWait) (TOTPEnrolment, error) {
	a := t.a
	if a.secretKey == nil {
		return TOTPEnrolment{}, ErrNoSecretKey
	}
	if _, err := a.authenticate(ctx, username, password, wait, passwordAgain); err != nil {
		return TOTPEnrolment{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: a.totpIssuer(), AccountName: username, Period: totpPeriod,
		SecretSize: totpSecretSize, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Rand: rand.Reader,
	})
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("authn: making a TOTP secret: %w", err)
	}
	sealed, err := seal.Seal(a.secretKey, []byte(key.Secret()), username)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("authn: sealing a TOTP secret: %w", err)
	}
	ok, err := a.store.beginTOTP(ctx, username, sealed, a.now())
	switch {
	case err != nil:
		return TOTPEnrolment{}, err
	case !ok:
		return TOTPEnrolment{}, ErrTOTPEnabled
	}
	e := TOTPEnrolment{Secret: key.Secret(), URI: key.URL()}
	if img, err := key.Image(240, 240); err == nil {
		var b bytes.Buffer
		if png.Encode(&b, img) == nil {
			e.QR = "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
		}
	}
	return e, nil
}

// totpIssuer is the issuer an authenticator app shows beside the account:
// HTTPConfig.AppName, or "authn".
func (a *Authenticator) totpIssuer() string {
	if a.handlers.appName != "" {
		return a.handlers.appName
	}
	return "authn"
}

// Confirm activates username's enrolment with a code from its secret (the
// current one, or the one of the step before or after), and returns the
// account's new recovery codes, which are shown once: only their hashes
// are kept. From then on the account signs in with a second factor. A
// wrong or malformed code fails with ErrInvalidCode; no enrolment, with
// ErrNotFound.
func (t *TOTP) Confirm(ctx context.Context, username, code string) ([]string, error) {
	a := t.a
	if a.secretKey == nil {
		return nil, ErrNoSecretKey
	}
	row, err := a.store.totpSecret(ctx, username)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && row.Confirmed:
		return nil, fmt.Errorf("%w: no TOTP enrolment of %s to confirm", ErrNotFound, quoteName(username))
	case err != nil:
		return nil, err
	}
	step, err := a.matchStep(row.Sealed, username, code)
	if err != nil {
		return nil, err
	}
	if step < 0 {
		return nil, ErrInvalidCode
	}
	codes, hashes := newRecoveryCodes(username)
	ok, err := a.store.confirmTOTP(ctx, username, row.Sealed, step, hashes)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, ErrInvalidCode // replaced or confirmed meanwhile
	}
	a.emit(ctx, Event{Type: EventTOTPEnabled, Username: username})
	return codes, nil
}

// Disable removes username's TOTP second factor and recovery codes, once
// the user confirmed their password and a code (a TOTP code or a recovery
// code), each checked and counted as at a login. The user's sessions are
// kept. A wrong password or code fails with ErrInvalidCredentials.
func (t *TOTP) Disable(ctx context.Context, username, password, code string) error {
	return t.disable(ctx, username, password, code, noWait)
}

func (t *TOTP) disable(ctx context.Context, username, password, code string, wait hashWait) error {
	a := t.a
	p, err := a.authenticate(ctx, username, password, wait, passwordAgain)
	if err != nil {
		return err
	}
	pending := pendingLogin{username: username, userHash: p.hash}
	proof, err := a.proveCode(ctx, pending, code, wait)
	if err != nil {
		return err
	}
	// The code's claim counted an attempt (and may have reached the
	// threshold): a right one resets it, as a finished login does.
	if err := a.finish(ctx, &proof); err != nil {
		return err
	}
	if _, err := a.store.removeTOTP(ctx, username, false); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventTOTPDisabled, Username: username})
	return nil
}

// Reset removes username's TOTP second factor and recovery codes and ends
// the user's sessions, without any code: what an administrator does for a
// user who lost their device and their recovery codes, or after the
// sealing key was lost (authctl 2fa reset). ErrNotFound when there is no
// such user; nil when the user had no second factor.
func (t *TOTP) Reset(ctx context.Context, username string) error {
	had, err := t.a.store.removeTOTP(ctx, username, true)
	if err != nil {
		return err
	}
	if had {
		t.a.emit(ctx, Event{Type: EventTOTPDisabled, Username: username, Reason: ReasonReset})
	}
	return nil
}

// NewRecoveryCodes replaces the recovery codes of username, whose TOTP
// second factor is on (ErrNotFound otherwise), once the user confirmed
// their password (checked and counted as a login's), and returns the new
// ones, shown once.
func (t *TOTP) NewRecoveryCodes(ctx context.Context, username, password string) ([]string, error) {
	a := t.a
	if _, err := a.authenticate(ctx, username, password, noWait, passwordAgain); err != nil {
		return nil, err
	}
	codes, hashes := newRecoveryCodes(username)
	if err := a.store.newRecoveryCodes(ctx, username, hashes); err != nil {
		return nil, err
	}
	return codes, nil
}

// TOTPStatus is the state of an account's TOTP second factor.
type TOTPStatus struct {
	// Enabled: a confirmed secret; the account signs in with a code.
	Enabled bool `json:"enabled"`
	// Pending: an enrolment waits for its first code.
	Pending bool `json:"pending"`
	// RecoveryCodesLeft is the number of unused recovery codes.
	RecoveryCodesLeft int `json:"recovery_codes_left"`
}

// Status reads the state of username's TOTP second factor.
func (t *TOTP) Status(ctx context.Context, username string) (TOTPStatus, error) {
	row, err := t.a.store.totpSecret(ctx, username)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return TOTPStatus{}, t.a.noUserOr(ctx, username, nil)
	case err != nil:
		return TOTPStatus{}, err
	}
	st := TOTPStatus{Enabled: row.Confirmed, Pending: !row.Confirmed}
	if st.Enabled {
		if st.RecoveryCodesLeft, err = t.a.store.recoveryCodesLeft(ctx, username); err != nil {
			return TOTPStatus{}, err
		}
	}
	return st, nil
}

// proveCode is the second step of a login (and the code of Disable): it
// checks code, a TOTP code or a recovery code (told apart by their
// length), against the account of pending login p, after claiming the
// attempt (see claimCode). A wrong, used or malformed code fails as a wrong
// password (ErrInvalidCredentials).
func (a *Authenticator) proveCode(ctx context.Context, p pendingLogin, code string, wait hashWait) (loginProof, error) {
	if digits, ok := totpCode(code); ok {
		return a.proveTOTP(ctx, p, digits, wait)
	}
	return a.proveRecoveryCode(ctx, p, code, wait)
}

// proveTOTP checks a TOTP code of the account of p after its claim, and
// records its time step as used: one write beyond the claim, no password
// hash.
func (a *Authenticator) proveTOTP(ctx context.Context, p pendingLogin, code string, wait hashWait) (loginProof, error) {
	if _, ok := totpCode(code); !ok {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonMalformedCode})
		return loginProof{}, ErrInvalidCredentials
	}
	proof, err := a.claimCode(ctx, p, MethodTOTP, wait)
	if err != nil {
		return loginProof{}, err
	}
	row, err := a.store.totpSecret(ctx, p.username)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && !row.Confirmed:
		a.codeFailed(ctx, proof, ReasonWrongCode) // the factor was removed meanwhile
		return loginProof{}, ErrInvalidCredentials
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
		return loginProof{}, err
	}
	step, err := a.matchStep(row.Sealed, p.username, code)
	if err != nil {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
		return loginProof{}, err
	}
	if step < 0 || step <= row.LastStep {
		a.codeFailed(ctx, proof, ReasonWrongCode)
		return loginProof{}, ErrInvalidCredentials
	}
	ok, err := a.store.useStep(ctx, p.username, step)
	switch {
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
		return loginProof{}, err
	case !ok:
		a.codeFailed(ctx, proof, ReasonUsedCode)
		return loginProof{}, ErrInvalidCredentials
	}
	return proof, nil
}

// matchStep returns the time step, within totpSkew of now, whose code from
// the sealed secret of username is code, or -1. Every step is computed and
// compared in constant time, whichever matches.
func (a *Authenticator) matchStep(sealed, username, code string) (int64, error) {
	if a.secretKey == nil {
		return -1, ErrNoSecretKey
	}
	secret, err := seal.Open(a.secretKey, sealed, username)
	if err != nil {
		a.logger.Error("authn: a TOTP secret does not open with the configured key (another key? reset the user's second factor)", "user", username, "error", err)
		return -1, fmt.Errorf("authn: opening the TOTP secret of %s: %w", quoteName(username), err)
	}
	digits, ok := totpCode(code)
	if !ok {
		return -1, nil
	}
	now := a.now().Unix() / totpPeriod
	match := int64(-1)
	for step := now - totpSkew; step <= now+totpSkew; step++ {
		want, err := totpAt(string(secret), step)
		if err != nil {
			return -1, err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(digits)) == 1 {
			match = step
		}
	}
	return match, nil
}

// totpAt is the code of a base32 secret at a time step.
func totpAt(secret string, step int64) (string, error) {
	return totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0).UTC(), totp.ValidateOpts{
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
}

// totpCode returns code as the digits of a TOTP code, with spaces (which
// apps show in the middle) removed, and whether it is one.
func totpCode(code string) (string, bool) {
	if len(code) > 16 {
		return "", false
	}
	digits := strings.ReplaceAll(code, " ", "")
	if len(digits) != totpDigits {
		return "", false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return digits, true
}

// proveRecoveryCode checks a recovery code of the account of p after its
// claim, using it up: one write beyond the claim (the deletion that both
// checks and consumes it), no password hash.
func (a *Authenticator) proveRecoveryCode(ctx context.Context, p pendingLogin, code string, wait hashWait) (loginProof, error) {
	normal, ok := recoveryCode(code)
	if !ok {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonMalformedCode})
		return loginProof{}, ErrInvalidCredentials
	}
	proof, err := a.claimCode(ctx, p, MethodRecoveryCode, wait)
	if err != nil {
		return loginProof{}, err
	}
	ok, err = a.store.useRecoveryCode(ctx, p.username, recoveryCodeHash(p.username, normal))
	switch {
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
		return loginProof{}, err
	case !ok:
		a.codeFailed(ctx, proof, ReasonWrongCode)
		return loginProof{}, ErrInvalidCredentials
	}
	a.emit(ctx, Event{Type: EventRecoveryCodeUsed, Username: p.username})
	return proof, nil
}

// recoveryEncoding writes recovery codes: lower-case base32, no padding.
var recoveryEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newRecoveryCodes returns recoveryCodeCount new recovery codes of
// username, as shown ("xxxx-xxxx-xxxx-xxxx"), and their hashes, as stored.
func newRecoveryCodes(username string) (codes, hashes []string) {
	for range recoveryCodeCount {
		b := make([]byte, recoveryCodeBytes)
		rand.Read(b)
		s := recoveryEncoding.EncodeToString(b)
		codes = append(codes, s[0:4]+"-"+s[4:8]+"-"+s[8:12]+"-"+s[12:16])
		hashes = append(hashes, recoveryCodeHash(username, s))
	}
	return codes, hashes
}

// recoveryCode returns code in its stored form (lower case, without the
// dashes and spaces people type), and whether it has the shape of one.
func recoveryCode(code string) (string, bool) {
	if len(code) > 64 {
		return "", false
	}
	s := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(code))
	if len(s) != 16 {
		return "", false
	}
	if _, err := recoveryEncoding.DecodeString(s); err != nil {
		return "", false
	}
	return s, true
}

// recoveryCodeHash is what the database keeps of a recovery code: the
// SHA-256 of the username and the code (80 random bits: nothing to
// guess offline at any useful rate).
func recoveryCodeHash(username, normal string) string {
	sum := sha256.Sum256([]byte(username + "\x00" + normal))
	return hex.EncodeToString(sum[:])
}
