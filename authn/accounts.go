package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// Register creates a user. The username must pass CheckUsername and the
// password the PasswordPolicy. A name already taken, also in another case
// ("Admin" when "admin" exists), gives ErrUserExists: two accounts whose
// names differ only in case invite impersonation. Logins still match names
// exactly. Either the whole row is written or nothing is.
func (a *Authenticator) Register(ctx context.Context, username, pw string) error {
	if err := a.checkFile(); err != nil {
		return err
	}
	if err := CheckUsername(username); err != nil {
		return err
	}
	if err := a.policy.Check(username, pw); err != nil {
		return err
	}
	// A cheap look first, so that a taken name costs no hash; the insert
	// below still decides when two registrations race.
	exists, err := a.db.NewSelect().Model((*model.User)(nil)).Where("lower(username) = lower(?)", username).Exists(ctx)
	if err != nil {
		return fmt.Errorf("authn: register %s: %w", username, err)
	}
	if exists {
		return fmt.Errorf("%w: %s", ErrUserExists, username)
	}
	encoded, err := a.hash(ctx, pw)
	if err != nil {
		return err
	}
	if err := a.insertUser(ctx, username, encoded); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventRegistered, Username: username})
	return nil
}

// insertUser writes a new, unlocked user with an encoded hash, unless a
// user of that name in any case exists (ErrUserExists). On SQLite the
// statement is atomic, writers running one at a time; on PostgreSQL two
// registrations of "admin" and "Admin" would not see each other's
// uncommitted row, so a transaction-scoped advisory lock on the lower-cased
// name orders them.
func (a *Authenticator) insertUser(ctx context.Context, username, encoded string) error {
	const insert = `INSERT INTO users (username, password_hash, failed_attempts)
SELECT ?, ?, 0 WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower(?))
ON CONFLICT (username) DO NOTHING`
	return a.addUser(ctx, username, func(ctx context.Context, tx bun.Tx) (sql.Result, error) {
		if a.db.Dialect().Name() == dialect.PG {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext(lower(?)))", username); err != nil {
				return nil, err
			}
		}
		return tx.ExecContext(ctx, insert, username, encoded, username)
	})
}

// insertRow writes a new user row, or fails with ErrUserExists.
func (a *Authenticator) insertRow(ctx context.Context, u *model.User) error {
	return a.addUser(ctx, u.Username, func(ctx context.Context, tx bun.Tx) (sql.Result, error) {
		return a.withLockout(tx.NewInsert().Model(u), u).On("CONFLICT (username) DO NOTHING").Exec(ctx)
	})
}

// addUser runs insert, which writes the row of a new user or nothing, and,
// when it wrote one, deletes any session left under that name, in one
// transaction: a user deleted behind the library's back (by the Python
// application) leaves sessions that the session read refuses while the name
// is free, and that a new owner of the name must not inherit.
func (a *Authenticator) addUser(ctx context.Context, username string, insert func(context.Context, bun.Tx) (sql.Result, error)) error {
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := oneRow(insert(ctx, tx)); err != nil {
			return err
		}
		return deleteSessions(ctx, tx, username)
	})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrUserExists, username)
	}
	if err != nil {
		return fmt.Errorf("authn: add %s: %w", username, err)
	}
	return nil
}

// SetPassword replaces a user's password after checking it against the
// PasswordPolicy, clears the failure counter and any lock, and ends all the
// user's sessions, in one transaction. An unknown user gives ErrNotFound.
func (a *Authenticator) SetPassword(ctx context.Context, username, pw string) error {
	if err := a.checkFile(); err != nil {
		return err
	}
	if err := CheckUsername(username); err != nil {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err := a.policy.Check(username, pw); err != nil {
		return err
	}
	encoded, err := a.hash(ctx, pw)
	if err != nil {
		return err
	}
	err = a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*model.User)(nil)).
			Set("password_hash = ?", encoded).
			Set("failed_attempts = 0").
			Set("lockout_until = NULL").
			Where("username = ?", username).Exec(ctx)
		if err := oneRow(res, err); err != nil {
			return err
		}
		return deleteSessions(ctx, tx, username)
	})
	if err != nil {
		return fmt.Errorf("authn: set password of %s: %w", username, err)
	}
	a.emit(ctx, Event{Type: EventPasswordChanged, Username: username})
	return nil
}

// Unlock clears a user's lock and failure counter.
func (a *Authenticator) Unlock(ctx context.Context, username string) error {
	if err := a.checkFile(); err != nil {
		return err
	}
	res, err := a.db.NewUpdate().Model((*model.User)(nil)).
		Set("failed_attempts = 0").
		Set("lockout_until = NULL").
		Where("username = ?", username).Exec(ctx)
	if err := oneRow(res, err); err != nil {
		return fmt.Errorf("authn: unlock %s: %w", quoteName(username), err)
	}
	a.emit(ctx, Event{Type: EventUnlock, Username: username})
	return nil
}

// Lock locks a user for d from now (d <= 0: for the configured
// LockoutDuration), clears the failure counter and ends all the user's
// sessions, in one transaction: a lock is what an administrator does about a
// password in the wrong hands. Logins are refused until the lock ends or
// Unlock or SetPassword is called; a login already past its password check
// is refused too (see Authenticate). A lockout caused by failed passwords,
// unlike Lock, leaves sessions alone, or anyone could sign a user out.
func (a *Authenticator) Lock(ctx context.Context, username string, d time.Duration) error {
	if err := a.checkFile(); err != nil {
		return err
	}
	if d <= 0 {
		d = a.duration
	}
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*model.User)(nil)).
			Set("failed_attempts = 0").
			Set("lockout_until = ?", unixSeconds(a.now().Add(d))).
			Where("username = ?", username).Exec(ctx)
		if err := oneRow(res, err); err != nil {
			return err
		}
		return deleteSessions(ctx, tx, username)
	})
	if err != nil {
		return fmt.Errorf("authn: lock %s: %w", quoteName(username), err)
	}
	a.emit(ctx, Event{Type: EventLock, Username: username})
	return nil
}

// Delete removes a user and all the user's sessions, in one transaction.
func (a *Authenticator) Delete(ctx context.Context, username string) error {
	if err := a.checkFile(); err != nil {
		return err
	}
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*model.User)(nil)).Where("username = ?", username).Exec(ctx)
		if err := oneRow(res, err); err != nil {
			return err
		}
		return deleteSessions(ctx, tx, username)
	})
	if err != nil {
		return fmt.Errorf("authn: delete %s: %w", quoteName(username), err)
	}
	a.emit(ctx, Event{Type: EventDeleted, Username: username})
	return nil
}

func deleteSessions(ctx context.Context, db bun.IDB, username string) error {
	_, err := db.NewDelete().Model((*model.Session)(nil)).Where("username = ?", username).Exec(ctx)
	return err
}

// oneRow turns the result of a statement on one user into ErrNotFound when
// it touched no row.
func oneRow(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Account is what an administrator may see of a user: never the hash.
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
}

// Account returns the state of one user, or ErrNotFound.
func (a *Authenticator) Account(ctx context.Context, username string) (Account, error) {
	if err := a.checkFile(); err != nil {
		return Account{}, err
	}
	var u model.User
	err := a.db.NewSelect().Model(&u).Where("username = ?", username).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("%w: %s", ErrNotFound, quoteName(username))
	}
	if err != nil {
		return Account{}, fmt.Errorf("authn: reading %s: %w", quoteName(username), err)
	}
	return a.account(&u, a.now()), nil
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
	if err := a.checkFile(); err != nil {
		return nil, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	now := a.now()
	var users []model.User
	q := a.db.NewSelect().Model(&users).Where("username > ?", opts.After).OrderExpr("username ASC").Limit(int64(limit))
	if opts.LockedOnly {
		// The negation of unlockedSQL: PostgreSQL's NaN and SQLite's TEXT
		// sort above every number.
		q = q.Where("lockout_until > ? OR lockout_until < ?", unixSeconds(now), float64(minLockSeconds))
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("authn: listing users: %w", err)
	}
	accounts := make([]Account, len(users))
	for i := range users {
		accounts[i] = a.account(&users[i], now)
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
