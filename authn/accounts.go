package authn

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/model"
)

// Register creates a user. The username must pass CheckUsername and the
// password the PasswordPolicy. A name already taken, also in another case
// ("Admin" when "admin" exists), gives ErrUserExists: two accounts whose
// names differ only in case invite impersonation. Logins still match names
// exactly. Either the whole row is written or nothing is.
func (a *Authenticator) Register(ctx context.Context, username, pw string) error {
	return a.register(ctx, username, pw, noWait)
}

// register is Register, waiting for hashing capacity within wait.
func (a *Authenticator) register(ctx context.Context, username, pw string, wait hashWait) error {
	if err := CheckUsername(username); err != nil {
		return err
	}
	if err := a.policy.Check(username, pw); err != nil {
		return err
	}
	// A cheap look first, so that a taken name costs no hash; the insert
	// still decides when two registrations race.
	taken, err := a.store.nameTaken(ctx, username)
	if err != nil {
		return err
	}
	if taken {
		return fmt.Errorf("%w: %s", ErrUserExists, username)
	}
	encoded, err := a.hash(ctx, pw, wait)
	if err != nil {
		return err
	}
	if err := a.store.insertUser(ctx, username, encoded); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventRegistered, Username: username})
	return nil
}

// CheckNewUsername reports whether Register would take username as the
// name of a new user: an error wrapping ErrInvalidUsername (see
// CheckUsername) or ErrUserExists (a user has that name, also in another
// case), or nil. It costs one read and no hash, so that a tool can refuse a
// name before it asks for a password. The answer may change before Register
// runs; Register checks again.
func (a *Authenticator) CheckNewUsername(ctx context.Context, username string) error {
	if err := CheckUsername(username); err != nil {
		return err
	}
	taken, err := a.store.nameTaken(ctx, username)
	if err != nil {
		return err
	}
	if taken {
		return fmt.Errorf("%w: %s", ErrUserExists, username)
	}
	return nil
}

// SetPassword replaces a user's password after checking it against the
// PasswordPolicy, clears the failure counter and any lock, and ends all the
// user's sessions, in one transaction; the user's app tokens stay valid. An
// unknown user gives ErrNotFound.
func (a *Authenticator) SetPassword(ctx context.Context, username, pw string) error {
	// A broken database fails before the hash is spent; the store would
	// refuse the statement anyway.
	if err := a.store.check(); err != nil {
		return err
	}
	if err := CheckUsername(username); err != nil {
		return fmt.Errorf("%w: %w", ErrNotFound, nested(err))
	}
	if err := a.policy.Check(username, pw); err != nil {
		return err
	}
	encoded, err := a.hash(ctx, pw, noWait)
	if err != nil {
		return err
	}
	if err := a.store.setPassword(ctx, username, encoded); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventPasswordChanged, Username: username})
	return nil
}

// Unlock clears a user's lock and failure counter.
func (a *Authenticator) Unlock(ctx context.Context, username string) error {
	if err := a.store.unlock(ctx, username); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventUnlock, Username: username})
	return nil
}

// Forever, as the duration of Lock, locks a user with no end: until Unlock,
// SetPassword or an import. The stored lockout_until is +Inf, the Python
// application's way of disabling an account, and Account.LockedForever
// reports it. No other duration does: the longest, about 292 years, still
// ends.
const Forever time.Duration = math.MaxInt64

// Lock locks a user for d from now (d <= 0: for the configured
// LockoutDuration; Forever: with no end), clears the failure counter and
// ends all the user's sessions, in one transaction: a lock is what an
// administrator does about a password in the wrong hands. Logins are
// refused until the lock ends or Unlock or SetPassword is called; a login
// already past its password check is refused too (see Authenticate). The
// user's app tokens are refused while the lock lasts. A lockout caused by
// failed passwords, unlike Lock, leaves sessions and app tokens alone, or
// anyone could sign a user out.
func (a *Authenticator) Lock(ctx context.Context, username string, d time.Duration) error {
	if d <= 0 {
		d = a.duration
	}
	until := math.Inf(1)
	if d != Forever {
		until = unixSeconds(a.now().Add(d))
	}
	if err := a.store.lock(ctx, username, until); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventLock, Username: username})
	return nil
}

// Delete removes a user, all the user's sessions and app tokens, in one
// transaction.
func (a *Authenticator) Delete(ctx context.Context, username string) error {
	if err := a.store.deleteUser(ctx, username); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventDeleted, Username: username})
	return nil
}

// Account is what an administrator may see of a user: never the hash, the
// lock as a time, and what the configured Hasher makes of the stored hash.
//
// A user has three types, one per purpose: model.User is the row as stored
// (NULLs and the lock as the database holds them), which only the store
// reads and writes; Account is the administrator's view (Account,
// ListAccounts); UserRecord is a row moving between databases, hash
// included (ReadUsers, ImportUser). Account and UserRecord stay apart
// because their purposes conflict: an Account must never carry the hash
// that a UserRecord exists to carry, and a UserRecord keeps an odd stored
// lock (NaN, 1e300) exactly, where an Account only says it has no end.
type Account struct {
	Username string
	// FailedAttempts counts consecutive failures since the last success
	// or lock.
	FailedAttempts int
	// LockedUntil is when the current lock ends; zero when not locked.
	LockedUntil time.Time
	// LockedForever is true when the account is locked with no end: its
	// stored lockout_until is no finite time between the years 0 and 9999
	// (+Inf, NaN, 1e300, -Inf; how an administrator of the Python
	// application may disable an account). It stays locked until Unlock,
	// SetPassword or an import changes the value. LockedUntil is then the
	// last second of year 9999, so that comparing times sees the lock.
	LockedForever bool
	// Scheme is the stored hash's format: "pbkdf2", "scrypt", "argon2id",
	// "bcrypt", or "" when unknown.
	Scheme string
	// NeedsRehash is true when the next login will re-hash the password
	// with the configured Hasher.
	NeedsRehash bool
	// SecondFactors names the second factors the account has ("totp"), or
	// is empty: an account with one signs in with its password and then
	// the factor, and its password alone is refused everywhere else (app
	// tokens keep working). Delete removes them; SetPassword, an import
	// and Lock keep them (Lock stops the second step as it stops a
	// password); TOTP.Reset removes them.
	SecondFactors []string
}

// SecondFactor reports whether the account has a second factor.
func (acc Account) SecondFactor() bool { return len(acc.SecondFactors) > 0 }

// Account returns the state of one user, or ErrNotFound.
func (a *Authenticator) Account(ctx context.Context, username string) (Account, error) {
	u, err := a.store.user(ctx, username)
	if err != nil {
		return Account{}, err
	}
	acc := a.account(&u, a.now())
	factors, err := a.store.factorsOf(ctx, []string{username})
	if err != nil {
		return Account{}, err
	}
	acc.SecondFactors = factors[username].kinds()
	return acc, nil
}

// ListOptions selects a page of ListAccounts.
type ListOptions struct {
	// After lists the users whose names sort after it, for
	// paging: pass the last name of the previous page.
	After string
	// Limit is the most users returned; 0 means 100, and at most 1000 are.
	Limit int
	// LockedOnly lists only the users locked now.
	LockedOnly bool
}

// ListAccounts returns users in the order of their names: byte order on
// SQLite, the database's collation on PostgreSQL (paging with After follows
// the same order either way).
func (a *Authenticator) ListAccounts(ctx context.Context, opts ListOptions) ([]Account, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	now := a.now()
	users, err := a.store.listUsers(ctx, opts.After, limit, opts.LockedOnly, now)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(users))
	for i := range users {
		names[i] = users[i].Username
	}
	factors, err := a.store.factorsOf(ctx, names)
	if err != nil {
		return nil, err
	}
	accounts := make([]Account, len(users))
	for i := range users {
		accounts[i] = a.account(&users[i], now)
		accounts[i].SecondFactors = factors[users[i].Username].kinds()
	}
	return accounts, nil
}

func (a *Authenticator) account(u *model.User, now time.Time) Account {
	acc := Account{
		Username:    u.Username,
		Scheme:      password.Scheme(u.PasswordHash),
		NeedsRehash: a.hasher.NeedsRehash(u.PasswordHash),
	}
	if u.FailedAttempts != nil {
		acc.FailedAttempts = int(*u.FailedAttempts)
	}
	if u.LockoutUntil != nil && lockedAt(*u.LockoutUntil, now) {
		acc.LockedUntil, acc.LockedForever = lockTime(*u.LockoutUntil)
	}
	return acc
}
