package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// The statements of account recovery (see Recovery): verified email
// addresses, the reset and verification links, and the limits on reset
// requests. Links are stored by the SHA-256 of their token, never by the
// token, and bound to the user's password hash as it was when they were
// made.

// Kinds of recovery_tokens rows.
const (
	kindReset  = "reset"
	kindVerify = "verify"
)

// errInvalidLink: a reset or verification link that is unknown, used,
// expired, of another kind, or whose user changed password or was deleted
// since it was made. The client sees one answer for all of them.
var errInvalidLink = errors.New("authn: the link is invalid or has expired")

// errAddressTaken: the address is the verified address of another account.
var errAddressTaken = errors.New("authn: the address belongs to another account")

// createRecoverySchema creates the table of recovery that belongs to no
// user (the counts of reset requests) in tx, the transaction of
// createSchema; the others are in userTables.
func createRecoverySchema(ctx context.Context, tx bun.Tx) error {
	_, err := tx.NewCreateTable().Model((*model.RecoveryLimit)(nil)).IfNotExists().Exec(ctx)
	return err
}

// insertRecoveryToken stores t, bound to its user's hash as it is now,
// and deletes the user's other links of its kind, in one transaction: only
// the newest link of a kind works. It reports false when there is no such
// user (nothing is written then).
func (s *store) insertRecoveryToken(ctx context.Context, t *model.RecoveryToken) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var n int64
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewDelete().Model((*model.RecoveryToken)(nil)).
			Where("username = ?", t.Username).Where("kind = ?", t.Kind).Exec(ctx)
		if err != nil {
			return err
		}
		query := `INSERT INTO recovery_tokens (token_hash, kind, username, user_hash, address, created_at, expires_at)
SELECT ?, ?, username, password_hash, ?, ?, ? FROM users WHERE username = ?`
		n, err = rowsAffected(tx.ExecContext(ctx, query, t.TokenHash, t.Kind, nullIfEmpty(t.Address), t.CreatedAt, t.ExpiresAt, t.Username))
		return err
	})
	if err != nil {
		return false, notWritten("storing a "+t.Kind+" link of "+quoteName(t.Username), err)
	}
	return n == 1, nil
}

// resetTarget is what a reset request resolves to: an account with a
// verified address, and the state of its lock.
type resetTarget struct {
	username, address   string
	userLock, adminLock sql.NullFloat64
}

// resetTarget reads the account that a reset request names, by username or
// (byAddress) by the lower-cased address, with its verified address, when
// it has one bound to its current hash; sql.ErrNoRows otherwise. Both
// cases run the same statement shape, so that they cost the same.
func (s *store) resetTarget(ctx context.Context, key string, byAddress bool) (resetTarget, error) {
	var t resetTarget
	if err := s.check(); err != nil {
		return t, err
	}
	column := "u.username"
	if byAddress {
		column = "e.address_key"
	}
	query := `SELECT u.username, e.address, u.lockout_until, l.lockout_until
FROM users AS u JOIN emails AS e ON e.username = u.username AND e.user_hash = u.password_hash
LEFT JOIN admin_locks AS l ON l.username = u.username
WHERE ` + column + ` = ?`
	err := s.db.QueryRowContext(ctx, query, key).Scan(&t.username, &t.address, &t.userLock, &t.adminLock)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("authn: reading the account of a reset request: %w", err)
	}
	return t, err
}

// countRequests counts one reset request against each of keys (hashes),
// each in a window of its own that starts with its first request and lasts
// window, and returns the counts, this request included, in one
// transaction. Every instance counts in the same rows.
func (s *store) countRequests(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int64, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	t := unixSeconds(now)
	ended := unixSeconds(now.Add(-window))
	counts := make([]int64, len(keys))
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for i, key := range keys {
			q := tx.NewRaw(`INSERT INTO recovery_limits (key_hash, window_start, count) VALUES (?, ?, 1)
ON CONFLICT (key_hash) DO UPDATE SET
count = CASE WHEN recovery_limits.window_start <= ? THEN 1 ELSE recovery_limits.count + 1 END,
window_start = CASE WHEN recovery_limits.window_start <= ? THEN ? ELSE recovery_limits.window_start END
RETURNING count`, key, t, ended, ended, t)
			if err := scanWritten(ctx, tx.Tx, s.db.QueryGen(), q, &counts[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, notWritten("counting a reset request", err)
	}
	return counts, nil
}

// peekRecoveryToken reads the link of tokenHash, of kind, if it has not
// expired at now and its user still has the hash it is bound to; it does
// not consume it. errInvalidLink otherwise.
func (s *store) peekRecoveryToken(ctx context.Context, tokenHash, kind string, now time.Time) (model.RecoveryToken, error) {
	var t model.RecoveryToken
	if err := s.check(); err != nil {
		return t, err
	}
	var address sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT t.username, t.user_hash, t.address, t.expires_at FROM recovery_tokens AS t
JOIN users AS u ON u.username = t.username AND u.password_hash = t.user_hash
WHERE t.token_hash = ? AND t.kind = ? AND t.expires_at > ?`, tokenHash, kind, unixSeconds(now)).
		Scan(&t.Username, &t.UserHash, &address, &t.ExpiresAt)
	t.Address = address.String
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return t, errInvalidLink
	case err != nil:
		return t, fmt.Errorf("authn: reading a link: %w", err)
	}
	return t, nil
}

// consumeToken deletes the link of tokenHash, of kind, in tx and returns
// it, provided it has not expired at now and its user still has the hash
// it is bound to (read FOR UPDATE on PostgreSQL, so that a change of
// password in flight is waited for); errInvalidLink otherwise. Of two
// transactions that consume the same link, on any instances, one gets it:
// the other's DELETE finds no row.
func (s *store) consumeToken(ctx context.Context, tx bun.Tx, tokenHash, kind string, now time.Time) (model.RecoveryToken, error) {
	var t model.RecoveryToken
	q := tx.NewDelete().Model((*model.RecoveryToken)(nil)).
		Where("token_hash = ?", tokenHash).Where("kind = ?", kind).
		Returning("username, user_hash, address, expires_at")
	var address sql.NullString
	err := scanWritten(ctx, tx.Tx, s.db.QueryGen(), q, &t.Username, &t.UserHash, &address, &t.ExpiresAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return t, errInvalidLink
	case err != nil:
		return t, err
	}
	t.Address = address.String
	if t.ExpiresAt <= unixSeconds(now) {
		return t, errInvalidLink
	}
	current, err := s.lockedHash(ctx, tx, t.Username)
	switch {
	case errors.Is(err, ErrNotFound):
		return t, errInvalidLink
	case err != nil:
		return t, err
	case current != t.UserHash:
		return t, errInvalidLink
	}
	return t, nil
}

// errResetLocked: the account is locked by an administrator (Lock), or
// with no end: a reset does not lift that.
var errResetLocked = errors.New("authn: the account is locked by an administrator")

// adminLockedSQL is the condition of a users row (alias u) locked at a
// time (the first argument) by an administrator: a lock with no end (see
// lockTime), or the very value Lock recorded in admin_locks. The second
// and third arguments are the range of lock times.
const adminLockedSQL = `(u.lockout_until IS NOT NULL AND (NOT (u.lockout_until >= ? AND u.lockout_until < ?)
OR (u.lockout_until > ? AND EXISTS (SELECT 1 FROM admin_locks AS l WHERE l.username = u.username AND l.lockout_until = u.lockout_until))))`

// adminLocked reports whether an administrator's lock holds on username
// at now (see adminLockedSQL); false for no such user.
func (s *store) adminLocked(ctx context.Context, username string, now time.Time) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var locked bool
	err := s.db.QueryRowContext(ctx, "SELECT "+adminLockedSQL+" FROM users AS u WHERE u.username = ?",
		append(adminLockedArgs(unixSeconds(now)), username)...).Scan(&locked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("authn: reading whether an administrator locked %s: %w", loggable(username), err)
	}
	return locked, nil
}

func adminLockedArgs(now float64) []any {
	return []any{float64(minLockSeconds), float64(maxLockSeconds), now}
}

// resetPassword consumes the reset link of tokenHash and stores encoded as
// its user's hash, in one transaction: it clears the failure counter and a
// lockout by failed attempts, ends every session, deletes the user's app
// tokens and links, forgets a stale record of an administrator's lock,
// and carries the verified address over to the new hash. It fails with
// errInvalidLink when the link does not work (unknown, used, expired, its
// user gone or with another hash), and with errResetLocked, consuming
// nothing, when an administrator's lock holds. It returns the user's name.
func (s *store) resetPassword(ctx context.Context, tokenHash, encoded string, now time.Time) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	t := unixSeconds(now)
	var username string
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		link, err := s.consumeToken(ctx, tx, tokenHash, kindReset, now)
		if err != nil {
			return err
		}
		username = link.Username
		var locked bool
		err = tx.QueryRowContext(ctx, "SELECT "+adminLockedSQL+" FROM users AS u WHERE u.username = ?",
			append(adminLockedArgs(t), username)...).Scan(&locked)
		if err != nil {
			return err
		}
		if locked {
			return errResetLocked
		}
		res, err := clearLock(tx).Set("password_hash = ?", encoded).
			Where("username = ?", username).Where("password_hash = ?", link.UserHash).Exec(ctx)
		if err := oneRow(res, err); errors.Is(err, ErrNotFound) {
			return errInvalidLink
		} else if err != nil {
			return err
		}
		if err := rebind(ctx, tx, "emails", username, link.UserHash, encoded); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*model.RecoveryToken)(nil)).Where("username = ?", username).Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*model.Token)(nil)).Where("username = ?", username).Exec(ctx); err != nil {
			return err
		}
		if err := clearAdminLock(ctx, tx, username); err != nil {
			return err
		}
		return deleteSessions(ctx, tx, username)
	})
	switch {
	case err == nil:
		return username, nil
	case errors.Is(err, errInvalidLink), errors.Is(err, errResetLocked):
		return username, err
	}
	return "", notWritten("resetting a password", err)
}

// verifyEmail consumes the verification link of tokenHash and stores its
// address as its user's verified address, in one transaction. It returns
// the user and the address; errInvalidLink when the link does not work,
// errAddressTaken (consuming nothing) when another account has the address.
func (s *store) verifyEmail(ctx context.Context, tokenHash string, now time.Time) (username, address string, err error) {
	if err := s.check(); err != nil {
		return "", "", err
	}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		link, err := s.consumeToken(ctx, tx, tokenHash, kindVerify, now)
		if err != nil {
			return err
		}
		username, address = link.Username, link.Address
		return s.putEmail(ctx, tx, username, address, link.UserHash, now)
	})
	switch {
	case err == nil:
		return username, address, nil
	case errors.Is(err, errInvalidLink), errors.Is(err, errAddressTaken):
		return username, address, err
	}
	return "", "", notWritten("verifying an address", err)
}

// setEmail stores address as username's verified address, bound to the
// user's hash as it is now: an administrator's word instead of a link.
// ErrNotFound when there is no such user; errAddressTaken when another
// account has the address.
func (s *store) setEmail(ctx context.Context, username, address string, now time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		hash, err := s.lockedHash(ctx, tx, username)
		if err != nil {
			return err
		}
		return s.putEmail(ctx, tx, username, address, hash, now)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errAddressTaken):
		return err
	}
	return notFoundOr(err, "set the address of", username)
}

// putEmail writes username's verified address in tx, bound to userHash,
// unless another account has it (errAddressTaken). An address left by
// another account whose binding is void (its hash written outside) is
// freed first.
func (s *store) putEmail(ctx context.Context, tx bun.Tx, username, address, userHash string, now time.Time) error {
	key := addressKey(address)
	if s.postgres() {
		// Two verifications of one address for two accounts at once would
		// each find it free: the second would fail on the unique key, in a
		// transaction PostgreSQL then refuses to go on with. A lock on the
		// address, until the commit, runs them one after the other.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?, hashtext(?))", emailLockClass, key); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM emails WHERE address_key = ? AND username <> ?
AND NOT EXISTS (SELECT 1 FROM users AS u WHERE u.username = emails.username AND u.password_hash = emails.user_hash)`, key, username)
	if err != nil {
		return err
	}
	var taken bool
	err = tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM emails WHERE address_key = ? AND username <> ?)", key, username).Scan(&taken)
	if err != nil {
		return err
	}
	if taken {
		return errAddressTaken
	}
	_, err = tx.NewInsert().Model(&model.Email{Username: username, Address: address, AddressKey: key, VerifiedAt: unixSeconds(now), UserHash: userHash}).
		On("CONFLICT (username) DO UPDATE").
		Set("address = EXCLUDED.address").Set("address_key = EXCLUDED.address_key").
		Set("verified_at = EXCLUDED.verified_at").Set("user_hash = EXCLUDED.user_hash").
		Returning("NULL").Exec(ctx)
	return err
}

// emailLockClass is the first key of putEmail's PostgreSQL advisory locks
// ("mail" in ASCII), a key space apart from the other advisory locks.
const emailLockClass = 0x6d61696c

// email reads username's verified address, if it is bound to the user's
// current hash; "" when there is none.
func (s *store) email(ctx context.Context, username string) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	var address string
	err := s.db.QueryRowContext(ctx, `SELECT e.address FROM emails AS e JOIN users AS u
ON u.username = e.username AND u.password_hash = e.user_hash WHERE e.username = ?`, username).Scan(&address)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("authn: reading the address of %s: %w", quoteName(username), err)
	}
	return address, nil
}

// removeEmail deletes username's address and the user's links to verify
// one, and reports whether there was an address.
func (s *store) removeEmail(ctx context.Context, username string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var n int64
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		n, err = rowsAffected(tx.NewDelete().Model((*model.Email)(nil)).Where("username = ?", username).Exec(ctx))
		if err != nil {
			return err
		}
		_, err = tx.NewDelete().Model((*model.RecoveryToken)(nil)).Where("username = ?", username).Where("kind = ?", kindVerify).Exec(ctx)
		return err
	})
	if err != nil {
		return false, notWritten("removing the address of "+quoteName(username), err)
	}
	return n == 1, nil
}

// deleteExpiredRecovery deletes the links expired at now and the counts
// of reset requests whose window ended.
func (s *store) deleteExpiredRecovery(ctx context.Context, now time.Time, window time.Duration) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.NewDelete().Model((*model.RecoveryToken)(nil)).Where("expires_at <= ?", unixSeconds(now)).Exec(ctx)
	if err != nil {
		return notWritten("deleting expired links", err)
	}
	_, err = s.db.NewDelete().Model((*model.RecoveryLimit)(nil)).Where("window_start <= ?", unixSeconds(now.Add(-window))).Exec(ctx)
	if err != nil {
		return notWritten("deleting old counts of reset requests", err)
	}
	return nil
}
