package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/minimost/minimost/authn/internal/hotread"
	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// The hot reads are the reads made on every authenticated request: the
// user's row behind a cached Basic credential, a session, and an app token.
// Each is written here once, as its columns and the rest of its SELECT: a
// column is added in one line, its expression and where it goes, and the
// field it goes to.

// column is one column of a hot read: its SQL expression and the
// destination Scan fills.
type column struct {
	expr string
	dest any
}

// userColumns are the columns of the user read, into row: expressions on
// the user's row u (a subquery may use u.username).
func userColumns(row *userHashRow) []column {
	return []column{
		{"u.password_hash", &row.stored},
		{"u.lockout_until", &row.until},
		// A password cached before the account enrolled a second factor
		// no longer passes: the factors come in the same read.
		{userFactorsSQL, &row.factors},
	}
}

// userFactorsSQL is the factors column of the user read, built once:
// userColumns runs on every cached Basic request, and building it there
// took 4% of such a request's CPU on PostgreSQL.
var userFactorsSQL = factorsSQL("u.username")

// userFrom is the rest of the user read: one row by primary key.
const userFrom = "FROM users AS u WHERE u.username = ?"

// sessionColumns are the columns of the session read, into sess.
func sessionColumns(sess *model.Session) []column {
	return []column{
		{"s.username", &sess.Username},
		{"s.last_seen", &sess.LastSeen},
		{"s.expires_at", &sess.ExpiresAt},
		{"s.remembered", &sess.Remembered},
	}
}

// sessionFrom reads a session, if its user exists and is not locked with no
// end (a lockout_until that is no time in range: how an administrator of the
// Python application disables an account; NaN, which PostgreSQL sorts above
// every number, and TEXT, which SQLite sorts above every number, fail the
// second comparison). Failed passwords never write such a value, so nobody
// can end another's sessions with them; Lock ends sessions itself.
var sessionFrom = `FROM sessions AS s JOIN users AS u ON u.username = s.username
WHERE s.token_hash = ? AND s.user_hash = u.password_hash
AND ` + lockInRange("u.lockout_until")

// tokenColumns are the columns of the token read, into row.
func tokenColumns(row *tokenRow) []column {
	return []column{
		{"t.username", &row.username},
		{"t.last_used", &row.lastUsed},
		{"u.lockout_until", &row.userLock},
		{"l.lockout_until", &row.adminLock},
	}
}

// tokenFrom reads a token with its user's lock and the administrator's, if
// the user exists, still has the hash the token is bound to (see
// model.Token.UserHash), and is not locked with no end (as sessionFrom: how an
// administrator of the Python application disables an account). Whether a
// lock in time stops the token is the caller's to judge: one of failed
// passwords does not, one of Lock does.
var tokenFrom = `FROM tokens AS t JOIN users AS u ON u.username = t.username
LEFT JOIN admin_locks AS l ON l.username = t.username
WHERE t.token_hash = ? AND t.user_hash = u.password_hash
AND ` + lockInRange("u.lockout_until")

// lockInRange is the condition that col, a lockout_until, is NULL or a
// time in range.
func lockInRange(col string) string {
	return fmt.Sprintf("(%[1]s IS NULL OR (%[1]s >= %[2]d AND %[1]s < %[3]d))", col, int64(minLockSeconds), int64(maxLockSeconds))
}

// selectOf is the SELECT of a hot read: cols, then from.
func selectOf(cols []column, from string) string {
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = c.expr
	}
	return "SELECT " + strings.Join(exprs, ", ") + "\n" + from
}

// destOf is where Scan puts the columns cols.
func destOf(cols []column) []any {
	dest := make([]any, len(cols))
	for i, c := range cols {
		dest[i] = c.dest
	}
	return dest
}

// hotReads runs the hot reads. On SQLite, and on a PostgreSQL pool given
// to New, they are statements prepared once on db.DB: parsing and
// finalizing them for each request took 40% of a cached Basic request's
// time in a profile. On a database opened by the postgres package's Open
// they run on a pgx pool of their own, several requests' reads in one round
// trip (see that package). Bun does not run query hooks for either, so
// hooks do not see these reads (New says so); every other statement goes
// through bun.
type hotReads struct {
	local   bool           // SQLite: the reads are of a local file
	reader  hotread.Reader // nil: the prepared statements run them
	user    hotQuery
	session hotQuery
	token   hotQuery
}

// hotQuery is one hot read: its SQL (with PostgreSQL's $1 on PostgreSQL),
// and its prepared statement when no hotread.Reader runs it.
type hotQuery struct {
	sql  string
	stmt *sql.Stmt
}

// prepareHotReads prepares the hot reads of db, unless reader, when not
// nil, is to run them; Close closes reader.
func prepareHotReads(ctx context.Context, db *bun.DB, reader hotread.Reader) (*hotReads, error) {
	h := &hotReads{local: db.Dialect().Name() == dialect.SQLite, reader: reader}
	for _, q := range []struct {
		to   *hotQuery
		sql  string
		name string
	}{
		{&h.user, selectOf(userColumns(new(userHashRow)), userFrom), "user"},
		{&h.session, selectOf(sessionColumns(new(model.Session)), sessionFrom), "session"},
		{&h.token, selectOf(tokenColumns(new(tokenRow)), tokenFrom), "token"},
	} {
		q.to.sql = q.sql
		if db.Dialect().Name() == dialect.PG {
			q.to.sql = strings.Replace(q.sql, "?", "$1", 1) // each has one parameter
		}
		if reader != nil {
			continue
		}
		stmt, err := db.DB.PrepareContext(ctx, q.to.sql)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("authn: preparing the %s read %q: %w", q.name, q.to.sql, err), h.Close())
		}
		q.to.stmt = stmt
	}
	return h, nil
}

// read runs q for key into cols.
func (h *hotReads) read(ctx context.Context, q *hotQuery, key string, cols []column) error {
	if h.reader != nil {
		return h.reader.Read(ctx, q.sql, key, destOf(cols)...)
	}
	return q.stmt.QueryRowContext(h.context(ctx), key).Scan(destOf(cols)...)
}

// context returns the context a prepared hot read runs with. On SQLite it
// cannot be cancelled: a cancellable context costs two goroutines per query,
// the watchers of database/sql and of the driver, as much again as the read
// of a local file, which in WAL mode does not wait for writers. Its one
// wait, for a pooled connection, is bounded by the busy timeout of the
// statements holding them. A network read (PostgreSQL) keeps ctx.
func (h *hotReads) context(ctx context.Context) context.Context {
	if h.local {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// Close closes the prepared statements, or the reader.
func (h *hotReads) Close() error {
	var errs []error
	for _, q := range []*hotQuery{&h.user, &h.session, &h.token} {
		if q.stmt != nil {
			errs = append(errs, q.stmt.Close())
		}
	}
	if h.reader != nil {
		errs = append(errs, h.reader.Close())
	}
	return errors.Join(errs...)
}

// userHash reads username's hash, stored lock and second factors: one
// read by primary key, the whole cost of a request with a cached Basic
// credential, unless it is answered from memory (see fastReads).
// sql.ErrNoRows means no such user.
func (s *store) userHash(ctx context.Context, username string) (userHashRow, error) {
	if err := s.check(); err != nil {
		return userHashRow{}, err
	}
	return s.users.read(username, func() (row userHashRow, err error) {
		err = s.hot.read(ctx, &s.hot.user, username, userColumns(&row))
		return row, err
	})
}
