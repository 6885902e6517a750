package authn

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/minimost/minimost/model"
)

// Authenticate checks username and password and applies the lockout rule:
//
//  1. An account locked until a time in the future, or with no end (a
//     stored lockout_until that is no time: see Account.LockedForever), is
//     refused with a *LockedError without checking the password, and
//     nothing is written.
//  2. Otherwise the attempt is claimed first, in one atomic UPDATE that
//     counts it as a failure and, at the threshold, resets the counter and
//     locks the account. Only a claimed attempt checks the real hash.
//  3. A correct password resets the counter and the lock, in one UPDATE that
//     also stores a re-hash when the Hasher's NeedsRehash asks for one.
//  4. A wrong password writes nothing more: the claim counted it.
//
// Unknown users, malformed usernames and over-long passwords get
// ErrInvalidCredentials after a verification against a dummy hash, so that
// every failure costs about the same time. A database error or a context
// that ends is returned as it is: never nil, never a success.
func (a *Authenticator) Authenticate(ctx context.Context, username, password string) error {
	_, err := a.authenticate(ctx, username, password)
	return err
}

// authenticate is Authenticate, returning the user's hash as it is stored
// after the login (the re-hash, if there was one).
func (a *Authenticator) authenticate(ctx context.Context, username, password string) (stored string, err error) {
	if err := a.checkFile(); err != nil {
		return "", err
	}
	if err := a.acquire(ctx); err != nil {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: loggable(username), Reason: ReasonBusy})
		return "", err
	}
	change, err := a.checkPassword(ctx, username, password)
	a.release()
	if err != nil {
		return "", err
	}
	if err := a.resetAfterLogin(ctx, username, change); err != nil {
		return "", err
	}
	a.emit(ctx, Event{Type: EventLoginSucceeded, Username: username})
	return cmp.Or(change.new, change.old), nil
}

// passwordChange is a verified hash and, when it needs one, its re-hash.
type passwordChange struct {
	old, new string // new is "" when no re-hash is due
}

// checkPassword runs steps 1, 2 and 4 of Authenticate, and the hashing of
// step 3, holding a hashing slot.
func (a *Authenticator) checkPassword(ctx context.Context, username, password string) (passwordChange, error) {
	fail := func(reason string, err error) (passwordChange, error) {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: loggable(username), Reason: reason})
		return passwordChange{}, err
	}
	if CheckUsername(username) != nil {
		a.dummyVerify(password)
		return fail(ReasonMalformedUsername, ErrInvalidCredentials)
	}
	if password == "" || len(password) > a.maxPasswordBytes {
		a.dummyVerify("")
		return fail(ReasonMalformedPassword, ErrInvalidCredentials)
	}
	stored, lockedNow, err := a.claim(ctx, username)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		change, err := a.refused(ctx, username)
		a.dummyVerify(password) // after the read, which the time of the hash then hides
		return change, err
	case err != nil:
		return fail(ReasonError, fmt.Errorf("authn: claiming a login attempt: %w", err))
	}
	ok, err := a.hasher.Verify(stored, password)
	if lockedNow {
		a.emit(ctx, Event{Type: EventLockout, Username: username})
	}
	if err != nil {
		// Fail closed, and tell the operator: no password can match a
		// hash this package cannot read.
		a.logger.ErrorContext(ctx, "authn: stored password hash is unusable", "user", username, "error", err)
		return fail(ReasonUnusableHash, fmt.Errorf("%w: stored hash of %s: %w", ErrInvalidCredentials, username, err))
	}
	if !ok {
		return fail(ReasonWrongPassword, ErrInvalidCredentials)
	}
	change := passwordChange{old: stored}
	if a.hasher.NeedsRehash(stored) {
		// A failed re-hash must not fail a correct login: keep the old hash.
		switch h, err := a.hashNow(password); {
		case err == nil:
			change.new = h
		case errors.Is(err, ErrInvalidPassword): // too long for the Hasher
			a.logger.InfoContext(ctx, "authn: password too long for the configured hasher; keeping its old hash", "user", username, "error", err)
		default:
			a.logger.ErrorContext(ctx, "authn: re-hashing a password failed", "user", username, "error", err)
		}
	}
	return change, nil
}

// claim is step 2: it counts the attempt on an unlocked account and returns
// its stored hash, and whether this attempt locked it. sql.ErrNoRows means
// unknown user or locked. With lockout disabled it only reads.
func (a *Authenticator) claim(ctx context.Context, username string) (stored string, lockedNow bool, err error) {
	now := unixSeconds(a.now())
	if a.threshold < 0 {
		err = a.db.NewSelect().Model((*model.User)(nil)).Column("password_hash").
			Where("username = ?", username).
			Where(unlockedSQL, unlockedArgs(now)...).
			Scan(ctx, &stored)
		return stored, false, err
	}
	// Every SET expression reads the row as it was before the UPDATE.
	var until sql.NullFloat64
	err = a.db.NewUpdate().Model((*model.User)(nil)).
		Set("failed_attempts = CASE WHEN COALESCE(failed_attempts, 0) + 1 >= ? THEN 0 ELSE COALESCE(failed_attempts, 0) + 1 END", a.threshold).
		Set("lockout_until = CASE WHEN COALESCE(failed_attempts, 0) + 1 >= ? THEN ? ELSE NULL END", a.threshold, now+a.duration.Seconds()).
		Where("username = ?", username).
		Where(unlockedSQL, unlockedArgs(now)...).
		Returning("password_hash, lockout_until").
		Scan(ctx, &stored, &until)
	return stored, until.Valid, err
}

// refused tells a locked account from an unknown user after a claim found
// no row to count, and reports it.
func (a *Authenticator) refused(ctx context.Context, username string) (passwordChange, error) {
	var until sql.NullFloat64
	err := a.db.NewSelect().Model((*model.User)(nil)).Column("lockout_until").
		Where("username = ?", username).Scan(ctx, &until)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonUnknownUser})
		return passwordChange{}, ErrInvalidCredentials
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonError})
		return passwordChange{}, fmt.Errorf("authn: reading a lock: %w", err)
	}
	// The claim saw the account locked. The lock may have ended since,
	// but this attempt was made while it held.
	a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonLocked})
	t, forever := lockTime(until.Float64)
	return passwordChange{}, &LockedError{Until: t, Forever: forever}
}

// resetAfterLogin is step 3: it clears the counter and the lock and stores
// the re-hash, provided the hash is still the one verified. If a password
// change or a deletion came in between, the login fails.
func (a *Authenticator) resetAfterLogin(ctx context.Context, username string, change passwordChange) error {
	if a.threshold < 0 && change.new == "" {
		return nil // lockout disabled and nothing to store
	}
	q := a.db.NewUpdate().Model((*model.User)(nil)).
		Set("failed_attempts = 0").
		Set("lockout_until = NULL")
	if change.new != "" {
		q = q.Set("password_hash = ?", change.new)
	}
	res, err := q.Where("username = ?", username).Where("password_hash = ?", change.old).Exec(ctx)
	if err != nil {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonError})
		return fmt.Errorf("authn: resetting failed attempts: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonError})
		return fmt.Errorf("authn: resetting failed attempts: %w", err)
	}
	if n != 1 {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonChanged})
		return ErrInvalidCredentials
	}
	return nil
}

// dummyVerify spends the time of a real verification, for answers that must
// not be told apart from a wrong password by their timing.
func (a *Authenticator) dummyVerify(password string) {
	_, _ = a.hasher.Verify(a.dummyHash, password)
}

// loggable returns username if it is well-formed, else "": a malformed
// "username" is often a password typed in the wrong field.
func loggable(username string) string {
	if CheckUsername(username) != nil {
		return ""
	}
	return username
}
