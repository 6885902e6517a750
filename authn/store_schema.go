package authn

import (
	"context"
	"fmt"
	"strings"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// createSchema creates the tables that are missing, in one transaction, adds
// the columns that a sessions table of an earlier version lacks (see
// upgradeSessions), and checks that an existing users table has the
// columns this package reads. It never alters the users table and never
// drops anything, so it is safe on the Python application's auth.db and on
// every start.
func (s *store) createSchema(ctx context.Context) error {
	db := s.db
	if s.sqlite() {
		if err := enableWAL(ctx, db); err != nil {
			return err
		}
	}
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, m := range []any{(*model.User)(nil), (*model.Session)(nil)} {
			if _, err := tx.NewCreateTable().Model(m).IfNotExists().Exec(ctx); err != nil {
				return err
			}
		}
		for _, column := range []string{"username", "expires_at"} {
			_, err := tx.NewCreateIndex().Model((*model.Session)(nil)).IfNotExists().
				Index("sessions_" + column + "_idx").Column(column).Exec(ctx)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("authn: creating tables: %w", err)
	}
	if err := s.upgradeSessions(ctx); err != nil {
		return err
	}
	var users []model.User
	err = db.NewSelect().Model(&users).Column("username", "password_hash", "failed_attempts", "lockout_until").
		Limit(1).Scan(ctx)
	if err != nil {
		return fmt.Errorf("authn: the users table is not the one this package expects: %w", err)
	}
	return nil
}

// enableWAL switches a SQLite database to write-ahead logging, which lets
// readers go on while one connection writes. The mode is stored in the file,
// so one switch serves every later connection. An in-memory database cannot
// use WAL and keeps its "memory" mode.
func enableWAL(ctx context.Context, db *bun.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("authn: switching SQLite to WAL: %w", err)
	}
	switch strings.ToLower(mode) {
	case "wal", "memory":
		return nil
	}
	return fmt.Errorf("authn: SQLite stayed in journal mode %q instead of WAL (read-only file or directory?)", mode)
}

// addedSessionColumns are the columns of model.Session that came after the
// first release, with the definition that ADD COLUMN gives them: each has a
// default, so that the rows already there (live sessions) stay valid.
var addedSessionColumns = []struct{ name, sqlite, postgres string }{
	{"remembered", "BOOLEAN NOT NULL DEFAULT 0", "BOOLEAN NOT NULL DEFAULT FALSE"},
}

// upgradeSessions adds the addedSessionColumns that the sessions table
// lacks, keeping its rows. It looks first and alters only when a column is
// missing: on PostgreSQL, ALTER TABLE takes a lock that would queue every
// session read behind it on each start. Two processes upgrading at once
// both succeed: the loser's ADD COLUMN finds the column there.
func (s *store) upgradeSessions(ctx context.Context) error {
	have, err := s.sessionColumns(ctx)
	if err != nil {
		return fmt.Errorf("authn: reading the sessions table's columns: %w", err)
	}
	for _, c := range addedSessionColumns {
		if have[c.name] {
			continue
		}
		var err error
		if s.postgres() {
			_, err = s.db.ExecContext(ctx, "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS "+c.name+" "+c.postgres)
		} else {
			_, err = s.db.ExecContext(ctx, "ALTER TABLE sessions ADD COLUMN "+c.name+" "+c.sqlite)
			if err != nil && strings.Contains(err.Error(), "duplicate column name") {
				err = nil // another process added it meanwhile
			}
		}
		if err != nil {
			return fmt.Errorf("authn: adding column %s to the sessions table: %w", c.name, err)
		}
	}
	return nil
}

// sessionColumns returns the names of the sessions table's columns: the
// table that unqualified statements use, the first of the search path on
// PostgreSQL.
func (s *store) sessionColumns(ctx context.Context) (map[string]bool, error) {
	query := "SELECT name FROM pragma_table_info('sessions')"
	if s.postgres() {
		query = `SELECT column_name FROM information_schema.columns
WHERE table_name = 'sessions' AND table_schema = (
	SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
	WHERE c.oid = 'sessions'::regclass)`
	}
	rows, err := s.db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := make(map[string]bool)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		have[strings.ToLower(name)] = true
	}
	return have, rows.Err()
}
