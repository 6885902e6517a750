package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// hotReads are the reads made on every authenticated request: the user's
// row behind a cached Basic credential, a session, and an app token. They are prepared
// once: parsing and finalizing them for each request took 40% of a cached
// Basic request's time in a profile. Bun does not run query hooks for
// prepared statements, so hooks do not see these two (New says so); every
// other statement goes through bun.
type hotReads struct {
	local   bool      // SQLite: the reads are of a local file
	user    *sql.Stmt // password_hash, lockout_until, second factors by username (see userRead)
	session *sql.Stmt // username, last_seen, expires_at, remembered by token_hash, if the user exists
	token   *sql.Stmt // an app token with its user's locks (see tokenRead)
}

// sessionRead reads a session, if its user exists and is not locked with no
// end (a lockout_until that is no time in range: how an administrator of the
// Python application disables an account; NaN, which PostgreSQL sorts above
// every number, and TEXT, which SQLite sorts above every number, fail the
// second comparison). Failed passwords never write such a value, so nobody
// can end another's sessions with them; Lock ends sessions itself.
func sessionRead() string {
	return fmt.Sprintf(`SELECT s.username, s.last_seen, s.expires_at, s.remembered
FROM sessions AS s JOIN users AS u ON u.username = s.username
WHERE s.token_hash = ? AND s.user_hash = u.password_hash
AND (u.lockout_until IS NULL OR (u.lockout_until >= %d AND u.lockout_until < %d))`, int64(minLockSeconds), int64(maxLockSeconds))
}

// userRead reads what a cached Basic credential is checked against: the
// user's hash, stored lock, and second factors (see factorsSQL), so that a
// password cached before the account enrolled a second factor no longer
// passes, in the same one read by primary key.
func userRead() string {
	return "SELECT password_hash, lockout_until, " + factorsSQL("users.username") + " FROM users WHERE username = ?"
}

func prepareHotReads(ctx context.Context, db *bun.DB) (*hotReads, error) {
	h := &hotReads{local: db.Dialect().Name() == dialect.SQLite}
	prepare := func(query string) (*sql.Stmt, error) {
		if db.Dialect().Name() == dialect.PG {
			query = strings.Replace(query, "?", "$1", 1) // each has one parameter
		}
		stmt, err := db.DB.PrepareContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("authn: preparing %q: %w", query, err)
		}
		return stmt, nil
	}
	var err error
	if h.user, err = prepare(userRead()); err != nil {
		return nil, err
	}
	if h.session, err = prepare(sessionRead()); err != nil {
		h.user.Close()
		return nil, err
	}
	if h.token, err = prepare(tokenRead()); err != nil {
		h.user.Close()
		h.session.Close()
		return nil, err
	}
	return h, nil
}

// context returns the context a hot read runs with. On SQLite it cannot be
// cancelled: a cancellable context costs two goroutines per query, the
// watchers of database/sql and of the driver, as much again as the read of
// a local file, which in WAL mode does not wait for writers. Its one wait,
// for a pooled connection, is bounded by the busy timeout of the statements
// holding them. A network read (PostgreSQL) keeps ctx.
func (h *hotReads) context(ctx context.Context) context.Context {
	if h.local {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (h *hotReads) Close() error {
	return errors.Join(h.user.Close(), h.session.Close(), h.token.Close())
}

// userHash reads username's hash, stored lock and second factors with a prepared
// statement: one read by primary key, the whole cost of a request with a
// cached Basic credential, unless it is answered from memory (see
// fastReads). sql.ErrNoRows means no such user.
func (s *store) userHash(ctx context.Context, username string) (userHashRow, error) {
	if err := s.check(); err != nil {
		return userHashRow{}, err
	}
	return s.users.read(username, func() (row userHashRow, err error) {
		err = s.hot.user.QueryRowContext(s.hot.context(ctx), username).Scan(&row.stored, &row.until, &row.factors)
		return row, err
	})
}
