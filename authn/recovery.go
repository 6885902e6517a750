package authn

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/minimost/minimost/model"
)

// RecoveryConfig configures account recovery: email addresses, their
// verification links and password reset links (see Recovery). Links and
// mail need Config.Mailer and HTTPConfig.BaseURL; the zero value is ready
// to use.
type RecoveryConfig struct {
	// ResetLinkLifetime is how long a reset link works. 0 means 30
	// minutes, which is also the most: New fails for more.
	ResetLinkLifetime time.Duration
	// VerifyLinkLifetime is how long a link that verifies an address
	// works. 0 means 24 hours.
	VerifyLinkLifetime time.Duration
	// RequestsPerAccount bounds the reset mails of one account (or of one
	// name or address that names none) per RequestWindow: requests beyond
	// get the same answer and send nothing. 0 means 3; negative means no
	// bound.
	RequestsPerAccount int
	// RequestsPerClient bounds the reset requests of one client network
	// (as HTTPConfig.Throttle counts clients) per RequestWindow, whoever
	// they name: requests beyond are answered 429. 0 means 10; negative
	// means no bound.
	RequestsPerClient int
	// RequestWindow is the window of both bounds. 0 means one hour. The
	// counts are rows of the database, shared by every instance.
	RequestWindow time.Duration

	// MailQueueSize bounds the mails waiting to be sent. A request whose
	// mail finds the queue full is answered as any other, and its mail is
	// dropped and logged: no request waits for the mail server. 0 means
	// 100.
	MailQueueSize int
	// MailAttempts is how many times a mail is tried before it is given
	// up (and logged at ERROR). 0 means 3.
	MailAttempts int
	// MailRetryDelay is the wait after the first failed attempt; it
	// doubles after each. 0 means 2 seconds.
	MailRetryDelay time.Duration
	// MailTimeout bounds each attempt. 0 means 30 seconds.
	MailTimeout time.Duration
	// MailTemplates replace the built-in mails.
	MailTemplates MailTemplates
}

// maxResetLifetime is the longest a reset link may work.
const maxResetLifetime = 30 * time.Minute

// recoverySettings is a RecoveryConfig with its defaults applied.
type recoverySettings struct {
	resetFor, verifyFor                           time.Duration
	perAccount, perClient                         int // negative: no bound
	window                                        time.Duration
	attempts                                      int
	retryDelay, sendTimeout                       time.Duration
	templates                                     mailTemplates
	baseURL                                       string // HTTPConfig.BaseURL, without a trailing slash; "": no links
	prefix                                        string // HTTPConfig.Prefix
	appName                                       string
	queueSize                                     int
	resetPath, confirmPath, emailPath, verifyPath string
}

func newRecoverySettings(c RecoveryConfig, h HTTPConfig) (recoverySettings, error) {
	r := recoverySettings{
		resetFor:    orDuration(c.ResetLinkLifetime, maxResetLifetime),
		verifyFor:   orDuration(c.VerifyLinkLifetime, 24*time.Hour),
		perAccount:  orInt(c.RequestsPerAccount, 3),
		perClient:   orInt(c.RequestsPerClient, 10),
		window:      orDuration(c.RequestWindow, time.Hour),
		attempts:    max(c.MailAttempts, 0),
		retryDelay:  orDuration(c.MailRetryDelay, 2*time.Second),
		sendTimeout: orDuration(c.MailTimeout, 30*time.Second),
		templates:   newMailTemplates(c.MailTemplates),
		baseURL:     strings.TrimSuffix(h.BaseURL, "/"),
		prefix:      h.Prefix,
		appName:     h.AppName,
		queueSize:   c.MailQueueSize,
	}
	if r.resetFor > maxResetLifetime {
		return r, fmt.Errorf("authn: RecoveryConfig.ResetLinkLifetime %v: at most %v", c.ResetLinkLifetime, maxResetLifetime)
	}
	if r.attempts == 0 {
		r.attempts = 3
	}
	if r.queueSize <= 0 {
		r.queueSize = 100
	}
	r.resetPath, r.confirmPath = h.Prefix+"/reset", h.Prefix+"/reset/confirm"
	r.emailPath, r.verifyPath = h.Prefix+"/email", h.Prefix+"/email/verify"
	return r, nil
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// Recovery is account recovery: each user may have one verified email
// address, and a password reset link goes to it. Get it from
// [Authenticator.Recovery]; it is a view of the Authenticator and costs
// nothing to make.
//
// An address counts only once the link mailed to it was followed
// (RequestVerification, then VerifyEmail), or an administrator set it
// (SetEmail). A verified address belongs to one account, in any case.
// Addresses, like sessions, are bound to the password hash they were
// verified under: a hash written outside this package voids it.
//
// A reset link carries 256 random bits, is stored only as its SHA-256,
// works once (on any instance: it is consumed by one guarded statement),
// for RecoveryConfig.ResetLinkLifetime (30 minutes at most), and only
// while the account has the password it had when the link was made. Only
// the newest link of an account works. Following it sets a new password
// under the PasswordPolicy, and, in the same transaction, clears the
// failure counter and a lockout caused by failed attempts, ends every
// session and deletes every app token of the user: a reset is what
// someone does who lost the password, or fears that somebody else has it,
// and tokens that somebody else made with it must not survive it. An
// administrator's Lock (or a lock with no end) is never lifted: while it
// holds, no reset mail is sent, and a link is refused.
type Recovery struct{ a *Authenticator }

// Recovery returns the account recovery of a.
func (a *Authenticator) Recovery() *Recovery { return &Recovery{a} }

// Errors of recovery, matched with errors.Is.
var (
	// ErrInvalidLink: a reset or verification link that is unknown,
	// used, expired, or whose account changed its password or was
	// deleted since the link was made.
	ErrInvalidLink = errInvalidLink
	// ErrEmailTaken: the address is the verified address of another
	// account.
	ErrEmailTaken = errAddressTaken
	// ErrNoMail: the operation sends or makes a link, and the
	// Authenticator has no Config.Mailer, or no HTTPConfig.BaseURL to
	// build links from.
	ErrNoMail = errors.New("authn: recovery mail is not configured (Config.Mailer, HTTPConfig.BaseURL)")
	// ErrTooManyMails: an account asked for more verification mails than
	// RecoveryConfig.RequestsPerAccount allows in a RequestWindow.
	ErrTooManyMails = errors.New("authn: too many mails asked for; try again later")
)

// SetEmail stores address as username's verified address, at once: the
// administrator's word stands for the link (authctl email). It fails with
// ErrInvalidEmail, ErrNotFound or ErrEmailTaken.
func (r *Recovery) SetEmail(ctx context.Context, username, address string) error {
	if err := CheckEmail(address); err != nil {
		return err
	}
	return r.a.store.setEmail(ctx, username, address, r.a.now())
}

// Email returns username's verified address, or "" when the user has none;
// ErrNotFound when there is no such user.
func (r *Recovery) Email(ctx context.Context, username string) (string, error) {
	address, err := r.a.store.email(ctx, username)
	if err != nil || address != "" {
		return address, err
	}
	exists, err := r.a.store.userExists(ctx, username)
	switch {
	case err != nil:
		return "", err
	case !exists:
		return "", fmt.Errorf("%w: %s", ErrNotFound, quoteName(username))
	}
	return "", nil
}

// RemoveEmail deletes username's address, and any link waiting to verify
// one. Without an address the user cannot reset a forgotten password.
func (r *Recovery) RemoveEmail(ctx context.Context, username string) error {
	if _, err := r.a.store.removeEmail(ctx, username); err != nil {
		return err
	}
	return nil
}

// RequestVerification mails to address a link that makes it username's
// verified address (see VerifyEmail); the address the user had, if any,
// stays until then. The mail goes through the mail queue: a nil error
// means that the link was stored and the mail queued, not sent. It fails
// with ErrInvalidEmail, ErrNotFound, ErrNoMail without a Mailer, and
// ErrTooManyMails beyond RecoveryConfig.RequestsPerAccount a window.
func (r *Recovery) RequestVerification(ctx context.Context, username, address string) error {
	a := r.a
	if err := CheckEmail(address); err != nil {
		return err
	}
	if a.mailer == nil || a.recovery.baseURL == "" {
		return ErrNoMail
	}
	// Bounded as reset mails are, so that an account cannot be made to
	// mail somebody else's address over and over.
	if a.recovery.perAccount >= 0 {
		counts, err := a.store.countRequests(ctx, []string{limitHash("verify\x00" + username)}, a.now(), a.recovery.window)
		if err != nil {
			return err
		}
		if counts[0] > int64(a.recovery.perAccount) {
			return ErrTooManyMails
		}
	}
	m, err := a.verificationMail(ctx, username, address)
	if err != nil {
		return err
	}
	a.enqueue(ctx, "verify", func(ctx context.Context) { a.deliver(ctx, "verify", username, m) })
	return nil
}

// verificationMail stores a verification link of address for username and
// renders its mail.
func (a *Authenticator) verificationMail(ctx context.Context, username, address string) (MailMessage, error) {
	token, err := a.newRecoveryToken(ctx, kindVerify, username, address, a.recovery.verifyFor)
	if err != nil {
		return MailMessage{}, err
	}
	data := a.mailData(username, address, a.recovery.verifyPath, token, a.recovery.verifyFor)
	return renderMail(a.recovery.templates.verifyText, a.recovery.templates.verifyHTML, "Confirm your email address", data)
}

// VerifyEmail follows a verification link: its address becomes its
// user's verified address, and the link is used up. It returns the user.
// It fails with ErrInvalidLink (unknown, used or expired, or its user
// changed password since), or ErrEmailTaken when another account verified
// the address first.
func (r *Recovery) VerifyEmail(ctx context.Context, token string) (username string, err error) {
	if !validToken(token) {
		return "", ErrInvalidLink
	}
	username, _, err = r.a.store.verifyEmail(ctx, tokenHash(token), r.a.now())
	if err != nil {
		return "", err
	}
	r.a.logger.InfoContext(ctx, "authn: email address verified", "user", username)
	return username, nil
}

// RequestReset asks for a reset link for the account that nameOrAddress
// names: a username, or (with an "@") a verified address, in any case.
// When it names an account with a verified address, not locked by an
// administrator, and within RecoveryConfig.RequestsPerAccount, a link is
// stored and its mail queued to that address; otherwise nothing is sent.
// Either way it returns nil: only a database error, or ErrNoMail without a
// Mailer, is an error. The reset route answers every request the same;
// this Go API does not say either which it was.
func (r *Recovery) RequestReset(ctx context.Context, nameOrAddress string) error {
	a := r.a
	if a.mailer == nil || a.recovery.baseURL == "" {
		return ErrNoMail
	}
	return a.requestReset(ctx, nameOrAddress, func(username string, m MailMessage) {
		a.enqueue(ctx, "reset", func(ctx context.Context) { a.deliver(ctx, "reset", username, m) })
	})
}

// requestReset is the work of a reset request, in the mail queue for the
// reset route: it finds the account, counts the request against it, and
// when all is well stores a link and passes its mail to send.
func (a *Authenticator) requestReset(ctx context.Context, nameOrAddress string, send func(username string, m MailMessage)) error {
	a.stats.resetRequests.Add(1)
	byAddress := strings.Contains(nameOrAddress, "@")
	key := nameOrAddress
	if byAddress {
		key = addressKey(nameOrAddress)
	}
	target, err := a.store.resetTarget(ctx, key, byAddress)
	found := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	// The bound counts the account, or what was typed when it names
	// none: a name that names nobody is bounded as one that does.
	limitKey := "typed\x00" + key
	if found {
		limitKey = "account\x00" + target.username
	}
	if a.recovery.perAccount >= 0 {
		counts, err := a.store.countRequests(ctx, []string{limitHash(limitKey)}, a.now(), a.recovery.window)
		if err != nil {
			return err
		}
		if counts[0] > int64(a.recovery.perAccount) {
			a.logger.InfoContext(ctx, "authn: reset request over the account's bound; no mail", "user", loggable(target.username))
			return nil
		}
	}
	logged := loggable(nameOrAddress)
	switch {
	case !found:
		a.logger.InfoContext(ctx, "authn: reset request names no account with a verified address; no mail", "user", logged)
		return nil
	case target.userLock.Valid && lockedAt(target.userLock.Float64, a.now()) &&
		(isForever(target.userLock.Float64) || target.adminLock.Valid && target.adminLock.Float64 == target.userLock.Float64):
		a.logger.InfoContext(ctx, "authn: reset request for an account an administrator locked; no mail", "user", target.username)
		return nil
	}
	token, err := a.newRecoveryToken(ctx, kindReset, target.username, "", a.recovery.resetFor)
	if err != nil {
		return err
	}
	data := a.mailData(target.username, target.address, a.recovery.confirmPath, token, a.recovery.resetFor)
	m, err := renderMail(a.recovery.templates.resetText, a.recovery.templates.resetHTML, "Reset your password", data)
	if err != nil {
		return err
	}
	send(target.username, m)
	return nil
}

// isForever reports whether a stored lock has no end.
func isForever(s float64) bool {
	_, forever := lockTime(s)
	return forever
}

// limitHash is the stored key of a bound on reset requests: a SHA-256,
// so that the table holds no name or address typed by strangers.
func limitHash(key string) string {
	sum := sha256.Sum256([]byte("minimost reset limit\x00" + key))
	return hex.EncodeToString(sum[:])
}

// ResetLink makes a reset link for username and returns it, without mail:
// for an administrator to hand over (authctl reset-link). The link works
// as a mailed one (once, for ResetLinkLifetime, while the password is
// unchanged), and its user chooses the new password: an administrator
// never does. It needs HTTPConfig.BaseURL (ErrNoMail without it), and
// fails with ErrNotFound for an unknown user.
func (r *Recovery) ResetLink(ctx context.Context, username string) (string, error) {
	a := r.a
	if a.recovery.baseURL == "" {
		return "", ErrNoMail
	}
	token, err := a.newRecoveryToken(ctx, kindReset, username, "", a.recovery.resetFor)
	if err != nil {
		return "", err
	}
	a.logger.InfoContext(ctx, "authn: reset link made without mail", "user", username)
	return a.link(a.recovery.confirmPath, token), nil
}

// Reset follows a reset link: it sets newPassword as the password of the
// link's user, under the PasswordPolicy, and ends every session, as the
// type's documentation says. It returns the user. It fails with
// ErrInvalidLink, a *RuleError for a password the policy refuses (the
// link still works then), ErrLocked when an administrator's lock holds,
// and ErrSecondFactorRequired for an account with a second factor: see
// ResetWithCode.
func (r *Recovery) Reset(ctx context.Context, token, newPassword string) (string, error) {
	return r.a.resetWithLink(ctx, token, newPassword, "", noWait)
}

// ResetWithCode is Reset for an account with a second factor: code (a TOTP
// code, or a recovery code) is checked first, as the second step of a
// login checks it (claimed and counted toward the lockout; a locked
// account is refused with a *LockedError until the lock ends), and a
// wrong one fails with ErrInvalidCredentials, the link still working. For
// an account without a second factor the code is ignored.
func (r *Recovery) ResetWithCode(ctx context.Context, token, code, newPassword string) (string, error) {
	return r.a.resetWithLink(ctx, token, newPassword, code, noWait)
}

// resetWithLink is Reset, with the code of the account's second factor
// (when it has one), waiting for hashing capacity within wait.
func (a *Authenticator) resetWithLink(ctx context.Context, token, newPassword, code string, wait hashWait) (string, error) {
	if err := a.store.check(); err != nil {
		return "", err
	}
	link, err := a.peekReset(ctx, token)
	if err != nil {
		return "", err
	}
	username := link.Username
	if err := a.policy.Check(username, newPassword); err != nil {
		return username, err
	}
	if err := a.resetSecondFactor(ctx, link, code, wait); err != nil {
		return username, resetLockedError(err)
	}
	encoded, err := a.hash(ctx, newPassword, wait)
	if err != nil {
		return username, err
	}
	if _, err = a.store.resetPassword(ctx, tokenHash(token), encoded, a.now()); err != nil {
		return username, resetLockedError(err)
	}
	a.emit(ctx, Event{Type: EventPasswordChanged, Username: username, Reason: ReasonResetLink})
	return username, nil
}

// resetLockedError makes errResetLocked an ErrLocked too, for the Go API;
// other errors are returned as they are.
func resetLockedError(err error) error {
	if errors.Is(err, errResetLocked) {
		return fmt.Errorf("%w: %w", ErrLocked, nested(err))
	}
	return err
}

// ReasonResetLink is the Reason of the EventPasswordChanged of a reset
// by link (Recovery.Reset, the reset route).
const ReasonResetLink Reason = "reset by link"

// peekReset reads a reset link without using it up.
func (a *Authenticator) peekReset(ctx context.Context, token string) (model.RecoveryToken, error) {
	if !validToken(token) {
		return model.RecoveryToken{}, ErrInvalidLink
	}
	return a.store.peekRecoveryToken(ctx, tokenHash(token), kindReset, a.now())
}

// resetSecondFactor checks the second factor of the account of link
// before a reset sets its password: nil for an account without one,
// ErrSecondFactorRequired without a code. A code (TOTP, or a recovery
// code) is checked by the login core's step (proveCode), as the second
// step of a login checks it: claimed first, in the lockout's one atomic
// statement (a wrong code counts toward the lockout, and a locked account
// is refused), only while the account still has the hash the link is
// bound to; a TOTP time step once, a recovery code used up. The login is
// not finished: no session starts, and the reset's transaction clears the
// counter.
func (a *Authenticator) resetSecondFactor(ctx context.Context, link model.RecoveryToken, code string, wait hashWait) error {
	has, err := a.hasSecondFactor(ctx, link.Username)
	switch {
	case err != nil:
		return err
	case !has:
		return nil
	case code == "":
		return ErrSecondFactorRequired
	}
	// Under an administrator's lock the code's claim would refuse it as
	// locked, and the answer would be a wrong code's: say what it is
	// (the reset's transaction refuses it too, for any other account).
	if locked, err := a.store.adminLocked(ctx, link.Username, a.now()); err != nil {
		return err
	} else if locked {
		return errResetLocked
	}
	_, err = a.proveCode(ctx, pendingLogin{username: link.Username, userHash: link.UserHash}, code, wait)
	return err
}

// hasSecondFactor reports whether username's account has a second factor
// in use, as the login core reads it (passkeys count only while they are
// on).
func (a *Authenticator) hasSecondFactor(ctx context.Context, username string) (bool, error) {
	factors, err := a.store.factorsOf(ctx, []string{username})
	if err != nil {
		return false, err
	}
	return a.factorsInUse(factors[username]) != 0, nil
}

// newRecoveryToken stores a new link of kind for username, bound to the
// user's hash, working for lifetime, and returns its token; ErrNotFound
// when there is no such user.
func (a *Authenticator) newRecoveryToken(ctx context.Context, kind, username, address string, lifetime time.Duration) (string, error) {
	token := newSessionToken()
	now := a.now()
	ok, err := a.store.insertRecoveryToken(ctx, &model.RecoveryToken{
		TokenHash: tokenHash(token), Kind: kind, Username: username, Address: address,
		CreatedAt: unixSeconds(now), ExpiresAt: unixSeconds(now.Add(lifetime)),
	})
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("%w: %s", ErrNotFound, quoteName(username))
	}
	return token, nil
}

// link is the URL of a route (path, under Prefix) with a token: built
// from HTTPConfig.BaseURL alone, never from a request's Host.
func (a *Authenticator) link(path, token string) string {
	return a.recovery.baseURL + path + "?" + url.Values{"token": {token}}.Encode()
}

// mailData is the data of a mail with a link.
func (a *Authenticator) mailData(username, address, path, token string, lifetime time.Duration) MailData {
	return MailData{
		AppName: a.recovery.appName, Username: username, Address: address,
		Link: a.link(path, token), Expires: inWords(lifetime),
	}
}

// inWords says a duration as a mail does: "30 minutes", "24 hours".
func inWords(d time.Duration) string {
	switch {
	case d >= 2*time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}

// cleanRecovery is the background cleanup of expired links and old counts.
func (a *Authenticator) cleanRecovery(ctx context.Context) {
	if err := a.store.deleteExpiredRecovery(ctx, a.now(), a.recovery.window); err != nil && ctx.Err() == nil {
		a.logger.ErrorContext(ctx, "authn: cleanup of recovery links failed", "error", err)
	}
}

// mailDropped is how many mails the full queue dropped.
func (a *Authenticator) mailDropped() int64 {
	if a.mail == nil {
		return 0
	}
	return a.mail.dropped.Load()
}
