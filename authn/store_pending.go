package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// The statements of the login core beside the lockout's: which second
// factors an account has, and the pending logins that wait for one.

// secondFactorSQL tells, for each second factor an account may have, how
// the claim (and the hot read of BasicAuth) sees that the user whose name
// is the SQL expression %[1]s has it: a condition on the factor's own
// table. The bit of a factor in a factorSet is its index here. A factor
// adds its line here, and its name to factorNames.
var secondFactorSQL = []string{
	factorTOTP:    "EXISTS (SELECT 1 FROM totp_secrets AS f WHERE f.username = %[1]s AND f.confirmed)",
	factorPasskey: "EXISTS (SELECT 1 FROM passkeys AS f WHERE f.username = %[1]s)",
}

// factorsSQL is the SQL expression of the factorSet of the user whose name
// is the SQL expression user: one integer, so that the claim and the hot
// read return it in one column of the statement they already run.
func factorsSQL(user string) string {
	terms := make([]string, len(secondFactorSQL))
	for i, cond := range secondFactorSQL {
		terms[i] = fmt.Sprintf("(CASE WHEN "+cond+" THEN %[2]d ELSE 0 END)", user, 1<<i)
	}
	return "(" + strings.Join(terms, " + ") + ")"
}

// factorsOf reads the second factors of the users named, by name: the ones
// without any, and unknown names, are missing from the map.
func (s *store) factorsOf(ctx context.Context, usernames []string) (map[string]factorSet, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out := make(map[string]factorSet)
	if len(usernames) == 0 {
		return out, nil
	}
	var rows []struct {
		Username string    `bun:"username"`
		Factors  factorSet `bun:"factors"`
	}
	err := s.db.NewSelect().TableExpr("users").Column("username").
		ColumnExpr(factorsSQL("users.username")+" AS factors").
		Where("username IN (?)", bun.List(usernames)).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("authn: reading second factors: %w", err)
	}
	for _, r := range rows {
		if r.Factors != 0 {
			out[r.Username] = r.Factors
		}
	}
	return out, nil
}

// insertPending stores a pending login of p.Username, provided the user's
// row still has the hash p.UserHash and is not locked at now: the check
// and the insert are one statement, as for a session (see createSession).
// It also deletes the user's pending logins that have expired. It fails
// with errSessionRefused when the row did not qualify.
func (s *store) insertPending(ctx context.Context, p *model.PendingLogin, now time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	t := unixSeconds(now)
	_, err := s.db.NewDelete().Model((*model.PendingLogin)(nil)).
		Where("username = ?", p.Username).Where("expires_at <= ?", t).Exec(ctx)
	if err != nil {
		return notWritten("deleting expired pending logins", err)
	}
	query := `INSERT INTO pending_logins (handle_hash, username, user_hash, created_at, expires_at, remember, next)
SELECT ?, username, password_hash, ?, ?, ?, ? FROM users
WHERE username = ? AND password_hash = ? AND (` + unlockedSQL + `)`
	res, err := s.db.ExecContext(ctx, query, p.HandleHash, p.CreatedAt, p.ExpiresAt, p.Remember, nullIfEmpty(p.Next),
		p.Username, p.UserHash, t, float64(minLockSeconds))
	switch err := oneRow(res, err); {
	case errors.Is(err, ErrNotFound):
		return errSessionRefused
	case err != nil:
		return notWritten("storing a pending login", err)
	}
	return nil
}

// pending reads the pending login of a handle's hash if it has not expired
// at now; sql.ErrNoRows otherwise. It does not consume it.
func (s *store) pending(ctx context.Context, handleHash string, now time.Time) (model.PendingLogin, error) {
	var p model.PendingLogin
	if err := s.check(); err != nil {
		return p, err
	}
	err := s.db.NewSelect().Model(&p).Where("handle_hash = ?", handleHash).
		Where("expires_at > ?", unixSeconds(now)).Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("authn: reading a pending login: %w", err)
	}
	return p, err
}

// consumePending deletes the pending login of a handle's hash, if it is
// username's, bound to the hash userHash and not expired at now, in one
// statement, and reports whether it did: of two steps that finish the
// same pending login, on any instances, one consumes it.
func (s *store) consumePending(ctx context.Context, handleHash, username, userHash string, now time.Time) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var got string
	q := s.db.NewDelete().Model((*model.PendingLogin)(nil)).
		Where("handle_hash = ?", handleHash).Where("username = ?", username).
		Where("user_hash = ?", userHash).Where("expires_at > ?", unixSeconds(now)).
		Returning("handle_hash")
	err := scanWritten(ctx, s.db.DB, s.db.QueryGen(), q, &got)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, notWritten("consuming a pending login", err)
	}
	return true, nil
}

// dropPending deletes the pending login of a handle's hash, whoever's it
// is: the logout of a login that was never finished.
func (s *store) dropPending(ctx context.Context, handleHash string) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.NewDelete().Model((*model.PendingLogin)(nil)).Where("handle_hash = ?", handleHash).Exec(ctx)
	if err != nil {
		return notWritten("deleting a pending login", err)
	}
	return nil
}

// deleteExpiredPending deletes every pending login expired at now.
func (s *store) deleteExpiredPending(ctx context.Context, now time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	n, err := rowsAffected(s.db.NewDelete().Model((*model.PendingLogin)(nil)).
		Where("expires_at <= ?", unixSeconds(now)).Exec(ctx))
	if err != nil {
		return 0, notWritten("deleting expired pending logins", err)
	}
	return n, nil
}
