package authn

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
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
//
// A login takes its hashing slot (Config.HashConcurrency) first: one that
// finds no capacity before ctx ends fails with ErrBusy, and nothing is
// counted. A claim that waits for a lock another transaction holds, on
// the account's row (PostgreSQL) or on the database (SQLite, which has one
// writer), gives its slot back meanwhile, and only one claim per account
// (per database on SQLite) waits in the database at a time, so that a held
// row delays the logins of its own account and leaves the others their
// slots and pooled connections. Such a wait ends with ErrBusy when ctx
// ends. A login whose claim waited must then take a slot again: if it
// gets none before ctx ends, it fails with ErrBusy too, its attempt
// counted and its password not checked.
//
// An account with a second factor (see Account.SecondFactor) is not signed
// in by its password alone: the right password gets
// ErrSecondFactorRequired, and counts toward the lockout as a failure does
// (only a finished login, with the second factor, resets the counter).
func (a *Authenticator) Authenticate(ctx context.Context, username, password string) error {
	p, err := a.authenticate(ctx, username, password, noWait, passwordLogin)
	if err != nil {
		return err
	}
	if err := a.passwordAlone(ctx, p); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventLoginSucceeded, Username: username})
	return nil
}

// passwordMode says what a password check is for.
type passwordMode int

const (
	// passwordLogin: a login, which the password finishes only on an
	// account without a second factor; on one with, the counter is not
	// reset and the proof names the factors still to check.
	passwordLogin passwordMode = iota
	// passwordAgain: a signed-in user confirming their password (to change
	// it, or to change their second factor): the password finishes the
	// check, and resets the counter only on an account without a second
	// factor (see authenticate).
	passwordAgain
)

// authenticate is Authenticate, waiting for hashing capacity within wait
// (and for its claim within one more: see checkPassword), and returning
// the proof of the password: the user's hash as it is stored after the
// login (the re-hash, if there was one) and, for a passwordLogin, the
// second factors still to check (then the counter was not reset; see
// finish). It reports failures; the caller reports the success once the
// login is complete (a session started, for the login route).
func (a *Authenticator) authenticate(ctx context.Context, username, password string, wait hashWait, mode passwordMode) (loginProof, error) {
	// A broken database fails the login before it takes a hashing slot;
	// the store would refuse each statement anyway.
	if err := a.store.check(); err != nil {
		return loginProof{}, err
	}
	if err := a.acquire(ctx, wait); err != nil {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: loggable(username), Reason: ReasonBusy})
		return loginProof{}, err
	}
	// The padding of a failure counts from here: the wait for the slot is
	// the server's load, not the account's doing, and must not shorten it.
	start := time.Now()
	change, err := a.checkPasswordInSlot(ctx, username, password, wait)
	p := loginProof{username: username, method: MethodPassword, hash: change.old, ownLock: change.ownLock}
	switch {
	case err != nil:
	case a.factorsInUse(change.factors) != 0:
		// The password alone never resets the counter of an account with a
		// second factor, not even a signed-in user's password again:
		// else each re-check (Disable's, a page's) would clear the code
		// guesses counted since, and codes could be guessed forever.
		if mode == passwordLogin {
			p.factors = a.factorsInUse(change.factors)
		}
		if err = a.holdForSecondFactor(ctx, username, change); err == nil {
			p.hash = cmp.Or(change.new, change.old)
		}
	default:
		p.rehash = change.new
		err = a.finish(ctx, &p)
	}
	if err != nil {
		if isClientFailure(err) {
			a.failureTiming.pad(ctx, start)
		}
		return loginProof{}, err
	}
	return p, nil
}

// holdForSecondFactor ends the password step of a login on an account with
// a second factor: the counter stays as the claim left it (the login is
// not finished), a re-hash is stored, and an account that this very
// attempt locked (its claim reached the threshold) is refused as locked,
// since no finished login will clear that lock.
func (a *Authenticator) holdForSecondFactor(ctx context.Context, username string, change passwordChange) error {
	if change.ownLock.Valid {
		a.emit(ctx, Event{Type: EventLockout, Username: username})
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonLocked})
		t, forever := lockTime(change.ownLock.Float64)
		return &LockedError{Until: t, Forever: forever}
	}
	if change.new == "" {
		return nil
	}
	change.keepCount = true
	return a.resetAfterLogin(ctx, username, change)
}

// checkPasswordInSlot runs checkPassword and releases the hashing slot the
// caller acquired, if the login still holds it, also when a Hasher, an
// OnEvent hook or a log handler panics: a slot lost that way would be lost
// for good.
func (a *Authenticator) checkPasswordInSlot(ctx context.Context, username, password string, wait hashWait) (passwordChange, error) {
	slot := a.newLoginSlot(ctx)
	defer slot.release()
	return a.checkPassword(ctx, slot, username, password, wait)
}

// passwordChange is a verified hash and, when it needs one, its re-hash.
type passwordChange struct {
	old, new string // new is "" when no re-hash is due
	// ownLock is the lockout_until that this attempt's own claim wrote
	// when it was the one that reached the threshold (its RETURNING); the
	// reset may clear that lock and no other.
	ownLock sql.NullFloat64
	// factors are the account's second factors, as the claim saw them.
	factors factorSet
	// keepCount stores the re-hash without resetting the counter or the
	// lock: the password step of an account with a second factor, whose
	// login is not finished.
	keepCount bool
}

// checkPassword runs steps 1, 2 and 4 of Authenticate, and the hashing of
// step 3, holding slot, which it lends back while the claim waits. The
// claim waits within a HashWait of its own (see hashWait.again), the slot
// taken again after it within two (hashWait.retakeWait); the re-hash waits
// for memory within wait.
func (a *Authenticator) checkPassword(ctx context.Context, slot *loginSlot, username, password string, wait hashWait) (passwordChange, error) {
	fail := func(reason Reason, err error) (passwordChange, error) {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: loggable(username), Reason: reason})
		return passwordChange{}, err
	}
	if CheckUsername(username) != nil {
		a.dummyVerify()
		return fail(ReasonMalformedUsername, ErrInvalidCredentials)
	}
	if password == "" || len(password) > a.maxPasswordBytes {
		a.dummyVerify()
		return fail(ReasonMalformedPassword, ErrInvalidCredentials)
	}
	claimWait := wait.again()
	loan := slot.lendAfter(claimWait.loanAfter())
	c, err := a.claim(ctx, username, claimWait, loan)
	stored, ownLock := c.stored, c.ownLock
	lent := loan.stop()
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if lent {
			if err := slot.retake(claimWait.retakeWait()); err != nil {
				return fail(ReasonBusy, err)
			}
		}
		change, err := a.refused(ctx, username)
		a.dummyVerify() // after the read, which the time of the hash then hides
		return change, err
	case errors.Is(err, errOverBudget):
		return passwordChange{}, err // reported as throttled by the handler
	case errors.Is(err, ErrBusy):
		return fail(ReasonDatabaseBusy, err)
	case err != nil:
		return fail(ReasonError, err)
	}
	if lent {
		if err := slot.retake(claimWait.retakeWait()); err != nil {
			return passwordChange{}, a.countedBusy(ctx, username, ownLock, err)
		}
	}
	ok, err := a.verify(stored, password)
	if ownLock.Valid && (err != nil || !ok) {
		// Reported only for a failure: the right password on the T-th
		// attempt succeeds and clears its own lock below.
		a.emit(ctx, Event{Type: EventLockout, Username: username})
	}
	if err != nil {
		// Fail closed, and tell the operator: no password can match a
		// hash this package cannot read. The dummy verification makes
		// the failure cost what any other does.
		a.logger.ErrorContext(ctx, "authn: stored password hash is unusable", "user", username, "error", err)
		a.dummyVerify()
		return fail(ReasonUnusableHash, fmt.Errorf("%w: stored hash of %s: %w", ErrInvalidCredentials, username, err))
	}
	if !ok {
		return fail(ReasonWrongPassword, ErrInvalidCredentials)
	}
	change := passwordChange{old: stored, ownLock: ownLock, factors: c.factors}
	if a.hasher.NeedsRehash(stored) {
		// A failed re-hash must not fail a correct login: keep the old hash.
		switch h, err := a.hashNow(ctx, password, wait); {
		case err == nil:
			change.new = h
		case errors.Is(err, ErrInvalidPassword): // too long for the Hasher
			a.logger.InfoContext(ctx, "authn: password too long for the configured hasher; keeping its old hash", "user", username, "error", err)
		case errors.Is(err, ErrBusy): // no hashing memory free: next time
			a.logger.InfoContext(ctx, "authn: re-hash postponed; keeping the old hash", "user", username, "error", err)
		default:
			a.logger.ErrorContext(ctx, "authn: re-hashing a password failed", "user", username, "error", err)
		}
	}
	return change, nil
}

// countedBusy reports a claimed attempt that got no hashing slot back
// after its claim waited (see Authenticate), whose error was err: it was
// counted and its password will not be checked. It fails closed, with
// ErrBusy as a countedBusyError, which spends the client's failure budget
// as a failure does (see spendsBudget); when its claim locked the
// account, the lockout is reported as for a wrong password.
func (a *Authenticator) countedBusy(ctx context.Context, username string, ownLock sql.NullFloat64, err error) error {
	a.record(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonBusy}, true, slog.Bool("counted", true))
	if ownLock.Valid {
		a.emit(ctx, Event{Type: EventLockout, Username: username})
	}
	return countedBusyError{err}
}

// countedBusyError is the ErrBusy of a login that got no hashing slot
// after its attempt was claimed: counted toward the lockout, its password
// not checked.
type countedBusyError struct{ err error }

func (e countedBusyError) Error() string { return e.err.Error() + " (the attempt was counted)" }
func (e countedBusyError) Unwrap() error { return e.err }

// claim is step 2: it counts the attempt on an unlocked account and returns
// its stored hash, when this attempt reached the threshold, the lock it
// wrote, and the account's second factors. sql.ErrNoRows means unknown
// user or locked. Every guessable secret (a password, a TOTP code, a
// recovery code) is checked only after its claim. With lockout disabled
// it only reads, which waits for no lock: PostgreSQL reads the last
// committed row, SQLite in WAL mode reads beside its writer.
//
// A claim waits for its turn (see claimTurns), then for the database, both
// within wait (HashWait from the start of the claim) and ctx, lending the
// login's hashing slot while it waits (loan): one whose wait ends fails
// with a claimWaitError (ErrBusy). A lock held by another transaction thus
// delays a login by HashWait at most, and holds one pooled connection per
// account (per database on SQLite) meanwhile. On PostgreSQL the end of the
// wait ends the statement in the server too (pgx sends a cancel request
// when a context ends), so that no backend stays behind waiting for the
// lock. On SQLite a statement waiting for the write lock returns at the
// busy timeout (10 s), whatever its context: the claim that has the turn
// may wait that long; the others wait no longer than HashWait. A claim that ends so may or may not have counted the attempt
// (the UPDATE may commit as its wait ends); it checks no password either
// way.
func (a *Authenticator) claim(ctx context.Context, username string, wait hashWait, loan *slotLoan) (c claimed, err error) {
	ticket := budgetTicketFrom(ctx) // the client's budget, for a login over HTTP
	if a.threshold < 0 {
		if ticket != nil {
			if _, err := ticket.spend(ctx, wait.d); err != nil {
				return c, err
			}
		}
		return a.store.unlockedHash(ctx, username, a.now())
	}
	if !wait.until.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, wait.until, fmt.Errorf("HashWait (%v) passed", wait.d))
		defer cancel()
	}
	if ctx.Err() != nil {
		return c, claimWaitError{context.Cause(ctx)}
	}
	release, err := a.claimTurns.take(ctx, a.claimTurnKey(username), func(since time.Time) {
		if loan != nil { // a code's check holds no hashing slot
			loan.lendBy(since.Add(wait.loanAfter())) // the claim ahead may be stuck
		}
	})
	if err != nil {
		return c, claimWaitError{err}
	}
	defer release()
	c, err = a.store.claim(ctx, username, a.now(), a.threshold, a.duration, ticket.budgetSpend())
	err = ticket.claimed(ctx, err)
	if err != nil && !errors.Is(err, errOverBudget) && !errors.Is(err, sql.ErrNoRows) && ctx.Err() != nil {
		err = claimWaitError{fmt.Errorf("%w: %w", context.Cause(ctx), nested(err))}
	}
	return c, err
}

// claimWaitError is the error of a claim whose wait ended before it was
// done, most likely for a lock that another transaction held: ErrBusy,
// with what ended it.
type claimWaitError struct{ cause error }

func (e claimWaitError) Error() string {
	return "authn: waiting to claim a login attempt: " + e.cause.Error()
}

func (e claimWaitError) Unwrap() []error { return []error{ErrBusy, e.cause} }

// refused tells a locked account from an unknown user after a claim found
// no row to count, and reports it.
func (a *Authenticator) refused(ctx context.Context, username string) (passwordChange, error) {
	until, err := a.store.lockoutUntil(ctx, username)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonUnknownUser})
		return passwordChange{}, ErrInvalidCredentials
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonError})
		return passwordChange{}, err
	}
	// The claim saw the account locked. The lock may have ended since,
	// but this attempt was made while it held.
	a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonLocked})
	t, forever := lockTime(until.Float64)
	return passwordChange{}, &LockedError{Until: t, Forever: forever}
}

// resetAfterLogin is step 3: it clears the counter and the lock and stores
// the re-hash, provided the hash is still the one verified and the account
// is not locked now. A lock set since the claim (by Lock, or by failures
// that landed meanwhile) refuses the login as locked; only the lock this
// attempt's own claim wrote is cleared. A password change or a deletion
// that came in between fails the login.
func (a *Authenticator) resetAfterLogin(ctx context.Context, username string, change passwordChange) error {
	var ok bool
	var err error
	if a.threshold < 0 && change.new == "" {
		// Lockout disabled and nothing to store: only make sure that the
		// account was not locked or changed meanwhile.
		ok, err = a.store.stillUnlocked(ctx, username, change.old, a.now())
	} else {
		ok, err = a.store.resetAfterLogin(ctx, username, change, a.now())
	}
	switch {
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonError})
		return err
	case !ok:
		return a.changedDuringLogin(ctx, username)
	}
	return nil
}

// changedDuringLogin reports a verified login whose account changed before
// it could be completed: locked (refused as locked), or with a new password
// or deleted (refused as invalid).
func (a *Authenticator) changedDuringLogin(ctx context.Context, username string) error {
	until, err := a.store.lockoutUntil(ctx, username)
	switch {
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonError})
		return err
	case err == nil && until.Valid && lockedAt(until.Float64, a.now()):
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonLocked})
		t, forever := lockTime(until.Float64)
		return &LockedError{Until: t, Forever: forever}
	}
	a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: ReasonChanged})
	return ErrInvalidCredentials
}

// dummyVerify spends the time of a real verification, for answers that must
// not be told apart from a wrong password by their timing. Its duration is
// the reference that failureTiming pads failures to, so it verifies a fixed
// password of ordinary length, never the client's: with bcrypt, a password
// over 72 bytes returns at once, and a client sending such passwords for
// unknown users would otherwise drag the reference, and the padding of
// every failure, down to nothing.
func (a *Authenticator) dummyVerify() {
	start := time.Now()
	_, _ = a.verify(a.dummyHash, dummyPassword)
	a.failureTiming.observe(time.Since(start))
}

// dummyPassword is what dummyVerify verifies: no password matches the
// dummy hash, made from random text.
const dummyPassword = "not the password of anyone here"

// loggable returns username if it is well-formed, else "": a malformed
// "username" is often a password typed in the wrong field.
func loggable(username string) string {
	if CheckUsername(username) != nil {
		return ""
	}
	return username
}
