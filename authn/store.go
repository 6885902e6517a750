package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/minimost/minimost/authn/internal/hotread"
	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/schema"
)

// store runs every SQL statement of this package: the claim and the reset of
// the lockout, the account operations, the sessions, the prepared reads of
// every authenticated request and the schema. No other file of the package
// speaks SQL.
//
// It is a concrete type, not an interface, on purpose: the lockout's
// guarantee is that a claim counts an attempt in one atomic statement, and a
// pluggable store could lose that without any test noticing.
//
// Every method that runs a statement first checks the database's health
// (see check), so no caller can forget to fail closed; the problem is
// returned as it is. Other errors name the statement that failed and start
// with "authn: "; callers return them as they are.
type store struct {
	db      *bun.DB
	dialect dialect.Name
	hot     *hotReads // the reads of every authenticated request, prepared once
	// fast answers the hot reads from memory while nothing was committed
	// (SQLite in WAL mode); nil, as are the memos, when every request
	// reads. See fastReads.
	fast     *fastReads
	users    *memo[userHashRow]
	sessions *memo[model.Session]
	tokens   *memo[tokenRow]
	// problem is set while Open's database file is missing or broken (see
	// fileWatch): every statement fails closed with it until it is back.
	problem atomic.Pointer[error]
}

// newStore creates the tables that are missing, switches SQLite to WAL and
// prepares the hot reads, or has reader run them (see hotReads). The
// store's close closes reader.
func newStore(ctx context.Context, db *bun.DB, reader hotread.Reader) (*store, error) {
	s := &store{db: db, dialect: db.Dialect().Name()}
	if err := s.createSchema(ctx); err != nil {
		return nil, err
	}
	hot, err := prepareHotReads(ctx, db, reader)
	if err != nil {
		return nil, err
	}
	s.hot = hot
	return s, nil
}

// useFastReads sets up the fast reads of a SQLite database in WAL mode, if
// this process can map its WAL-index; skipped counts the reads they answer.
func (s *store) useFastReads(ctx context.Context, skipped *atomic.Int64, logger *slog.Logger) {
	if s.fast = openFastReads(ctx, s.db, logger); s.fast != nil {
		s.users = newMemo[userHashRow](s.fast.index, skipped)
		s.sessions = newMemo[model.Session](s.fast.index, skipped)
		s.tokens = newMemo[tokenRow](s.fast.index, skipped)
	}
}

// close closes the fast reads, the prepared reads and, when closeDB is
// true, the database.
func (s *store) close(closeDB bool) error {
	err := errors.Join(s.fast.close(), s.hot.Close())
	if closeDB {
		err = errors.Join(err, s.db.Close())
	}
	return err
}

// check returns the problem with the database file, if Open's watch found
// one: then no statement runs.
func (s *store) check() error {
	if p := s.problem.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *store) postgres() bool { return s.dialect == dialect.PG }
func (s *store) sqlite() bool   { return s.dialect == dialect.SQLite }

// clearLock starts the UPDATE that ends a user's failures and lock: the
// reset of a login, of SetPassword and of Unlock.
func clearLock(db bun.IDB) *bun.UpdateQuery {
	return db.NewUpdate().Model((*model.User)(nil)).
		Set("failed_attempts = 0").
		Set("lockout_until = NULL")
}

// deleteSessions ends all of username's sessions, inside the transaction of
// the change that requires it.
func deleteSessions(ctx context.Context, db bun.IDB, username string) error {
	_, err := db.NewDelete().Model((*model.Session)(nil)).Where("username = ?", username).Exec(ctx)
	return err
}

// scanWritten runs q, a write with RETURNING, on conn (the store's *sql.DB,
// or a transaction's *sql.Tx) and scans the one row it returns into dest;
// sql.ErrNoRows when it wrote no row. It succeeds only once the write is
// done: a returned row is not yet a stored one. SQLite runs a statement with
// RETURNING to its end, and commits it outside a transaction, when the
// statement is reset after its last row; PostgreSQL reports a failed
// implicit commit after the row too. database/sql's Row.Scan returns the
// error of that end (it closes the rows and reports Close's error); bun's
// Scan does not (v1.3.0 defers rows.Close() and drops its error), so a full
// disk once let every claim of the lockout count nothing and still check
// the password. No write with RETURNING may run through bun's Scan or Exec.
//
// The statement runs on database/sql directly, as the prepared hot reads
// do, so bun's query hooks do not see it.
func scanWritten(ctx context.Context, conn bun.IConn, gen schema.QueryGen, q schema.QueryAppender, dest ...any) error {
	query, err := q.AppendQuery(gen, nil)
	if err != nil {
		return err
	}
	return conn.QueryRowContext(ctx, string(query)).Scan(dest...)
}

// notWritten is the error of a write that the database did not make, or
// could not confirm: what was being done, and that nothing of it can be
// counted on.
func notWritten(doing string, err error) error {
	return fmt.Errorf("authn: %s: the database could not write: %w", doing, err)
}

// lockedHash reads username's hash in the transaction tx of a change that
// will replace it, locking the row on PostgreSQL (SQLite's transactions
// take the write lock as they begin), so that the hash read is the one
// replaced; ErrNotFound when there is no such user.
func (s *store) lockedHash(ctx context.Context, tx bun.Tx, username string) (string, error) {
	query := "SELECT password_hash FROM users WHERE username = ?"
	if s.postgres() {
		query += " FOR UPDATE"
	}
	var hash string
	err := tx.QueryRowContext(ctx, query, username).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return hash, err
}

// rebind carries the rows of table ("sessions" or "tokens") of username
// bound to the hash from over to the hash to, in the transaction of a
// change of hash that keeps them (see model.Session.UserHash).
func rebind(ctx context.Context, tx bun.Tx, table, username, from, to string) error {
	_, err := tx.ExecContext(ctx, "UPDATE "+table+" SET user_hash = ? WHERE username = ? AND user_hash = ?", to, username, from)
	return err
}

// rebindKept carries the rows of username that a change of hash made by
// this package keeps (its app tokens, passkeys and verified address) from
// the hash from over to the hash to, in the transaction of the change
// (SetPassword, ChangePassword, a re-hash, an import over the user).
func rebindKept(ctx context.Context, tx bun.Tx, username, from, to string) error {
	for _, table := range []string{"tokens", "passkeys", "emails"} {
		if err := rebind(ctx, tx, table, username, from, to); err != nil {
			return err
		}
	}
	return nil
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

// notFoundOr is the error of a write on one user: ErrNotFound naming the
// user, or err wrapped with what was being done.
func notFoundOr(err error, doing, username string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, quoteName(username))
	}
	return notWritten(doing+" "+quoteName(username), err)
}
