package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/minimost/minimost/model"
)

// The statements of the sessions table. Sessions are stored by the SHA-256
// of their token (see tokenHash), never by the token.

// createSession stores a session of username, made at now and ending after
// lifetime (remembered: a "remember me" session), provided the user's row
// still has the hash verified and is not locked: one statement, so a
// password change, a Lock or a deletion that lands after the password check
// leaves no live session behind. On PostgreSQL the row is read FOR SHARE,
// so that such a change in flight is waited for and then seen; SQLite runs
// one writer at a time. It fails with errSessionRefused when the row did
// not qualify.
func (s *store) createSession(ctx context.Context, tokenHash, username, verified string, now time.Time, lifetime time.Duration, remembered bool) error {
	if err := s.check(); err != nil {
		return err
	}
	query := `INSERT INTO sessions (token_hash, username, created_at, last_seen, expires_at, remembered)
SELECT ?, username, ?, ?, ?, ? FROM users
WHERE username = ? AND password_hash = ? AND (` + unlockedSQL + `)`
	if s.postgres() {
		query += " FOR SHARE"
	}
	res, err := s.db.ExecContext(ctx, query,
		tokenHash, unixSeconds(now), unixSeconds(now), unixSeconds(now.Add(lifetime)), remembered,
		username, verified, unixSeconds(now), float64(minLockSeconds))
	if err := oneRow(res, err); errors.Is(err, ErrNotFound) {
		return errSessionRefused
	} else if err != nil {
		return fmt.Errorf("authn: creating a session: %w", err)
	}
	return nil
}

// session reads the session of tokenHash with a prepared statement, if its
// user exists and is not locked with no end (see sessionRead); errNoSession
// when there is none. Whether it is still live is the caller's to judge.
func (s *store) session(ctx context.Context, tokenHash string) (model.Session, error) {
	var sess model.Session
	if err := s.check(); err != nil {
		return sess, err
	}
	err := s.hot.session.QueryRowContext(s.hot.context(ctx), tokenHash).Scan(&sess.Username, &sess.LastSeen, &sess.ExpiresAt, &sess.Remembered)
	if errors.Is(err, sql.ErrNoRows) {
		return sess, errNoSession
	}
	if err != nil {
		return sess, fmt.Errorf("authn: reading a session: %w", err)
	}
	return sess, nil
}

// touchSession records a use of the session of tokenHash at now.
func (s *store) touchSession(ctx context.Context, tokenHash string, now time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.NewUpdate().Model((*model.Session)(nil)).Set("last_seen = ?", unixSeconds(now)).
		Where("token_hash = ?", tokenHash).Exec(ctx)
	if err != nil {
		return fmt.Errorf("authn: recording a session's use: %w", err)
	}
	return nil
}

// endSession deletes the session of tokenHash and returns its user ("" if
// there was none).
func (s *store) endSession(ctx context.Context, tokenHash string) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	var username string
	err := s.db.NewDelete().Model((*model.Session)(nil)).Where("token_hash = ?", tokenHash).
		Returning("username").Scan(ctx, &username)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("authn: ending a session: %w", err)
	}
	return username, nil
}

// deleteExpiredSessions deletes the sessions past their end at now, or not
// used for their idle timeout (idle, or rememberIdle for a remembered
// session; 0: none), and returns how many it deleted.
func (s *store) deleteExpiredSessions(ctx context.Context, now time.Time, idle, rememberIdle time.Duration) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	t := unixSeconds(now)
	q := s.db.NewDelete().Model((*model.Session)(nil)).
		Where("expires_at <= ?", t).
		WhereOr("NOT remembered AND last_seen <= ?", t-idle.Seconds())
	if rememberIdle > 0 {
		q = q.WhereOr("remembered AND last_seen <= ?", t-rememberIdle.Seconds())
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("authn: deleting expired sessions: %w", err)
	}
	return res.RowsAffected()
}
