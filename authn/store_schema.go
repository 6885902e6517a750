package authn

import (
	"context"
	"fmt"
	"strings"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// createSchema creates the tables that are missing, in one transaction,
// adds to an existing sessions table the columns of later versions (see
// addedSessionColumns), and checks that an existing users table has the
// columns this package reads. It never alters the users table, nor drops
// anything, so it is safe on the Python application's auth.db and on every
// start.
func (s *store) createSchema(ctx context.Context) error {
	db := s.db
	if s.sqlite() {
		if err := enableWAL(ctx, db); err != nil {
			return err
		}
	}
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if s.postgres() {
			// Two processes creating the same table at once make one of
			// them fail on PostgreSQL, IF NOT EXISTS or not (a unique
			// violation in pg_type): instances started together on a
			// database that lacks a table of this version would. A lock
			// held until the commit runs the creations one at a time, and
			// the second then finds the tables. The two-key form keeps it
			// apart from insertUser's one-key locks.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('minimost/authn'), hashtext('schema'))"); err != nil {
				return err
			}
		}
		// users, and the tables of no user's (the per-client budgets).
		for _, m := range []any{(*model.User)(nil), (*model.ClientBudget)(nil)} {
			if _, err := tx.NewCreateTable().Model(m).IfNotExists().Exec(ctx); err != nil {
				return err
			}
		}
		for _, t := range userTables {
			if _, err := tx.NewCreateTable().Model(t.model).IfNotExists().Exec(ctx); err != nil {
				return err
			}
			for _, column := range t.indexed {
				_, err := tx.NewCreateIndex().Model(t.model).IfNotExists().
					Index(t.name + "_" + column + "_idx").Column(column).Exec(ctx)
				if err != nil {
					return err
				}
			}
		}
		return createRecoverySchema(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("authn: creating tables: %w", err)
	}
	var users []model.User
	err = db.NewSelect().Model(&users).Column("username", "password_hash", "failed_attempts", "lockout_until").
		Limit(1).Scan(ctx)
	if err != nil {
		return fmt.Errorf("authn: the users table is not the one this package expects: %w", err)
	}
	if err := s.addColumns(ctx, "sessions", addedSessionColumns); err != nil {
		return err
	}
	if err := s.addColumns(ctx, "tokens", addedTokenColumns); err != nil {
		return err
	}
	return s.bindUnbound(ctx)
}

// userTable is a table of rows that belong to a user, by its username
// column, with the columns it has an index on.
type userTable struct {
	model   any
	name    string
	indexed []string
}

// userTables are the library's tables beside users, each of rows that
// belong to one user: the one list that schema creation walks (it creates
// each) and that Delete walks (it deletes the user's rows in each; see
// deleteOwned). A factor or flow that adds a table adds it here.
var userTables = []userTable{
	{(*model.Session)(nil), "sessions", []string{"username", "expires_at"}},
	{(*model.Token)(nil), "tokens", nil},
	{(*model.AdminLock)(nil), "admin_locks", nil},
	{(*model.PendingLogin)(nil), "pending_logins", []string{"username", "expires_at"}},
	{(*model.TOTPSecret)(nil), "totp_secrets", nil},
	{(*model.RecoveryCode)(nil), "recovery_codes", []string{"username"}},
	{(*model.Email)(nil), "emails", nil},
	{(*model.RecoveryToken)(nil), "recovery_tokens", []string{"username", "expires_at"}},
	{(*model.Passkey)(nil), "passkeys", []string{"username"}},
	{(*model.PasskeyChallenge)(nil), "passkey_challenges", []string{"expires_at"}},
}

// deleteOwned deletes username's rows in every table of userTables, inside
// the transaction of the change that requires it: the deletion of the
// user, or the creation of a user of a name whose rows were left behind (a
// user deleted outside the library), whose new owner must inherit nothing.
func deleteOwned(ctx context.Context, db bun.IDB, username string) error {
	for _, t := range userTables {
		if _, err := db.NewDelete().Model(t.model).Where("username = ?", username).Exec(ctx); err != nil {
			return fmt.Errorf("deleting from %s: %w", t.name, err)
		}
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

// addedColumn is a column that a table's first version lacked, with the
// definition ADD COLUMN gives it on each database.
type addedColumn struct{ name, sqlite, postgres string }

// addedSessionColumns are the columns of model.Session that came after the
// first release: addColumns adds them to a table made before them. Each is
// nullable or has a default, so that the rows already there (live
// sessions) stay valid.
var addedSessionColumns = []addedColumn{
	{"client_net", "TEXT", "TEXT"}, // SessionInfo.ClientNetwork
	{"user_agent", "TEXT", "TEXT"}, // SessionInfo.UserAgent
	{"remembered", "BOOLEAN NOT NULL DEFAULT 0", "BOOLEAN NOT NULL DEFAULT FALSE"}, // "remember me"
	{"user_hash", "TEXT", "TEXT"}, // Session.UserHash
}

// addedTokenColumns are the columns of model.Token that came after the
// first release.
var addedTokenColumns = []addedColumn{
	{"user_hash", "TEXT", "TEXT"}, // Token.UserHash
}

// bindUnbound binds the sessions and tokens that have no user_hash, made
// before the column (or by an older version of this package running
// beside this one), to their user's hash as it is now: an unbound row is
// refused, and binding it now keeps the users of an upgrade signed in.
// A hash the Python application wrote before the upgrade cannot be told
// from one this package wrote; every later one ends them.
func (s *store) bindUnbound(ctx context.Context) error {
	for _, table := range []string{"sessions", "tokens"} {
		_, err := s.db.ExecContext(ctx, "UPDATE "+table+" SET user_hash = (SELECT password_hash FROM users WHERE users.username = "+table+".username) WHERE user_hash IS NULL")
		if err != nil {
			return notWritten("binding the "+table+" of an earlier version to their users' hashes", err)
		}
	}
	return nil
}

// addColumns adds to table the columns it lacks. It alters nothing when
// none is missing: on PostgreSQL, ALTER TABLE takes a lock that would queue
// every read of the table behind it on each start. It is safe when two
// processes upgrade the same database at once: PostgreSQL's ADD COLUMN IF
// NOT EXISTS waits for the other's and then does nothing, and on SQLite a
// column the other process added in between is found on a second look.
func (s *store) addColumns(ctx context.Context, table string, columns []addedColumn) error {
	have, err := s.columns(ctx, table)
	if err != nil {
		return fmt.Errorf("authn: reading the columns of %s: %w", table, err)
	}
	for _, c := range columns {
		if have[c.name] {
			continue
		}
		query := "ALTER TABLE " + table + " ADD COLUMN " + c.name + " " + c.sqlite
		if s.postgres() {
			query = "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS " + c.name + " " + c.postgres
		}
		if _, err := s.db.ExecContext(ctx, query); err != nil {
			if again, err2 := s.columns(ctx, table); err2 == nil && again[c.name] {
				continue // added by another process meanwhile
			}
			return fmt.Errorf("authn: adding the column %s to %s: %w", c.name, table, err)
		}
	}
	return nil
}

// columns returns the names of table's columns: of the table that an
// unqualified name finds, the search_path's on PostgreSQL.
func (s *store) columns(ctx context.Context, table string) (map[string]bool, error) {
	query := "SELECT name FROM pragma_table_info(?)"
	if s.postgres() {
		query = "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(?) AND attnum > 0 AND NOT attisdropped"
	}
	rows, err := s.db.QueryContext(ctx, query, table)
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
