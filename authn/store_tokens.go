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

// The statements of app tokens (see CreateToken) and of the administrator's
// lock that stops them (see model.AdminLock).

// insertToken writes t, bound to its user's hash as it is now, if the user
// exists and has no working token of its name: a token of that name left
// by a hash written outside this package (see model.Token.UserHash) is
// replaced. It reports whether it wrote the row: when not, the caller
// finds out why.
// On SQLite the statement is atomic, writers running one at a time. On
// PostgreSQL, FOR KEY SHARE locks the user's row until the insert commits,
// so that a Delete running at the same time either removes the user first
// (no token is written) or waits, and its deletion of the user's tokens
// then sees this one: no token outlives its user.
func (s *store) insertToken(ctx context.Context, t *model.Token) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	lock := ""
	if s.postgres() {
		lock = " FOR KEY SHARE"
	}
	// The token is bound to the user's hash as it is now.
	query := `INSERT INTO tokens (token_hash, username, name, created_at, user_hash)
SELECT ?, username, ?, ?, password_hash FROM users WHERE username = ?` + lock + `
ON CONFLICT (username, name) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = EXCLUDED.created_at,
last_used = NULL, user_hash = EXCLUDED.user_hash
WHERE tokens.user_hash IS DISTINCT FROM EXCLUDED.user_hash`
	res, err := s.db.ExecContext(ctx, query, t.TokenHash, t.Name, t.CreatedAt, t.Username)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return false, notWritten("creating a token of "+quoteName(t.Username), err)
	}
	return n == 1, nil
}

// userExists reports whether a user of exactly that name exists.
func (s *store) userExists(ctx context.Context, username string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	exists, err := s.db.NewSelect().Model((*model.User)(nil)).Where("username = ?", username).Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("authn: reading %s: %w", quoteName(username), err)
	}
	return exists, nil
}

// listTokens reads username's tokens that still work (bound to the user's
// hash), the oldest first.
func (s *store) listTokens(ctx context.Context, username string) ([]model.Token, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var tokens []model.Token
	err := s.db.NewSelect().Model(&tokens).Column("name", "created_at", "last_used").
		Where("username = ?", username).Where(boundSQL, username).OrderExpr("created_at ASC, name ASC").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("authn: listing the tokens of %s: %w", quoteName(username), err)
	}
	return tokens, nil
}

// deleteToken deletes username's token called name and reports whether
// there was one.
func (s *store) deleteToken(ctx context.Context, username, name string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	err := oneRow(s.db.NewDelete().Model((*model.Token)(nil)).
		Where("username = ?", username).Where("name = ?", name).Exec(ctx))
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, notWritten("revoking a token of "+quoteName(username), err)
	}
	return true, nil
}

// tokenRow is what the check of an app token reads.
type tokenRow struct {
	username string
	lastUsed sql.NullFloat64
	// userLock is the user's lockout_until; adminLock what Lock last wrote
	// there, if it ever did.
	userLock, adminLock sql.NullFloat64
}

// tokenRead reads a token with its user's lock and the administrator's, if
// the user exists, still has the hash the token is bound to (see
// model.Token.UserHash), and is not locked with no end (as sessionRead: how an
// administrator of the Python application disables an account). Whether a
// lock in time stops the token is the caller's to judge: one of failed
// passwords does not, one of Lock does.
func tokenRead() string {
	return fmt.Sprintf(`SELECT t.username, t.last_used, u.lockout_until, l.lockout_until
FROM tokens AS t JOIN users AS u ON u.username = t.username
LEFT JOIN admin_locks AS l ON l.username = t.username
WHERE t.token_hash = ? AND t.user_hash = u.password_hash
AND (u.lockout_until IS NULL OR (u.lockout_until >= %d AND u.lockout_until < %d))`, int64(minLockSeconds), int64(maxLockSeconds))
}

// token reads the token of tokenHash with a prepared statement: one read by
// primary key, joined on two primary keys, or from memory (see
// fastReads). errNoToken when there is none
// (or its user is gone or locked with no end).
func (s *store) token(ctx context.Context, tokenHash string) (tokenRow, error) {
	if err := s.check(); err != nil {
		return tokenRow{}, err
	}
	row, err := s.tokens.read(tokenHash, func() (row tokenRow, err error) {
		err = s.hot.token.QueryRowContext(s.hot.context(ctx), tokenHash).
			Scan(&row.username, &row.lastUsed, &row.userLock, &row.adminLock)
		return row, err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return row, errNoToken
	}
	if err != nil {
		return row, fmt.Errorf("authn: reading a token: %w", err)
	}
	return row, nil
}

// touchToken records a use of the token of tokenHash at now, unless a use
// after since is recorded already: another request or process wrote it in
// the meantime, and the row is not written again.
func (s *store) touchToken(ctx context.Context, tokenHash string, now, since time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.NewUpdate().Model((*model.Token)(nil)).Set("last_used = ?", unixSeconds(now)).
		Where("token_hash = ?", tokenHash).
		Where("last_used IS NULL OR last_used <= ?", unixSeconds(since)).Exec(ctx)
	if err != nil {
		return notWritten("recording a token's use", err)
	}
	return nil
}

// clearAdminLock forgets username's record of an administrator's lock, in
// the transaction of what ends that lock (Unlock, SetPassword). A stale
// record stops no token once the row's lock differs from it, but a failure
// lockout that happened to write the same value would match it again.
func clearAdminLock(ctx context.Context, db bun.IDB, username string) error {
	_, err := db.NewDelete().Model((*model.AdminLock)(nil)).Where("username = ?", username).Exec(ctx)
	return err
}

// recordAdminLock records that Lock wrote until, as stored, into username's
// lockout_until, inside Lock's transaction: until is the SQL of the value
// with its arguments, as store.float writes it.
func recordAdminLock(ctx context.Context, db bun.IDB, username, until string, args []any) error {
	_, err := db.NewInsert().Model(&model.AdminLock{Username: username}).Value("lockout_until", until, args...).
		On("CONFLICT (username) DO UPDATE").Set("lockout_until = EXCLUDED.lockout_until").Exec(ctx)
	return err
}
