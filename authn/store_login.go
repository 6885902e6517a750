package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"
)

// The statements of the lockout (see Authenticate): the claim, the reads
// that tell why a login was refused, and the reset after a good password.

// unlockedSQL is the condition of a row that is not locked at a time,
// with the arguments of unlockedArgs. It is lockedAt in SQL: a value out of
// range is a lock; PostgreSQL sorts NaN above every number, SQLite cannot
// store NaN (it becomes NULL) and sorts TEXT above every number, so neither
// passes "<= now".
const unlockedSQL = "lockout_until IS NULL OR (lockout_until <= ? AND lockout_until >= ?)"

func unlockedArgs(now float64) []any { return []any{now, float64(minLockSeconds)} }

// claim counts a login attempt on username if the account is not locked at
// now, in one atomic UPDATE: failed_attempts goes up by one, and when that
// reaches threshold it goes back to 0 and the account is locked for lockFor.
// It returns the stored hash and, when this attempt reached the threshold,
// the lock it wrote, exactly as stored, and the second factors the
// account has. sql.ErrNoRows means unknown user or locked.
//
// With spend, the claim first takes a token of the client's budget in the
// same transaction (see reserveQuery): errBudgetEmpty, and nothing
// written, when the client has none; otherwise the token is spent whether
// or not a row was counted (an unknown user costs the client as a wrong
// password does). The two share one commit.
func (s *store) claim(ctx context.Context, username string, now time.Time, threshold int, lockFor time.Duration, spend *budgetSpend) (c claimed, err error) {
	if err := s.check(); err != nil {
		return c, err
	}
	t := unixSeconds(now)
	// Every SET expression reads the row as it was before the UPDATE. The
	// table has no alias (bun would name it "user"), so that the factors'
	// subqueries in RETURNING can name its row on both databases.
	q := s.db.NewUpdate().Table("users").
		Set("failed_attempts = CASE WHEN COALESCE(failed_attempts, 0) + 1 >= ? THEN 0 ELSE COALESCE(failed_attempts, 0) + 1 END", threshold).
		Set("lockout_until = CASE WHEN COALESCE(failed_attempts, 0) + 1 >= ? THEN ? ELSE NULL END", threshold, t+lockFor.Seconds()).
		Where("username = ?", username).
		Where(unlockedSQL, unlockedArgs(t)...).
		Returning("password_hash, lockout_until, " + factorsSQL("users.username") + " AS factors")
	if spend != nil {
		return s.claimSpending(ctx, q, spend)
	}
	// The hash comes back before the count is committed: only a claim
	// known written may check it (see scanWritten).
	err = scanWritten(ctx, s.db.DB, s.db.QueryGen(), q, &c.stored, &c.ownLock, &c.factors)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return claimed{}, notWritten("claiming a login attempt", err)
	}
	return c, err
}

// claimed is what a claim returns: the stored hash, the lock the claim
// wrote if it reached the threshold, and the account's second factors.
type claimed struct {
	stored  string
	ownLock sql.NullFloat64
	factors factorSet
}

// claimSpending runs claim, the UPDATE q, after the statement that takes
// the client's token, the two committed together: on PostgreSQL in one
// statement (see claimSpendingPG), one round trip as the claim alone; on
// SQLite in one transaction, one commit. The hash is returned only once
// they have committed.
func (s *store) claimSpending(ctx context.Context, q *bun.UpdateQuery, spend *budgetSpend) (c claimed, err error) {
	if s.postgres() {
		return s.claimSpendingPG(ctx, q, spend)
	}
	var counted error // sql.ErrNoRows: unknown user or locked
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := scanWritten(ctx, tx.Tx, s.db.QueryGen(), s.reserveQuery(spend.limits, spend.client, spend.now), &spend.left); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return errBudgetEmpty
			}
			return err
		}
		counted = scanWritten(ctx, tx.Tx, s.db.QueryGen(), q, &c.stored, &c.ownLock, &c.factors)
		if errors.Is(counted, sql.ErrNoRows) {
			return nil // the token stays spent
		}
		return counted
	})
	switch {
	case errors.Is(err, errBudgetEmpty):
		return claimed{}, err
	case err != nil:
		return claimed{}, notWritten("claiming a login attempt", err)
	}
	return c, counted
}

// unlockedHash is claim with lockout disabled: it counts nothing and only
// reads the hash of username, and its second factors, if the account is
// not locked at now.
func (s *store) unlockedHash(ctx context.Context, username string, now time.Time) (c claimed, err error) {
	if err := s.check(); err != nil {
		return c, err
	}
	err = s.db.NewSelect().Table("users").Column("password_hash").
		ColumnExpr(factorsSQL("users.username")).
		Where("username = ?", username).
		Where(unlockedSQL, unlockedArgs(unixSeconds(now))...).
		Scan(ctx, &c.stored, &c.factors)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return claimed{}, fmt.Errorf("authn: reading a user to log in: %w", err)
	}
	return c, err
}

// lockoutUntil reads username's stored lock (NULL: none). sql.ErrNoRows
// means no such user.
func (s *store) lockoutUntil(ctx context.Context, username string) (sql.NullFloat64, error) {
	var until sql.NullFloat64
	if err := s.check(); err != nil {
		return until, err
	}
	err := s.db.NewSelect().Model((*model.User)(nil)).Column("lockout_until").
		Where("username = ?", username).Scan(ctx, &until)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("authn: reading a lock: %w", err)
	}
	return until, err
}

// stillUnlocked reports whether username still has the hash verified and
// is not locked at now: what a login checks when it has nothing to write.
func (s *store) stillUnlocked(ctx context.Context, username, verified string, now time.Time) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	still, err := s.db.NewSelect().Model((*model.User)(nil)).
		Where("username = ?", username).Where("password_hash = ?", verified).
		Where(unlockedSQL, unlockedArgs(unixSeconds(now))...).Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("authn: reading a user after login: %w", err)
	}
	return still, nil
}

// resetAfterLogin clears username's counter and lock (unless
// change.keepCount) and stores the re-hash of change, if any, provided the hash is still change.old and the
// account is not locked at now, or locked exactly by change.ownLock. It
// reports whether the row was reset.
func (s *store) resetAfterLogin(ctx context.Context, username string, change passwordChange, now time.Time) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	t := unixSeconds(now)
	q := clearLock(s.db)
	if change.keepCount {
		q = s.db.NewUpdate().Model((*model.User)(nil))
	}
	if change.new != "" {
		q = q.Set("password_hash = ?", change.new)
	}
	q = q.Where("username = ?", username).Where("password_hash = ?", change.old)
	if own := change.ownLock; own.Valid {
		// The lock is the claim's own if it is still exactly the value
		// RETURNING gave (bun writes floats in the shortest form that reads
		// back the same). A Lock written in the same microsecond with the
		// default duration would be taken for it; any other lock is not.
		q = q.WhereGroup(" AND ", func(q *bun.UpdateQuery) *bun.UpdateQuery {
			return q.Where(unlockedSQL, unlockedArgs(t)...).WhereOr("lockout_until = ?", own.Float64)
		})
	} else {
		q = q.Where(unlockedSQL, unlockedArgs(t)...)
	}
	if change.new == "" {
		n, err := rowsAffected(q.Exec(ctx))
		if err != nil {
			return false, notWritten("resetting failed attempts", err)
		}
		return n == 1, nil
	}
	// A re-hash: the user's sessions and tokens bound to the old hash are
	// carried over to the new one in the same transaction, so that no
	// request sees them bound to a hash the user no longer has.
	var n int64
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if n, err = rowsAffected(q.Conn(tx).Exec(ctx)); err != nil || n != 1 {
			return err
		}
		if err := rebind(ctx, tx, "sessions", username, change.old, change.new); err != nil {
			return err
		}
		return rebindKept(ctx, tx, username, change.old, change.new)
	})
	if err != nil {
		return false, notWritten("resetting failed attempts and storing a re-hash", err)
	}
	return n == 1, nil
}

// rowsAffected is the number of rows of the result of an Exec.
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// claimSpendingPG is claimSpending on PostgreSQL: one statement whose
// first part (a data-modifying WITH) takes the token, and whose second,
// the claim, runs only if it did. A row with no hash: the token is spent
// and the claim counted nothing (unknown user or locked); no row: no
// token, nothing written.
func (s *store) claimSpendingPG(ctx context.Context, q *bun.UpdateQuery, spend *budgetSpend) (c claimed, err error) {
	gen := s.db.QueryGen()
	take, err := s.reserveQuery(spend.limits, spend.client, spend.now).AppendQuery(gen, nil)
	if err != nil {
		return c, err
	}
	claim, err := q.Where("EXISTS (SELECT 1 FROM spent)").AppendQuery(gen, nil)
	if err != nil {
		return c, err
	}
	query := "WITH spent AS (" + string(take) + "), claimed AS (" + string(claim) + ")" +
		" SELECT spent.tokens, claimed.password_hash, claimed.lockout_until, claimed.factors FROM spent LEFT JOIN claimed ON TRUE"
	var hash sql.NullString
	var factors sql.NullInt64
	err = scanWritten(ctx, s.db.DB, gen, sqlText(query), &spend.left, &hash, &c.ownLock, &factors)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return claimed{}, errBudgetEmpty
	case err != nil:
		return claimed{}, notWritten("claiming a login attempt", err)
	case !hash.Valid:
		return claimed{}, sql.ErrNoRows
	}
	c.stored, c.factors = hash.String, factorSet(factors.Int64)
	return c, nil
}

// sqlText is a statement already written out, for scanWritten.
type sqlText string

func (q sqlText) AppendQuery(_ schema.QueryGen, b []byte) ([]byte, error) {
	return append(b, q...), nil
}
