package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// The statements of the account operations: registration, import, the
// administrator's changes and reads.

// nameTaken reports whether a user of that name exists in any case: the
// cheap look of Register before it spends a hash.
func (s *store) nameTaken(ctx context.Context, username string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	exists, err := s.db.NewSelect().Model((*model.User)(nil)).Where("lower(username) = lower(?)", username).Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("authn: register %s: %w", username, err)
	}
	return exists, nil
}

// insertUser writes a new, unlocked user with an encoded hash, unless a
// user of that name in any case exists (ErrUserExists). On SQLite the
// statement is atomic, writers running one at a time; on PostgreSQL two
// registrations of "admin" and "Admin" would not see each other's
// uncommitted row, so a transaction-scoped advisory lock on the lower-cased
// name orders them.
func (s *store) insertUser(ctx context.Context, username, encoded string) error {
	const insert = `INSERT INTO users (username, password_hash, failed_attempts)
SELECT ?, ?, 0 WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower(?))
ON CONFLICT (username) DO NOTHING`
	return s.addUser(ctx, username, func(ctx context.Context, tx bun.Tx) (sql.Result, error) {
		if s.postgres() {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext(lower(?)))", username); err != nil {
				return nil, err
			}
		}
		return tx.ExecContext(ctx, insert, username, encoded, username)
	})
}

// insertRow writes a new user row as it is, or fails with ErrUserExists.
func (s *store) insertRow(ctx context.Context, u *model.User) error {
	return s.addUser(ctx, u.Username, func(ctx context.Context, tx bun.Tx) (sql.Result, error) {
		return s.withLockout(insertUserRow(tx, u), u).On("CONFLICT (username) DO NOTHING").Exec(ctx)
	})
}

// addUser runs insert, which writes the row of a new user or nothing, and,
// when it wrote one, deletes any session left under that name, in one
// transaction: a user deleted behind the library's back (by the Python
// application) leaves sessions and app tokens that their reads refuse while
// the name is free, and that a new owner of the name must not inherit.
func (s *store) addUser(ctx context.Context, username string, insert func(context.Context, bun.Tx) (sql.Result, error)) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := oneRow(insert(ctx, tx)); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, username)
	})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrUserExists, username)
	}
	if err != nil {
		return notWritten("add "+username, err)
	}
	return nil
}

// replaceRow writes u over any user of its name and ends that user's
// sessions, in one transaction. When there was no such user, it also
// deletes the app tokens left under the name, as addUser does: a user
// deleted behind the library's back leaves them, and the new owner of the
// name must not inherit them. A user replaced keeps its tokens, carried
// over to the new hash, as SetPassword keeps them.
func (s *store) replaceRow(ctx context.Context, u *model.User) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		old, err := s.lockedHash(ctx, tx, u.Username)
		existed := err == nil
		switch {
		case errors.Is(err, ErrNotFound):
			if err := deleteOwned(ctx, tx, u.Username); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		_, err = s.withLockout(insertUserRow(tx, u), u).
			On("CONFLICT (username) DO UPDATE").
			Set("password_hash = EXCLUDED.password_hash").
			Set("failed_attempts = EXCLUDED.failed_attempts").
			Set("lockout_until = EXCLUDED.lockout_until").
			Exec(ctx)
		if err != nil {
			return err
		}
		if existed {
			if err := rebindCredentials(ctx, tx, u.Username, old, u.PasswordHash); err != nil {
				return err
			}
		}
		return deleteSessions(ctx, tx, u.Username)
	})
	if err != nil {
		return notWritten("import "+u.Username, err)
	}
	return nil
}

// insertUserRow starts the INSERT of u. Bun would add RETURNING for the
// columns u leaves to their defaults and run the statement through its
// Scan (see scanWritten): nothing here reads them, and RETURNING NULL turns
// that off, so that the statement's error is Exec's own.
func insertUserRow(tx bun.Tx, u *model.User) *bun.InsertQuery {
	return tx.NewInsert().Model(u).Returning("NULL")
}

// withLockout makes an INSERT of u write a lockout_until that is not finite
// as a SQL number. Bun spells +Inf, -Inf and NaN as the strings 'Infinity',
// '-Infinity' and 'NaN', which PostgreSQL reads as numbers but SQLite would
// keep as TEXT, a value the Python application could not compare with a
// time. SQLite reads 9e999 as +Inf; it cannot store a NaN (it would become
// NULL: unlocked), so a NaN is written there as +Inf, as locked as NaN is.
func (s *store) withLockout(q *bun.InsertQuery, u *model.User) *bun.InsertQuery {
	if u.LockoutUntil == nil || !s.sqlite() {
		return q
	}
	switch v := *u.LockoutUntil; {
	case math.IsInf(v, -1):
		return q.Value("lockout_until", "-9e999")
	case math.IsInf(v, 1), math.IsNaN(v):
		return q.Value("lockout_until", "9e999")
	}
	return q
}

// setPassword stores a new hash, clears the counter and any lock (an
// administrator's record of it too), carries the user's tokens over to the
// new hash and ends the user's sessions, in one transaction.
func (s *store) setPassword(ctx context.Context, username, encoded string) error {
	var old string
	return s.changeUser(ctx, "set password of", username, func(tx bun.Tx) *bun.UpdateQuery {
		return clearLock(tx).Set("password_hash = ?", encoded)
	}, func(ctx context.Context, tx bun.Tx) (err error) {
		old, err = s.lockedHash(ctx, tx, username)
		return err
	}, func(ctx context.Context, tx bun.Tx) error {
		if err := rebindCredentials(ctx, tx, username, old, encoded); err != nil {
			return err
		}
		return clearAdminLock(ctx, tx, username)
	})
}

// lock locks a user until until (Unix seconds; +Inf: with no end), clears
// the counter, records the lock as the administrator's (see
// model.AdminLock: it stops app tokens, which a lockout by failed passwords
// does not) and ends the user's sessions, in one transaction.
func (s *store) lock(ctx context.Context, username string, until float64) error {
	value, args := s.float(until)
	return s.changeUser(ctx, "lock", username, func(tx bun.Tx) *bun.UpdateQuery {
		return tx.NewUpdate().Model((*model.User)(nil)).
			Set("failed_attempts = 0").
			Set("lockout_until = "+value, args...)
	}, nil, func(ctx context.Context, tx bun.Tx) error {
		return recordAdminLock(ctx, tx, username, value, args)
	})
}

// float returns the SQL of a REAL value v: "?" with v as its argument,
// except that on SQLite an infinity is the number 9e999 or -9e999, not
// bun's 'Infinity' (a string SQLite would keep as TEXT; see withLockout).
func (s *store) float(v float64) (string, []any) {
	if s.sqlite() && math.IsInf(v, 0) {
		if v > 0 {
			return "9e999", nil
		}
		return "-9e999", nil
	}
	return "?", []any{v}
}

// changeUser runs before (when not nil), the UPDATE that update starts on
// username's row, then each of also, and deletes the user's sessions, in
// one transaction; ErrNotFound when there is no such user.
func (s *store) changeUser(ctx context.Context, doing, username string, update func(bun.Tx) *bun.UpdateQuery, before func(context.Context, bun.Tx) error, also ...func(context.Context, bun.Tx) error) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if before != nil {
			if err := before(ctx, tx); err != nil {
				return err
			}
		}
		if err := oneRow(update(tx).Where("username = ?", username).Exec(ctx)); err != nil {
			return err
		}
		for _, f := range also {
			if err := f(ctx, tx); err != nil {
				return err
			}
		}
		return deleteSessions(ctx, tx, username)
	})
	return notFoundOr(err, doing, username)
}

// unlock clears a user's lock and failure counter, and the record of an
// administrator's lock, in one transaction.
func (s *store) unlock(ctx context.Context, username string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := clearLock(tx).Where("username = ?", username).Exec(ctx)
		if err := oneRow(res, err); err != nil {
			return err
		}
		return clearAdminLock(ctx, tx, username)
	})
	return notFoundOr(err, "unlock", username)
}

// deleteUser removes a user and every row of theirs (sessions, app
// tokens, second factors, pending logins: see userTables), in one
// transaction.
func (s *store) deleteUser(ctx context.Context, username string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*model.User)(nil)).Where("username = ?", username).Exec(ctx)
		if err := oneRow(res, err); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, username)
	})
	return notFoundOr(err, "delete", username)
}

// user reads the row of username, or fails with ErrNotFound.
func (s *store) user(ctx context.Context, username string) (model.User, error) {
	var u model.User
	if err := s.check(); err != nil {
		return u, err
	}
	err := s.db.NewSelect().Model(&u).Where("username = ?", username).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("%w: %s", ErrNotFound, quoteName(username))
	}
	if err != nil {
		return u, fmt.Errorf("authn: reading %s: %w", quoteName(username), err)
	}
	return u, nil
}

// listUsers reads up to limit users whose names sort after after, in name
// order; with lockedOnly, only those locked at now.
func (s *store) listUsers(ctx context.Context, after string, limit int, lockedOnly bool, now time.Time) ([]model.User, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var users []model.User
	q := userPage(s.db, &users, after, limit)
	if lockedOnly {
		// The negation of unlockedSQL: PostgreSQL's NaN and SQLite's TEXT
		// sort above every number.
		q = q.Where("lockout_until > ? OR lockout_until < ?", unixSeconds(now), float64(minLockSeconds))
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("authn: listing users: %w", err)
	}
	return users, nil
}

// readUserPage reads up to limit users of db, any database with a users
// table, whose names sort after after, in name order: the one statement of
// this package on a database other than the store's (see ReadUsers).
func readUserPage(ctx context.Context, db bun.IDB, after string, limit int) ([]model.User, error) {
	var users []model.User
	if err := userPage(db, &users, after, limit).Scan(ctx); err != nil {
		return nil, fmt.Errorf("authn: reading users: %w", err)
	}
	return users, nil
}

// userPage selects a page of users into dst: byte order on SQLite, the
// database's collation on PostgreSQL, the same order for the paging.
func userPage(db bun.IDB, dst *[]model.User, after string, limit int) *bun.SelectQuery {
	return db.NewSelect().Model(dst).Where("username > ?", after).OrderExpr("username ASC").Limit(int64(limit))
}
