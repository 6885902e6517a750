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

// The statements of the sessions table. Sessions are stored by the SHA-256
// of their token (see tokenHash), never by the token.

// createSession stores a session of username, made at now and ending after
// lifetime (remembered: a "remember me" session) and bound to the hash
// verified, provided the user's row still has that hash and is not locked: the check and the insert
// are one statement, so a password change, a Lock or a deletion that lands
// after the password check leaves no live session behind. On PostgreSQL the
// row is read FOR SHARE, so that such a change in flight is waited for and
// then seen; SQLite runs one writer at a time. It fails with
// errSessionRefused when the row did not qualify.
//
// With a limit of sessions per user (limit >= 0), the same transaction ends
// the user's sessions beyond it (see trimSessions) and createSession
// returns how many it ended.
func (s *store) createSession(ctx context.Context, tokenHash, username, verified string, now time.Time, lifetime time.Duration, remembered bool, client sessionClient, limit int, idle idleTimeouts) (ended int64, err error) {
	return s.createSessionIf(ctx, unlockedSQL, unlockedArgs(unixSeconds(now)), tokenHash, username, verified, now, lifetime, remembered, client, limit, idle)
}

// notAdminLockedSQL is the condition of a user row that no
// administrator's Lock stops at a time, with the arguments of
// notAdminLockedArgs: not locked, or locked in time by failed passwords
// only (see adminLocked). It is what a sign-in that guesses no secret
// (a passkey) requires: a lockout by failed passwords does not stop it.
const notAdminLockedSQL = `lockout_until IS NULL OR (lockout_until >= ? AND lockout_until < ? AND NOT (lockout_until > ?
AND EXISTS (SELECT 1 FROM admin_locks AS l WHERE l.username = users.username AND l.lockout_until = users.lockout_until)))`

func notAdminLockedArgs(now float64) []any {
	return []any{float64(minLockSeconds), float64(maxLockSeconds), now}
}

// createPasskeySession is createSession for a sign-in with the passkey of
// credentialID: a lockout by failed passwords does not refuse it, an
// administrator's Lock (or a lock with no end) does, and so does the
// passkey's removal, or its hash no longer the user's, up to the insert.
func (s *store) createPasskeySession(ctx context.Context, credentialID, tokenHash, username, verified string, now time.Time, lifetime time.Duration, remembered bool, client sessionClient, limit int, idle idleTimeouts) (ended int64, err error) {
	cond := "(" + notAdminLockedSQL + ") AND EXISTS (SELECT 1 FROM passkeys AS p WHERE p.credential_id = ? AND p.username = users.username AND p.user_hash = users.password_hash)"
	return s.createSessionIf(ctx, cond, append(notAdminLockedArgs(unixSeconds(now)), credentialID), tokenHash, username, verified, now, lifetime, remembered, client, limit, idle)
}

// createSessionIf is createSession with the user row's lock condition
// cond and its arguments.
func (s *store) createSessionIf(ctx context.Context, cond string, condArgs []any, tokenHash, username, verified string, now time.Time, lifetime time.Duration, remembered bool, client sessionClient, limit int, idle idleTimeouts) (ended int64, err error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	query := `INSERT INTO sessions (token_hash, username, created_at, last_seen, expires_at, remembered, client_net, user_agent, user_hash)
SELECT ?, username, ?, ?, ?, ?, ?, ?, password_hash FROM users
WHERE username = ? AND password_hash = ? AND (` + cond + `)`
	if s.postgres() {
		query += " FOR SHARE"
	}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := s.lockSessionsOf(ctx, tx, username, limit); err != nil {
			return err
		}
		args := []any{tokenHash, unixSeconds(now), unixSeconds(now), unixSeconds(now.Add(lifetime)), remembered, nullIfEmpty(client.net), nullIfEmpty(client.agent),
			username, verified}
		res, err := tx.ExecContext(ctx, query, append(args, condArgs...)...)
		if err := oneRow(res, err); err != nil {
			return err
		}
		ended, err = s.trimSessions(ctx, tx, username, tokenHash, limit, now, idle)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return 0, errSessionRefused
	} else if err != nil {
		return 0, notWritten("creating a session", err)
	}
	return ended, nil
}

// sessionsLockClass is the first key of the PostgreSQL advisory locks of
// lockSessionsOf ("auth" in ASCII), so that they share no key with other
// advisory locks of the application: the two-key form has a key space of its
// own, apart from insertUser's one-key locks.
const sessionsLockClass = 0x61757468

// lockSessionsOf makes the logins of one user that count its sessions
// (limit >= 0) wait for each other, until the end of tx. SQLite needs
// nothing: its writers run one at a time. On PostgreSQL each transaction
// would otherwise count the committed rows and its own, not those of a
// parallel login, and both would keep limit+1.
func (s *store) lockSessionsOf(ctx context.Context, tx bun.Tx, username string, limit int) error {
	if limit < 0 || !s.postgres() {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?, hashtext(?))", sessionsLockClass, username)
	return err
}

// trimSessions ends, in tx, the sessions of username beyond the limit
// newest ones (all but limit), keeping the one of keep (the session just
// made), and returns how many it ended. Newest means live at now (see
// idleTimeouts), then last used: the sessions that have ended already and
// await the cleanup go first, whenever they were last used, and then the
// sessions used longest ago, so that a script that signs in over and over
// does not sign the user out of the browser they use every day. A negative
// limit is none.
func (s *store) trimSessions(ctx context.Context, tx bun.Tx, username, keep string, limit int, now time.Time, idle idleTimeouts) (int64, error) {
	if limit < 0 {
		return 0, nil
	}
	live, liveArgs := idle.live(unixSeconds(now))
	args := append([]any{username, username, keep}, liveArgs...)
	res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE username = ? AND token_hash NOT IN (
SELECT token_hash FROM sessions WHERE username = ?
ORDER BY CASE WHEN token_hash = ? THEN 0 WHEN `+live+` THEN 1 ELSE 2 END, last_seen DESC, created_at DESC, token_hash DESC
LIMIT ?)`, append(args, limit)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// nullIfEmpty is a column value: NULL for "".
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// session reads the session of tokenHash with its hot read (or
// from memory: see fastReads), if its user exists and is not locked with
// no end (see sessionFrom); errNoSession when there is none. Whether it is still live is the caller's to judge.
func (s *store) session(ctx context.Context, tokenHash string) (model.Session, error) {
	if err := s.check(); err != nil {
		return model.Session{}, err
	}
	sess, err := s.sessions.read(tokenHash, func() (sess model.Session, err error) {
		err = s.hot.read(ctx, &s.hot.session, tokenHash, sessionColumns(&sess))
		return sess, err
	})
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
		return notWritten("recording a session's use", err)
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
	q := s.db.NewDelete().Model((*model.Session)(nil)).Where("token_hash = ?", tokenHash).Returning("username")
	// A sign-out answered before its deletion is known written would leave
	// the session working on a computer its user believes signed out.
	err := scanWritten(ctx, s.db.DB, s.db.QueryGen(), q, &username)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", notWritten("ending a session", err)
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
		return 0, notWritten("deleting expired sessions", err)
	}
	return res.RowsAffected()
}

// listSessions reads the sessions of username live at now (before their
// absolute end, used within their idle timeout, see idleTimeouts, and
// bound to the user's hash), the last used first.
func (s *store) listSessions(ctx context.Context, username string, now time.Time, idle idleTimeouts) ([]model.Session, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	live, args := idle.live(unixSeconds(now))
	var sessions []model.Session
	err := s.db.NewSelect().Model(&sessions).
		Where("username = ?", username).Where(live, args...).Where(boundSQL, username).
		OrderExpr("last_seen DESC, created_at DESC, token_hash DESC").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("authn: listing the sessions of %s: %w", quoteName(username), err)
	}
	return sessions, nil
}

// boundSQL is the condition of a session or token of the user named by its
// argument that is bound to the user's hash as it is now: the others, left
// by a hash written outside this package, no longer work.
const boundSQL = "user_hash = (SELECT password_hash FROM users WHERE users.username = ?)"

// idleTimeouts are the idle timeouts of sessions: normal ones end after
// normal unused (HTTPConfig.SessionIdleTimeout, never 0), remembered ones
// after remembered (RememberIdleTimeout; 0: none).
type idleTimeouts struct{ normal, remembered time.Duration }

// live returns the SQL condition, with its arguments, of a session live at
// t (unix seconds): before its absolute end and used within its own idle
// timeout, as sessionUser judges it.
func (idle idleTimeouts) live(t float64) (string, []any) {
	if idle.remembered <= 0 {
		return "expires_at > ? AND (remembered OR last_seen > ?)", []any{t, t - idle.normal.Seconds()}
	}
	return "expires_at > ? AND ((NOT remembered AND last_seen > ?) OR (remembered AND last_seen > ?))",
		[]any{t, t - idle.normal.Seconds(), t - idle.remembered.Seconds()}
}

// endSessionOf deletes the session of tokenHash if it is username's, and
// reports whether there was one.
func (s *store) endSessionOf(ctx context.Context, username, tokenHash string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	res, err := s.db.NewDelete().Model((*model.Session)(nil)).
		Where("token_hash = ? AND username = ?", tokenHash, username).Exec(ctx)
	if err := oneRow(res, err); errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, notWritten("ending a session of "+quoteName(username), err)
	}
	return true, nil
}

// endSessionsOf deletes the sessions of username but the one of except
// ("" for none), and returns how many it deleted.
func (s *store) endSessionsOf(ctx context.Context, username, except string) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	q := s.db.NewDelete().Model((*model.Session)(nil)).Where("username = ?", username)
	if except != "" {
		q = q.Where("token_hash <> ?", except)
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return 0, notWritten("ending the sessions of "+quoteName(username), err)
	}
	return res.RowsAffected()
}
